package authn

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestCache(t *testing.T) {
	k := testKeySet(t)
	mk := func(exp time.Time, jti string) string {
		return sign(t, jwt.SigningMethodES256, k.ec, nil, with(baseClaims(), "exp", exp.Unix(), "jti", jti))
	}
	t.Run("hit returns the same identity", func(t *testing.T) {
		a := newAuth(t, nil)
		tok := mk(t0.Add(time.Hour), "a")
		id1, err := a.Authenticate("Bearer " + tok)
		if err != nil {
			t.Fatal(err)
		}
		id2, err := a.Authenticate("bearer " + tok)
		if err != nil {
			t.Fatal(err)
		}
		if id1 != id2 || a.cache.len() != 1 {
			t.Fatalf("second call was not a cache hit (len %d)", a.cache.len())
		}
	})
	t.Run("a different token never hits another's entry", func(t *testing.T) {
		a := newAuth(t, nil)
		tok := mk(t0.Add(time.Hour), "b")
		if _, err := a.Authenticate("Bearer " + tok); err != nil {
			t.Fatal(err)
		}
		i := len(tok) - 10
		repl := "A"
		if tok[i] == 'A' {
			repl = "B"
		}
		bad := tok[:i] + repl + tok[i+1:]
		_, err := a.Authenticate("Bearer " + bad)
		assertRefused(t, bad, err, CodeInvalidToken, descSignature)
	})
	t.Run("expired entry is not served and is evicted", func(t *testing.T) {
		a := newAuth(t, nil) // leeway 30s
		tok := mk(t0.Add(time.Minute), "c")
		if _, err := a.Authenticate("Bearer " + tok); err != nil {
			t.Fatal(err)
		}
		if a.cache.len() != 1 {
			t.Fatal("not cached")
		}
		// Past exp+leeway: a stale cache would still say yes.
		a.now = func() time.Time { return t0.Add(2 * time.Minute) }
		_, err := a.Authenticate("Bearer " + tok)
		assertRefused(t, tok, err, CodeInvalidToken, descExpired)
		if a.cache.len() != 0 {
			t.Fatalf("expired entry kept (len %d)", a.cache.len())
		}
	})
	t.Run("within leeway after exp: verified again, not cached", func(t *testing.T) {
		a := newAuth(t, nil)
		tok := mk(t0.Add(-10*time.Second), "d")
		if _, err := a.Authenticate("Bearer " + tok); err != nil {
			t.Fatal(err)
		}
		if a.cache.len() != 0 {
			t.Fatal("token past exp was cached")
		}
	})
	t.Run("bounded size", func(t *testing.T) {
		a := newAuth(t, func(c *Config) { c.CacheSize = 64 })
		for i := range 1000 {
			tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), nil, with(baseClaims(), "jti", fmt.Sprint(i)))
			if _, err := a.Authenticate("Bearer " + tok); err != nil {
				t.Fatal(err)
			}
		}
		if n := a.cache.len(); n > 64 || n < 32 {
			t.Fatalf("cache holds %d entries, want <= 64 and well used", n)
		}
	})
	t.Run("full cache prefers evicting expired entries", func(t *testing.T) {
		// Repeat: a random victim would hit a live entry 2 times in 3.
		for range 30 {
			c := newTokenCache(3 * cacheShards)                     // three entries per shard
			keyN := func(n byte) (k [32]byte) { k[31] = n; return } // all in shard 0
			c.put(keyN(1), &Identity{}, 100, 0)
			c.put(keyN(2), &Identity{}, 10, 0)
			c.put(keyN(3), &Identity{}, 100, 0)
			c.put(keyN(4), &Identity{}, 100, 50)
			if c.get(keyN(1), 60) == nil || c.get(keyN(3), 60) == nil || c.get(keyN(4), 60) == nil {
				t.Fatal("a live entry was evicted while an expired one was present")
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		a := newAuth(t, func(c *Config) { c.CacheSize = -1 })
		if a.cache != nil {
			t.Fatal("cache not disabled")
		}
		tok := mk(t0.Add(time.Hour), "e")
		id1, err1 := a.Authenticate("Bearer " + tok)
		id2, err2 := a.Authenticate("Bearer " + tok)
		if err1 != nil || err2 != nil || id1 == id2 {
			t.Fatalf("disabled cache: %v %v same=%v", err1, err2, id1 == id2)
		}
	})
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	a := newAuth(t, nil)
	k := testKeySet(t)
	h := "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, nil, baseClaims())
	if _, err := a.Authenticate(h); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = a.Authenticate(h) }); n != 0 {
		t.Fatalf("cache hit allocates %.1f times", n)
	}
}

// AuthenticateHeader (the proxy's path) answers from the cache without copying the
// header, and otherwise says exactly what Authenticate says.
func TestAuthenticateHeader(t *testing.T) {
	k := testKeySet(t)
	mk := func(exp time.Time, jti string) string {
		return sign(t, jwt.SigningMethodES256, k.ec, nil, with(baseClaims(), "exp", exp.Unix(), "jti", jti))
	}
	a := newAuth(t, nil)
	tok := mk(t0.Add(time.Minute), "h")
	h := []byte("Bearer " + tok)
	id1, err := a.AuthenticateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := a.AuthenticateHeader([]byte("BEARER " + tok))
	if err != nil || id2 != id1 {
		t.Fatalf("second call was not a cache hit: %v same=%v", err, id2 == id1)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = a.AuthenticateHeader(h) }); n != 0 {
		t.Fatalf("cache hit allocates %.1f times", n)
	}
	for _, bad := range []string{"", "Bearer", "Bearer  " + tok, "Basic " + tok, "Bearer " + tok + " x", "Bearer " + tok[:len(tok)-2]} {
		_, want := a.Authenticate(bad)
		_, got := a.AuthenticateHeader([]byte(bad))
		if want == nil || got == nil || got.Error() != want.Error() {
			t.Errorf("%q: AuthenticateHeader %v, Authenticate %v", bad, got, want)
		}
	}
	// A cached token past exp+leeway is refused, not served from the cache.
	a.now = func() time.Time { return t0.Add(2 * time.Minute) }
	_, err = a.AuthenticateHeader(h)
	assertRefused(t, tok, err, CodeInvalidToken, descExpired)
}

// CachedHeader knows only tokens already verified: nil before the first verification,
// for a token that failed, for another scheme, and once the entry has expired; the
// cached identity otherwise, without allocating.
func TestCachedHeaderPeeksWithoutVerifying(t *testing.T) {
	k := testKeySet(t)
	a := newAuth(t, nil)
	tok := sign(t, jwt.SigningMethodES256, k.ec, nil, with(baseClaims(), "exp", t0.Add(time.Minute).Unix(), "jti", "peek"))
	h := []byte("Bearer " + tok)
	if id := a.CachedHeader(h); id != nil {
		t.Fatal("an unverified token was reported as cached")
	}
	id, err := a.AuthenticateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.CachedHeader([]byte("bearer " + tok)); got != id {
		t.Fatalf("a verified token is not found in the cache: %v", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = a.CachedHeader(h) }); n != 0 {
		t.Fatalf("CachedHeader allocates %.1f times", n)
	}
	bad := []byte("Bearer " + tok[:len(tok)-2] + "xx")
	_, _ = a.AuthenticateHeader(bad)
	for _, h := range [][]byte{bad, []byte("Basic " + tok), nil, []byte("Bearer ")} {
		if a.CachedHeader(h) != nil {
			t.Errorf("%q reported as cached", h)
		}
	}
	a.now = func() time.Time { return t0.Add(2 * time.Minute) }
	if a.CachedHeader(h) != nil {
		t.Fatal("an expired cache entry was reported")
	}
}
