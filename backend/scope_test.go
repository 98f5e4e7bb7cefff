package backend

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// scopeFixture is one org with an organisation-level integration shared with ws-1 and
// ws-2, an integration of ws-1 also granted to ws-2, and one of ws-2.
type scopeFixture struct {
	e                         *testEnv
	org, ws1                  map[string]string
	shared, own, other, ownID string
	sharedMasked              string
}

func newScopeFixture(t *testing.T) *scopeFixture {
	t.Helper()
	e := newEnv(t)
	f := &scopeFixture{e: e, org: e.as("acme", ""), ws1: e.as("acme", "ws-1")}
	ws2 := e.as("acme", "ws-2")
	_, f.shared = e.mustCreate(f.org, map[string]any{"name": "shared", "ai_provider_id": "openai", "key": "sk-shared-0123456789abcd"})
	f.ownID, f.own = e.mustCreate(f.ws1, map[string]any{"name": "own", "ai_provider_id": "openai", "key": "sk-own-0123456789abcdef", "workspace_id": "ws-1"})
	_, f.other = e.mustCreate(ws2, map[string]any{"name": "other", "ai_provider_id": "openai", "key": "sk-other-0123456789abcd", "workspace_id": "ws-2"})
	grants := map[string]any{"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}, map[string]any{"id": "ws-2", "enabled": true,
		"rate_limits": []any{map[string]any{"type": "requests", "unit": "rpm", "value": 10}}}}}
	for _, slug := range []string{f.shared, f.own} {
		if r := e.do("PUT", "/v1/integrations/"+slug+"/workspaces", f.org, grants); r.status != 200 {
			t.Fatalf("grants on %s: %d %s", slug, r.status, r.body)
		}
	}
	f.sharedMasked = e.do("GET", "/v1/integrations/"+f.shared, f.org, nil).json["masked_key"].(string)
	return f
}

func (f *scopeFixture) grants(t *testing.T, slug string) []string {
	t.Helper()
	r := f.e.do("GET", "/v1/integrations/"+slug+"/scope", f.org, nil)
	if r.status != 200 {
		t.Fatalf("scope of %s: %d %s", slug, r.status, r.body)
	}
	var out []string
	for _, w := range r.json["workspaces"].([]any) {
		out = append(out, w.(string))
	}
	return out
}

// A caller bound to a workspace (the ws claim of the proxy's identity assertion) cannot
// change an integration outside its workspace or another workspace's grant, whatever its
// request says, over REST, the seed shapes and MCP alike. The backend enforces this
// itself: it does not rely on the gateway's policy.
func TestWorkspaceCallerCannotChangeOutsideItsWorkspace(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	cases := []struct {
		name, method, path string
		body               any
		status             int
		field, msg         string
	}{
		{"replace the key of an org-level integration", "PUT", "/v1/integrations/" + f.shared,
			map[string]any{"key": "sk-attacker-0123456789ab", "configurations": map[string]any{"custom_host": "https://attacker.example"}}, 403, "slug", "organisation-level"},
		{"delete an org-level integration", "DELETE", "/v1/integrations/" + f.shared, nil, 403, "slug", "organisation-level"},
		{"create an org-level integration", "POST", "/v1/integrations",
			map[string]any{"name": "sneaky", "ai_provider_id": "openai", "key": "sk-attacker-0123456789ab"}, 403, "workspace_id", "bound to a workspace"},
		{"models of an org-level integration", "PUT", "/v1/integrations/" + f.shared + "/models",
			map[string]any{"models": []any{map[string]any{"slug": "gpt-4o", "enabled": false}}}, 403, "slug", "organisation-level"},
		{"delete a model of an org-level integration", "DELETE", "/v1/integrations/" + f.shared + "/models?slugs=gpt-4o", nil, 403, "slug", "organisation-level"},
		{"grant itself an org-level integration", "PUT", "/v1/integrations/" + f.shared + "/workspaces",
			map[string]any{"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}, 403, "slug", "organisation-level"},
		{"override the grants of an org-level integration", "PUT", "/v1/integrations/" + f.shared + "/workspaces",
			map[string]any{"override_existing_workspace_access": true, "workspaces": []any{}}, 403, "slug", "organisation-level"},
		{"seed PATCH of an org-level integration", "PATCH", "/integrations/credentials/" + f.shared, map[string]any{"name": "pwned"}, 403, "slug", "organisation-level"},
		{"update another workspace's integration", "PUT", "/v1/integrations/" + f.other, map[string]any{"key": "sk-attacker-0123456789ab"}, 404, "", ""},
		{"delete another workspace's integration", "DELETE", "/v1/integrations/" + f.other, nil, 404, "", ""},
		{"override removes ws-2's grant on its own integration", "PUT", "/v1/integrations/" + f.own + "/workspaces",
			map[string]any{"override_existing_workspace_access": true, "workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}, 403,
			"override_existing_workspace_access", "other workspace"},
		{"empty list with override on its own integration", "PUT", "/v1/integrations/" + f.own + "/workspaces",
			map[string]any{"override_existing_workspace_access": true, "workspaces": []any{}}, 403, "override_existing_workspace_access", "other workspace"},
		{"revoke ws-2 on its own integration", "PUT", "/v1/integrations/" + f.own + "/workspaces",
			map[string]any{"workspaces": []any{map[string]any{"id": "ws-2", "enabled": false}}}, 403, "workspaces[0].id", "another workspace"},
		{"open its own integration to every workspace", "PUT", "/v1/integrations/" + f.own + "/workspaces",
			map[string]any{"global_workspace_access": true, "workspaces": []any{}}, 403, "global_workspace_access", "every workspace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, f.ws1, tc.body)
			if r.status != tc.status || r.errField() != tc.field || !strings.Contains(string(r.body), tc.msg) {
				t.Fatalf("%d %s; want %d naming %q (%q)", r.status, r.body, tc.status, tc.field, tc.msg)
			}
		})
	}
	// Nothing changed.
	if g := e.do("GET", "/v1/integrations/"+f.shared, f.org, nil); g.json["masked_key"] != f.sharedMasked || g.json["name"] != "shared" ||
		g.json["configurations"].(map[string]any)["custom_host"] != nil {
		t.Fatalf("the org-level integration changed: %s", g.body)
	}
	for _, slug := range []string{f.shared, f.own} {
		if got := f.grants(t, slug); !slices.Equal(got, []string{"ws-1", "ws-2"}) {
			t.Fatalf("grants of %s are now %v", slug, got)
		}
	}
	if g := e.do("GET", "/v1/integrations/"+f.other, f.org, nil); g.status != 200 {
		t.Fatalf("ws-2's integration: %d", g.status)
	}

	// Over MCP, the same refusals.
	m := e.mcpClient(t, f.ws1)
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"update_integration", map[string]any{"slug": f.shared, "key": "sk-attacker-0123456789ab", "custom_host": "https://attacker.example"}, "organisation-level"},
		{"delete_integration_model", map[string]any{"slug": f.shared, "model_slug": "gpt-4o"}, "organisation-level"},
		{"update_integration_workspaces", map[string]any{"slug": f.own, "override_existing_workspace_access": true,
			"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}, "other workspace"},
		{"update_integration_workspaces", map[string]any{"slug": f.own, "workspaces": []any{map[string]any{"id": "ws-2", "enabled": false}}}, "another workspace"},
	} {
		if r := m.call(t, tc.tool, tc.args); !r.res.IsError || !strings.Contains(string(r.raw), tc.want) || !strings.Contains(string(r.raw), "forbidden") {
			t.Errorf("MCP %s %v: %s", tc.tool, tc.args, r.raw)
		}
	}
	if got := f.grants(t, f.own); !slices.Equal(got, []string{"ws-1", "ws-2"}) {
		t.Fatalf("grants of %s after MCP: %v", f.own, got)
	}
}

// Within its own workspace a bound caller keeps every right it had: change, grant its own
// workspace, override when no other workspace holds a grant, delete. An org-wide caller
// may still do everything, org-level integrations and other workspaces' grants included.
func TestScopedCallersKeepTheirOwnRights(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	ok := func(r resp, what string) {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
	}
	ok(e.do("PUT", "/v1/integrations/"+f.own, f.ws1, map[string]any{"description": "mine"}), "update own")
	ok(e.do("PUT", "/v1/integrations/"+f.own+"/models", f.ws1, map[string]any{"models": []any{map[string]any{"slug": "gpt-4o", "enabled": true}}}), "own models")
	ok(e.do("PUT", "/v1/integrations/"+f.own+"/workspaces", f.ws1, map[string]any{"workspaces": []any{map[string]any{"id": "ws-1", "enabled": false}}}), "own grant")
	// The org removes ws-2's grant; then ws-1's override touches only its own.
	ok(e.do("PUT", "/v1/integrations/"+f.own+"/workspaces", f.org, map[string]any{"override_existing_workspace_access": true,
		"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}), "org override")
	ok(e.do("PUT", "/v1/integrations/"+f.own+"/workspaces", f.ws1, map[string]any{"override_existing_workspace_access": true,
		"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true}}}), "override with only its own grant")
	if got := f.grants(t, f.own); !slices.Equal(got, []string{"ws-1"}) {
		t.Fatalf("grants of own: %v", got)
	}
	// Testing an org-level integration is a use, not a change: past the scope check (the
	// probe itself may fail here, with no network).
	if r := e.do("POST", "/v1/integrations/"+f.shared+"/test", f.ws1, nil); r.status == 403 || r.status == 404 {
		t.Fatalf("test of an org-level integration by ws-1: %d %s", r.status, r.body)
	}

	// The org-wide caller changes the org-level integration and wipes its grants.
	ok(e.do("PUT", "/v1/integrations/"+f.shared, f.org, map[string]any{"description": "org"}), "org update")
	ok(e.do("PUT", "/v1/integrations/"+f.shared+"/workspaces", f.org, map[string]any{"override_existing_workspace_access": true, "workspaces": []any{}}), "org wipe")
	if got := f.grants(t, f.shared); len(got) != 0 {
		t.Fatalf("grants after the org's wipe: %v", got)
	}
	ok(e.do("DELETE", "/v1/integrations/"+f.ownID, f.ws1, nil), "delete own by id")
	if g := e.do("GET", "/v1/integrations/"+f.own, f.org, nil); g.status != 404 {
		t.Fatalf("own after delete: %d", g.status)
	}
}

// GET /v1/integrations/{slug}/scope answers what a gateway's policy needs about an
// integration: owner (null for organisation-level), grants, global access; no secret.
func TestScopeEndpointAnswersOwnerAndGrants(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	r := e.do("GET", "/v1/integrations/"+f.shared+"/scope", f.org, nil)
	if r.status != 200 || r.json["object"] != "integration_scope" || r.json["workspace_id"] != nil || r.json["slug"] != f.shared ||
		r.json["org"] != "acme" || r.json["global_workspace_access"] != false || r.json["workspaces_total"] != float64(2) {
		t.Fatalf("scope of the org-level integration: %s", r.body)
	}
	if _, present := r.json["workspace_id"]; !present {
		t.Fatal("workspace_id is left out for an org-level integration; it must be null")
	}
	if strings.Contains(string(r.body), "sk-") || strings.Contains(string(r.body), "masked") {
		t.Fatalf("the scope answer holds key material: %s", r.body)
	}
	r = e.do("GET", "/v1/integrations/"+f.ownID+"/scope", f.org, nil)
	if r.status != 200 || r.json["workspace_id"] != "ws-1" || r.json["id"] != f.ownID || fmt.Sprint(r.json["workspaces"]) != "[ws-1 ws-2]" {
		t.Fatalf("scope of ws-1's integration by id: %s", r.body)
	}
	if r := e.do("GET", "/v1/integrations/"+f.other+"/scope", f.ws1, nil); r.status != 404 {
		t.Fatalf("ws-1 reads the scope of ws-2's integration: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/integrations/nope/scope", f.org, nil); r.status != 404 {
		t.Fatalf("scope of a missing integration: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/integrations/"+f.shared+"/scope", e.as("globex", ""), nil); r.status != 404 {
		t.Fatalf("another org reads the scope: %d %s", r.status, r.body)
	}
}
