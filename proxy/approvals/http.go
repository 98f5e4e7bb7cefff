package approvals

import (
	"bytes"
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// Mount registers the approvals admin API on r, which must already authenticate
// (routes are relative to r; the proxy mounts it on its /admin/v1 group):
//
//	GET  /approvals?status=pending|approved|denied|expired|used|all&limit=N  (default pending)
//	GET  /approvals/:id
//	POST /approvals/:id/approve   {"comment": "..."} optional
//	POST /approvals/:id/deny      {"comment": "..."} required
//
// Responses are {"data": ...} or {"error": {"code", "message"}}: 400 invalid_request,
// 401 unauthenticated, 403 self_approval / not_approver, 404 not_found (also another
// org's approval), 409 not_pending, 410 expired.
//
// Visibility: holders of the approver role see every approval of their org; other
// callers see the approvals they may decide (named in approvers), and the requester
// sees their own (GET by id). A caller who may see none of the listed approvals and
// lacks the approver role gets 403 from the list.
//
// refused, when not nil, is told of every 4xx answer other than 401 (the proxy records
// those attempts in the audit trail); code and msg are what the caller is sent.
func (s *Service) Mount(r fiber.Router, callerOf func(*fiber.Ctx) *principal.Caller, refused func(c *fiber.Ctx, code, msg string)) {
	h := &handlers{s: s, callerOf: callerOf, refused: refused}
	r.Get("/approvals", h.list)
	r.Get("/approvals/:id", h.get)
	r.Post("/approvals/:id/approve", h.decide(StatusApproved))
	r.Post("/approvals/:id/deny", h.decide(StatusDenied))
}

type handlers struct {
	s        *Service
	callerOf func(*fiber.Ctx) *principal.Caller
	refused  func(c *fiber.Ctx, code, msg string)
}

func (h *handlers) apiError(c *fiber.Ctx, status int, code, msg string) error {
	return h.fieldError(c, status, code, "", msg)
}

// fieldError is apiError naming the field at fault. Errors carry the request id the
// proxy gave the request (its X-Request-Id), as its own errors do.
func (h *handlers) fieldError(c *fiber.Ctx, status int, code, field, msg string) error {
	if h.refused != nil && status >= 400 && status < 500 && status != fiber.StatusUnauthorized {
		h.refused(c, code, msg)
	}
	e := fiber.Map{"code": code, "message": msg}
	if field != "" {
		e["field"] = field
	}
	if rid := c.GetRespHeader(fiber.HeaderXRequestID); rid != "" {
		e["request_id"] = rid
	}
	return c.Status(status).JSON(fiber.Map{"error": e})
}

func (h *handlers) caller(c *fiber.Ctx) *principal.Caller {
	if h.callerOf == nil {
		return nil
	}
	return h.callerOf(c)
}

func (h *handlers) list(c *fiber.Ctx) error {
	caller := h.caller(c)
	if caller == nil {
		return h.apiError(c, fiber.StatusUnauthorized, "unauthenticated", "authentication required")
	}
	status := Status(utils.CopyString(c.Query("status", string(StatusPending))))
	if status != "all" && !status.valid() {
		return h.apiError(c, fiber.StatusBadRequest, "invalid_request",
			"status must be one of pending, approved, denied, expired, used or all")
	}
	limit := c.QueryInt("limit", 100)
	if limit < 1 || limit > 1000 {
		return h.apiError(c, fiber.StatusBadRequest, "invalid_request", "limit must be between 1 and 1000")
	}
	rows, err := h.s.List(c.UserContext(), ListFilter{Status: status, Org: caller.Org, Limit: limit})
	if err != nil {
		return h.internal(c, err)
	}
	if !caller.HasRole(h.s.cfg.ApproverRole) {
		visible := rows[:0]
		for i := range rows {
			if canDecide(&rows[i], caller, h.s.cfg.ApproverRole) == nil {
				visible = append(visible, rows[i])
			}
		}
		rows = visible
	}
	return c.JSON(fiber.Map{"data": rows})
}

func (h *handlers) get(c *fiber.Ctx) error {
	caller := h.caller(c)
	if caller == nil {
		return h.apiError(c, fiber.StatusUnauthorized, "unauthenticated", "authentication required")
	}
	a, err := h.s.Get(c.UserContext(), utils.CopyString(c.Params("id")))
	if err != nil {
		return h.fail(c, err)
	}
	// Another org's approval, or one this caller has no business with, does not exist.
	requester := a.Caller.Sub == caller.Sub && a.Caller.Org == caller.Org
	if a.Caller.Org != caller.Org || !(requester || caller.HasRole(h.s.cfg.ApproverRole) || eligible(a, caller, h.s.cfg.ApproverRole)) {
		return h.fail(c, ErrNotFound)
	}
	return c.JSON(fiber.Map{"data": a})
}

func (h *handlers) decide(to Status) fiber.Handler {
	return func(c *fiber.Ctx) error {
		caller := h.caller(c)
		if caller == nil {
			return h.apiError(c, fiber.StatusUnauthorized, "unauthenticated", "authentication required")
		}
		comment, field, msg := decisionBody(c.Request().Body())
		if msg != "" {
			return h.fieldError(c, fiber.StatusBadRequest, "invalid_request", field, msg)
		}
		id := utils.CopyString(c.Params("id"))
		var a *Approval
		var err error
		if to == StatusApproved {
			a, err = h.s.Approve(c.UserContext(), id, *caller, comment)
		} else {
			a, err = h.s.Deny(c.UserContext(), id, *caller, comment)
		}
		if err != nil {
			return h.fail(c, err)
		}
		return c.JSON(fiber.Map{"data": a})
	}
}

// decisionBody reads an approve or deny body: empty, or {"comment": "..."}. On a bad
// body it returns the field at fault and a message naming it (and the byte offset of
// a JSON error), read the way the proxy reads every body (strictjson: no duplicate or
// case-folded keys).
func decisionBody(raw []byte) (comment, field, msg string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", "", ""
	}
	v, err := strictjson.Parse(raw, 8)
	if err != nil {
		return "", "body", "body: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", "body", `body must be a JSON object {"comment": "..."}, got ` + jsonType(v)
	}
	for k, val := range obj {
		if k != "comment" {
			return "", "body", "unknown field " + strictjson.QuoteKey(k) + `: the body takes only "comment"`
		}
		if val == nil {
			continue // "comment": null is no comment
		}
		s, ok := val.(string)
		if !ok {
			return "", "comment", "comment: must be a string, got " + jsonType(val)
		}
		comment = s
	}
	return comment, "", ""
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

// fail maps service errors to statuses in one place; unknown errors are logged and
// reported without detail.
func (h *handlers) fail(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return h.apiError(c, fiber.StatusNotFound, "not_found", "no such approval")
	case errors.Is(err, ErrSelfApproval):
		return h.apiError(c, fiber.StatusForbidden, "self_approval", "you requested this call, so you cannot decide it; another approver must")
	case errors.Is(err, ErrNotApprover):
		return h.apiError(c, fiber.StatusForbidden, "not_approver", "you are not an approver for this request")
	case errors.Is(err, ErrNotPending):
		return h.apiError(c, fiber.StatusConflict, "not_pending", "this approval has already been decided")
	case errors.Is(err, ErrExpired):
		return h.apiError(c, fiber.StatusGone, "expired", "this approval has expired; the agent must call again to request a new one")
	case errors.Is(err, ErrInvalidComment):
		return h.fieldError(c, fiber.StatusBadRequest, "invalid_request", "comment", strings.TrimPrefix(err.Error(), "approvals: "))
	}
	return h.internal(c, err)
}

func (h *handlers) internal(c *fiber.Ctx, err error) error {
	h.s.log.Error("approvals: admin API request failed", "path", c.Path(), "err", err)
	return h.apiError(c, fiber.StatusInternalServerError, "internal", "internal error")
}
