package policies

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/portcullis/portcullis/policies/principal"
)

// The example policy at the repository root (read from disk: this package imports no
// other package of the module, not even in tests).
func examplePolicy(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("../policy.example.rego")
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

type benchCase struct {
	name   string
	in     *Input
	action Action
}

func benchCases() []benchCase {
	agent := principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Roles: []string{"agent"}, Session: "s-1",
		Claims: map[string]any{"iss": "https://idp.example", "aud": "portcullis", "exp": float64(1900000000)}}
	operator := agent
	operator.Roles = []string{"operator"}
	in := func(tool string, c principal.Caller, cat string, args map[string]any) *Input {
		return &Input{Surface: "mcp", Tool: tool, Arguments: args, HTTP: HTTPInfo{Method: "POST", Path: "/mcp"},
			Caller: c, ToolInfo: ToolInfo{Category: cat, Risk: "medium"}, Upstream: "integrations", Mode: "call"}
	}
	return []benchCase{
		{"allow_read", in("get_integration", agent, "read", map[string]any{"slug": "prod-openai"}), ActionAllow},
		{"rate_limit_create", in("create_integration", agent, "write", map[string]any{
			"name": "prod openai", "ai_provider_id": "openai", "key": "<redacted>", "workspace_id": "ws-1"}), ActionRateLimit},
		{"deny_delete_agent", in("delete_integration", agent, "destructive", map[string]any{"slug": "prod-openai"}), ActionDeny},
		{"approval_delete_operator", in("delete_integration", operator, "destructive", map[string]any{"slug": "prod-openai"}), ActionRequireApproval},
		{"deny_unknown_tool", in("http:POST /v1/admin/reset", agent, "other", nil), ActionDeny},
	}
}

// BenchmarkDecide is the hot path for a repeated call: the example policy is
// deterministic, so the decision comes from the cache after the first evaluation.
func BenchmarkDecide(b *testing.B) { benchDecide(b, 0) }

// BenchmarkDecideUncached evaluates every time (a call never seen before): the example
// policy, the input built as AST directly.
func BenchmarkDecideUncached(b *testing.B) { benchDecide(b, -1) }

func benchDecide(b *testing.B, cacheSize int) {
	e := engineFor(b, examplePolicy(b), func(o *Options) { o.CacheSize = cacheSize })
	ctx := context.Background()
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			if d := e.Decide(ctx, bc.in); d.Action != bc.action || d.PolicyError {
				b.Fatalf("decision = %+v, want %s", d, bc.action)
			}
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				e.Decide(ctx, bc.in)
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkDecideParallel measures contention: Decide takes no lock.
func BenchmarkDecideParallel(b *testing.B) {
	e := engineFor(b, examplePolicy(b))
	in := benchCases()[1].in
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Decide(context.Background(), in)
		}
	})
}

// BenchmarkDecideNaive is the straightforward way, kept to justify the fast path: input
// as a Go map (via JSON, as a proxy holding the Input would do), rego.EvalInput, default
// result conversion to Go values, and a context deadline per call.
func BenchmarkDecideNaive(b *testing.B) {
	ctx := context.Background()
	pq, err := rego.New(rego.Query(decisionQuery), rego.Module("policy.rego", examplePolicy(b))).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			defer reportCPU(b, cpu)
			for b.Loop() {
				raw, _ := json.Marshal(bc.in)
				var m map[string]any
				_ = json.Unmarshal(raw, &m)
				cctx, cancel := context.WithTimeout(ctx, time.Second) // generous: a shared CI box must not fail it
				rs, err := pq.Eval(cctx, rego.EvalInput(m))
				cancel()
				if err != nil || len(rs) != 1 {
					b.Fatalf("eval: %v %v", rs, err)
				}
				obj := rs[0].Expressions[0].Value.(map[string]any)
				if obj["action"] != bc.action {
					b.Fatalf("action = %v", obj["action"])
				}
			}
		})
	}
}

// reportCPU adds cpu-ns/op: process CPU time (GC included) per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	if used := processCPU() - start; used > 0 && b.N > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
