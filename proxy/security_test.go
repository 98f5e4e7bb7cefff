package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
)

// Strict JWT at the gateway: every refused token gets 401 with WWW-Authenticate
// and the upstream sees nothing. (The full JWT corpus is in proxy/authn.)
func TestUnauthenticatedCallsNeverReachUpstream(t *testing.T) {
	g := newGateway(t, gwOptions{})
	good := token(t, "agent-1", "acme", "agent")
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "org": "acme", "iss": "test", "aud": "portcullis",
		"exp": time.Now().Add(-time.Hour).Unix()}).SignedString([]byte(callerSecret))
	wrongAud, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "org": "acme", "iss": "test", "aud": "other",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(callerSecret))
	parts := strings.Split(good, ".")
	cases := []struct {
		note   string
		path   string
		header string
	}{
		{"no header", "/mcp", ""},
		{"basic auth", "/mcp", "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
		{"alg none", "/mcp", "Bearer " + noneTok},
		{"expired", "/mcp", "Bearer " + expired},
		{"wrong audience", "/mcp", "Bearer " + wrongAud},
		{"stripped signature", "/mcp", "Bearer " + parts[0] + "." + parts[1] + "."},
		{"two segments", "/mcp", "Bearer " + parts[0] + "." + parts[1]},
		{"four segments", "/mcp", "Bearer " + good + ".x"},
		{"token in query string", "/mcp?access_token=" + good, ""},
		{"valid header plus query token", "/mcp?access_token=" + good, "Bearer " + good},
		{"rest surface", "/v1/integrations", ""},
		{"admin api", "/admin/v1/approvals", ""},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			before := g.up.hits.Load()
			req, _ := http.NewRequest("POST", g.url+tc.path, strings.NewReader(toolCall("echo", `{}`)))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
			}
			if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, "resource_metadata=") {
				t.Fatalf("WWW-Authenticate = %q", wa)
			}
			if strings.Contains(string(body), parts[2]) {
				t.Fatalf("response echoes the token: %s", body)
			}
			if n := g.up.hits.Load() - before; n != 0 {
				t.Fatalf("upstream hit %d times", n)
			}
		})
	}
}

// No token passthrough: the caller's token never goes upstream; the proxy's assertion does.
func TestNoTokenPassthrough(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	resp, body := g.mcp(tok, toolCall("echo", `{"x":1}`), "X-Portcullis-Identity", "forged")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h, _ := g.up.last()
	if h.Get("Authorization") != "" {
		t.Fatalf("upstream received Authorization %q", h.Get("Authorization"))
	}
	if strings.Contains(fmt.Sprint(h), tok) {
		t.Fatal("upstream headers contain the caller's token")
	}
	assertion := h.Get(proxy.IdentityHeader)
	if assertion == "" || assertion == "forged" {
		t.Fatalf("identity header = %q", assertion)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(*jwt.Token) (any, error) { return identitySecretOf(t, g.dir), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("portcullis"), jwt.WithAudience("portcullis-upstream"), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if claims["sub"] != "agent-1" || claims["org"] != "acme" || claims["rid"] != resp.Header.Get("X-Request-Id") || claims["did"] == "" {
		t.Fatalf("assertion claims = %v (request id %s)", claims, resp.Header.Get("X-Request-Id"))
	}
	exp, _ := claims.GetExpirationTime()
	if time.Until(exp.Time) > 61*time.Second {
		t.Fatalf("assertion lives until %v: too long", exp)
	}
}

// Policy fails closed: every way policy evaluation can fail is a deny, audited as a policy
// error, and nothing is forwarded.
func TestPolicyFailsClosed(t *testing.T) {
	undefined := "package portcullis\n\nimport rego.v1\n\ndecision := {\"action\": \"allow\"} if input.tool == \"echo\"\n"
	cases := []struct {
		note   string
		policy string
		tool   string
	}{
		{"undefined decision", undefined, "other"},
		{"conflicting rules (runtime error)", testPolicy, "conflict"},
		{"evaluation past its deadline", testPolicy, "slow"},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			g := newGateway(t, gwOptions{policy: tc.policy})
			resp, body := g.mcp(token(t, "a", "acme", "agent"), toolCall(tc.tool, `{}`))
			if resp.StatusCode != 200 || !strings.Contains(body, `"isError":true`) || !strings.Contains(body, "policy_error") {
				t.Fatalf("status %d body %s: want an isError policy_error result", resp.StatusCode, body)
			}
			if n := g.up.hits.Load(); n != 0 {
				t.Fatalf("upstream hit %d times", n)
			}
			if rows := g.auditRows(); !strings.Contains(rows, `"policy_error"`) {
				t.Fatalf("audit has no policy_error row: %s", rows)
			}
		})
	}
	t.Run("bad policy at start", func(t *testing.T) {
		_, err := policies.New(context.Background(), policies.Options{Modules: map[string]string{"bad.rego": "package portcullis\n\ndecision := {"}})
		if err == nil {
			t.Fatal("a policy that does not compile was accepted")
		}
	})
}

// A policy deny reaches the agent with the policy's reason, on both surfaces.
func TestDenyShowsReason(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	resp, body := g.mcp(tok, toolCall("forbidden", `{}`))
	if resp.StatusCode != 200 || !strings.Contains(body, `"isError":true`) || !strings.Contains(body, "forbidden: ask a human operator") {
		t.Fatalf("MCP deny: %d %s", resp.StatusCode, body)
	}
	resp, body = g.do("POST", "/v1/unmapped", tok, "application/json", `{}`)
	if resp.StatusCode != 403 || !strings.Contains(body, "no rule allows this tool") || !strings.Contains(body, resp.Header.Get("X-Request-Id")) {
		t.Fatalf("REST deny: %d %s", resp.StatusCode, body)
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	rows := g.auditRows()
	if !strings.Contains(rows, `"http:POST /v1/unmapped"`) || !strings.Contains(rows, `"deny"`) {
		t.Fatalf("audit rows missing the deny: %s", rows)
	}
}

// One reading of a request: what can be read two ways is refused before policy, and the upstream
// receives exactly the bytes that were evaluated.
func TestOneReadingOfARequest(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	deep := strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33)
	cases := []struct {
		note   string
		path   string
		body   string
		status int
	}{
		{"duplicate key mcp", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"forbidden","arguments":{}}}`, 400},
		{"duplicate argument key", "/mcp", toolCall("echo", `{"k":1,"k":2}`), 400},
		{"depth over 32", "/mcp", toolCall("echo", deep), 400},
		{"invalid utf-8", "/mcp", toolCall("echo", "{\"k\":\"\xff\"}"), 400},
		{"lone surrogate", "/mcp", toolCall("echo", `{"k":"\ud800"}`), 400},
		{"not json-rpc", "/mcp", `{"id":1,"method":"tools/call"}`, 400},
		{"arguments not an object", "/mcp", toolCall("echo", `[1]`), 400},
		{"duplicate key rest", "/v1/integrations", `{"name":"a","name":"b","ai_provider_id":"openai"}`, 400},
		{"body over limit", "/mcp", toolCall("echo", `{"k":"`+strings.Repeat("a", 300<<10)+`"}`), 413},
	}
	for _, tc := range cases {
		t.Run(tc.note, func(t *testing.T) {
			var status int
			var body string
			if tc.status == 413 {
				// The gateway answers and closes before the client has sent the whole
				// body; net/http's client then reports its write error, not the answer.
				status, body = g.rawPost(tc.path, tok, tc.body)
			} else {
				resp, b := g.do("POST", tc.path, tok, "application/json", tc.body)
				status, body = resp.StatusCode, b
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if g.up.hits.Load() != 0 {
				t.Fatalf("upstream hit %d times", g.up.hits.Load())
			}
		})
	}
	// Refused before admission (fasthttp enforces the limit while reading), it still
	// carries a request id, and the refusal is counted.
	t.Run("body over limit has a request id", func(t *testing.T) {
		for _, path := range []string{"/mcp", "/v1/integrations"} {
			resp, body := g.rawPostResp(path, tok, `{"k":"`+strings.Repeat("a", 300<<10)+`"}`)
			rid := resp.Header.Get("X-Request-Id")
			var e struct {
				Error struct {
					Code      string `json:"code"`
					RequestID string `json:"request_id"`
				}
			}
			_ = json.Unmarshal([]byte(body), &e)
			if resp.StatusCode != 413 || rid == "" || e.Error.RequestID != rid || e.Error.Code != "body_too_large" {
				t.Fatalf("%s: %d X-Request-Id %q body %s, want 413 body_too_large with the header's request id", path, resp.StatusCode, rid, body)
			}
		}
		_, metrics := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", "")
		if !strings.Contains(metrics, `portcullis_http_errors_total{code="body_too_large"}`) {
			t.Fatalf("/metrics does not count the 413s:\n%s", metrics)
		}
	})
	t.Run("exact bytes forwarded", func(t *testing.T) {
		odd := "{ \"jsonrpc\" : \"2.0\", \"id\":7 ,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"n\":1.50e2,\"s\":\"\\u00e9\\n\"}}}\n"
		resp, body := g.mcp(tok, odd)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if _, got := g.up.last(); string(got) != odd {
			t.Fatalf("upstream got %q, want %q", got, odd)
		}
	})
}

// Panics are contained: a panic is contained: 500 with a request id, the process keeps
// serving, and the call's audit rows are written.
type panicky struct{ proxy.Decider }

func (p panicky) Decide(ctx context.Context, in *policies.Input) policies.Decision {
	if in.Tool == "boom" {
		panic("boom")
	}
	return p.Decider.Decide(ctx, in)
}

func TestPanicIsContained(t *testing.T) {
	g := newGateway(t, gwOptions{decider: func(d proxy.Decider) proxy.Decider { return panicky{d} }})
	tok := token(t, "agent-1", "acme", "agent")
	resp, body := g.mcp(tok, toolCall("boom", `{}`))
	if resp.StatusCode != 500 || !strings.Contains(body, resp.Header.Get("X-Request-Id")) || strings.Contains(body, "boom") {
		t.Fatalf("panic answered %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.mcp(tok, toolCall("echo", `{}`)); resp.StatusCode != 200 {
		t.Fatalf("after a panic the gateway answered %d", resp.StatusCode)
	}
	if rows := g.auditRows(); !strings.Contains(rows, `"panic"`) || !strings.Contains(rows, `"boom"`) {
		t.Fatalf("no audit row for the panicking call: %s", rows)
	}
	if g.up.hits.Load() != 1 {
		t.Fatalf("upstream hits %d, want 1", g.up.hits.Load())
	}
}

// Timeouts: slow headers get 408 within the read timeout; a hung upstream gets
// 504 within its budget.
func TestTimeouts(t *testing.T) {
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) {
		c.ReadTimeout = 300 * time.Millisecond
		c.MCP.Upstream.Timeout = 300 * time.Millisecond
	}})
	t.Run("slow headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprint(conn, "POST /mcp HTTP/1.1\r\nHost: x\r\n")
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no response to slow headers: %v", err)
		}
		if resp.StatusCode != 408 {
			t.Fatalf("status %d, want 408", resp.StatusCode)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("408 after %v", el)
		}
	})
	t.Run("hung upstream", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) { <-release })
		start := time.Now()
		resp, body := g.mcp(token(t, "a", "acme", "agent"), toolCall("echo", `{}`))
		if resp.StatusCode != 504 || !strings.Contains(body, "upstream_timeout") {
			t.Fatalf("status %d body %s, want 504", resp.StatusCode, body)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("504 after %v", el)
		}
	})
	t.Run("refused upstream", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		g2 := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.MCP.Upstream.URL = "http://" + addr + "/mcp" }})
		resp, body := g2.mcp(token(t, "a", "acme", "agent"), toolCall("echo", `{}`))
		if resp.StatusCode != 502 || !strings.Contains(body, resp.Header.Get("X-Request-Id")) {
			t.Fatalf("status %d body %s, want 502 with request id", resp.StatusCode, body)
		}
	})
}

// Audit before action: if the audit trail cannot take the decision row, nothing is forwarded.
func TestAuditBeforeAction(t *testing.T) {
	g := newGateway(t, gwOptions{auditCfg: func(c *audit.Config) { c.MaxSizeBytes = 256 << 10 }})
	tok := token(t, "agent-1", "acme", "agent")
	big := `{"note":"` + strings.Repeat("x", 4000) + `"}`
	for i := 0; i < 300; i++ {
		before := g.up.hits.Load()
		resp, body := g.mcp(tok, toolCall("echo", big))
		if resp.StatusCode == 503 {
			if !strings.Contains(body, "audit_unavailable") {
				t.Fatalf("503 without audit_unavailable: %s", body)
			}
			if g.up.hits.Load() != before {
				t.Fatal("a call was forwarded although its decision row was not stored")
			}
			// Requests that pass without a policy decision need their row too.
			for _, r := range []struct{ method, body string }{
				{"POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
				{"POST", `{"jsonrpc":"2.0","id":2,"method":"ping"}`},
				{"GET", ""}, {"DELETE", ""},
			} {
				ct := ""
				if r.body != "" {
					ct = "application/json"
				}
				resp, body := g.do(r.method, "/mcp", tok, ct, r.body, "Accept", "application/json, text/event-stream")
				if resp.StatusCode != 503 || !strings.Contains(body, "audit_unavailable") {
					t.Fatalf("%s /mcp %s with the audit store full: %d %s, want 503 audit_unavailable", r.method, r.body, resp.StatusCode, body)
				}
			}
			if g.up.hits.Load() != before {
				t.Fatal("a request that passes without a decision was forwarded although its row was not stored")
			}
			return
		}
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: status %d %s", i, resp.StatusCode, body)
		}
	}
	t.Fatal("the audit store never filled up")
}

var _ = sync.Mutex{}
var _ = json.Marshal

// A request fasthttp cannot parse is refused with a fixed message: fasthttp's own error
// text quotes the request head, Authorization included, and a response never repeats it.
func TestMalformedRequestIsNotEchoed(t *testing.T) {
	g := newGateway(t, gwOptions{})
	canary := "Bearer eyJcanary.token.value"
	for _, head := range []string{
		"GET  /v1/integrations HTTP/1.1\r\nHost: gw\r\nAuthorization: " + canary + "\r\nCookie: session=cookiecanary\r\n\r\n",
		"POST /v1/integrations HTTP/1.1\r\nHost: gw\r\nAuthorization: " + canary + "\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"POST /v1/integrations HTTP/1.1\r\nHost: gw\r\nAuthorization: " + canary + "\r\nTransfer-Encoding: xchunked\r\n\r\n{}",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", head, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 400 || strings.Contains(string(b), "canary") || !strings.Contains(string(b), resp.Header.Get("X-Request-Id")) ||
			resp.Header.Get("X-Request-Id") == "" {
			t.Fatalf("%q: %d %s, want 400 with a request id and without the request's head", head, resp.StatusCode, b)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
}
