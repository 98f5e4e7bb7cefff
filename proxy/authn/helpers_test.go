package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// t0 is the fixed "now" of tests that inject a clock.
var t0 = time.Unix(1_800_000_000, 0)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "portcullis"
	testSecret   = "0123456789abcdef0123456789abcdef-test-secret"
)

type testKeys struct {
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	ed       ed25519.PrivateKey
	attacker *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

// testKeySet generates keys once per test binary: RSA generation is slow.
func testKeySet(t testing.TB) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		keys.ec = mustEC()
		keys.attacker = mustEC()
		if _, keys.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keys
}

func mustEC() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writePubPEM(t testing.TB, dir, name string, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pubPEMBytes(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func thumb(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	k, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newAuth builds an Authenticator over the test keys, with a fixed clock at t0:
// RSA file with kid "rsa1", EC file with its thumbprint kid, Ed25519 file with kid "ed1",
// HS256 secret, issuer and audience checked.
func newAuth(t testing.TB, mutate func(*Config)) *Authenticator {
	t.Helper()
	k := testKeySet(t)
	dir := t.TempDir()
	cfg := Config{
		HS256Secret: testSecret,
		PublicKeyFiles: []string{
			"rsa1=" + writePubPEM(t, dir, "rsa.pem", &k.rsa.PublicKey),
			writePubPEM(t, dir, "ec.pem", &k.ec.PublicKey),
			"ed1=" + writePubPEM(t, dir, "ed.pem", k.ed.Public()),
		},
		Issuer:   testIssuer,
		Audience: testAudience,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(context.Background(), cfg, discardLogger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a.now = func() time.Time { return t0 }
	t.Cleanup(a.Close)
	return a
}

// baseClaims are valid at t0 for newAuth's config.
func baseClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "agent-1", "org": "acme", "workspace": "ws-1", "roles": []any{"agent", "operator"},
		"sid": "s-1", "jti": "j-1", "iss": testIssuer, "aud": testAudience,
		"iat": t0.Add(-time.Minute).Unix(), "exp": t0.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// sign signs claims with method/key; extra header fields are set as given (nil deletes).
func sign(t testing.TB, m jwt.SigningMethod, key any, hdr map[string]any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

// rawToken assembles a token from literal JSON header and claims and a raw signature,
// for shapes jwt.Token cannot produce (duplicate keys, alg none).
func rawToken(header string, claims jwt.MapClaims, sig []byte) string {
	cj, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc(cj) + "." + enc(sig)
}

// signRaw signs a literal header JSON with ES256 (for headers jwt would normalise).
func signRawES256(t testing.TB, key *ecdsa.PrivateKey, header string, claims jwt.MapClaims) string {
	t.Helper()
	cj, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc(cj)
	sig, err := jwt.SigningMethodES256.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

var rawURL = base64.RawURLEncoding

type rsaPub struct {
	n string
	e int
}

func (p rsaPub) key(t testing.TB) *rsa.PublicKey {
	t.Helper()
	nb, err := rawURL.DecodeString(p.n)
	if err != nil {
		t.Fatal(err)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: p.e}
}

func writeFile(t testing.TB, content string, mode os.FileMode) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "f-*")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	if err := os.Chmod(f.Name(), mode); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// rsaKey makes small RSA keys that crypto/rsa refuses to generate (< 1024 bits is
// refused by GenerateKey in recent Go, 1024 still works under GODEBUG defaults).
func rsaKey(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) }
