package proxy

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portcullis/portcullis/policies/principal"
)

// The hand-assembled assertion must be a JWT any standard library verifies, with every
// claim intact, for both algorithms and for claim values that need escaping.
func TestIdentityAssertionVerifies(t *testing.T) {
	dir := t.TempDir()
	callers := []principal.Caller{
		{Sub: "agent-1", Org: "acme", Workspace: "ws-1", Roles: []string{"agent", "operator"}},
		{Sub: "we\"ird\\sub\n\x01", Org: "ünïcode", Roles: nil},
		{Sub: "bad utf8 \xff", Org: "o"},
	}
	for _, alg := range []string{"HS256", "EdDSA"} {
		cfg := IdentityConfig{Alg: alg, SecretFile: filepath.Join(dir, "s"), KeyFile: filepath.Join(dir, "k.pem"), Audience: "up", TTL: time.Minute}
		s, err := NewIdentitySigner(cfg)
		if err != nil {
			t.Fatal(err)
		}
		keyFn := func(*jwt.Token) (any, error) {
			if alg == "HS256" {
				return s.Secret(), nil
			}
			return ed25519.PublicKey(s.PublicKey()), nil
		}
		for _, c := range callers {
			b, err := s.AppendSign(nil, &c, "req_1", "dec_1", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			tok := string(b)
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(tok, claims, keyFn, jwt.WithValidMethods([]string{alg}), jwt.WithIssuer("portcullis"),
				jwt.WithAudience("up"), jwt.WithExpirationRequired(), jwt.WithIssuedAt()); err != nil {
				t.Fatalf("%s: %q does not verify: %v", alg, tok, err)
			}
			wantSub := c.Sub
			if c.Sub == "bad utf8 \xff" {
				wantSub = "bad utf8 \uFFFD"
			}
			roles, _ := claims["roles"].([]any)
			if claims["sub"] != wantSub || claims["org"] != c.Org || len(roles) != len(c.Roles) || claims["rid"] != "req_1" || claims["did"] != "dec_1" {
				t.Fatalf("%s: claims %v for caller %+v", alg, claims, c)
			}
		}
	}
}

func BenchmarkIdentitySign(b *testing.B) {
	s, err := NewIdentitySigner(IdentityConfig{Alg: "HS256", SecretFile: filepath.Join(b.TempDir(), "s"), Audience: "up", TTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	c := &principal.Caller{Sub: "agent-1", Org: "acme", Workspace: "ws-1", Roles: []string{"agent"}}
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		if buf, err = s.AppendSign(buf[:0], c, "req_abc-1", "dec_abc-2", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
