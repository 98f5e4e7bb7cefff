package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testEnv struct {
	t      *testing.T
	srv    *Server
	ts     *httptest.Server
	cfg    Config
	secret []byte
	logs   *syncBuffer
	// bodies holds every response body seen, for canary searches.
	mu     sync.Mutex
	bodies []string
}

func randKey(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func newEnv(t *testing.T, mutate ...func(*Config)) *testEnv {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cfg := Config{DataDir: t.TempDir(), KEK: randKey(t), TestConnTimeout: 2 * time.Second}
	cfg.Identity.Secret = secret
	for _, m := range mutate {
		m(&cfg)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	e := &testEnv{t: t, srv: srv, ts: ts, cfg: cfg, secret: secret, logs: logs}
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Close()
	})
	return e
}

// token mints an identity assertion the way the proxy does.
func (e *testEnv) token(org, ws string, mutate ...func(jwt.MapClaims)) string {
	now := time.Now()
	cl := jwt.MapClaims{"iss": "portcullis", "aud": "portcullis-upstream", "sub": "agent-1", "org": org, "ws": ws,
		"roles": []string{"agent"}, "rid": "r1", "did": "d1", "iat": now.Unix(), "exp": now.Add(60 * time.Second).Unix(), "jti": "j1"}
	for _, m := range mutate {
		m(cl)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, cl).SignedString(e.secret)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type resp struct {
	status int
	body   []byte
	json   map[string]any
}

func (r resp) errField() string {
	if e, ok := r.json["error"].(map[string]any); ok {
		f, _ := e["field"].(string)
		return f
	}
	return ""
}

func (r resp) errMessage() string {
	if e, ok := r.json["error"].(map[string]any); ok {
		m, _ := e["message"].(string)
		return m
	}
	return ""
}

func (e *testEnv) do(method, path string, hdr map[string]string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	e.mu.Lock()
	e.bodies = append(e.bodies, string(b))
	e.mu.Unlock()
	r := resp{status: res.StatusCode, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

// as returns headers authenticating as org (and workspace) via the identity assertion.
func (e *testEnv) as(org, ws string) map[string]string {
	return map[string]string{IdentityHeader: e.token(org, ws)}
}

func (e *testEnv) create(h map[string]string, body map[string]any) resp {
	e.t.Helper()
	return e.do("POST", "/v1/integrations", h, body)
}

func (e *testEnv) mustCreate(h map[string]string, body map[string]any) (id, slug string) {
	e.t.Helper()
	r := e.create(h, body)
	if r.status != 200 {
		e.t.Fatalf("create: %d %s", r.status, r.body)
	}
	return r.json["id"].(string), r.json["slug"].(string)
}

// rawDBBytes is every byte of the store's database, -wal and -shm files.
func (e *testEnv) rawDBBytes(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	db := e.srv.store.Path()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(db + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		sb.Write(b)
	}
	return sb.String()
}
