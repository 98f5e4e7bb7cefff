package backend

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/ssrf"
	"github.com/portcullis/portcullis/backend/store"
)

const canary = "CANARY-7f3a9b2c4d5e6f708192a3b4c5d6e7f8"

// canaryParts are the whole canary and a middle slice no mask may show.
var canaryParts = []string{canary, canary[10:22]}

func assertNoCanary(t *testing.T, where string, data []byte) {
	t.Helper()
	for _, p := range canaryParts {
		if strings.Contains(string(data), p) {
			t.Fatalf("canary %q found in %s", p, where)
		}
	}
}

// Row 5: a canary stored through every surface and every secret spelling appears in
// no response, no log line, and no byte of the database, -wal or -shm file.
func TestCanaryNeverInClear(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{
		"name": "bedrock", "ai_provider_id": "aws-bedrock", "key": canary,
		"configurations": map[string]any{
			"aws_region":            "us-east-1",
			"aws_access_key_id":     "AKIAEXAMPLE",
			"aws_secret_access_key": canary,
			"AWS_Secret-Access-Key": canary,
			"custom_headers":        map[string]any{"X-Custom-Auth": canary, "x-trace": canary},
			"nested":                map[string]any{"deeper": []any{map[string]any{"clientSecret": canary, "PassWord": canary}}},
		},
	})
	if r := e.do("PUT", "/v1/integrations/"+slug+"/models", h, map[string]any{"models": []any{
		map[string]any{"slug": "claude", "enabled": true, "configurations": map[string]any{
			"custom_host": "https://example.com", "custom_headers": map[string]any{"Authorization": "Bearer " + canary}}},
	}}); r.status != 200 {
		t.Fatalf("put models: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"configurations": map[string]any{"Api_Token": canary}}); r.status != 200 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/ai/llm", h, map[string]any{"name": "llm", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
		"key": canary, "secret": canary, "workspaceId": "ws-1"}); r.status != 200 {
		t.Fatalf("ai/llm: %d %s", r.status, r.body)
	}
	cr := e.do("POST", "/integrations/credentials", h, map[string]any{"name": "pg", "provider": "postgresql", "auth_type": "user_password",
		"config":      map[string]any{"host": "db.example.com", "database": "app", "username": "app"},
		"credentials": map[string]any{"password": canary, "weird_field": canary}})
	if cr.status != 201 {
		t.Fatalf("credentials: %d %s", cr.status, cr.body)
	}
	// Bad input that carries the canary must not echo it either.
	e.create(h, map[string]any{"name": "x", "ai_provider_id": canary, "key": canary})
	e.do("POST", "/v1/integrations", h, `{"name":"y","ai_provider_id":"openai","key":"`+canary+`","bogus":"`+canary+`"}`)
	e.create(h, map[string]any{"name": "z", "ai_provider_id": "openai", "key": canary, "configurations": map[string]any{"custom_host": canary}})

	// Read everything back through every read surface.
	e.do("GET", "/v1/integrations/"+slug, h, nil)
	e.do("GET", "/v1/integrations", h, nil)
	e.do("GET", "/v1/integrations/"+slug+"/models", h, nil)
	e.do("GET", "/integrations/credentials/"+cr.json["id"].(string), h, nil)
	e.do("GET", "/integrations/credentials", h, nil)
	mc := e.mcpClient(t, h)
	for _, tool := range []string{"get_integration", "list_integration_models"} {
		res := mc.call(t, tool, map[string]any{"slug": slug})
		assertNoCanary(t, "MCP "+tool, res.raw)
	}

	got := e.do("GET", "/v1/integrations/"+slug, h, nil)
	conf := got.json["configurations"].(map[string]any)
	for _, k := range []string{"masked_aws_secret_access_key", "masked_AWS_Secret-Access-Key", "masked_Api_Token"} {
		if _, ok := conf[k]; !ok {
			t.Errorf("configurations lacks %s: %v", k, conf)
		}
	}
	if hdrs := conf["custom_headers"].(map[string]any); hdrs["masked_X-Custom-Auth"] == nil || hdrs["x-trace"] != nil {
		t.Errorf("custom_headers not masked: %v", hdrs)
	}
	if conf["aws_access_key_id"] != "AKIAEXAMPLE" {
		t.Errorf("non-secret field lost: %v", conf)
	}

	for i, b := range e.bodies {
		assertNoCanary(t, "response "+strconv.Itoa(i)+": "+b, []byte(b))
	}
	assertNoCanary(t, "logs", []byte(e.logs.String()))

	// The secrets are really there, sealed: they decrypt to the canary.
	it, _ := e.srv.store.Get(context.Background(), h2scope("acme"), slug)
	secs, _ := e.srv.store.Secrets(context.Background(), it.ID)
	opened := 0
	for _, s := range secs {
		pt, err := e.srv.keys.Open(s.Envelope, crypto.Binding{Org: "acme", IntegrationID: it.ID, Field: s.Field})
		if err != nil {
			t.Fatalf("open %s: %v", s.Field, err)
		}
		if strings.Contains(string(pt), canary) {
			opened++
		}
	}
	if opened < 8 {
		t.Fatalf("only %d sealed fields hold the canary; secrets were dropped rather than sealed", opened)
	}

	db := e.srv.store.Path()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		assertNoCanary(t, "file "+db+suffix, b)
	}
	if err := e.srv.store.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(db)
	assertNoCanary(t, "database after checkpoint", b)
}

// Row 16: reads are masked; update without key keeps the secret, with key replaces it.
func TestMaskedReadsAndKeyUpdate(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	key1 := "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAwxyz"
	id, slug := e.mustCreate(h, map[string]any{"name": "oa", "ai_provider_id": "openai", "key": key1})
	g := e.do("GET", "/v1/integrations/"+slug, h, nil)
	if g.json["masked_key"] != "sk-****wxyz" {
		t.Fatalf("masked_key = %v", g.json["masked_key"])
	}
	if strings.Contains(string(g.body), key1) || strings.Contains(string(g.body), `"key"`) {
		t.Fatalf("get leaks key: %s", g.body)
	}
	secret := func() string {
		secs, _ := e.srv.store.Secrets(context.Background(), id)
		for _, s := range secs {
			if s.Field == "key" {
				pt, err := e.srv.keys.Open(s.Envelope, crypto.Binding{Org: "acme", IntegrationID: id, Field: "key"})
				if err != nil {
					t.Fatal(err)
				}
				return string(pt)
			}
		}
		return ""
	}
	u := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"name": "renamed", "description": "d"})
	if u.status != 200 || u.json["masked_key"] != "sk-****wxyz" || secret() != key1 {
		t.Fatalf("update without key: %d %s secret kept=%v", u.status, u.body, secret() == key1)
	}
	key2 := "sk-proj-BBBBBBBBBBBBBBBBBBBBBBBBabcd"
	u = e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"key": key2})
	if u.status != 200 || u.json["masked_key"] != "sk-****abcd" || secret() != key2 {
		t.Fatalf("update with key: %d %s", u.status, u.body)
	}
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"key": ""}); r.status != 400 || r.errField() != "key" {
		t.Fatalf("empty key: %d %s", r.status, r.body)
	}
}

func TestMask(t *testing.T) {
	cases := map[string]string{
		"":                                   "****",
		"short":                              "****",
		"elevenchars":                        "****",
		"twelve-chars":                       "****hars",
		"sk-proj-abcdefghijklmnopqrstuvwxyz": "sk-****wxyz",
	}
	for in, want := range cases {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// Row 6 through the API: a ciphertext swapped between two integrations, a flipped bit
// or an unknown key id makes test-connection fail with secret_integrity, never succeed
// with the wrong secret.
func TestSwappedCiphertextIsAnError(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	id1, slug1 := e.mustCreate(h, map[string]any{"name": "a", "ai_provider_id": "openai", "key": "sk-aaaaaaaaaaaaaaaaaaaaaaaa"})
	id2, _ := e.mustCreate(h, map[string]any{"name": "b", "ai_provider_id": "openai", "key": "sk-bbbbbbbbbbbbbbbbbbbbbbbb"})
	ctx := context.Background()
	s1, _ := e.srv.store.Secrets(ctx, id1)
	s2, _ := e.srv.store.Secrets(ctx, id2)
	orig := s1[0]
	cases := []struct {
		name string
		env  crypto.Envelope
	}{
		{"swapped from other integration", s2[0].Envelope},
		{"flipped bit", crypto.Envelope{KeyID: orig.Envelope.KeyID, WrappedKey: orig.Envelope.WrappedKey,
			Ciphertext: append(append([]byte{}, orig.Envelope.Ciphertext[:15]...), append([]byte{orig.Envelope.Ciphertext[15] ^ 0x80}, orig.Envelope.Ciphertext[16:]...)...)}},
		{"unknown key id", crypto.Envelope{KeyID: "kek-ffffffffffffffff", WrappedKey: orig.Envelope.WrappedKey, Ciphertext: orig.Envelope.Ciphertext}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sec := orig
			sec.Envelope = tc.env
			if err := e.srv.store.PutSecretRaw(ctx, id1, sec); err != nil {
				t.Fatal(err)
			}
			r := e.do("POST", "/v1/integrations/"+slug1+"/test", h, nil)
			if r.status != 500 || r.json["error"].(map[string]any)["code"] != "secret_integrity" {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			it, _ := e.srv.store.Get(ctx, h2scope("acme"), slug1)
			if err := e.srv.verifySecrets(ctx, it); err == nil {
				t.Fatal("verifySecrets accepted a tampered record")
			}
		})
	}
}

func h2scope(org string) store.Scope { return store.Scope{Org: org} }

// Row 8 through the API: test-connection refuses private targets before any
// connection; a counting 127.0.0.1 server proves nothing was dialed.
func TestTestConnectionSSRF(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	var hits, targetHits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { targetHits.Add(1) }))
	defer target.Close()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, target.URL+"/", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())

	cases := []struct{ name, host string }{
		{"loopback", "http://127.0.0.1:" + port},
		{"decimal integer", "http://2130706433:" + port},
		{"ipv4-mapped", "http://[::ffff:127.0.0.1]:" + port},
		{"metadata", "http://169.254.169.254"},
		{"ula", "http://[fd00::1]"},
		{"name resolving to loopback", "http://localhost:" + port},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, slug := e.mustCreate(h, map[string]any{"name": "ssrf-" + strconv.Itoa(i), "ai_provider_id": "openai",
				"key": "sk-xxxxxxxxxxxxxxxxxxxx", "configurations": map[string]any{"custom_host": tc.host}})
			r := e.do("POST", "/v1/integrations/"+slug+"/test", h, nil)
			if r.status != 400 || r.errField() != "configurations.custom_host" || r.json["error"].(map[string]any)["code"] != "target_refused" {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			// The refusal names its cause, never the URL (which may carry credentials).
			if strings.Contains(r.errMessage(), "://") {
				t.Fatalf("refusal repeats the URL: %s", r.body)
			}
		})
	}
	// gopher:// never gets stored in the first place.
	if r := e.create(h, map[string]any{"name": "gopher", "ai_provider_id": "openai", "key": "k",
		"configurations": map[string]any{"custom_host": "gopher://127.0.0.1:" + port + "/_x"}}); r.status != 400 || r.errField() != "configurations.custom_host" {
		t.Fatalf("gopher: %d %s", r.status, r.body)
	}
	// Seed 004 test-before-save for a TCP provider.
	if r := e.do("POST", "/integrations/postgres/test-connection", h, map[string]any{"config": map[string]any{"host": "127.0.0.1", "port": port}}); r.status != 400 || r.errField() != "config.host" {
		t.Fatalf("tcp test: %d %s", r.status, r.body)
	}
	if hits.Load() != 0 || targetHits.Load() != 0 {
		t.Fatalf("server saw %d/%d requests, want 0", hits.Load(), targetHits.Load())
	}

	// Injected guard admitting only ts: reachable (positive control), and a redirect to
	// another local server is refused without following it.
	e.srv.guard = &ssrf.Guard{Timeout: e.cfg.TestConnTimeout, Allow: func(ap netip.AddrPort) bool {
		return ap.Addr().IsLoopback() && strconv.Itoa(int(ap.Port())) == port
	}}
	_, slug := e.mustCreate(h, map[string]any{"name": "ok", "ai_provider_id": "openai", "key": "sk-xxxxxxxxxxxxxxxxxxxx",
		"configurations": map[string]any{"custom_host": ts.URL}})
	if r := e.do("POST", "/v1/integrations/"+slug+"/test", h, nil); r.status != 200 || r.json["ok"] != true || r.json["status_code"] != float64(401) {
		t.Fatalf("allowed: %d %s", r.status, r.body)
	}
	_, slug = e.mustCreate(h, map[string]any{"name": "redir", "ai_provider_id": "openai", "key": "sk-xxxxxxxxxxxxxxxxxxxx",
		"configurations": map[string]any{"custom_host": ts.URL + "/redirect"}})
	if r := e.do("POST", "/v1/integrations/"+slug+"/test", h, nil); r.status != 400 || !strings.Contains(r.errMessage(), "redirect") {
		t.Fatalf("redirect: %d %s", r.status, r.body)
	}
	if hits.Load() != 2 || targetHits.Load() != 0 {
		t.Fatalf("hits = %d, target hits = %d; want 2 and 0", hits.Load(), targetHits.Load())
	}
}

// A password or passphrase is masked whole: a few of its characters narrow a guess
// far more than a few of a random API key's do.
func TestPasswordsAreMaskedWhole(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	_, slug := e.mustCreate(h, map[string]any{"name": "pw", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnopqrstuvwxyz",
		"configurations": map[string]any{"db_password": "correct-horse-battery", "SSH-Passphrase": "open sesame please now",
			"db_pwd": "Tr0ub4dor&3xyzabc", "extra": map[string]any{"password": "Tr0ub4dor&3xyz"},
			"api_token": "tok-abcdefghijklmnopqrstu"}})
	got := e.do("GET", "/v1/integrations/"+slug, h, nil)
	conf := got.json["configurations"].(map[string]any)
	if conf["masked_db_password"] != "****" || conf["masked_SSH-Passphrase"] != "****" || conf["masked_db_pwd"] != "****" ||
		conf["masked_extra"] != "****" {
		t.Fatalf("passwords not masked whole: %v", conf)
	}
	if conf["masked_api_token"] != "tok****rstu" || got.json["masked_key"] != "sk-****wxyz" {
		t.Fatalf("keys lost their Portkey-style mask: %v %v", got.json["masked_key"], conf)
	}
}

// A key sent as a path segment (a client's mistake) does not reach the log.
func TestPathSecretNotLogged(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	canary := "sk-proj-pathcanary0123456789"
	e.do("GET", "/v1/integrations/"+canary, h, nil)
	if strings.Contains(e.logs.String(), canary) || !strings.Contains(e.logs.String(), "/v1/integrations/hmac-sha256:") {
		t.Fatalf("log: %s", e.logs.String())
	}
}

// A blank key is no key: refused on create and on update, never stored as the secret.
func TestBlankKeyIsRefused(t *testing.T) {
	e := newEnv(t)
	h := e.as("acme", "")
	if r := e.create(h, map[string]any{"name": "blank", "ai_provider_id": "openai", "key": "   "}); r.status != 400 || r.errField() != "key" {
		t.Fatalf("create with a blank key: %d %s", r.status, r.body)
	}
	_, slug := e.mustCreate(h, map[string]any{"name": "ok", "ai_provider_id": "openai", "key": "sk-proj-abcdefghijklmnop1234"})
	if r := e.do("PUT", "/v1/integrations/"+slug, h, map[string]any{"key": " \t "}); r.status != 400 || r.errField() != "key" {
		t.Fatalf("update with a blank key: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/integrations?current_page=-1", h, nil); r.status != 400 || !strings.Contains(r.errMessage(), "from 1 to 1000000") {
		t.Fatalf("bad page: %d %s", r.status, r.body)
	}
}
