package console

import (
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy/approvals"
)

// overviewRows bounds the rows the overview reads (its last hour, newest first).
const overviewRows = 5000

type bucket struct {
	Start  time.Time      `json:"start"`
	Counts map[string]int `json:"counts"`
}

type ranked struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// overview is GET /console/api/overview: the last hour of the caller's org, per minute
// by decision, the top tools, the top refused callers, upstream errors per minute, and
// the pending approvals.
func (c *Console) overview(ctx *fiber.Ctx) error {
	s := sessionOf(ctx)
	out := fiber.Map{}
	pending, err := c.d.Approvals.List(ctx.UserContext(), approvals.ListFilter{Status: approvals.StatusPending, Org: s.caller.Org, Limit: 200})
	if err != nil {
		return err
	}
	n := 0
	for i := range pending {
		if c.d.Approvals.Visible(&pending[i], &s.caller) {
			n++
		}
	}
	out["pending_approvals"] = n
	if !s.caller.HasRole(c.d.AuditorRole) {
		out["trail"] = false // the charts read the trail: auditors only
		return ctx.JSON(fiber.Map{"data": out})
	}
	now := c.d.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	start := now.Add(-60 * time.Minute)
	decisions := make([]bucket, 60)
	errorsPerMin := make([]bucket, 60)
	for i := range decisions {
		decisions[i] = bucket{Start: start.Add(time.Duration(i) * time.Minute), Counts: map[string]int{}}
		errorsPerMin[i] = bucket{Start: decisions[i].Start, Counts: map[string]int{}}
	}
	tools, denied := map[string]int{}, map[string]int{}
	f := audit.Filter{Org: s.caller.Org, Since: start, Until: now, Limit: 1000}
	read, truncated := 0, false
	for {
		page, err := c.d.Audit.Query(ctx.UserContext(), f)
		if err != nil {
			return err
		}
		for i := range page.Events {
			ev := &page.Events[i]
			read++
			m := int(ev.Time.Sub(start) / time.Minute)
			if m < 0 || m >= 60 {
				continue
			}
			switch ev.Kind {
			case audit.KindDecision:
				if strings.HasPrefix(ev.Tool, "admin:") || strings.HasPrefix(ev.Tool, "console:") {
					continue
				}
				decisions[m].Counts[group(string(ev.Decision))]++
				if ev.Tool != "" {
					tools[ev.Tool]++
				}
				switch ev.Decision {
				case "deny", "policy_error", "rate_limited", "approval_denied", "rejected":
					denied[ev.Caller.Sub]++
				}
			case audit.KindAuthFailure:
				decisions[m].Counts["auth_failed"]++
			case audit.KindOutcome:
				if ev.Status >= 500 || ev.ErrorClass != "" {
					cls := ev.ErrorClass
					if cls == "" {
						cls = "status_5xx"
					}
					errorsPerMin[m].Counts[cls]++
				}
			}
		}
		if page.NextCursor == "" {
			break
		}
		if read >= overviewRows {
			truncated = true
			break
		}
		f.Cursor = page.NextCursor
	}
	out["trail"] = true
	out["since"], out["until"] = start, now
	out["decisions_per_minute"] = decisions
	out["upstream_errors_per_minute"] = errorsPerMin
	out["top_tools"] = top(tools, 8)
	out["top_denied_callers"] = top(denied, 8)
	out["truncated"] = truncated
	c.record(ctx, "read_audit", "allow", "console: overview")
	return ctx.JSON(fiber.Map{"data": out})
}

// group folds decision labels into the chart's series.
func group(d string) string {
	switch d {
	case "allow", "approval_granted", "pass":
		return "allow"
	case "deny", "policy_error", "approval_denied", "approval_expired":
		return "deny"
	case "rate_limited", "rate_limiter_unavailable":
		return "rate_limited"
	case "approval_required", "approval_requested":
		return "approval"
	}
	return "rejected"
}

func top(m map[string]int, n int) []ranked {
	out := make([]ranked, 0, len(m))
	for k, v := range m {
		out = append(out, ranked{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
