package proxy

import (
	"bytes"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// The approvals admin API, under /admin/v1 (authenticated):
//
//	GET  /approvals?status=pending|approved|denied|expired|used|all&limit=N  (default pending)
//	GET  /approvals/:id
//	POST /approvals/:id/approve   {"comment": "..."} optional
//	POST /approvals/:id/deny      {"comment": "..."} required
//
// Answers are {"data": ...}, or the one error envelope (errorHandler): 400
// invalid_request, 401 unauthorized, 403 self_approval / not_approver, 404 not_found
// (also another org's approval), 409 not_pending, 410 expired.
//
// Visibility: holders of the approver role see every approval of their org; other
// callers see the approvals they may decide (named in approvers), and the requester
// sees their own (GET by id).
func (s *Server) mountApprovals(admin fiber.Router) {
	admin.Get("/approvals", s.listApprovals)
	admin.Get("/approvals/:id", s.getApproval)
	admin.Post("/approvals/:id/approve", s.decideApproval(approvals.StatusApproved))
	admin.Post("/approvals/:id/deny", s.decideApproval(approvals.StatusDenied))
}

var errUnauthenticated = apierror.New(fiber.StatusUnauthorized, "unauthorized", "authentication required")

func (s *Server) listApprovals(c *fiber.Ctx) error {
	caller := callerOf(c)
	if caller == nil {
		return errUnauthenticated
	}
	status := approvals.Status(utils.CopyString(c.Query("status", string(approvals.StatusPending))))
	if status != "all" && !status.Valid() {
		return apierror.BadRequest("invalid_request", "status", "status must be one of pending, approved, denied, expired, used or all")
	}
	limit := c.QueryInt("limit", 100)
	if limit < 1 || limit > 1000 {
		return apierror.BadRequest("invalid_request", "limit", "limit must be between 1 and 1000")
	}
	ap := s.d.Approvals
	rows, err := ap.List(c.UserContext(), approvals.ListFilter{Status: status, Org: caller.Org, Limit: limit})
	if err != nil {
		return err
	}
	if !caller.HasRole(ap.ApproverRole()) {
		visible := rows[:0]
		for i := range rows {
			if ap.MayDecide(&rows[i], caller) == nil {
				visible = append(visible, rows[i])
			}
		}
		rows = visible
	}
	return c.JSON(fiber.Map{"data": rows})
}

func (s *Server) getApproval(c *fiber.Ctx) error {
	caller := callerOf(c)
	if caller == nil {
		return errUnauthenticated
	}
	a, err := s.d.Approvals.Get(c.UserContext(), utils.CopyString(c.Params("id")))
	if err != nil {
		return approvalError(err)
	}
	// Another org's approval, or one this caller has no business with, does not exist.
	if !s.d.Approvals.Visible(a, caller) {
		return approvalError(approvals.ErrNotFound)
	}
	return c.JSON(fiber.Map{"data": a})
}

func (s *Server) decideApproval(to approvals.Status) fiber.Handler {
	return func(c *fiber.Ctx) error {
		caller := callerOf(c)
		if caller == nil {
			return errUnauthenticated
		}
		comment, err := decisionBody(c.Request().Body())
		if err != nil {
			return err
		}
		id := utils.CopyString(c.Params("id"))
		var a *approvals.Approval
		if to == approvals.StatusApproved {
			a, err = s.d.Approvals.Approve(c.UserContext(), id, *caller, comment)
		} else {
			a, err = s.d.Approvals.Deny(c.UserContext(), id, *caller, comment)
		}
		if err != nil {
			return approvalError(err)
		}
		return c.JSON(fiber.Map{"data": a})
	}
}

// decisionBody reads an approve or deny body: empty, or {"comment": "..."}, read the way
// the proxy reads every body (strictjson: no duplicate or case-folded keys). A bad body
// is a 400 naming the field at fault (and the byte offset of a JSON error).
func decisionBody(raw []byte) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	bad := func(field, msg string) error { return apierror.BadRequest("invalid_request", field, "%s", msg) }
	v, err := strictjson.Parse(raw, 8)
	if err != nil {
		return "", bad("body", "body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", bad("body", `body must be a JSON object {"comment": "..."}, got `+jsonType(v))
	}
	comment := ""
	for k, val := range obj {
		if k != "comment" {
			return "", bad("body", "unknown field "+strictjson.QuoteKey(k)+`: the body takes only "comment"`)
		}
		if val == nil {
			continue // "comment": null is no comment
		}
		s, ok := val.(string)
		if !ok {
			return "", bad("comment", "comment: must be a string, got "+jsonType(val))
		}
		comment = s
	}
	return comment, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return "a number"
}

// approvalError is what the client is told of the approvals service's refusals; any
// other error goes to errorHandler, which logs it and answers 500.
func approvalError(err error) error {
	if e := approvals.APIError(err); e != nil {
		return e
	}
	return err
}
