package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy"
)

// resourcePolicy shows policy what it was given: the decision reason is the resource
// itself, so a test reads input.resource back from the refusal.
const resourcePolicy = `package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "input.resource is absent"}

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool == "get_integration"
} else := {"action": "allow", "reason": "own workspace"} if {
	input.tool == "update_integration"
	input.resource.workspace_id == input.caller.workspace
} else := {"action": "deny", "reason": sprintf("resource %v", [json.marshal(input.resource)])} if {
	input.resource
}
`

// scopeUpstream answers resource lookups (GET .../scope) with its handler and every
// other request with a plain success, and counts the two apart.
type scopeUpstream struct {
	lookups, calls atomic.Int64
	mu             sync.Mutex
	lookupPaths    []string
	lookupHeaders  []http.Header
	answer         atomic.Pointer[func(w http.ResponseWriter, r *http.Request)]
}

func (su *scopeUpstream) setAnswer(f func(w http.ResponseWriter, r *http.Request)) {
	su.answer.Store(&f)
}

func (su *scopeUpstream) install(g *gateway) {
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/scope") {
			su.lookups.Add(1)
			su.mu.Lock()
			su.lookupPaths = append(su.lookupPaths, r.URL.EscapedPath())
			su.lookupHeaders = append(su.lookupHeaders, r.Header.Clone())
			su.mu.Unlock()
			(*su.answer.Load())(w, r)
			return
		}
		su.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"done"}]}}`)
	})
}

func ownedBy(ws string) func(w http.ResponseWriter, r *http.Request) {
	owner := `null`
	if ws != "" {
		owner = `"` + ws + `"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"integration_scope","id":"0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f","slug":"shared","org":"acme","workspace_id":`+owner+`,"workspaces":["ws-1","ws-2"]}`)
	}
}

func wsToken(t testing.TB, sub, org, ws string, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "org": org, "workspace": ws, "roles": roles, "sid": "sess-1", "iss": "test", "aud": "portcullis",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(callerSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resolvingGateway is a gateway that resolves integrations as serve does by default,
// optionally with its resources config changed.
func resolvingGateway(t *testing.T, change func(*proxy.ResourcesConfig)) (*gateway, *scopeUpstream) {
	g := newGateway(t, gwOptions{policy: resourcePolicy, cfg: func(c *proxy.Config) {
		c.Resources.Types = nil // the defaults: the bundled backend's integrations
		if change != nil {
			change(&c.Resources)
		}
	}})
	su := &scopeUpstream{}
	su.setAnswer(ownedBy(""))
	su.install(g)
	return g, su
}

// Policy sees the resource a call acts on, over both surfaces, read with the proxy's own
// org-wide identity (never the caller's token), and from the path over REST.
func TestPolicySeesTheResourceTheCallActsOn(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")

	resp, body := g.do("PUT", "/v1/integrations/shared", tok, "application/json", `{"description":"x"}`)
	if resp.StatusCode != 403 || !strings.Contains(body, `\"workspace_id\":null`) || !strings.Contains(body, `\"workspaces\":[\"ws-1\",\"ws-2\"]`) ||
		!strings.Contains(body, `\"type\":\"integration\"`) || !strings.Contains(body, `\"found\":true`) || !strings.Contains(body, `\"ref\":\"shared\"`) {
		t.Fatalf("REST update of an org-level integration: %d %s; want a deny naming the resolved resource", resp.StatusCode, body)
	}
	_, body = g.mcp(tok, toolCall("update_integration", `{"slug":"shared","description":"x"}`))
	if !strings.Contains(body, `"isError":true`) || !strings.Contains(body, `\"workspace_id\":null`) {
		t.Fatalf("MCP update of an org-level integration: %s; want a deny naming the resolved resource", body)
	}
	if n := su.calls.Load(); n != 0 {
		t.Fatalf("the upstream received %d denied calls", n)
	}

	su.mu.Lock()
	paths, hdr := su.lookupPaths, su.lookupHeaders[0]
	su.mu.Unlock()
	if len(paths) != 1 || paths[0] != "/v1/integrations/shared/scope" {
		t.Fatalf("lookups %v: want one (the second call is served from the cache)", paths)
	}
	if hdr.Get("Authorization") != "" {
		t.Fatal("the caller's token reached the upstream with the lookup")
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(hdr.Get(proxy.IdentityHeader), claims, func(*jwt.Token) (any, error) { return identitySecretOf(t, g.dir), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("portcullis-upstream")); err != nil {
		t.Fatalf("lookup assertion: %v", err)
	}
	if claims["sub"] != proxy.ResolverSubject || claims["org"] != "acme" || claims["ws"] != nil {
		t.Fatalf("lookup assertion claims %v: want the resolver, org acme, no workspace (an org-wide read)", claims)
	}

	// The policy's own-workspace rule, on a resource owned by the caller's workspace: allowed.
	su.setAnswer(ownedBy("ws-1"))
	resp, body = g.do("PUT", "/v1/integrations/mine", tok, "application/json", `{"description":"x"}`)
	if resp.StatusCode != 200 || su.calls.Load() != 1 {
		t.Fatalf("update in the caller's workspace: %d %s (calls %d)", resp.StatusCode, body, su.calls.Load())
	}
}

// Over REST the reference is the route's path parameter, never a body or query field:
// that is what the upstream acts on.
func TestRESTResourceReferenceComesFromThePath(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	g.do("PATCH", "/integrations/credentials/0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f", tok, "application/json", `{"slug":"mine","name":"x"}`)
	g.do("PUT", "/v1/integrations/mine", tok, "application/json", `{"id":"0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f"}`)
	su.mu.Lock()
	defer su.mu.Unlock()
	want := []string{"/v1/integrations/0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f/scope", "/v1/integrations/mine/scope"}
	if strings.Join(su.lookupPaths, " ") != strings.Join(want, " ") {
		t.Fatalf("lookups %v, want %v", su.lookupPaths, want)
	}
}

// A tool that is not resolved, a call that names no resource, and tools/list cost no
// lookup, and policy sees no input.resource.
func TestUnresolvedCallsHaveNoResource(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	_, body := g.mcp(tok, toolCall("create_integration", `{"name":"x"}`))
	if !strings.Contains(body, "input.resource is absent") {
		t.Fatalf("create: %s", body)
	}
	_, body = g.mcp(tok, toolCall("update_integration", `{"name":"no slug"}`))
	if !strings.Contains(body, "input.resource is absent") {
		t.Fatalf("update without a slug: %s", body)
	}
	_, body = g.mcp(tok, toolCall("update_integration", `{"slug":5}`))
	if !strings.Contains(body, "input.resource is absent") {
		t.Fatalf("update with a numeric slug: %s", body)
	}
	if n := su.lookups.Load(); n != 0 {
		t.Fatalf("%d lookups for calls that name no resource", n)
	}
}

// A lookup that fails in any way denies the call without evaluating policy, with a
// reason for the agent, a 503 over REST, and an audit row that says why; the call
// itself never reaches the upstream.
func TestResourceLookupFailureDeniesTheCall(t *testing.T) {
	cases := []struct {
		name, want string
		answer     func(w http.ResponseWriter, r *http.Request)
	}{
		{"upstream error", "the upstream answered 500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }},
		{"forbidden", "the upstream answered 403", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(403) }},
		{"not JSON", "not usable JSON", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") }},
		{"not an object", "not a JSON object", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `["ws-1"]`) }},
		{"duplicate keys", "not usable JSON", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"workspace_id":"ws-1","workspace_id":null}`)
		}},
		{"too large", "larger than 2048 bytes", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"pad":"`+strings.Repeat("x", 4096)+`"}`)
		}},
		{"too slow", "no answer within 200ms", func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(600 * time.Millisecond)
			w.WriteHeader(200)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, su := resolvingGateway(t, func(c *proxy.ResourcesConfig) {
				c.Timeout, c.MaxBytes = 200*time.Millisecond, 2048
			})
			su.setAnswer(tc.answer)
			tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
			start := time.Now()
			resp, body := g.do("PUT", "/v1/integrations/shared", tok, "application/json", `{"description":"x"}`)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"resource_unavailable"`) ||
				!strings.Contains(body, "could not be read to check policy") {
				t.Fatalf("REST: %d %s", resp.StatusCode, body)
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("the lookup was not bounded by its timeout: %v", time.Since(start))
			}
			_, body = g.mcp(tok, toolCall("delete_integration", `{"slug":"shared"}`))
			if !strings.Contains(body, `"isError":true`) || !strings.Contains(body, "resource_unavailable") {
				t.Fatalf("MCP: %s", body)
			}
			if n := su.calls.Load(); n != 0 {
				t.Fatalf("a call whose resource could not be read reached the upstream %d times", n)
			}
			errs := g.eventsWhere(2, func(ev *audit.Event) bool { return ev.Decision == "resource_error" })
			if len(errs) != 2 {
				t.Fatalf("%d resource_error rows, want one per refused call", len(errs))
			}
			for _, ev := range errs {
				if !strings.Contains(ev.Reason, tc.want) || ev.Kind != "decision" || ev.PolicyRevision == "" {
					t.Fatalf("resource_error row %+v does not record the lookup failure %q", ev, tc.want)
				}
			}
			if out := g.eventsWhere(0, func(ev *audit.Event) bool { return ev.Kind == "outcome" }); len(out) != 0 {
				t.Fatalf("outcome rows for calls that were not forwarded: %+v", out)
			}
		})
	}
}

// A resource the upstream does not have reaches policy as found: false (policy decides;
// the upstream answers 404 itself), and is never cached: a create right after must be seen.
func TestResourceNotFoundReachesPolicyAndIsNotCached(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	su.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		io.WriteString(w, `{"code":"not_found"}`)
	})
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	for i := 0; i < 2; i++ {
		_, body := g.mcp(tok, toolCall("update_integration", `{"slug":"ghost"}`))
		if !strings.Contains(body, `\"found\":false`) || !strings.Contains(body, `\"ref\":\"ghost\"`) {
			t.Fatalf("update of a missing integration: %s", body)
		}
	}
	if n := su.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2: not found must not be cached", n)
	}
}

// A found resource is served from the cache until its TTL, and a forwarded call that
// changes it drops the entry under every name it goes by (slug and id).
func TestResourceCacheIsDroppedWhenTheResourceChanges(t *testing.T) {
	g, su := resolvingGateway(t, func(c *proxy.ResourcesConfig) {
		c.CacheTTL = time.Minute
		c.Types = map[string]proxy.ResourceType{"integration": {Path: "/v1/integrations/{ref}/scope",
			Tools: []string{"update_integration", "get_integration"}}}
	})
	su.setAnswer(ownedBy("ws-1"))
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	const id = "0b6c1f5e-2f0a-4d4e-9a51-1f0c2b3d4e5f"
	get := func(ref string) {
		t.Helper()
		if resp, body := g.do("GET", "/v1/integrations/"+ref, tok, "", ""); resp.StatusCode != 200 {
			t.Fatalf("get %s: %d %s", ref, resp.StatusCode, body)
		}
	}
	get("shared")
	get("shared")
	get(id)
	if n := su.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2 (one per name; the repeat is cached)", n)
	}
	if resp, body := g.do("PUT", "/v1/integrations/shared", tok, "application/json", `{"description":"x"}`); resp.StatusCode != 200 {
		t.Fatalf("update: %d %s", resp.StatusCode, body)
	}
	if n := su.lookups.Load(); n != 2 {
		t.Fatalf("%d lookups: the update should have used the cached resource", n)
	}
	get(id)
	get("shared")
	if n := su.lookups.Load(); n != 4 {
		t.Fatalf("%d lookups, want 4: the update must drop the cached resource under its id and its slug", n)
	}

	// A refused call changes nothing upstream, so it keeps the cache.
	su.setAnswer(ownedBy("ws-2"))
	g.do("PUT", "/v1/integrations/other", tok, "application/json", `{"description":"x"}`)
	get("shared")
	if n := su.lookups.Load(); n != 5 {
		t.Fatalf("%d lookups, want 5", n)
	}
}

// Concurrent calls on one resource share one lookup.
func TestConcurrentCallsShareOneLookup(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	release := make(chan struct{})
	su.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		<-release
		ownedBy("ws-1")(w, r)
	})
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.mcp(tok, toolCall("delete_integration", `{"slug":"shared"}`))
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := su.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for 8 concurrent calls on one resource, want 1", n)
	}
}

// A bad resources section is refused at start, every problem named.
func TestResourcesConfigReportsEveryProblem(t *testing.T) {
	cfg := proxy.Config{}
	cfg.MCP.Upstream.URL, cfg.REST.Upstream.URL = "http://127.0.0.1:9/mcp", "http://127.0.0.1:9"
	cfg.Resources = proxy.ResourcesConfig{MaxBytes: 10, Types: map[string]proxy.ResourceType{
		"integration": {Path: "/v1/integrations/scope", Tools: []string{"update_integration"}},
		"model":       {Path: "v1/models/{ref}", Tools: []string{"update_integration", ""}},
		"empty":       {Path: "/x/{ref}"},
	}}
	cfg.REST.Routes = []proxy.Route{{Method: "GET", Path: "/v1/x/{id}", Tool: "x", Ref: "slug"}}
	cfg.SetDefaults(t.TempDir())
	err := cfg.Validate()
	if err == nil {
		t.Fatal("a bad resources section was accepted")
	}
	for _, want := range []string{"proxy.resources.max_bytes", "proxy.resources.types.integration.path", "proxy.resources.types.model.path",
		"proxy.resources.types.empty.tools", "is already resolved as type", "proxy.resources.types.model.tools[1]", "proxy.rest.routes[0]: ref"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

// The default config resolves the bundled backend's integrations for every tool that
// changes one; reads are not resolved.
func TestDefaultResourcesResolveIntegrationChanges(t *testing.T) {
	cfg := proxy.Config{}
	cfg.SetDefaults(t.TempDir())
	it, ok := cfg.Resources.Types["integration"]
	if !ok || it.Path != "/v1/integrations/{ref}/scope" || it.Arg != "slug" {
		t.Fatalf("default resource types %+v", cfg.Resources.Types)
	}
	b, _ := json.Marshal(it.Tools)
	for _, tool := range []string{"update_integration", "delete_integration", "update_integration_models", "delete_integration_model", "update_integration_workspaces"} {
		if !strings.Contains(string(b), `"`+tool+`"`) {
			t.Errorf("%s is not resolved by default: %s", tool, b)
		}
	}
	if strings.Contains(string(b), "get_") || strings.Contains(string(b), "list_") {
		t.Errorf("reads are resolved by default: %s", b)
	}
}

// A reference the upstream cannot read (400) is a resource not found, for policy to
// decide, and one that cannot name a resource at all (a control character) is the
// caller's error: neither is an outage (503) to retry.
func TestMalformedReferenceIsNotAnOutage(t *testing.T) {
	g, su := resolvingGateway(t, nil)
	su.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"code":"validation_error"}`)
	})
	tok := wsToken(t, "agent-7", "acme", "ws-1", "agent")
	_, body := g.mcp(tok, toolCall("update_integration", `{"slug":"bad slug"}`))
	if !strings.Contains(body, `\"found\":false`) || strings.Contains(body, "resource_unavailable") {
		t.Fatalf("a reference the upstream refuses: %s\n%s", body, g.logText())
	}
	_, body = g.mcp(tok, toolCall("update_integration", `{"slug":"a\u0000b"}`))
	if !strings.Contains(body, "invalid_arguments") || strings.Contains(body, "resource_unavailable") {
		t.Fatalf("a malformed reference: %s\n%s", body, g.logText())
	}
}
