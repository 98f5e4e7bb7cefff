package portcullis

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
)

func exampleOptions(withTests bool) policies.Options {
	mods := map[string]string{"policy.example.rego": ExamplePolicy}
	if withTests {
		mods["policy.example_test.rego"] = ExamplePolicyTests
	}
	return policies.Options{Modules: mods, Timeout: time.Second}
}

// The Rego unit tests of the example policy run as part of `go test`.
func TestExamplePolicyRegoTests(t *testing.T) {
	var out bytes.Buffer
	passed, failed, err := policies.RunTests(context.Background(), exampleOptions(true), &out, true)
	if err != nil {
		t.Fatalf("RunTests: %v\n%s", err, out.String())
	}
	if failed > 0 {
		t.Fatalf("%d Rego tests failed:\n%s", failed, out.String())
	}
	if passed < 25 {
		t.Fatalf("only %d Rego tests passed; the example's test file should hold more\n%s", passed, out.String())
	}
	t.Logf("%d Rego tests passed", passed)
}

// The headline decisions, through the same engine and input the proxy uses.
func TestExamplePolicyDecisions(t *testing.T) {
	eng, err := policies.New(context.Background(), exampleOptions(false))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	agent := principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Roles: []string{"agent"}, Session: "s-1"}
	operator := principal.Caller{Sub: "olga", Org: "acme", Workspace: "ws-1", Roles: []string{"operator"}, Session: "s-2"}
	noOrg := principal.Caller{Sub: "stray", Roles: []string{"admin"}}
	orgAgent := principal.Caller{Sub: "agent-9", Org: "acme", Roles: []string{"agent"}, Session: "s-6"}
	ownIntegration := map[string]any{"type": "integration", "ref": "prod-openai", "found": true, "workspace_id": "ws-1", "workspaces": []any{"ws-1"}}
	shared := map[string]any{"type": "integration", "ref": "shared", "found": true, "workspace_id": nil, "workspaces": []any{"ws-1", "ws-2"}}

	tests := []struct {
		name   string
		tool   string
		caller principal.Caller
		args   map[string]any
		mode   string
		// resource is input.resource, as the proxy resolves it for the tools that change
		// one integration.
		resource map[string]any
		want     policies.Decision
	}{
		{
			name: "agent creates in its workspace: rate limited 10/60s", tool: "create_integration", caller: agent,
			args: map[string]any{"name": "prod openai", "ai_provider_id": "openai", "key": "<redacted>", "workspace_id": "ws-1"},
			want: policies.Decision{Action: policies.ActionRateLimit, Reason: "create_integration allowed for agent-7, at most 10 per 60s",
				RateLimit: &policies.RateLimit{Max: 10, Window: 60 * time.Second, WindowAsWritten: "60s"}},
		},
		{
			name: "agent creates in another workspace: denied naming the field, not its value", tool: "create_integration", caller: agent,
			args: map[string]any{"name": "x", "workspace_id": "ws-2"},
			want: policies.Decision{Action: policies.ActionDeny, Reason: `create_integration: workspace_id is not the caller's workspace "ws-1"`},
		},
		{
			name: "agent deletes: denied", tool: "delete_integration", caller: agent, args: map[string]any{"slug": "prod-openai"}, resource: ownIntegration,
			want: policies.Decision{Action: policies.ActionDeny, Reason: "agents may not delete integrations; an operator's delete needs security approval"},
		},
		{
			name: "operator deletes: security approval within 15m", tool: "delete_integration", caller: operator, args: map[string]any{"slug": "prod-openai"}, resource: ownIntegration,
			want: policies.Decision{Action: policies.ActionRequireApproval, Reason: "delete_integration needs approval from role:security within 15m",
				Approval: &policies.Approval{Approvers: []string{"role:security"}, TTL: 15 * time.Minute, TTLAsWritten: "15m"}},
		},
		{
			name: "agent reads: allowed", tool: "get_integration", caller: agent, args: map[string]any{"slug": "prod-openai"},
			want: policies.Decision{Action: policies.ActionAllow, Reason: "get_integration is a read; allowed within org acme"},
		},
		{
			name: "no org: denied", tool: "list_integrations", caller: noOrg,
			want: policies.Decision{Action: policies.ActionDeny, Reason: "caller stray has no org; every call must be scoped to an org"},
		},
		{
			name: "unmapped REST route: denied", tool: "http:DELETE /v1/admin", caller: operator,
			want: policies.Decision{Action: policies.ActionDeny, Reason: "no rule allows tool http:DELETE /v1/admin"},
		},
		{
			name: "workspace agent replaces the key of an org-level integration: denied", tool: "update_integration", caller: agent,
			args: map[string]any{"slug": "shared", "key": "<redacted>"}, resource: shared,
			want: policies.Decision{Action: policies.ActionDeny, Reason: `update_integration: the integration is organisation-level; a caller bound to workspace "ws-1" may not change it`},
		},
		{
			name: "org agent wipes every grant: security approval", tool: "update_integration_workspaces", caller: orgAgent,
			args: map[string]any{"slug": "shared", "override_existing_workspace_access": true, "workspaces": []any{}}, resource: shared,
			want: policies.Decision{Action: policies.ActionRequireApproval,
				Reason:   "update_integration_workspaces takes workspace access away (an empty workspaces list; override_existing_workspace_access replaces every existing grant); it needs approval from role:security within 15m unless an admin makes it",
				Approval: &policies.Approval{Approvers: []string{"role:security"}, TTL: 15 * time.Minute, TTLAsWritten: "15m"}},
		},
		{
			name: "list mode hides delete from agents", tool: "delete_integration", caller: agent, mode: "list",
			want: policies.Decision{Action: policies.ActionDeny, Reason: "agents may not delete integrations; an operator's delete needs security approval"},
		},
		{
			name: "list mode shows create to agents", tool: "create_integration", caller: agent, mode: "list",
			want: policies.Decision{Action: policies.ActionRateLimit, Reason: "create_integration allowed for agent-7, at most 10 per 60s",
				RateLimit: &policies.RateLimit{Max: 10, Window: 60 * time.Second, WindowAsWritten: "60s"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eng.Decide(context.Background(), &policies.Input{
				Surface: "mcp", Tool: tc.tool, Arguments: tc.args, Caller: tc.caller, Mode: tc.mode, Resource: tc.resource,
				HTTP: policies.HTTPInfo{Method: "POST", Path: "/mcp"}, Upstream: "integrations",
			})
			if got.Revision != eng.Revision() || got.Revision == "" {
				t.Errorf("revision = %q, want %q", got.Revision, eng.Revision())
			}
			got.Revision = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decision\n got  %+v (rl %+v, ap %+v)\n want %+v (rl %+v, ap %+v)", got, got.RateLimit, got.Approval, tc.want, tc.want.RateLimit, tc.want.Approval)
			}
		})
	}
}

// The Rego tests must have teeth: each mutation of the example policy (a plausible
// editing mistake) must make at least one of them fail.
func TestExamplePolicyTestsCatchMutations(t *testing.T) {
	mutations := []struct{ name, from, to string }{
		{"create limit raised", `"max": 10,`, `"max": 11,`},
		{"update window widened", `"window": "60s",
		"roles": ["agent", "operator", "admin"],`, `"window": "600s",
		"roles": ["agent", "operator", "admin"],`},
		{"delete approvers changed", `"approvers": ["role:security"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integrations;`, `"approvers": ["role:admin"],
		"ttl": "15m",
		"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integrations;`},
		{"agents may delete", `"roles": ["operator", "admin"],
		"denied_reason": "agents may not delete integrations;`, `"roles": ["agent", "operator", "admin"],
		"denied_reason": "agents may not delete integrations;`},
		{"workspace check dropped", `ws != input.caller.workspace`, `ws == "never"`},
		{"owner check dropped", `input.resource.workspace_id != input.caller.workspace
	reason := outside_workspace`, `input.resource.workspace_id == "never"
	reason := outside_workspace`},
		{"org-level integrations count as the caller's", `outside_workspace(input.resource)
}`, `outside_workspace(input.resource)
	input.resource.workspace_id != null
}`},
		{"unresolved calls let through", `	not input.resource
	reason :=`, `	false
	reason :=`},
		{"override over other grants let through", `count(others) > 0`, `count(others) > 100`},
		{"grant removals need no approval", `	count(grant_removals) > 0
	not "admin" in input.caller.roles`, `	count(grant_removals) > 100
	not "admin" in input.caller.roles`},
		{"admins need approval for grant removals too", `	count(grant_removals) > 0
	not "admin" in input.caller.roles`, `	count(grant_removals) > 0`},
		{"empty list not a removal", `count(input.arguments.workspaces) == 0`, `count(input.arguments.workspaces) == -1`},
		{"revoking another workspace not a removal", `entry.enabled != true`, `entry.enabled == "never"`},
		{"resource rules applied in list mode", `	not list_mode
	tools[input.tool].resource_scoped
	caller_workspace
	not input.resource`, `	tools[input.tool].resource_scoped
	caller_workspace
	not input.resource`},
		{"workspace check applied in list mode", `list_mode if input.mode == "list"`, `list_mode if input.mode == "nothing"`},
		{"read prefix trusted over the route table", `not input.tool_info.category in {"write", "destructive"}`, `true`},
		{"org check dropped", "} if {\n\tnot caller_org\n}", "} if {\n\tfalse\n}"},
		{"unknown tools allowed", `"action": "deny",
	"reason": sprintf("no rule allows tool %s", [input.tool]),`, `"action": "allow",
	"reason": sprintf("no rule allows tool %s", [input.tool]),`},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			mutated := strings.Replace(ExamplePolicy, m.from, m.to, 1)
			if mutated == ExamplePolicy {
				t.Fatalf("mutation did not apply: %q not found in the policy", m.from)
			}
			opts := policies.Options{Modules: map[string]string{
				"policy.example.rego": mutated, "policy.example_test.rego": ExamplePolicyTests}}
			var out bytes.Buffer
			_, failed, err := policies.RunTests(context.Background(), opts, &out, false)
			if err != nil {
				t.Fatalf("RunTests: %v", err)
			}
			if failed == 0 {
				t.Fatalf("no Rego test caught the mutation")
			}
		})
	}
}

// The example is what people copy: keep it in `opa fmt` form.
func TestExamplePolicyIsFormatted(t *testing.T) {
	for name, src := range map[string]string{"policy.example.rego": ExamplePolicy, "policy.example_test.rego": ExamplePolicyTests} {
		got, err := format.SourceWithOpts(name, []byte(src), format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != src {
			t.Errorf("%s is not opa-fmt formatted; formatted version:\n%s", name, got)
		}
	}
}
