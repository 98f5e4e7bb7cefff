package authn

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthenticate: Authenticate never panics, every refusal is an *Error, and anything
// accepted really is signed by one of our keys (checked here with the primitives
// directly, not through jwt).
func FuzzAuthenticate(f *testing.F) {
	k := testKeySet(f)
	good := baseClaims()
	f.Add("Bearer " + sign(f, jwt.SigningMethodES256, k.ec, nil, good))
	f.Add("Bearer " + sign(f, jwt.SigningMethodES256, k.ec, map[string]any{"kid": thumb(f, &k.ec.PublicKey)}, good))
	f.Add("Bearer " + sign(f, jwt.SigningMethodHS256, []byte(testSecret), nil, good))
	f.Add("Bearer " + sign(f, jwt.SigningMethodHS256, []byte(testSecret), map[string]any{"crit": []string{"x"}}, good))
	f.Add("Bearer " + rawToken(`{"alg":"none"}`, good, nil))
	f.Add("Bearer " + sign(f, jwt.SigningMethodES256, k.attacker, map[string]any{"jku": "https://evil"}, good))
	// Dates out of range: signed by our key, so only the date check stands between them
	// and acceptance.
	for _, name := range dateClaims {
		for _, v := range []any{1e19, 1e18, -1, json.RawMessage("9223372036854775807"), json.RawMessage("1e400")} {
			f.Add("Bearer " + sign(f, jwt.SigningMethodES256, k.ec, nil, with(good, name, v)))
		}
	}
	f.Add("Bearer a.b.c")
	f.Add("Basic x")
	f.Add("")
	a := newAuth(f, func(c *Config) { c.PublicKeyFiles = c.PublicKeyFiles[1:2] }) // EC key + HS256 only
	ecPub := &k.ec.PublicKey
	f.Fuzz(func(t *testing.T, header string) {
		id, err := a.Authenticate(header)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || (ae.Code != CodeInvalidToken && ae.Code != CodeInvalidRequest) {
				t.Fatalf("refusal is not an *Error with a known code: %T %v", err, err)
			}
			return
		}
		if id == nil || id.Caller.Sub == "" {
			t.Fatal("accepted without an identity")
		}
		for _, name := range dateClaims {
			if v, ok := id.Caller.Claims[name].(float64); ok && (v < 0 || v > maxNumericDate) {
				t.Fatalf("accepted %s %v, out of range", name, v)
			}
		}
		tok := header[len("bearer "):]
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token with %d segments", len(parts))
		}
		sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
		if err != nil {
			t.Fatal("accepted an undecodable signature")
		}
		input := parts[0] + "." + parts[1]
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write([]byte(input))
		if hmac.Equal(mac.Sum(nil), sig) {
			return
		}
		digest := sha256.Sum256([]byte(input))
		if len(sig) == 64 && ecdsa.Verify(ecPub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return
		}
		t.Fatalf("accepted a token not signed by our keys: %q", header)
	})
}
