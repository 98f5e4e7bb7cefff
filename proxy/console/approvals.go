package console

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/approvals"
)

// approvalView is an approval as the inbox shows it, with what this person may do.
type approvalView struct {
	approvals.Approval
	URL       string `json:"url"`
	CanDecide bool   `json:"can_decide"`
	// WhyNot says why a pending approval cannot be decided by this person.
	WhyNot string `json:"why_not,omitempty"`
}

func (c *Console) view(a *approvals.Approval, s *session) approvalView {
	v := approvalView{Approval: *a, URL: Prefix + "/approvals/" + a.ID}
	v.Hash = "" // of no use to a person, and not needed to decide
	if a.Status == approvals.StatusPending {
		switch err := c.d.Approvals.MayDecide(a, &s.caller); {
		case err == nil:
			v.CanDecide = true
		case errors.Is(err, approvals.ErrSelfApproval):
			v.WhyNot = "you made this call; another approver must decide it"
		default:
			v.WhyNot = "you are not among this call's approvers"
		}
	}
	return v
}

// listApprovals is GET /console/api/approvals?status=pending|decided|all: the caller's
// org's approvals they may see (approver role: all of them), newest first.
func (c *Console) listApprovals(ctx *fiber.Ctx) error {
	s := sessionOf(ctx)
	want := ctx.Query("status", "pending")
	var status approvals.Status
	switch want {
	case "pending":
		status = approvals.StatusPending
	case "decided", "all":
		status = "all"
	default:
		return apierror.BadRequest("invalid_request", "status", "status: want pending, decided or all, got %s", quoteShort(want))
	}
	rows, err := c.d.Approvals.List(ctx.UserContext(), approvals.ListFilter{Status: status, Org: s.caller.Org, Limit: 200})
	if err != nil {
		return err
	}
	out := make([]approvalView, 0, len(rows))
	for i := range rows {
		a := &rows[i]
		if want == "decided" && a.Status == approvals.StatusPending {
			continue
		}
		if !c.d.Approvals.Visible(a, &s.caller) {
			continue
		}
		out = append(out, c.view(a, s))
	}
	return ctx.JSON(fiber.Map{"data": out})
}

// getApproval is GET /console/api/approvals/{id}. Another org's approval, or one this
// person has no business with, does not exist.
func (c *Console) getApproval(ctx *fiber.Ctx) error {
	s := sessionOf(ctx)
	a, err := c.d.Approvals.Get(ctx.UserContext(), param(ctx, "id"))
	if err != nil || !c.d.Approvals.Visible(a, &s.caller) {
		if err != nil && !errors.Is(err, approvals.ErrNotFound) {
			return err
		}
		return apierror.NotFound("no such approval")
	}
	return ctx.JSON(fiber.Map{"data": c.view(a, s)})
}

// decide is POST /console/api/approvals/{id}/approve|deny {"comment": "..."}; deny needs
// a comment, which the agent is told.
func (c *Console) decide(to approvals.Status) fiber.Handler {
	return func(ctx *fiber.Ctx) error {
		s := sessionOf(ctx)
		body, err := objectBody(ctx.Body(), "comment")
		if err != nil {
			return err
		}
		comment, err := stringField(body, "comment")
		if err != nil {
			return err
		}
		if to == approvals.StatusDenied && strings.TrimSpace(comment) == "" {
			return apierror.BadRequest("invalid_request", "comment", "comment: required when denying (it tells the agent why)")
		}
		id := param(ctx, "id")
		var a *approvals.Approval
		if to == approvals.StatusApproved {
			a, err = c.d.Approvals.Approve(ctx.UserContext(), id, s.caller, comment)
		} else {
			a, err = c.d.Approvals.Deny(ctx.UserContext(), id, s.caller, comment)
		}
		if err != nil {
			e := approvals.APIError(err)
			if e == nil {
				return err // logged by the error handler, reported without detail
			}
			c.refused(ctx, e.Code, e.Message)
			return e
		}
		return ctx.JSON(fiber.Map{"data": c.view(a, s)})
	}
}
