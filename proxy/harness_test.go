package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

const callerSecret = "test-caller-secret-0123456789abcdef-0123456789"

// upstream records what reaches it. A test asserts both the caller's answer and what the
// upstream saw.
// Test policies live in testdata/.
//
//go:embed testdata/*.rego
var policyFiles embed.FS

func policyText(name string) string {
	b, err := policyFiles.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var (
	testPolicy      = policyText("default.rego")
	slugsPolicy     = policyText("slugs.rego")
	allowAllPolicy  = policyText("allow_all_tool_reason.rego")
	echoArgsPolicy  = policyText("echo_args.rego")
	refundPolicy    = policyText("refund.rego")
	sharedKeyPolicy = policyText("shared_key.rego")
	limitAllPolicy  = policyText("limit_all.rego")
	allowAll        = policyText("allow_all.rego")
)

type upstream struct {
	srv     *httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	headers []http.Header
	bodies  [][]byte
	handle  atomic.Pointer[func(w http.ResponseWriter, r *http.Request, body []byte)]
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.hits.Add(1)
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.bodies = append(u.bodies, body)
		u.mu.Unlock()
		if h := u.handle.Load(); h != nil {
			(*h)(w, r, body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), `"tools/list"`) {
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"visible"},{"name":"hidden"},{"name":"forbidden"},{"name":"echo"}]}}`)
			return
		}
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) setHandler(h func(w http.ResponseWriter, r *http.Request, body []byte)) {
	u.handle.Store(&h)
}

func (u *upstream) last() (http.Header, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.headers) == 0 {
		return nil, nil
	}
	return u.headers[len(u.headers)-1], u.bodies[len(u.bodies)-1]
}

type gateway struct {
	t         testing.TB
	url       string
	up        *upstream
	dir       string
	audit     *audit.Log
	approvals *approvals.Service
	identity  *proxy.IdentitySigner
	srv       *proxy.Server
	reg       *prometheus.Registry
	logs      *bytes.Buffer
	logMu     *sync.Mutex
}

type gwOptions struct {
	policy   string
	shadow   string // a candidate policy's source, evaluated beside the live one
	cfg      func(*proxy.Config)
	auditCfg func(*audit.Config)
	authCfg  func(*authn.Config)
	decider  func(proxy.Decider) proxy.Decider
	// approvalWait is approvals.wait_budget (default here 300ms).
	approvalWait time.Duration
	// approvalsNow is the approvals service's clock (time.Now when nil).
	approvalsNow func() time.Time
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newGateway(t testing.TB, o gwOptions) *gateway {
	t.Helper()
	ctx := context.Background()
	g := &gateway{t: t, up: newUpstream(t), dir: t.TempDir(), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	log := slog.New(slog.NewJSONHandler(lockedWriter{g.logMu, g.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.policy == "" {
		o.policy = testPolicy
	}
	popts := policies.Options{Modules: map[string]string{"test.rego": o.policy}, Timeout: 50 * time.Millisecond, Logger: log}
	if o.shadow != "" {
		popts.ShadowPath = filepath.Join(g.dir, "shadow.rego")
		if err := os.WriteFile(popts.ShadowPath, []byte(o.shadow), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	engine, err := policies.New(ctx, popts)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	acfg := audit.Config{}
	if o.auditCfg != nil {
		o.auditCfg(&acfg)
	}
	acfg.SetDefaults(g.dir)
	if g.audit, err = audit.Open(ctx, acfg, log); err != nil {
		t.Fatalf("audit: %v", err)
	}
	t.Cleanup(func() { g.audit.Close() })
	apcfg := approvals.Config{DBPath: filepath.Join(g.dir, "approvals.db")}
	apcfg.WaitBudget = o.approvalWait
	if apcfg.WaitBudget == 0 {
		apcfg.WaitBudget = 300 * time.Millisecond
	}
	apcfg.SetDefaults()
	if o.approvalsNow != nil {
		var st approvals.Store
		if st, err = approvals.OpenSQLite(ctx, apcfg.DBPath, log); err == nil {
			g.approvals = approvals.New(st, apcfg, log, o.approvalsNow)
		}
	} else {
		g.approvals, err = approvals.Open(ctx, apcfg, log)
	}
	if err != nil {
		t.Fatalf("approvals: %v", err)
	}
	t.Cleanup(func() { g.approvals.Close() })
	authCfg := authn.Config{HS256Secret: callerSecret, Issuer: "test", Audience: "portcullis"}
	if o.authCfg != nil {
		o.authCfg(&authCfg)
	}
	authCfg.SetDefaults()
	auth, err := authn.New(ctx, authCfg, log)
	if err != nil {
		t.Fatalf("authn: %v", err)
	}
	t.Cleanup(auth.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{Listen: ln.Addr().String()}
	cfg.MCP.Upstream.URL = g.up.srv.URL + "/mcp"
	cfg.REST.Upstream.URL = g.up.srv.URL
	cfg.ApprovalKeepAlive = 50 * time.Millisecond
	// The fake upstream has no scope endpoint: resolve nothing unless a test says how
	// (resource_test.go).
	cfg.Resources.Types = map[string]proxy.ResourceType{}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	cfg.SetDefaults(g.dir)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if g.identity, err = proxy.NewIdentitySigner(cfg.Identity); err != nil {
		t.Fatal(err)
	}
	var decider proxy.Decider = engine
	if o.decider != nil {
		decider = o.decider(engine)
	}
	g.reg = prometheus.NewRegistry()
	srv, err := proxy.New(cfg, proxy.Deps{Logger: log, Auth: auth, Policy: decider, Audit: g.audit, AuditQ: g.audit,
		Redactor: g.audit.Redactor(), Identity: g.identity, Limiter: ratelimit.NewMemory(ratelimit.MemoryConfig{}), Approvals: g.approvals,
		Registry: g.reg, Gatherer: g.reg})
	if err != nil {
		t.Fatal(err)
	}
	g.srv = srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	g.url = "http://" + ln.Addr().String()
	return g
}

// metricsText is the gateway's metrics in the text format, read from its registry (so
// also after Shutdown).
func (g *gateway) metricsText() string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func (g *gateway) logText() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.logs.String()
}

func token(t testing.TB, sub, org string, roles ...string) string {
	t.Helper()
	return tokenInSession(t, sub, org, "sess-1", roles...)
}

// tokenInSession is token with its own session id (sid).
func tokenInSession(t testing.TB, sub, org, sid string, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "org": org, "roles": roles, "sid": sid, "iss": "test", "aud": "portcullis",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(callerSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (g *gateway) do(method, path, tok, contentType, body string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// rawPost sends a JSON POST on its own connection, writing the body while it reads the
// answer, so a response sent before the body was consumed (413) is still read.
func (g *gateway) rawPost(path, tok, body string) (int, string) {
	g.t.Helper()
	resp, b := g.rawPostResp(path, tok, body)
	return resp.StatusCode, b
}

// rawPostResp is rawPost returning the whole response (its body already read).
func (g *gateway) rawPostResp(path, tok, body string) (*http.Response, string) {
	g.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		// A write error is expected once the gateway has answered and closed.
		_, _ = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			path, tok, len(body), body)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		g.t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (g *gateway) mcp(tok, body string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	return g.do("POST", "/mcp", tok, "application/json", body, append([]string{"Accept", "application/json"}, hdr...)...)
}

func toolCall(name, args string) string {
	return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
}

// auditRows reads every row through the export path auditors use.
func (g *gateway) auditRows() string {
	g.t.Helper()
	var buf bytes.Buffer
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf.Reset()
		if err := g.audit.Export(context.Background(), &buf, "jsonl", audit.Filter{}); err != nil {
			g.t.Fatalf("export: %v", err)
		}
		if buf.Len() > 0 || time.Now().After(deadline) {
			return buf.String()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func identitySecretOf(t *testing.T, dir string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "identity.secret"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 10 ms until it holds or timeout passes, and reports
// whether it held: the one way these tests wait for what is written asynchronously.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// auditEvents reads every row, decoded, through the export path auditors use.
func (g *gateway) auditEvents() []audit.Event {
	g.t.Helper()
	var out []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(g.auditRows()), "\n") {
		if line == "" {
			continue
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			g.t.Fatalf("audit row %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// eventsWhere waits (up to 2 s) until at least n rows satisfy keep, and returns those rows.
func (g *gateway) eventsWhere(n int, keep func(*audit.Event) bool) []audit.Event {
	g.t.Helper()
	var got []audit.Event
	eventually(2*time.Second, func() bool {
		got = got[:0]
		for _, ev := range g.auditEvents() {
			if keep(&ev) {
				got = append(got, ev)
			}
		}
		return len(got) >= n
	})
	return got
}

// rowsOf returns the rows of request rid once there are want of them, and a moment
// later, so a row there should not be has had time to arrive.
func (g *gateway) rowsOf(rid string, want int) []audit.Event {
	g.t.Helper()
	of := func(ev *audit.Event) bool { return ev.RequestID == rid }
	g.eventsWhere(want, of)
	time.Sleep(100 * time.Millisecond)
	return g.eventsWhere(0, of)
}
