package backend

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/store"
)

func TestConfigValidateReportsEverything(t *testing.T) {
	c := Config{Listen: "nope", KEK: "short", PreviousKEKs: []string{"old:bad"}, MaxPerProvider: -1,
		Identity: IdentityConfig{Secret: []byte("x"), PublicKey: make([]byte, 32)}, TestConnTimeout: -1}
	c.SetDefaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, f := range []string{"listen", "kek", "previous_keks[0]", "max_per_provider", "identity: set exactly one", "identity.secret", "test_conn_timeout"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error lacks %q: %v", f, err)
		}
	}
	ok := Config{}
	ok.SetDefaults()
	if err := ok.Validate(); err != nil || ok.Listen != "127.0.0.1:8081" || ok.MaxPerProvider != 50 || ok.Identity.Audience != "portcullis-upstream" {
		t.Fatalf("defaults: %+v %v", ok, err)
	}
}

func TestGeneratedKEKFile(t *testing.T) {
	t.Setenv(EnvKEK, "")
	dir := t.TempDir()
	var logs syncBuffer
	cfg := Config{DataDir: dir}
	s, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	st, err := os.Stat(filepath.Join(dir, "kek.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kek.key: %v %v", st, err)
	}
	if !strings.Contains(logs.String(), "generated a key-encryption key") {
		t.Fatalf("no warning logged: %s", logs.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "kek.key"))
	if strings.Contains(logs.String(), strings.TrimSpace(string(b))) {
		t.Fatal("the KEK itself was logged")
	}
	// Reopen uses the same key; a world-readable key file is refused.
	s, err = New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_ = os.Chmod(filepath.Join(dir, "kek.key"), 0o644)
	if _, err := New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable kek accepted: %v", err)
	}
}

func TestEnvKEK(t *testing.T) {
	k := randKey(t)
	t.Setenv(EnvKEK, k)
	s, err := New(context.Background(), Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, _ := crypto.ParseKEK(k)
	if s.keys.PrimaryID() != crypto.KeyID(raw) {
		t.Fatal("env KEK not used")
	}
}

// Rotation: data written under KEK1 stays readable with KEK2 primary + KEK1 previous;
// after rewrap KEK2 alone opens everything.
func TestKeyRotationRewrap(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := randKey(t), randKey(t)
	e := newEnv(t, func(c *Config) { c.DataDir = dir; c.KEK = k1 })
	h := e.as("acme", "")
	for _, n := range []string{"a", "b"} {
		e.mustCreate(h, map[string]any{"name": n, "ai_provider_id": "aws-bedrock", "key": "sk-" + n + "aaaaaaaaaaaaaaaaaaaa",
			"configurations": map[string]any{"aws_region": "us-east-1", "aws_secret_access_key": "secret-" + n}})
	}
	e.ts.Close()
	_ = e.srv.Close()

	if _, err := Rewrap(context.Background(), Config{DataDir: dir, KEK: k2}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("rewrap without the old key succeeded")
	}
	n, err := Rewrap(context.Background(), Config{DataDir: dir, KEK: k2, PreviousKEKs: []string{"old:" + k1}}, slog.New(slog.DiscardHandler))
	if err != nil || n != 4 {
		t.Fatalf("rewrap = %d, %v; want 4", n, err)
	}
	if n, _ := Rewrap(context.Background(), Config{DataDir: dir, KEK: k2}, slog.New(slog.DiscardHandler)); n != 0 {
		t.Fatalf("second rewrap touched %d", n)
	}
	s, err := New(context.Background(), Config{DataDir: dir, KEK: k2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	its, _, _ := s.store.List(context.Background(), h2scope("acme"), storeAll())
	for i := range its {
		if err := s.verifySecrets(context.Background(), &its[i]); err != nil {
			t.Fatalf("after rewrap, new key alone fails: %v", err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "backend.db"))
	raw1, _ := crypto.ParseKEK(k1)
	if strings.Contains(string(b), crypto.KeyID(raw1)) {
		t.Fatal("old key id still referenced in the database after rewrap")
	}
}

func TestCreateServiceKeyCLI(t *testing.T) {
	dir := t.TempDir()
	key, err := CreateServiceKey(context.Background(), Config{DataDir: dir}, "acme", "ci", nil)
	if err != nil || !strings.HasPrefix(key, ServiceKeyPrefix) {
		t.Fatalf("key %q %v", key, err)
	}
	if _, err := CreateServiceKey(context.Background(), Config{DataDir: dir}, "bad org!", "", nil); err == nil || !strings.Contains(err.Error(), "org") {
		t.Fatalf("bad org: %v", err)
	}
	e := newEnv(t, func(c *Config) { c.DataDir = dir })
	if r := e.do("GET", "/v1/integrations", map[string]string{"x-portkey-api-key": key}, nil); r.status != 200 {
		t.Fatalf("cli key rejected: %d", r.status)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "backend.db"))
	if strings.Contains(string(b), key) {
		t.Fatal("service key stored in clear")
	}
}

func TestCustomCatalogAddsProvider(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cat.yaml")
	_ = os.WriteFile(p, []byte("providers:\n  - key: mailchimp\n    name: Mailchimp\n    category: Email\n    auth_types: [api_key]\n    required_fields: [key, server_prefix]\n"), 0o600)
	e := newEnv(t, func(c *Config) { c.CatalogPath = p })
	h := e.as("acme", "")
	if r := e.create(h, map[string]any{"name": "mc", "ai_provider_id": "mailchimp", "key": "k"}); r.status != 400 || r.errField() != "configurations.server_prefix" {
		t.Fatalf("row rules not applied: %s", r.body)
	}
	e.mustCreate(h, map[string]any{"name": "mc", "ai_provider_id": "mailchimp", "key": "k", "configurations": map[string]any{"server_prefix": "us6"}})
	if r := e.create(h, map[string]any{"name": "oa", "ai_provider_id": "openai", "key": "k"}); r.status != 400 || !strings.Contains(r.errMessage(), "known providers: mailchimp") {
		t.Fatalf("catalog not replaced: %s", r.body)
	}
}

func storeAll() store.ListFilter { return store.ListFilter{Limit: 1000} }
