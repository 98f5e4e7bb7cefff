package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// scopeStack is serve on its defaults (example policy, bundled backend, resolver) with an
// organisation-level integration "shared" and ws-1's "own", both granted to ws-1 and ws-2
// (ws-2's grant with a rate limit), and ws-2's "theirs".
type scopeStack struct {
	url, dir                     string
	orgAdmin, orgAgent, ws1, sec string
	sharedMasked                 string
}

func newScopeStack(t *testing.T, o overrides) *scopeStack {
	t.Helper()
	t.Setenv("PORTCULLIS_APPROVAL_WAIT", "300ms")
	// A machine busy with other tests can stall one evaluation past the 25 ms default;
	// a policy error here would be noise, not the scope under test.
	o.configPath = filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(o.configPath, []byte("policy:\n  timeout: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, dir, _ := startServeWith(t, o)
	st := &scopeStack{url: url, dir: dir,
		orgAdmin: mintToken(t, dir, "--sub", "ava", "--org", "acme", "--roles", "admin", "--session", "a"),
		orgAgent: mintToken(t, dir, "--sub", "agent-9", "--org", "acme", "--roles", "agent", "--session", "o"),
		ws1:      mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--workspace", "ws-1", "--roles", "agent", "--session", "w1"),
		sec:      mintToken(t, dir, "--sub", "sam", "--org", "acme", "--roles", "security,approver", "--session", "s"),
	}
	ws2 := mintToken(t, dir, "--sub", "agent-2", "--org", "acme", "--workspace", "ws-2", "--roles", "agent", "--session", "w2")
	for _, c := range []struct{ token, body string }{
		{st.orgAdmin, `{"name":"shared","ai_provider_id":"openai","key":"sk-shared-0123456789abcd"}`},
		{st.ws1, `{"name":"own","ai_provider_id":"openai","key":"sk-own-0123456789abcdef","workspace_id":"ws-1"}`},
		{ws2, `{"name":"theirs","ai_provider_id":"openai","key":"sk-theirs-0123456789abc","workspace_id":"ws-2"}`},
	} {
		if resp, b := postJSON(t, url+"/v1/integrations", c.token, c.body); resp.StatusCode != 200 {
			t.Fatalf("create %s: %d %s", c.body, resp.StatusCode, b)
		}
	}
	grants := `{"workspaces":[{"id":"ws-1","enabled":true},{"id":"ws-2","enabled":true,"rate_limits":[{"type":"requests","unit":"rpm","value":10}]}]}`
	for _, slug := range []string{"shared", "own"} {
		if resp, b := doJSON(t, "PUT", url+"/v1/integrations/"+slug+"/workspaces", st.orgAdmin, grants); resp.StatusCode != 200 {
			t.Fatalf("the org admin grants %s to ws-1 and ws-2: %d %s", slug, resp.StatusCode, b)
		}
	}
	st.sharedMasked = st.detail(t, "shared")["masked_key"].(string)
	return st
}

func (st *scopeStack) detail(t *testing.T, slug string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(restGet(t, st.url+"/v1/integrations/"+slug, st.orgAdmin)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// grants reads the workspaces holding a grant on slug, as the org admin sees them.
func (st *scopeStack) grants(t *testing.T, slug string) []string {
	t.Helper()
	var l struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(restGet(t, st.url+"/v1/integrations/"+slug+"/workspaces", st.orgAdmin)), &l); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range l.Data {
		out = append(out, w.ID)
	}
	return out
}

// unchanged asserts that no refused call changed anything.
func (st *scopeStack) unchanged(t *testing.T) {
	t.Helper()
	for _, slug := range []string{"shared", "own"} {
		if got := st.grants(t, slug); !slices.Equal(got, []string{"ws-1", "ws-2"}) {
			t.Fatalf("the grants of %s are now %v", slug, got)
		}
	}
	d := st.detail(t, "shared")
	if d["masked_key"] != st.sharedMasked || d["configurations"].(map[string]any)["custom_host"] != nil || d["name"] != "shared" {
		t.Fatalf("the organisation-level integration changed: %v", d)
	}
	if d := st.detail(t, "theirs"); d["description"] != "" {
		t.Fatalf("ws-2's integration changed: %v", d)
	}
}

// SECURITY.md row 18, end to end through serve (example policy, resolver, bundled
// backend): an agent bound to ws-1 cannot take other workspaces' access away or change an
// integration outside its workspace, whatever its arguments say, over REST and MCP; the
// org admin can; an org-wide agent needs approval to take access away.
func TestScopesHoldForTheResourceThroughServe(t *testing.T) {
	st := newScopeStack(t, overrides{})
	url := st.url

	refused := []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		{"override removes ws-2's grant", "PUT", "/v1/integrations/own/workspaces",
			`{"override_existing_workspace_access":true,"workspaces":[{"id":"ws-1","enabled":true}]}`, 403,
			`override_existing_workspace_access would remove the grants of ws-2; a caller bound to workspace \"ws-1\" may replace only its own`},
		{"override with an empty list", "PUT", "/v1/integrations/own/workspaces",
			`{"override_existing_workspace_access":true,"workspaces":[]}`, 403, "would remove the grants of ws-2"},
		{"an empty list", "PUT", "/v1/integrations/own/workspaces", `{"workspaces":[]}`, 202,
			"takes workspace access away (an empty workspaces list)"},
		{"revoking ws-2", "PUT", "/v1/integrations/own/workspaces", `{"workspaces":[{"id":"ws-2","enabled":false}]}`, 403,
			`workspaces[0].id is not the caller's workspace \"ws-1\"`},
		{"replacing the key and custom_host of an org-level integration", "PUT", "/v1/integrations/shared",
			`{"key":"sk-attacker-0123456789ab","configurations":{"custom_host":"https://attacker.example"}}`, 403,
			`the integration is organisation-level; a caller bound to workspace \"ws-1\" may not change it`},
		{"granting itself an org-level integration", "PUT", "/v1/integrations/shared/workspaces",
			`{"workspaces":[{"id":"ws-1","enabled":true}]}`, 403, "is organisation-level"},
		{"an org-level integration through the seed shape", "PATCH", "/integrations/credentials/shared", `{"name":"pwned"}`, 403,
			"is organisation-level"},
		{"a workspace-2 integration", "PUT", "/v1/integrations/theirs", `{"description":"pwned"}`, 403,
			`the integration is not in the caller's workspace \"ws-1\"`},
	}
	for _, tc := range refused {
		t.Run("REST "+tc.name, func(t *testing.T) {
			resp, b := doJSON(t, tc.method, url+tc.path, st.ws1, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.reason) {
				t.Fatalf("%d %s\nwant %d with %q", resp.StatusCode, b, tc.status, tc.reason)
			}
			st.unchanged(t)
		})
	}

	cs := connect(t, url, st.ws1)
	for _, tc := range []struct {
		name   string
		tool   string
		args   map[string]any
		reason string
	}{
		{"override", "update_integration_workspaces", map[string]any{"slug": "own", "override_existing_workspace_access": true,
			"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}, "would remove the grants of ws-2"},
		{"revoking ws-2", "update_integration_workspaces", map[string]any{"slug": "own",
			"workspaces": []any{map[string]any{"id": "ws-2", "enabled": false}}}, "workspaces[0].id is not the caller's workspace"},
		{"org-level key", "update_integration", map[string]any{"slug": "shared", "key": "sk-attacker-0123456789ab",
			"custom_host": "https://attacker.example"}, "is organisation-level"},
		{"workspace-2 integration", "update_integration", map[string]any{"slug": "theirs", "description": "pwned"}, "is not in the caller's workspace"},
	} {
		t.Run("MCP "+tc.name, func(t *testing.T) {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
			if err != nil || !res.IsError || !strings.Contains(resultText(res), tc.reason) || !strings.Contains(resultText(res), "policy_denied") {
				t.Fatalf("%v %s; want a policy deny with %q", err, resultText(res), tc.reason)
			}
			st.unchanged(t)
		})
	}

	// Within its own workspace, the agent still works.
	if resp, b := doJSON(t, "PUT", url+"/v1/integrations/own", st.ws1, `{"description":"mine"}`); resp.StatusCode != 200 {
		t.Fatalf("ws-1 updates its own integration: %d %s", resp.StatusCode, b)
	}

	// An org-wide agent: taking access away is held for approval, and nothing changes
	// until a security approver says yes; the identical call then goes through once.
	wipe := `{"override_existing_workspace_access":true,"workspaces":[]}`
	resp, b := doJSON(t, "PUT", url+"/v1/integrations/shared/workspaces", st.orgAgent, wipe)
	if resp.StatusCode != 202 || !strings.Contains(string(b), "takes workspace access away") {
		t.Fatalf("an org agent wipes every grant: %d %s; want 202 pending approval", resp.StatusCode, b)
	}
	st.unchanged(t)
	var pending struct {
		ApprovalID string `json:"approval_id"`
	}
	if err := json.Unmarshal(b, &pending); err != nil || pending.ApprovalID == "" {
		t.Fatalf("pending approval: %v %s", err, b)
	}
	if resp, b := postJSON(t, url+"/admin/v1/approvals/"+pending.ApprovalID+"/approve", st.sec, `{"comment":"decommissioning"}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	if resp, b := doJSON(t, "PUT", url+"/v1/integrations/shared/workspaces", st.orgAgent, wipe); resp.StatusCode != 200 {
		t.Fatalf("the approved wipe: %d %s", resp.StatusCode, b)
	}
	if got := st.grants(t, "shared"); len(got) != 0 {
		t.Fatalf("grants after the approved wipe: %v", got)
	}

	// The org admin takes access away without approval.
	resp, b = doJSON(t, "PUT", url+"/v1/integrations/own/workspaces", st.orgAdmin,
		`{"override_existing_workspace_access":true,"workspaces":[{"id":"ws-1","enabled":true}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("the org admin replaces the grants: %d %s", resp.StatusCode, b)
	}
	if got := st.grants(t, "own"); !slices.Equal(got, []string{"ws-1"}) {
		t.Fatalf("grants of own after the admin's override: %v", got)
	}
	if resp, b := doJSON(t, "PUT", url+"/v1/integrations/shared", st.orgAdmin, `{"description":"rotated by the org"}`); resp.StatusCode != 200 {
		t.Fatalf("the org admin updates the org-level integration: %d %s", resp.StatusCode, b)
	}
}

// Defence in depth: with a policy that allows everything, the backend still refuses an
// agent bound to ws-1 (the ws claim of the proxy's identity assertion) that changes an
// org-level integration or another workspace's grant.
func TestBackendHoldsTheScopeWhenPolicyAllowsEverything(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "allow.rego")
	if err := os.WriteFile(policy, []byte("package portcullis\n\ndecision := {\"action\": \"allow\", \"reason\": \"anything goes\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := newScopeStack(t, overrides{policy: policy})
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/integrations/shared", `{"key":"sk-attacker-0123456789ab"}`, "organisation-level integration"},
		{"/v1/integrations/own/workspaces", `{"override_existing_workspace_access":true,"workspaces":[]}`, "would remove the grants of 1 other workspace"},
		{"/v1/integrations/own/workspaces", `{"workspaces":[{"id":"ws-2","enabled":false}]}`, "may change only its own grant"},
		{"/v1/integrations/theirs", `{"description":"pwned"}`, "not_found"},
	} {
		resp, b := doJSON(t, "PUT", st.url+tc.path, st.ws1, tc.body)
		if (resp.StatusCode != 403 && resp.StatusCode != 404) || !strings.Contains(string(b), tc.want) {
			t.Errorf("PUT %s %s: %d %s; want the backend's refusal %q", tc.path, tc.body, resp.StatusCode, b, tc.want)
		}
	}
	st.unchanged(t)
}
