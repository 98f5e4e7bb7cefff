package replay

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
)

// memSource serves fixed rows newest first, two per page, so paging is exercised.
type memSource struct{ rows []audit.Event }

func (m memSource) Query(_ context.Context, f audit.Filter) (audit.Page, error) {
	start := 0
	if f.Cursor != "" {
		_ = json.Unmarshal([]byte(f.Cursor), &start)
	}
	end := min(start+2, len(m.rows))
	p := audit.Page{Events: m.rows[start:end]}
	if end < len(m.rows) {
		b, _ := json.Marshal(end)
		p.NextCursor = string(b)
	}
	return p, nil
}

func engine(t *testing.T, src string) *policies.Engine {
	t.Helper()
	e, err := policies.New(context.Background(), policies.Options{Modules: map[string]string{"p.rego": src}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

const liveSrc = `package portcullis
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
`

func row(seq int64, sub, tool string, decision audit.Decision, args string) audit.Event {
	return audit.Event{Seq: seq, Time: time.Unix(1700000000+seq, 0).UTC(), Kind: audit.KindDecision, RequestID: "req-" + tool,
		Caller: audit.Caller{Caller: principal.Caller{Sub: sub, Org: "acme"}}, Surface: "mcp", Tool: tool, Decision: decision, Arguments: json.RawMessage(args)}
}

func rebuild(ev *audit.Event) (policies.Input, bool) {
	in := policies.Input{Surface: ev.Surface, Tool: ev.Tool, Mode: "call", Caller: principal.Caller{Sub: ev.Caller.Sub, Org: ev.Caller.Org}}
	_ = json.Unmarshal(ev.Arguments, &in.Arguments)
	return in, true
}

func TestReplayCountsChangedCallsByToolAndCaller(t *testing.T) {
	rows := []audit.Event{
		row(5, "agent-1", "delete_integration", "allow", `{"slug":"a"}`),
		row(4, "agent-2", "delete_integration", "allow", `{"slug":"b"}`),
		row(3, "agent-1", "list_integrations", "allow", `{}`),
		row(2, "agent-1", "console:read_audit", "allow", `{}`),
		row(1, "agent-1", "", "rejected", `{}`),
	}
	cand := engine(t, `package portcullis
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "deny", "reason": "no deletes"} if input.tool == "delete_integration"
`)
	rep, err := Run(context.Background(), memSource{rows}, rebuild, engine(t, liveSrc), cand, Options{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 5 || rep.Replayed != 3 || rep.Skipped != 2 || rep.Changed != 2 {
		t.Errorf("scanned %d replayed %d skipped %d changed %d, want 5 3 2 2", rep.Scanned, rep.Replayed, rep.Skipped, rep.Changed)
	}
	if len(rep.ByTool) != 1 || rep.ByTool[0] != (Count{Key: "delete_integration", Changed: 2, Total: 2}) {
		t.Errorf("by tool %+v", rep.ByTool)
	}
	if len(rep.ByCaller) != 2 || rep.ByCaller[0].Changed != 1 {
		t.Errorf("by caller %+v", rep.ByCaller)
	}
	if len(rep.Transitions) != 1 || rep.Transitions[0].Key != "allow -> deny" {
		t.Errorf("transitions %+v", rep.Transitions)
	}
	if len(rep.Examples) != 2 || rep.Examples[0].Reason != "no deletes" || rep.Examples[0].ReadsRedacted {
		t.Errorf("examples %+v", rep.Examples)
	}
	if rep.ReadsRedacted != 0 {
		t.Errorf("reads_redacted %d with no secret in the arguments", rep.ReadsRedacted)
	}
}

func TestReplaySaysWhenARuleReadsARedactedValue(t *testing.T) {
	const mark = "hmac-sha256:0123456789abcdef"
	rows := []audit.Event{
		row(3, "agent-1", "create_integration", "allow", `{"name":"a","key":"`+mark+`"}`),
		row(2, "agent-1", "create_integration", "allow", `{"name":"b","headers":{"Authorization":"Bearer `+mark+`"}}`),
		row(1, "agent-1", "create_integration", "allow", `{"name":"c","key":"`+mark+`"}`),
	}
	// The candidate refuses live keys by their prefix: on the trail it sees only HMACs.
	cand := engine(t, `package portcullis
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "deny", "reason": "live keys refused"} if startswith(input.arguments.key, "sk-")
decision := {"action": "deny", "reason": "no live bearer keys"} if startswith(input.arguments.headers.Authorization, "Bearer sk-")
decision := {"action": "deny", "reason": "named c"} if input.arguments.name == "c"
`)
	rep, err := Run(context.Background(), memSource{rows}, rebuild, engine(t, liveSrc), cand, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ReadsRedacted != 3 {
		t.Errorf("reads_redacted %d, want 3 (key prefix twice, Authorization once)", rep.ReadsRedacted)
	}
	if rep.Changed != 1 || rep.UncertainChanges != 1 || !rep.Examples[0].ReadsRedacted {
		t.Errorf("changed %d uncertain %d examples %+v", rep.Changed, rep.UncertainChanges, rep.Examples)
	}
	found := false
	for _, n := range rep.Notes {
		found = found || (strings.Contains(n, "redacted value"))
	}
	if !found {
		t.Errorf("notes do not say a rule reads a redacted value: %q", rep.Notes)
	}
}

func TestReplayStopsAtMaxRowsAndSaysSo(t *testing.T) {
	var rows []audit.Event
	for i := 10; i > 0; i-- {
		rows = append(rows, row(int64(i), "a", "t", "allow", `{}`))
	}
	rep, err := Run(context.Background(), memSource{rows}, rebuild, engine(t, liveSrc), engine(t, liveSrc), Options{MaxRows: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 3 || !rep.Truncated {
		t.Errorf("scanned %d truncated %v", rep.Scanned, rep.Truncated)
	}
}
