package backend

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestCreateValidation(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	cases := []struct {
		name   string
		body   any
		status int
		field  string
		rule   string
	}{
		{"missing name", map[string]any{"ai_provider_id": "openai", "key": "k"}, 400, "name", "is required"},
		{"missing provider", map[string]any{"name": "n"}, 400, "ai_provider_id", "is required"},
		{"unknown provider names known ones", map[string]any{"name": "n", "ai_provider_id": "nope"}, 400, "ai_provider_id", "known providers: anthropic, aws-bedrock"},
		{"openai needs key", map[string]any{"name": "n", "ai_provider_id": "openai"}, 400, "key", "is required for provider openai"},
		{"azure needs its fields", map[string]any{"name": "n", "ai_provider_id": "azure-openai", "key": "k",
			"configurations": map[string]any{"resource_name": "r"}}, 400, "configurations.deployment_name", "is required for provider azure-openai"},
		{"bedrock needs region", map[string]any{"name": "n", "ai_provider_id": "aws-bedrock"}, 400, "configurations.aws_region", "is required"},
		{"vertex needs project", map[string]any{"name": "n", "ai_provider_id": "vertex-ai", "configurations": map[string]any{"vertex_region": "us-central1"}}, 400, "configurations.vertex_project_id", "is required"},
		{"custom_host not a URL", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "configurations": map[string]any{"custom_host": "not a url"}}, 400, "configurations.custom_host", "http or https URL"},
		{"custom_host not a string", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "configurations": map[string]any{"custom_host": 5}}, 400, "configurations.custom_host", "http or https URL"},
		{"sharepoint site_url is a URL field", map[string]any{"name": "n", "ai_provider_id": "sharepoint", "configurations": map[string]any{"site_url": "ftp://x", "refresh_token": "t"}}, 400, "configurations.site_url", "http or https URL"},
		{"bad slug", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "slug": "Bad Slug"}, 400, "slug", "lowercase"},
		{"reserved masked_ name", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "configurations": map[string]any{"masked_key": "x"}}, 400, "configurations.masked_key", "reserved"},
		{"bad auth type", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "auth_type": "oauth2"}, 400, "auth_type", "must be one of api_key"},
		{"name too long", map[string]any{"name": strings.Repeat("n", 200), "ai_provider_id": "openai", "key": "k"}, 400, "name", "at most 128"},
		{"bad workspace id", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "workspace_id": "a b"}, 400, "workspace_id", "letters, digits"},
		{"unknown body field", `{"name":"n","ai_provider_id":"openai","key":"k","colour":"red"}`, 400, "colour", "unknown field"},
		{"field name in another case", `{"name":"n","ai_provider_id":"openai","key":"k","Workspace_ID":"ws-other"}`, 400, "Workspace_ID", "case-sensitive"},
		{"field name with a Kelvin sign", "{\"name\":\"n\",\"ai_provider_id\":\"openai\",\"\u212aey\":\"k\"}", 400, "\u212aey", "case-sensitive"},
		{"wrong type", `{"name":5,"ai_provider_id":"openai"}`, 400, "name", "must be a string"},
		{"not json", `{"name":`, 400, "body", "not valid JSON"},
		{"two objects", `{"name":"n","ai_provider_id":"openai","key":"k"} {}`, 400, "body", "exactly one JSON object"},
		{"too deep configurations", map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k", "configurations": deep(12)}, 400, "configurations", "at most 8 levels"},
		{"body over 1 MiB", `{"name":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "body", "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/integrations", h, tc.body)
			if r.status != tc.status || r.errField() != tc.field || !strings.Contains(r.errMessage(), tc.rule) {
				t.Fatalf("got %d field=%q message=%q; want %d %q containing %q", r.status, r.errField(), r.errMessage(), tc.status, tc.field, tc.rule)
			}
			if !strings.HasPrefix(r.errMessage(), tc.field) {
				t.Fatalf("message %q does not start with the field name", r.errMessage())
			}
		})
	}
	// Every problem at once.
	r := e.create(h, map[string]any{"name": "", "ai_provider_id": "azure-openai", "slug": "BAD"})
	if d, _ := r.json["error"].(map[string]any)["details"].([]any); len(d) < 2 {
		t.Fatalf("want several problems reported together: %s", r.body)
	}
	if l := e.do("GET", "/v1/integrations", h, nil); l.json["total"] != float64(0) {
		t.Fatalf("an invalid create stored something: %s", l.body)
	}
}

func deep(n int) map[string]any {
	m := map[string]any{"leaf": "x"}
	for range n {
		m = map[string]any{"n": m}
	}
	return m
}

func TestSlugAndNameUniqueness(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, s1 := e.mustCreate(h, map[string]any{"name": "Prod OpenAI!", "ai_provider_id": "openai", "key": "k1"})
	if s1 != "prod-openai" {
		t.Fatalf("slug = %s", s1)
	}
	// Same name in another workspace: allowed, slug deduplicated within the org.
	_, s2 := e.mustCreate(h, map[string]any{"name": "Prod OpenAI!", "ai_provider_id": "openai", "key": "k1", "workspace_id": "ws-1"})
	if s2 != "prod-openai-2" {
		t.Fatalf("second slug = %s", s2)
	}
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"same name same workspace", map[string]any{"name": "Prod OpenAI!", "ai_provider_id": "openai", "key": "k"}, "name"},
		{"explicit slug taken", map[string]any{"name": "other", "slug": "prod-openai", "ai_provider_id": "openai", "key": "k"}, "slug"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.create(h, tc.body)
			if r.status != 409 || r.errField() != tc.field {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	// Slugs are per org: another org gets the plain slug.
	if _, s := e.mustCreate(e.as("globex", ""), map[string]any{"name": "Prod OpenAI!", "ai_provider_id": "openai", "key": "k"}); s != "prod-openai" {
		t.Fatalf("other org slug = %s", s)
	}
	// Rename onto an existing name in the same workspace is a conflict.
	e.mustCreate(h, map[string]any{"name": "second", "ai_provider_id": "openai", "key": "k"})
	if r := e.do("PUT", "/v1/integrations/second", h, map[string]any{"name": "Prod OpenAI!"}); r.status != 409 || r.errField() != "name" {
		t.Fatalf("rename conflict: %d %s", r.status, r.body)
	}
	if Slugify("  ¡¡ ") != "integration" || Slugify("A  b--C") != "a-b-c" {
		t.Fatal("Slugify edge cases")
	}
}

func TestMaxPerProvider(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPerProvider = 3 })
	h := e.as("acme", "")
	for i := range 3 {
		e.mustCreate(h, map[string]any{"name": fmt.Sprint("n", i), "ai_provider_id": "openai", "key": "k"})
	}
	r := e.create(h, map[string]any{"name": "n4", "ai_provider_id": "openai", "key": "k"})
	if r.status != 409 || r.errField() != "ai_provider_id" || !strings.Contains(r.errMessage(), "at most 3") {
		t.Fatalf("over limit: %d %s", r.status, r.body)
	}
	// Other providers and other orgs are counted separately.
	e.mustCreate(h, map[string]any{"name": "a", "ai_provider_id": "anthropic", "key": "k"})
	e.mustCreate(e.as("globex", ""), map[string]any{"name": "n", "ai_provider_id": "openai", "key": "k"})
}

// Scoping: another org gets 404 for everything, and nothing changes.
func TestOrgIsolation(t *testing.T) {
	e := newEnv(t)
	a, b := e.as("acme", ""), e.as("globex", "")
	id, slug := e.mustCreate(a, map[string]any{"name": "a", "ai_provider_id": "openai", "key": "sk-acme-secret-000000000"})
	cases := []struct{ method, path string }{
		{"GET", "/v1/integrations/" + slug},
		{"GET", "/v1/integrations/" + id},
		{"PUT", "/v1/integrations/" + slug},
		{"DELETE", "/v1/integrations/" + slug},
		{"GET", "/v1/integrations/" + slug + "/models"},
		{"PUT", "/v1/integrations/" + slug + "/models"},
		{"DELETE", "/v1/integrations/" + slug + "/models?slugs=x"},
		{"GET", "/v1/integrations/" + slug + "/workspaces"},
		{"PUT", "/v1/integrations/" + slug + "/workspaces"},
		{"POST", "/v1/integrations/" + slug + "/test"},
		{"GET", "/integrations/credentials/" + id},
		{"PATCH", "/integrations/credentials/" + id},
		{"DELETE", "/integrations/credentials/" + id},
		{"POST", "/ai/llm/" + id + "/validate"},
	}
	bodies := map[string]any{"PUT": map[string]any{"name": "pwned", "key": "attacker", "models": []any{}, "workspaces": []any{}}, "PATCH": map[string]any{"name": "pwned"}}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			body := bodies[tc.method]
			if strings.HasSuffix(tc.path, "/models") && tc.method == "PUT" {
				body = map[string]any{"models": []any{}}
			} else if strings.HasSuffix(tc.path, "/workspaces") {
				body = map[string]any{"workspaces": []any{}}
			} else if tc.method == "PUT" {
				body = map[string]any{"name": "pwned", "key": "attacker"}
			}
			r := e.do(tc.method, tc.path, b, body)
			if r.status != 404 {
				t.Fatalf("got %d %s, want 404", r.status, r.body)
			}
		})
	}
	g := e.do("GET", "/v1/integrations/"+slug, a, nil)
	if g.status != 200 || g.json["name"] != "a" || g.json["masked_key"] != "sk-****0000" {
		t.Fatalf("owner's integration changed: %s", g.body)
	}
	if l := e.do("GET", "/v1/integrations", b, nil); l.json["total"] != float64(0) {
		t.Fatalf("other org sees: %s", l.body)
	}
}

func TestWorkspaceScoping(t *testing.T) {
	e := newEnv(t)
	org := e.as("acme", "")
	ws1, ws2 := e.as("acme", "ws-1"), e.as("acme", "ws-2")
	e.mustCreate(org, map[string]any{"name": "org-level", "ai_provider_id": "openai", "key": "k"})
	_, wslug := e.mustCreate(ws1, map[string]any{"name": "ws1-only", "ai_provider_id": "openai", "key": "k", "workspace_id": "ws-1"})
	cases := []struct {
		name   string
		h      map[string]string
		total  float64
		status int
	}{
		{"org caller sees all", org, 2, 200},
		{"ws-1 sees org-level and its own", ws1, 2, 200},
		{"ws-2 sees only org-level", ws2, 1, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if l := e.do("GET", "/v1/integrations", tc.h, nil); l.json["total"] != tc.total {
				t.Fatalf("list: %s", l.body)
			}
			if g := e.do("GET", "/v1/integrations/"+wslug, tc.h, nil); g.status != tc.status {
				t.Fatalf("get: %d", g.status)
			}
		})
	}
	if r := e.create(ws2, map[string]any{"name": "x", "ai_provider_id": "openai", "key": "k", "workspace_id": "ws-1"}); r.status != 403 || r.errField() != "workspace_id" {
		t.Fatalf("cross-workspace create: %d %s", r.status, r.body)
	}
	if l := e.do("GET", "/v1/integrations?type=organisation", org, nil); l.json["total"] != float64(1) {
		t.Fatalf("type=organisation: %s", l.body)
	}
	if l := e.do("GET", "/v1/integrations?type=workspace&workspace_id=ws-1", org, nil); l.json["total"] != float64(1) {
		t.Fatalf("type=workspace: %s", l.body)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	key, err := newServiceKey(t.Context(), e.srv.store, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	otherSecret := make([]byte, 32)
	_, _ = rand.Read(otherSecret)
	sign := func(m jwt.SigningMethod, k any, mutate func(jwt.MapClaims)) string {
		now := time.Now()
		cl := jwt.MapClaims{"iss": "portcullis", "aud": "portcullis-upstream", "sub": "a", "org": "acme",
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if mutate != nil {
			mutate(cl)
		}
		s, err := jwt.NewWithClaims(m, cl).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	noneTok := func() string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": "portcullis", "aud": "portcullis-upstream", "sub": "a", "org": "acme",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}()
	cases := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"service key", map[string]string{"x-portkey-api-key": key}, 200},
		{"identity assertion", e.as("acme", ""), 200},
		{"nothing", nil, 401},
		{"unknown service key", map[string]string{"x-portkey-api-key": key + "x"}, 401},
		{"authorization header is not identity", map[string]string{"Authorization": "Bearer " + e.token("acme", "")}, 401},
		{"wrong secret", map[string]string{IdentityHeader: sign(jwt.SigningMethodHS256, otherSecret, nil)}, 401},
		{"alg none", map[string]string{IdentityHeader: noneTok}, 401},
		{"EdDSA when HS256 configured", map[string]string{IdentityHeader: sign(jwt.SigningMethodEdDSA, edKey, nil)}, 401},
		{"expired", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) {
			c["iat"] = time.Now().Add(-3 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
		})}, 401},
		{"no exp", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { delete(c, "exp") })}, 401},
		{"no iat", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { delete(c, "iat") })}, 401},
		{"wrong audience", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { c["aud"] = "other" })}, 401},
		{"wrong issuer", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { c["iss"] = "evil" })}, 401},
		{"no org", map[string]string{IdentityHeader: e.token("", "")}, 401},
		{"no sub", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { c["sub"] = "" })}, 401},
		{"lifetime over 5m", map[string]string{IdentityHeader: e.token("acme", "", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() })}, 401},
		{"bad assertion wins over good key", map[string]string{IdentityHeader: "garbage", "x-portkey-api-key": key}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("GET", "/v1/integrations", tc.hdr, nil)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 401 && r.json["error"].(map[string]any)["code"] != "unauthorized" {
				t.Fatalf("401 without error body: %s", r.body)
			}
		})
	}
	if r := e.do("GET", "/healthz", nil, nil); r.status != 200 {
		t.Fatalf("healthz needs no auth: %d", r.status)
	}
	// The service key acts for its org only.
	e.mustCreate(map[string]string{"x-portkey-api-key": key}, map[string]any{"name": "by-key", "ai_provider_id": "openai", "key": "k"})
	if l := e.do("GET", "/v1/integrations", e.as("acme", ""), nil); l.json["total"] != float64(1) {
		t.Fatalf("service key wrote to wrong org: %s", l.body)
	}
	// Only the hash is stored.
	raw, _ := e.srv.store.ServiceKeyByHash(t.Context(), hashServiceKey(key))
	if raw == nil || strings.Contains(fmt.Sprint(*raw), key) {
		t.Fatal("service key not found by hash, or stored in clear")
	}
}

func TestEdDSAIdentity(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e := newEnv(t, func(c *Config) { c.Identity.Secret = nil; c.Identity.PublicKey = pub })
	now := time.Now()
	cl := jwt.MapClaims{"iss": "portcullis", "aud": "portcullis-upstream", "sub": "a", "org": "acme", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, cl).SignedString(priv)
	if r := e.do("GET", "/v1/integrations", map[string]string{IdentityHeader: good}, nil); r.status != 200 {
		t.Fatalf("EdDSA: %d %s", r.status, r.body)
	}
	// An HS256 token keyed with the public key bytes must not pass (algorithm confusion).
	conf, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, cl).SignedString([]byte(pub))
	if r := e.do("GET", "/v1/integrations", map[string]string{IdentityHeader: conf}, nil); r.status != 401 {
		t.Fatalf("alg confusion: %d", r.status)
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	for i := range 5 {
		e.mustCreate(h, map[string]any{"name": fmt.Sprint("p", i), "ai_provider_id": "anthropic", "key": "k"})
	}
	cases := []struct {
		query string
		names []string
	}{
		{"?page_size=2", []string{"p0", "p1"}},
		{"?page_size=2&current_page=1", []string{"p0", "p1"}},
		{"?page_size=2&current_page=0", []string{"p0", "p1"}},
		{"?page_size=2&current_page=2", []string{"p2", "p3"}},
		{"?page_size=2&current_page=3", []string{"p4"}},
		{"?page_size=2&current_page=9", nil},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := e.do("GET", "/v1/integrations"+tc.query, h, nil)
			if r.json["object"] != "list" || r.json["total"] != float64(5) {
				t.Fatalf("%s", r.body)
			}
			data := r.json["data"].([]any)
			var got []string
			for _, d := range data {
				item := d.(map[string]any)
				got = append(got, item["name"].(string))
				if item["object"] != "integration" || item["masked_key"] != nil || item["status"] != "active" {
					t.Fatalf("item shape: %v", item)
				}
				if _, err := time.Parse(time.RFC3339, item["created_at"].(string)); err != nil {
					t.Fatalf("created_at not RFC3339: %v", item["created_at"])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.names) {
				t.Fatalf("names = %v, want %v", got, tc.names)
			}
		})
	}
	for _, q := range []string{"?page_size=0", "?page_size=101", "?page_size=x", "?current_page=-1", "?type=team"} {
		if r := e.do("GET", "/v1/integrations"+q, h, nil); r.status != 400 || r.errField() == "" {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
	}
}

func TestModelsAndWorkspacesREST(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "m", "ai_provider_id": "openai", "key": "k"})
	r := e.do("PUT", "/v1/integrations/"+slug+"/models", h, map[string]any{"allow_all_models": false, "models": []any{
		map[string]any{"slug": "gpt-4o", "enabled": true},
		map[string]any{"slug": "ft:gpt-4o:acme", "enabled": false, "is_finetune": true, "base_model_slug": "gpt-4o"},
	}})
	if r.status != 200 || r.json["updated"] != float64(2) {
		t.Fatalf("put models: %d %s", r.status, r.body)
	}
	l := e.do("GET", "/v1/integrations/"+slug+"/models", h, nil)
	if l.json["total"] != float64(2) || l.json["object"] != "list" {
		t.Fatalf("list models: %s", l.body)
	}
	if g := e.do("GET", "/v1/integrations/"+slug, h, nil); g.json["allow_all_models"] != false {
		t.Fatalf("allow_all_models not saved: %s", g.body)
	}
	bad := []struct {
		body  any
		field string
	}{
		{map[string]any{"models": []any{map[string]any{"slug": "x"}}}, "models[0].enabled"},
		{map[string]any{"models": []any{map[string]any{"enabled": true}}}, "models[0].slug"},
		{map[string]any{"models": []any{map[string]any{"slug": "a", "enabled": true}, map[string]any{"slug": "a", "enabled": true}}}, "models[1].slug"},
		{map[string]any{"models": []any{map[string]any{"slug": "a", "enabled": true, "configurations": map[string]any{"custom_host": "gopher://x"}}}}, "models[0].configurations.custom_host"},
		{map[string]any{}, "models"},
	}
	for _, b := range bad {
		if r := e.do("PUT", "/v1/integrations/"+slug+"/models", h, b.body); r.status != 400 || r.errField() != b.field {
			t.Fatalf("bad models %v: %d %s", b.body, r.status, r.body)
		}
	}
	if d := e.do("DELETE", "/v1/integrations/"+slug+"/models?slugs=gpt-4o,nope", h, nil); d.json["deleted"] != float64(1) {
		t.Fatalf("delete models: %s", d.body)
	}
	if d := e.do("DELETE", "/v1/integrations/"+slug+"/models", h, nil); d.status != 400 || d.errField() != "slugs" {
		t.Fatalf("delete models without slugs: %s", d.body)
	}

	w := e.do("PUT", "/v1/integrations/"+slug+"/workspaces", h, map[string]any{"global_workspace_access": map[string]any{"enabled": true},
		"workspaces": []any{map[string]any{"id": "ws-1", "enabled": true, "usage_limits": map[string]any{"credit_limit": 10}}, map[string]any{"id": "ws-2", "enabled": false}}})
	if w.status != 200 {
		t.Fatalf("put workspaces: %d %s", w.status, w.body)
	}
	g := e.do("GET", "/v1/integrations/"+slug, h, nil)
	if g.json["workspace_count"] != float64(1) || g.json["global_workspace_access_settings"].(map[string]any)["enabled"] != true {
		t.Fatalf("detail after workspaces: %s", g.body)
	}
	w = e.do("PUT", "/v1/integrations/"+slug+"/workspaces", h, map[string]any{"override_existing_workspace_access": true,
		"workspaces": []any{map[string]any{"id": "ws-3", "enabled": true}}})
	if lw := e.do("GET", "/v1/integrations/"+slug+"/workspaces", h, nil); lw.json["total"] != float64(1) {
		t.Fatalf("override: %s", lw.body)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug+"/workspaces", h, map[string]any{"workspaces": []any{map[string]any{"id": "ws-3"}}}); r.status != 400 || r.errField() != "workspaces[0].enabled" {
		t.Fatalf("missing enabled: %s", r.body)
	}
	if d := e.do("DELETE", "/v1/integrations/"+slug, h, nil); d.status != 200 || d.json["deleted"] != true {
		t.Fatalf("delete: %s", d.body)
	}
	if g := e.do("GET", "/v1/integrations/"+slug+"/models", h, nil); g.status != 404 {
		t.Fatalf("models after delete: %d", g.status)
	}
}

func TestProvidersAndConfigurationMerge(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	p := e.do("GET", "/v1/providers", h, nil)
	if p.json["object"] != "list" || p.json["total"].(float64) < 9 {
		t.Fatalf("providers: %s", p.body)
	}
	if p := e.do("GET", "/v1/providers/azure-openai", h, nil); p.json["required_fields"] == nil {
		t.Fatalf("provider: %s", p.body)
	}
	_, slug := e.mustCreate(h, map[string]any{"name": "br", "ai_provider_id": "aws-bedrock",
		"configurations": map[string]any{"aws_region": "us-east-1", "aws_secret_access_key": "secret-aaaaaaaaaaaaaaaa1111"}})
	// Replace region only: the stored secret stays.
	u := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"configurations": map[string]any{"aws_region": "eu-west-1"}})
	conf := u.json["configurations"].(map[string]any)
	if conf["aws_region"] != "eu-west-1" || conf["masked_aws_secret_access_key"] != "sec****1111" {
		t.Fatalf("merge: %s", u.body)
	}
	// Removing a required field is refused and changes nothing.
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"configurations": map[string]any{"aws_region": nil}}); r.status != 400 || r.errField() != "configurations.aws_region" {
		t.Fatalf("remove required: %d %s", r.status, r.body)
	}
	// Removing the secret drops the sealed value too.
	e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"configurations": map[string]any{"aws_secret_access_key": nil}})
	it, _ := e.srv.store.Get(t.Context(), h2scope("acme"), slug)
	if secs, _ := e.srv.store.Secrets(t.Context(), it.ID); len(secs) != 0 {
		t.Fatalf("secret rows left: %v", secs)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"status": "archived"}); r.json["status"] != "archived" {
		t.Fatalf("archive: %s", r.body)
	}
}

// Replacing or deleting a model replaces or deletes its sealed header values, whatever
// characters its slug holds.
func TestModelSecretsFollowTheModel(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	id, slug := e.mustCreate(h, map[string]any{"name": "m", "ai_provider_id": "openai", "key": "k"})
	count := func() int {
		secs, _ := e.srv.store.Secrets(t.Context(), id)
		n := 0
		for _, s := range secs {
			if strings.HasPrefix(s.Field, "models/") {
				n++
			}
		}
		return n
	}
	put := func(hdrs map[string]any) {
		r := e.do("PUT", "/v1/integrations/"+slug+"/models", h, map[string]any{"models": []any{
			map[string]any{"slug": "gpt-4.1/mini", "enabled": true, "configurations": map[string]any{"custom_headers": hdrs}}}})
		if r.status != 200 {
			t.Fatalf("put: %s", r.body)
		}
	}
	put(map[string]any{"a": "1111111111111", "b": "2222222222222"})
	if c := count(); c != 2 {
		t.Fatalf("after first put: %d sealed", c)
	}
	put(map[string]any{"c": "3333333333333"})
	if c := count(); c != 1 {
		t.Fatalf("replaced model kept old header secrets: %d sealed", c)
	}
	if d := e.do("DELETE", "/v1/integrations/"+slug+"/models?slugs=gpt-4.1/mini", h, nil); d.json["deleted"] != float64(1) {
		t.Fatalf("delete: %s", d.body)
	}
	if c := count(); c != 0 {
		t.Fatalf("deleted model left %d sealed values", c)
	}
}

// Error bodies carry the request id the proxy sent (as the proxy's own errors do),
// and one the backend made up when none came.
func TestErrorBodiesCarryTheRequestID(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	h["X-Request-Id"] = "req-4f2a9c"
	r := e.create(h, map[string]any{"name": ""})
	if r.status != 400 || r.json["error"].(map[string]any)["request_id"] != "req-4f2a9c" {
		t.Fatalf("validation error: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/integrations/nope", e.as("acme", ""), nil)
	if rid, _ := r.json["error"].(map[string]any)["request_id"].(string); r.status != 404 || rid == "" {
		t.Fatalf("not found without a request id header: %d %s", r.status, r.body)
	}
}
