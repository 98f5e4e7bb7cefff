package authn

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A claim named twice is refused, as a header parameter named twice is: verifier and
// caller mapping would otherwise read whichever the decoder kept.
func TestDuplicateClaimIsRefused(t *testing.T) {
	a := newAuth(t, nil)
	tok := signRawHS256(t, fmt.Sprintf(`{"sub":"alice","org":"acme","org":"globex","iss":%q,"aud":%q,"iat":%d,"exp":%d}`,
		testIssuer, testAudience, t0.Add(-time.Minute).Unix(), t0.Add(time.Hour).Unix()))
	_, err := a.Authenticate("Bearer " + tok)
	assertRefused(t, tok, err, CodeInvalidToken, descDuplicateClaim)
}

// signRawHS256 signs a literal claims JSON (for shapes jwt.MapClaims cannot hold, such as
// a name given twice) with the test secret.
func signRawHS256(t *testing.T, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(input, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

// A verified token is served from the cache for at most CacheTTL, then verified again, so
// a key removed from the JWKS or the key files stops already-seen tokens within it.
func TestCacheEntriesLiveAtMostCacheTTL(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.CacheTTL = 5 * time.Minute })
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, baseClaims()) // exp t0+1h
	if _, err := a.Authenticate("Bearer " + tok); err != nil {
		t.Fatal(err)
	}
	key := hashToken(tok)
	if a.cache.get(key, t0.Add(4*time.Minute).UnixNano()) == nil {
		t.Fatal("not served from the cache within CacheTTL")
	}
	if a.cache.get(key, t0.Add(6*time.Minute).UnixNano()) != nil {
		t.Fatal("served from the cache past CacheTTL (the token's exp is an hour away)")
	}
}

// A token whose exp lies past 2262 (where nanoseconds since 1970 overflow int64) is
// cached for CacheTTL like any other, not dropped or kept by an overflowed expiry.
func TestFarFutureExpIsCachedForCacheTTL(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.CacheTTL = 5 * time.Minute })
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, with(baseClaims(), "exp", maxNumericDate))
	if _, err := a.Authenticate("Bearer " + tok); err != nil {
		t.Fatal(err)
	}
	key := hashToken(tok)
	if a.cache.get(key, t0.Add(4*time.Minute).UnixNano()) == nil {
		t.Fatal("a token expiring in 9999 is not served from the cache within CacheTTL")
	}
	if a.cache.get(key, t0.Add(6*time.Minute).UnixNano()) != nil {
		t.Fatal("served from the cache past CacheTTL")
	}
}

// MaxTokenLifetime refuses a token that lives longer than allowed, from its iat (or from
// now without one); tokens within it pass.
func TestMaxTokenLifetime(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.MaxTokenLifetime = 24 * time.Hour })
	long := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, with(baseClaims(), "exp", t0.Add(48*time.Hour).Unix()))
	_, err := a.Authenticate("Bearer " + long)
	assertRefused(t, long, err, CodeInvalidToken, descTooLong)
	noIat := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, with(baseClaims(), "iat", nil, "exp", t0.Add(9000*time.Hour).Unix()))
	_, err = a.Authenticate("Bearer " + noIat)
	assertRefused(t, noIat, err, CodeInvalidToken, descTooLong)
	ok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, baseClaims())
	if _, err := a.Authenticate("Bearer " + ok); err != nil {
		t.Fatalf("a token within the cap: %v", err)
	}
}

// A claim named twice inside a nested claim (read through a dotted claim name) is
// refused too.
func TestNestedDuplicateClaimIsRefused(t *testing.T) {
	a := newAuth(t, func(c *Config) { c.Claims.Roles = "realm_access.roles" })
	tok := signRawHS256(t, fmt.Sprintf(`{"sub":"alice","org":"acme","realm_access":{"roles":["user"],"roles":["admin"]},"iss":%q,"aud":%q,"iat":%d,"exp":%d}`,
		testIssuer, testAudience, t0.Add(-time.Minute).Unix(), t0.Add(time.Hour).Unix()))
	_, err := a.Authenticate("Bearer " + tok)
	assertRefused(t, tok, err, CodeInvalidToken, descDuplicateClaim)
}
