package policies

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

const cachePolicy = `package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "no"}

decision := {"action": "allow", "reason": "ok"} if input.arguments.n == 1

decision := {"action": "rate_limit", "reason": "slow down", "rate_limit": {"max": 3, "window": "60s"}} if input.arguments.n == 2
`

func TestDecisionCache(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Options{Modules: map[string]string{"p.rego": cachePolicy}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := func(args map[string]any, roles ...string) *Input {
		return &Input{Surface: "mcp", Tool: "t", Arguments: args, Caller: principal.Caller{Sub: "a", Org: "o", Roles: roles}}
	}
	cases := []struct {
		note      string
		in        *Input
		want      Action
		wantEvals uint64 // evaluations so far after this case
	}{
		{"first call evaluates", in(map[string]any{"n": json.Number("1")}), ActionAllow, 1},
		{"identical call is cached", in(map[string]any{"n": json.Number("1")}), ActionAllow, 1},
		{"other argument value evaluates", in(map[string]any{"n": json.Number("2")}), ActionRateLimit, 2},
		{"other caller evaluates", in(map[string]any{"n": json.Number("1")}, "agent"), ActionAllow, 3},
		{"string is not a number", in(map[string]any{"n": "1"}), ActionDeny, 4},
		{"nested value counts", in(map[string]any{"n": json.Number("1"), "x": map[string]any{"y": []any{true}}}), ActionAllow, 5},
		{"nested value differs", in(map[string]any{"n": json.Number("1"), "x": map[string]any{"y": []any{false}}}), ActionAllow, 6},
		{"cached rate limit keeps its block", in(map[string]any{"n": json.Number("2")}), ActionRateLimit, 6},
	}
	for _, tc := range cases {
		d := e.Decide(ctx, tc.in)
		if d.Action != tc.want {
			t.Fatalf("%s: action %q, want %q (%+v)", tc.note, d.Action, tc.want, d)
		}
		if d.Action == ActionRateLimit && (d.RateLimit == nil || d.RateLimit.Max != 3) {
			t.Fatalf("%s: rate limit block %+v", tc.note, d.RateLimit)
		}
		if got := e.evals.Load(); got != tc.wantEvals {
			t.Fatalf("%s: %d evaluations, want %d", tc.note, got, tc.wantEvals)
		}
	}
}

func TestNonDeterministicPolicyIsNotCached(t *testing.T) {
	ctx := context.Background()
	p := "package portcullis\n\nimport rego.v1\n\ndecision := {\"action\": \"allow\", \"reason\": sprintf(\"%d\", [time.now_ns()])}\n"
	e, err := New(ctx, Options{Modules: map[string]string{"p.rego": p}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Tool: "t", Caller: principal.Caller{Sub: "a", Org: "o"}}
	e.Decide(ctx, in)
	e.Decide(ctx, in)
	if n := e.evals.Load(); n != 2 {
		t.Fatalf("a policy reading the clock was evaluated %d times for two calls, want 2", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Options{Modules: map[string]string{"p.rego": cachePolicy}, CacheSize: -1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := &Input{Tool: "t", Arguments: map[string]any{"n": json.Number("1")}}
	e.Decide(ctx, in)
	e.Decide(ctx, in)
	if n := e.evals.Load(); n != 2 {
		t.Fatalf("evaluations %d with the cache off, want 2", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newDecisionCache(64)
	for i := 0; i < 10000; i++ {
		c.put([]byte{byte(i), byte(i >> 8), 1}, Decision{Action: ActionAllow})
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > 64 {
		t.Fatalf("cache holds %d entries, limit 64", n)
	}
}

// The resource a call acts on is part of the decision: two calls with the same arguments
// on resources owned by different workspaces must never share a cached decision, and an
// unresolved call must not share one with a resolved call that carries no fields.
func TestDecisionCacheKeysOnResource(t *testing.T) {
	ctx := context.Background()
	e, err := New(ctx, Options{Modules: map[string]string{"p.rego": `package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "not resolved"}

decision := {"action": "allow", "reason": "own"} if input.resource.workspace_id == input.caller.workspace

decision := {"action": "deny", "reason": "elsewhere"} if {
	input.resource
	input.resource.workspace_id != input.caller.workspace
}

decision := {"action": "deny", "reason": "empty"} if input.resource == {}
`}})
	if err != nil {
		t.Fatal(err)
	}
	in := func(res map[string]any) *Input {
		return &Input{Surface: "mcp", Tool: "update_integration", Arguments: map[string]any{"slug": "shared"},
			Caller: principal.Caller{Sub: "a", Org: "o", Workspace: "ws-1"}, Resource: res}
	}
	cases := []struct {
		note, reason string
		in           *Input
	}{
		{"own resource", "own", in(map[string]any{"found": true, "workspace_id": "ws-1"})},
		{"same arguments, other owner", "elsewhere", in(map[string]any{"found": true, "workspace_id": "ws-2"})},
		{"same arguments, org-level owner", "elsewhere", in(map[string]any{"found": true, "workspace_id": nil})},
		{"not resolved", "not resolved", in(nil)},
		{"resolved with no fields", "empty", in(map[string]any{})},
		{"own resource again", "own", in(map[string]any{"found": true, "workspace_id": "ws-1"})},
	}
	for _, tc := range cases {
		if d := e.Decide(ctx, tc.in); d.Reason != tc.reason {
			t.Fatalf("%s: decision %+v, want reason %q", tc.note, d, tc.reason)
		}
	}
	if got := e.evals.Load(); got != 5 {
		t.Fatalf("%d evaluations, want 5 (only the repeated own-resource call is served from the cache)", got)
	}
}
