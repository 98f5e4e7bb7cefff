package proxy

import (
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
)

// handleAuditQuery is GET /admin/v1/audit for callers with the auditor role. Auditors see
// their own org's rows only.
func (s *Server) handleAuditQuery(c *fiber.Ctx) error {
	caller := callerOf(c)
	if caller == nil || !caller.HasRole(s.d.AuditorRole) || caller.Org == "" {
		return &httpError{status: fiber.StatusForbidden, code: "forbidden", msg: "reading the audit trail needs the " + s.d.AuditorRole + " role and an org"}
	}
	if s.d.AuditQ == nil {
		return &httpError{status: fiber.StatusNotFound, code: "not_found", msg: "audit queries are not enabled"}
	}
	q, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return badRequest("invalid_query", "", "query string: %v", err)
	}
	f, err := audit.ParseFilter(q)
	if err != nil {
		return badRequest("invalid_filter", "", "%v", err)
	}
	if f.Org != "" && f.Org != caller.Org {
		return &httpError{status: fiber.StatusForbidden, code: "forbidden",
			msg: `parameter "org": auditors read their own org's rows only (yours is ` + caller.Org + `)`}
	}
	f.Org = caller.Org
	page, err := s.d.AuditQ.Query(c.UserContext(), f)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"data": page.Events, "next_cursor": page.NextCursor})
}
