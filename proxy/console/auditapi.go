package console

import (
	"bufio"
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy/apierror"
)

// auditFilter reads the explorer's filter from the query string (audit.ParseFilter's
// parameters, plus format for exports); the org is always the caller's own.
func (c *Console) auditFilter(ctx *fiber.Ctx, s *session, extra ...string) (audit.Filter, map[string]string, error) {
	q, err := query(ctx)
	if err != nil {
		return audit.Filter{}, nil, err
	}
	got := map[string]string{}
	for _, k := range extra {
		got[k] = q.Get(k)
		q.Del(k)
	}
	for k, v := range q {
		if len(v) == 1 && v[0] == "" {
			q.Del(k) // an empty filter box is no filter
		}
	}
	f, err := audit.ParseFilter(q)
	if err != nil {
		return audit.Filter{}, nil, apierror.BadRequest("invalid_filter", firstParam(err.Error()), "%s", strings.TrimPrefix(err.Error(), "audit: "))
	}
	if f.Org != "" && f.Org != s.caller.Org {
		return audit.Filter{}, nil, apierror.Forbidden("forbidden", `parameter "org": auditors read their own org's rows only`)
	}
	f.Org = s.caller.Org
	return f, got, nil
}

// firstParam is the parameter a ParseFilter message names first (`parameter "tool": ...`).
func firstParam(msg string) string {
	_, rest, ok := strings.Cut(msg, `parameter "`)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, `"`)
	return name
}

// auditQuery is GET /console/api/audit: one page, newest first, with a cursor.
func (c *Console) auditQuery(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	f, _, err := c.auditFilter(ctx, s)
	if err != nil {
		return err
	}
	page, err := c.d.Audit.Query(ctx.UserContext(), f)
	if err != nil {
		return err
	}
	c.record(ctx, "read_audit", "allow", "console: audit explorer query")
	return ctx.JSON(fiber.Map{"data": page.Events, "next_cursor": page.NextCursor})
}

// auditTimeline is GET /console/api/audit/timeline?request_id=X (or approval_id=Y): the
// decision row, the approval's request and decision, the outcome, and the calls made
// with that approval, oldest first.
func (c *Console) auditTimeline(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	rid, aid := ctx.Query("request_id"), ctx.Query("approval_id")
	if rid == "" && aid == "" {
		return apierror.BadRequest("invalid_request", "request_id", "request_id or approval_id: one is required")
	}
	seen := map[int64]bool{}
	var rows []audit.Event
	approvalIDs := map[string]bool{}
	if aid != "" {
		approvalIDs[aid] = true
	}
	add := func(f audit.Filter) error {
		f.Org, f.Limit = s.caller.Org, 1000
		page, err := c.d.Audit.Query(ctx.UserContext(), f)
		if err != nil {
			return err
		}
		for _, ev := range page.Events {
			if !seen[ev.Seq] {
				seen[ev.Seq] = true
				rows = append(rows, ev)
				if ev.ApprovalID != "" {
					approvalIDs[ev.ApprovalID] = true
				}
			}
		}
		return nil
	}
	if rid != "" {
		if err := add(audit.Filter{RequestID: rid}); err != nil {
			return err
		}
	}
	for id := range approvalIDs {
		if err := add(audit.Filter{ApprovalID: id}); err != nil {
			return err
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Seq < rows[j].Seq })
	c.record(ctx, "read_audit", "allow", "console: request timeline")
	return ctx.JSON(fiber.Map{"data": rows})
}

// auditExport is GET /console/api/audit/export?format=jsonl|csv&<filter>: every row of
// the filter (not just the page), oldest first, as a download.
func (c *Console) auditExport(ctx *fiber.Ctx) error {
	s, err := c.requireAuditor(ctx)
	if err != nil {
		return err
	}
	f, extra, err := c.auditFilter(ctx, s, "format")
	if err != nil {
		return err
	}
	format := extra["format"]
	var ct string
	switch format {
	case "jsonl":
		ct = "application/x-ndjson"
	case "csv":
		ct = "text/csv; charset=utf-8"
	default:
		return apierror.BadRequest("invalid_request", "format", "format: want jsonl or csv, got %s", quoteShort(format))
	}
	f.Cursor, f.Limit = "", 0
	c.record(ctx, "export_audit", "allow", "console: audit export ("+format+")")
	ctx.Set(fiber.HeaderContentType, ct)
	ctx.Set(fiber.HeaderContentDisposition, `attachment; filename="portcullis-audit-`+time.Now().UTC().Format("20060102T150405Z")+`.`+format+`"`)
	store, log := c.d.Audit, c.log
	ctx.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ectx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := store.Export(ectx, w, format, f); err != nil {
			log.Warn("console: audit export failed part way", "err", err)
		}
		_ = w.Flush()
	})
	return nil
}

// verifyCache keeps the last verification a minute: verify reads the whole chain.
type verifyCache struct {
	mu   sync.Mutex
	at   time.Time
	rep  *audit.Report
	errs string
}

// auditVerify is GET /console/api/audit/verify: whether the chain verifies, its last
// checkpoint, and when this was checked (at most once a minute; ?fresh=1 re-checks).
func (c *Console) auditVerify(ctx *fiber.Ctx) error {
	if _, err := c.requireAuditor(ctx); err != nil {
		return err
	}
	if c.d.Verify == nil {
		return ctx.JSON(fiber.Map{"data": fiber.Map{"configured": false}})
	}
	vc := &c.verify
	vc.mu.Lock()
	defer vc.mu.Unlock()
	now := c.d.Now()
	if vc.rep == nil && vc.errs == "" || now.Sub(vc.at) > time.Minute || ctx.Query("fresh") == "1" && now.Sub(vc.at) > 5*time.Second {
		vctx, cancel := context.WithTimeout(ctx.UserContext(), 30*time.Second)
		rep, err := c.d.Verify(vctx)
		cancel()
		vc.at, vc.rep, vc.errs = now, &rep, ""
		if err != nil {
			c.log.Warn("console: audit verify failed", "err", err)
			vc.rep, vc.errs = nil, "the audit database could not be read for verification"
		}
	}
	out := fiber.Map{"configured": true, "checked_at": vc.at.UTC()}
	if vc.rep != nil {
		out["report"] = vc.rep
	} else {
		out["error"] = vc.errs
	}
	return ctx.JSON(fiber.Map{"data": out})
}
