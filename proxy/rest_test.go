package proxy_test

import (
	"strings"
	"testing"
)

// Fiber routes on the path as sent; the proxy decides and forwards the normalised path,
// which must still be under a proxied prefix.
func TestNormalisedPathStaysUnderPrefix(t *testing.T) {
	g := newGateway(t, gwOptions{policy: allowAllPolicy})
	tok := token(t, "a", "acme", "agent")
	for _, p := range []string{"/v1/../mcp", "/v1/%2e%2e/admin/v1/audit", "/v1/./../integrations"} {
		if resp, out := g.do("GET", p, tok, "", ""); resp.StatusCode != 400 || !strings.Contains(out, "invalid_path") {
			t.Errorf("%s: %d %s, want 400 invalid_path", p, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	if resp, _ := g.do("GET", "/v1/integrations/a%2Fmodels", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("an encoded slash inside the prefix: %d", resp.StatusCode)
	}
}

// A query "body" cannot hide behind a non-object body: both together are ambiguous.
func TestQueryBodyBesideANonObjectBodyIsAmbiguous(t *testing.T) {
	g := newGateway(t, gwOptions{policy: echoArgsPolicy})
	tok := token(t, "agent-7", "acme", "agent")
	if resp, out := g.do("POST", "/v1/integrations?body=x", tok, "application/json", `["a"]`); resp.StatusCode != 400 || !strings.Contains(out, "ambiguous_argument") {
		t.Fatalf("query body plus a non-object body: %d %s, want 400 ambiguous_argument", resp.StatusCode, out)
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("forwarded (%d hits)", g.up.hits.Load())
	}
}

// A route's renamed argument reaches policy under its one name (/ai/llm spells the
// workspace workspaceId; policy reads workspace_id on every route), and both spellings
// at once are ambiguous.
func TestRenamedArgumentReachesPolicyUnderOneName(t *testing.T) {
	g := newGateway(t, gwOptions{policy: echoArgsPolicy})
	tok := token(t, "agent-7", "acme", "agent")
	if _, out := g.do("POST", "/ai/llm", tok, "application/json", `{"name":"a","workspaceId":"ws-victim"}`); !strings.Contains(out, `\"workspace_id\": \"ws-victim\"`) || strings.Contains(out, "workspaceId") {
		t.Fatalf("/ai/llm: policy did not see workspace_id: %s", out)
	}
	if resp, out := g.do("POST", "/ai/llm", tok, "application/json", `{"name":"a","workspaceId":"ws-1","workspace_id":"ws-2"}`); resp.StatusCode != 400 || !strings.Contains(out, "ambiguous_argument") {
		t.Fatalf("both spellings: %d %s, want 400 ambiguous_argument", resp.StatusCode, out)
	}
}
