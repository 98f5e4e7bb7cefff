package console_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/console"
)

// testPolicy holds deletes for approval by the approver role, denies "forbidden" and
// allows the rest.
const testPolicy = `package portcullis

import rego.v1

default decision := {"action": "allow", "reason": "reads are fine"}

decision := {"action": "require_approval", "reason": "deletes need a human", "approval": {"approvers": ["role:approver"], "ttl": "15m"}} if input.tool == "delete_integration"

decision := {"action": "deny", "reason": "forbidden tool"} if input.tool == "forbidden"

decision := {"action": "deny", "reason": sprintf("tool %s is not on the list", [input.tool])} if startswith(input.tool, "<")
`

const callerSecret = "console-test-caller-secret-0123456789abcdef"

// stack is a proxy with the console mounted, in front of a fake MCP upstream.
type stack struct {
	t         testing.TB
	url       string
	audit     *audit.Log
	approvals *approvals.Service
	engine    *policies.Engine
	console   *console.Console
	upstream  atomic.Int64
}

type stackOptions struct {
	console func(*console.Config)
	deps    func(*console.Deps)
	wait    time.Duration
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := &stack{t: t}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		st.upstream.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"integration deleted"}]}}`)
	}))
	t.Cleanup(up.Close)
	var err error
	if st.engine, err = policies.New(ctx, policies.Options{Modules: map[string]string{"test.rego": testPolicy}, Logger: log}); err != nil {
		t.Fatal(err)
	}
	acfg := audit.Config{}
	acfg.SetDefaults(dir)
	if st.audit, err = audit.Open(ctx, acfg, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.audit.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st.url = "http://" + ln.Addr().String()
	apcfg := approvals.Config{DBPath: filepath.Join(dir, "approvals.db"), ConsoleURL: st.url + "/console", WaitBudget: o.wait}
	if apcfg.WaitBudget == 0 {
		apcfg.WaitBudget = 300 * time.Millisecond
	}
	apcfg.SetDefaults()
	if st.approvals, err = approvals.Open(ctx, apcfg, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.approvals.Close() })
	authCfg := authn.Config{HS256Secret: callerSecret, Issuer: "test", Audience: "portcullis"}
	authCfg.SetDefaults()
	auth, err := authn.New(ctx, authCfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	cfg := proxy.Config{Listen: ln.Addr().String()}
	cfg.MCP.Upstream.URL = up.URL + "/mcp"
	cfg.REST.Upstream.URL = up.URL
	// The fake upstream has no scope endpoint: resolve nothing (proxy.resources).
	cfg.Resources.Types = map[string]proxy.ResourceType{}
	cfg.SetDefaults(dir)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	identity, err := proxy.NewIdentitySigner(cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	ccfg := console.Config{}
	if o.console != nil {
		o.console(&ccfg)
	}
	ccfg.SetDefaults(cfg.PublicURL)
	if err := ccfg.Validate(); err != nil {
		t.Fatal(err)
	}
	deps := console.Deps{Logger: log, Auth: auth, Approvals: st.approvals, Audit: st.audit, Policy: st.engine,
		Input: proxy.NewInputRebuilder(cfg).Input,
		Verify: func(ctx context.Context) (audit.Report, error) {
			key, err := audit.LoadSigningKey(acfg.SigningKeyPath)
			if err != nil {
				return audit.Report{}, err
			}
			return audit.Verify(ctx, acfg.Path, key.Public().(ed25519.PublicKey))
		}}
	if o.deps != nil {
		o.deps(&deps)
	}
	if st.console, err = console.New(ctx, ccfg, deps); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.console.Close() })
	srv, err := proxy.New(cfg, proxy.Deps{Logger: log, Auth: auth, Policy: st.engine, Audit: st.audit, AuditQ: st.audit,
		Redactor: st.audit.Redactor(), Identity: identity, Approvals: st.approvals, Console: st.console})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return st
}

func token(t testing.TB, sub, org string, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "org": org, "roles": roles, "iss": "test", "aud": "portcullis",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(callerSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mcpCall makes an agent's tools/call and returns the status and body.
func (st *stack) mcpCall(tok, tool, args string) (int, string) {
	name, _ := json.Marshal(tool)
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":` + string(name) + `,"arguments":` + args + `}}`
	req, _ := http.NewRequest("POST", st.url+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		st.t.Errorf("mcp call: %v", err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pending waits for a pending approval of tool and returns its id.
func (st *stack) pending(org, tool string) string {
	st.t.Helper()
	var id string
	eventually(st.t, 5*time.Second, func() bool {
		rows, err := st.approvals.List(context.Background(), approvals.ListFilter{Status: approvals.StatusPending, Org: org})
		if err != nil {
			st.t.Fatal(err)
		}
		for _, a := range rows {
			if a.Tool == tool {
				id = a.ID
				return true
			}
		}
		return false
	}, "a pending approval of "+tool)
	return id
}

func eventually(t testing.TB, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// client is a person's browser without the browser: a cookie jar and the console's
// Origin on state changes.
type client struct {
	t      testing.TB
	st     *stack
	cookie string // the session cookie's value
	csrf   string
}

func (st *stack) signIn(tok string) *client {
	st.t.Helper()
	c := &client{t: st.t, st: st}
	status, body := c.do("POST", "/console/auth/token", `{"token":"`+tok+`"}`, st.url)
	if status != 200 {
		st.t.Fatalf("sign-in: %d %s", status, body)
	}
	if c.cookie == "" {
		st.t.Fatal("sign-in set no session cookie")
	}
	var r struct {
		Data struct {
			CSRF string `json:"csrf_token"`
		} `json:"data"`
	}
	_ = json.Unmarshal([]byte(body), &r)
	c.csrf = r.Data.CSRF
	return c
}

// do sends a request with the session cookie (set by hand: Go's cookie jar keeps Secure
// cookies off plain http, and the test server is http on loopback), origin as Origin and
// the CSRF token. A Set-Cookie of the session cookie in the answer replaces it.
func (c *client) do(method, path, body, origin string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.st.url+path, strings.NewReader(body))
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "portcullis_console", Value: c.cookie})
	}
	if c.csrf != "" && method != "GET" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "portcullis_console" {
			c.cookie = ck.Value
		}
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) get(path string) (int, string) { return c.do("GET", path, "", "") }

func (c *client) post(path, body string) (int, string) { return c.do("POST", path, body, c.st.url) }

// mustQuery reads the newest rows of the trail, every org.
func mustQuery(t testing.TB, st *stack) []audit.Event {
	t.Helper()
	p, err := st.audit.Query(context.Background(), audit.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return p.Events
}
