package authn

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwksServer is an IdP's JWKS endpoint on 127.0.0.1 whose key set and availability the
// test controls, counting every fetch.
type jwksServer struct {
	t    *testing.T
	srv  *httptest.Server
	hits atomic.Int64
	down atomic.Bool
	mu   sync.Mutex
	body []byte
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	s.srv.Listener = ln
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

type kidKey struct {
	kid string
	key crypto.PublicKey
	alg jwkset.ALG
}

func (s *jwksServer) serve(keys ...kidKey) {
	s.t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig}})
		if err != nil {
			s.t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), j); err != nil {
			s.t.Fatal(err)
		}
	}
	b, err := store.JSONPublic(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func newJWKSAuth(t *testing.T, url string, minRefresh, refresh time.Duration) *Authenticator {
	t.Helper()
	a, err := New(t.Context(), Config{
		JWKSURL: url, JWKSMinRefreshInterval: minRefresh, JWKSRefresh: refresh,
		Issuer: testIssuer, Audience: testAudience, CacheSize: -1,
	}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return t0 }
	t.Cleanup(a.Close)
	return a
}

func es256(t *testing.T, key *ecdsa.PrivateKey, kid, jti string) string {
	return sign(t, jwt.SigningMethodES256, key, map[string]any{"kid": kid}, with(baseClaims(), "jti", jti))
}

// TestJWKSRotation pins key rotation: a new kid is accepted after a JWKS refresh, a
// removed kid is refused, and cached keys keep working while the JWKS is down.
func TestJWKSRotation(t *testing.T) {
	k := testKeySet(t)
	k1, k2 := k.ec, mustEC()
	srv := newJWKSServer(t)
	srv.serve(kidKey{kid: "k1", key: &k1.PublicKey, alg: jwkset.AlgES256})
	const minRefresh = 50 * time.Millisecond
	a := newJWKSAuth(t, srv.srv.URL+"/jwks", minRefresh, time.Hour)
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("start-up fetches = %d, want 1", got)
	}
	seq := 0
	expect := func(t *testing.T, tok string, desc string) {
		seq++
		id, err := a.Authenticate("Bearer " + tok)
		if desc == "" {
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if id.Caller.Sub != "agent-1" {
				t.Fatalf("sub %q", id.Caller.Sub)
			}
			return
		}
		assertRefused(t, tok, err, CodeInvalidToken, desc)
	}
	_ = seq
	steps := []struct {
		note  string
		setup func()
		tok   func() string
		desc  string
	}{
		{note: "k1 accepted", tok: func() string { return es256(t, k1, "k1", "a") }},
		{note: "k2 before rotation refused", tok: func() string { return es256(t, k2, "k2", "b") }, desc: descUnknownKey},
		{note: "k2 accepted after the IdP publishes it", setup: func() {
			srv.serve(kidKey{kid: "k1", key: &k1.PublicKey, alg: jwkset.AlgES256}, kidKey{kid: "k2", key: &k2.PublicKey, alg: jwkset.AlgES256})
		}, tok: func() string { return es256(t, k2, "k2", "c") }},
		{note: "k1 still accepted during overlap", tok: func() string { return es256(t, k1, "k1", "d") }},
		{note: "k2 token signed by k1 refused", tok: func() string { return es256(t, k1, "k2", "e") }, desc: descSignature},
		{note: "k1 removed: refused after refresh", setup: func() {
			srv.serve(kidKey{kid: "k2", key: &k2.PublicKey, alg: jwkset.AlgES256})
			// Removal is seen at the next refresh; trigger one with an unknown kid.
			time.Sleep(minRefresh + 10*time.Millisecond)
			hits := srv.hits.Load()
			_, _ = a.Authenticate("Bearer " + es256(t, k2, "trigger", "t"))
			if srv.hits.Load() != hits+1 {
				t.Fatal("unknown kid did not refresh")
			}
		}, tok: func() string { return es256(t, k1, "k1", "f") }, desc: descUnknownKey},
		{note: "JWKS down: cached k2 still works", setup: func() { srv.down.Store(true) },
			tok: func() string { return es256(t, k2, "k2", "g") }},
		{note: "JWKS down: unknown kid refused, not an outage", tok: func() string { return es256(t, k1, "k3", "h") }, desc: descUnknownKey},
		{note: "JWKS down after failed refresh: k2 still works", tok: func() string { return es256(t, k2, "k2", "i") }},
		{note: "RS256 JWKS key accepted", setup: func() {
			srv.down.Store(false)
			srv.serve(kidKey{kid: "k2", key: &k2.PublicKey, alg: jwkset.AlgES256}, kidKey{kid: "r1", key: &k.rsa.PublicKey, alg: jwkset.AlgRS256})
		}, tok: func() string {
			return sign(t, jwt.SigningMethodRS256, k.rsa, map[string]any{"kid": "r1"}, with(baseClaims(), "jti", "j"))
		}},
		{note: "ES256 token naming an RSA JWK refused", tok: func() string { return es256(t, k2, "r1", "k") }, desc: descAlg},
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		time.Sleep(minRefresh + 10*time.Millisecond) // let the unknown-kid limiter allow one refresh
		t.Run(st.note, func(t *testing.T) { expect(t, st.tok(), st.desc) })
	}
}

// TestJWKSUnknownKidRateLimited: a flood of unknown kids costs one JWKS fetch per
// interval and is refused without waiting.
func TestJWKSUnknownKidRateLimited(t *testing.T) {
	srv := newJWKSServer(t)
	k := testKeySet(t)
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey})
	a := newJWKSAuth(t, srv.srv.URL, time.Hour, time.Hour)
	cases := []struct {
		note     string
		kid      string
		wantHits int64
	}{
		{note: "first unknown kid refreshes", kid: "u0", wantHits: 2},
		{note: "second unknown kid inside the interval does not", kid: "u1", wantHits: 2},
		{note: "same kid again does not", kid: "u0", wantHits: 2},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			tok := es256(t, k.attacker, tc.kid, tc.note)
			_, err := a.Authenticate("Bearer " + tok)
			assertRefused(t, tok, err, CodeInvalidToken, descUnknownKey)
			if got := srv.hits.Load(); got != tc.wantHits {
				t.Fatalf("JWKS fetches = %d, want %d", got, tc.wantHits)
			}
		})
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := es256(t, k.attacker, "flood-"+strings.Repeat("x", i%50), "f")
			if _, err := a.Authenticate("Bearer " + tok); err == nil {
				t.Error("unknown kid accepted")
			}
		}()
	}
	wg.Wait()
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetches after flood = %d, want 2", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("flood took %s; unknown kids must be refused without waiting", d)
	}
	// Known keys keep working throughout.
	if _, err := a.Authenticate("Bearer " + es256(t, k.ec, "k1", "ok")); err != nil {
		t.Fatal(err)
	}
}

// TestJWKSBackgroundRefresh: rotation also happens without any unknown-kid trigger.
func TestJWKSBackgroundRefresh(t *testing.T) {
	srv := newJWKSServer(t)
	k := testKeySet(t)
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey})
	a := newJWKSAuth(t, srv.srv.URL, time.Hour, time.Second)
	// Use up the unknown-kid refresh so only the background refresh can bring k2 in.
	_, _ = a.Authenticate("Bearer " + es256(t, k.attacker, "zz", "x"))
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey}, kidKey{kid: "k2", key: &k.attacker.PublicKey})
	before := srv.hits.Load()
	deadline := time.Now().Add(4 * time.Second)
	for srv.hits.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no background refresh within 4s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the fetch has been served; let it be stored
	if _, err := a.Authenticate("Bearer " + es256(t, k.attacker, "k2", "y")); err != nil {
		t.Fatalf("k2 after background refresh: %v", err)
	}
}

// TestJWKSDownAtStart: the proxy starts, refuses tokens, and recovers when the IdP does.
func TestJWKSDownAtStart(t *testing.T) {
	srv := newJWKSServer(t)
	k := testKeySet(t)
	srv.down.Store(true)
	a := newJWKSAuth(t, srv.srv.URL, 10*time.Millisecond, time.Hour)
	tok := es256(t, k.ec, "k1", "a")
	_, err := a.Authenticate("Bearer " + tok)
	assertRefused(t, tok, err, CodeInvalidToken, descUnknownKey)
	srv.down.Store(false)
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey})
	time.Sleep(20 * time.Millisecond)
	if _, err := a.Authenticate("Bearer " + tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestJWKSRotationBurst: when many requests carrying a newly published kid arrive at
// once, one refresh serves them all and none is refused.
func TestJWKSRotationBurst(t *testing.T) {
	srv := newJWKSServer(t)
	k := testKeySet(t)
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey})
	a := newJWKSAuth(t, srv.srv.URL, time.Hour, time.Hour)
	srv.serve(kidKey{kid: "k1", key: &k.ec.PublicKey}, kidKey{kid: "k2", key: &k.attacker.PublicKey})
	toks := make([]string, 50)
	for i := range toks {
		toks[i] = es256(t, k.attacker, "k2", strings.Repeat("j", i+1))
	}
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Authenticate("Bearer " + tok); err != nil {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := refused.Load(); n != 0 {
		t.Fatalf("%d of %d requests with the new kid refused", n, len(toks))
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetches = %d, want 2 (start-up + one refresh)", got)
	}
}

// TestJWKSEndpointHardening: the JWKS client follows no redirect and reads at most
// 1 MiB, so a moved or hostile endpoint yields no keys rather than surprising ones.
func TestJWKSEndpointHardening(t *testing.T) {
	k := testKeySet(t)
	good := newJWKSServer(t)
	good.serve(kidKey{kid: "k1", key: &k.ec.PublicKey})
	cases := []struct {
		note    string
		handler http.HandlerFunc
	}{
		{note: "redirect to a valid key set is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, good.srv.URL, http.StatusFound)
		}},
		{note: "body over 1 MiB is cut off", handler: func(w http.ResponseWriter, r *http.Request) {
			good.mu.Lock()
			b := good.body
			good.mu.Unlock()
			w.Write([]byte(strings.Repeat(" ", jwksMaxBody)))
			w.Write(b)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(tc.handler)
			srv.Listener = ln
			srv.Start()
			defer srv.Close()
			a := newJWKSAuth(t, srv.URL, time.Hour, time.Hour)
			tok := es256(t, k.ec, "k1", "x")
			_, err = a.Authenticate("Bearer " + tok)
			assertRefused(t, tok, err, CodeInvalidToken, descUnknownKey)
		})
	}
	// Control: the same key set served directly works.
	a := newJWKSAuth(t, good.srv.URL, time.Hour, time.Hour)
	if _, err := a.Authenticate("Bearer " + es256(t, k.ec, "k1", "y")); err != nil {
		t.Fatal(err)
	}
}

// A JWKS URL may carry a token in its query: a failing refresh
// logs the error the HTTP client gives, which repeats the URL, with the URL redacted.
func TestJWKSRefreshErrorsKeepTheURLsTokenOutOfTheLog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	u := "http://" + closed + "/jwks.json?token=canary-token"
	a, err := New(t.Context(), Config{JWKSURL: u, JWKSMinRefreshInterval: 10 * time.Millisecond, JWKSRefresh: time.Second,
		Issuer: testIssuer, Audience: testAudience, CacheSize: -1}, logger)
	if err != nil {
		if strings.Contains(err.Error(), "canary") {
			t.Fatalf("New's error carries the URL's token: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	time.Sleep(150 * time.Millisecond)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "refreshing JWKS failed") {
		t.Fatalf("no refresh failure was logged:\n%s", out)
	}
	if strings.Contains(out, "canary") {
		t.Fatalf("the JWKS URL's token reached the log:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
