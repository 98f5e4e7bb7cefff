package authn

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDevKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	key, created, err := LoadOrCreateDevKey(dir, discardLogger())
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	for _, c := range []struct {
		note string
		path string
		mode os.FileMode
	}{
		{"data dir", dir, 0o700},
		{"private key", DevKeyPath(dir), 0o600},
		{"public key", DevPublicKeyPath(dir), 0o644},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("%s: %v", c.note, err)
		}
		if st.Mode().Perm() != c.mode {
			t.Errorf("%s mode %04o, want %04o", c.note, st.Mode().Perm(), c.mode)
		}
	}
	raw, _ := os.ReadFile(DevKeyPath(dir))
	if !strings.HasPrefix(string(raw), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("not PKCS#8 PEM: %.30q", raw)
	}

	again, created, err := LoadOrCreateDevKey(dir, discardLogger())
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("reload: created=%v equal=%v err=%v", created, again.Equal(key), err)
	}

	// The public key file is rewritten from the private key if it was lost or replaced.
	if err := os.WriteFile(DevPublicKeyPath(dir), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateDevKey(dir, discardLogger()); err != nil {
		t.Fatal(err)
	}
	pub, err := loadPublicKeyFile(DevPublicKeyPath(dir))
	if err != nil || !key.PublicKey.Equal(pub) {
		t.Fatalf("public key file does not match: %v", err)
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o666} {
		if err := os.Chmod(DevKeyPath(dir), mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateDevKey(dir, discardLogger()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %04o: want refusal, got %v", mode, err)
		}
	}
}

// TestMintVerifies: what `portcullis token` mints is what `portcullis serve` accepts
// with its default config (dev public key file, dev issuer and audience).
func TestMintVerifies(t *testing.T) {
	k := testKeySet(t)
	dir := t.TempDir()
	dev, _, err := LoadOrCreateDevKey(dir, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), Config{
		PublicKeyFiles: []string{
			DevPublicKeyPath(dir),
			"rsa1=" + writePubPEM(t, dir, "rsa.pem", &k.rsa.PublicKey),
			"ed1=" + writePubPEM(t, dir, "ed.pem", k.ed.Public()),
		},
		Issuer: DevIssuer, Audience: DevAudience,
	}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	opts := MintOptions{Sub: "agent-1", Org: "acme", Workspace: "ws-1", Session: "s1", Roles: []string{"agent", "operator"},
		TTL: time.Hour, Issuer: DevIssuer, Audience: DevAudience, Extra: map[string]any{"team": "blue"}}
	cases := []struct {
		note string
		key  crypto.Signer
		kid  string
	}{
		{"ES256 dev key", dev, thumb(t, &dev.PublicKey)},
		{"RS256", k.rsa, "rsa1"},
		{"EdDSA", k.ed, "ed1"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			tok, err := Mint(tc.key, tc.kid, opts)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.Authenticate("Bearer " + tok)
			if err != nil {
				t.Fatal(err)
			}
			c := id.Caller
			if c.Sub != "agent-1" || c.Org != "acme" || c.Workspace != "ws-1" || c.Session != "s1" ||
				!slices.Equal(c.Roles, opts.Roles) || c.Claims["team"] != "blue" || len(id.TokenID) != 32 {
				t.Fatalf("identity = %+v", id)
			}
			if d := time.Until(id.Expires); d < 59*time.Minute || d > time.Hour {
				t.Fatalf("expires in %s", d)
			}
		})
	}

	_, edPriv, _ := ed25519.GenerateKey(nil)
	bad := []struct {
		note string
		key  crypto.Signer
		o    MintOptions
		want string
	}{
		{"no sub", dev, MintOptions{TTL: time.Hour}, "sub is required"},
		{"zero ttl", dev, MintOptions{Sub: "a"}, "ttl"},
		{"extra overrides exp", dev, MintOptions{Sub: "a", TTL: time.Hour, Extra: map[string]any{"exp": 1}}, `"exp"`},
		{"extra overrides sub", edPriv, MintOptions{Sub: "a", TTL: time.Hour, Extra: map[string]any{"sub": "root"}}, `"sub"`},
	}
	for _, tc := range bad {
		t.Run(tc.note, func(t *testing.T) {
			if _, err := Mint(tc.key, "", tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}
