package proxy

import (
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/jsonenc"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/authn"
)

// handleAuditQuery is GET /admin/v1/audit for callers with the auditor role. Auditors see
// their own org's rows only.
func (s *Server) handleAuditQuery(c *fiber.Ctx) error {
	caller := callerOf(c)
	if caller == nil || !caller.HasRole(s.d.AuditorRole) || caller.Org == "" {
		return &apierror.Error{Status: fiber.StatusForbidden, Code: "forbidden", Message: "reading the audit trail needs the " + s.d.AuditorRole + " role and an org"}
	}
	if s.d.AuditQ == nil {
		return &apierror.Error{Status: fiber.StatusNotFound, Code: "not_found", Message: "audit queries are not enabled"}
	}
	q, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return apierror.BadRequest("invalid_query", "", "query string: %v", err)
	}
	f, err := audit.ParseFilter(q)
	if err != nil {
		return apierror.BadRequest("invalid_filter", "", "%v", err)
	}
	if f.Org != "" && f.Org != caller.Org {
		return &apierror.Error{Status: fiber.StatusForbidden, Code: "forbidden",
			Message: `parameter "org": auditors read their own org's rows only (yours is ` + caller.Org + `)`}
	}
	f.Org = caller.Org
	page, err := s.d.AuditQ.Query(c.UserContext(), f)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"data": page.Events, "next_cursor": page.NextCursor})
}

// auditAdminReads records who read the audit trail or the approvals: a successful GET on
// the admin API leaves an "allow" row naming the caller, the path and the query (its
// filters), written after the answer (a read changes nothing). Refusals have their
// "rejected" rows already, and approve and deny their approval rows.
func (s *Server) auditAdminReads(c *fiber.Ctx) error {
	err := c.Next()
	if err != nil || c.Method() != fiber.MethodGet || c.Response().StatusCode() >= 400 {
		return err
	}
	id, ok := c.Locals(localIdentity).(*authn.Identity)
	if !ok || id == nil {
		return nil
	}
	path := string(c.Request().URI().Path())
	area, _, _ := strings.Cut(strings.TrimPrefix(path, "/admin/v1/"), "/")
	args := map[string]any{}
	for k, v := range c.Context().QueryArgs().All() {
		args[string(k)] = string(v)
	}
	argsJSON, _ := jsonenc.Append(nil, s.d.Redactor.Value(args))
	s.d.Audit.AppendAsync(&audit.Event{
		Time: time.Now().UTC(), Kind: audit.KindDecision, RequestID: requestID(c),
		Caller:  audit.Caller{Caller: id.Caller, ClientAddr: c.Context().RemoteIP().String()},
		Surface: "rest", Tool: "admin:read_" + area, Method: fiber.MethodGet, Path: path, Arguments: argsJSON,
		Decision: audit.DecisionAllow, Reason: "admin API read (" + area + "), allowed by the API's own role checks", Status: c.Response().StatusCode(),
	})
	return nil
}
