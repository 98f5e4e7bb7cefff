package console_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
	"github.com/portcullis/portcullis/proxy/console"
)

// tcpRelay forwards connections to target until down, which closes its listener and
// every connection: the database behind it is then unreachable.
type tcpRelay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPRelay(t *testing.T, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpRelay{ln: ln}
	t.Cleanup(r.down)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return r
}

func (r *tcpRelay) down() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// While the shared session store cannot be reached, a request with a session cookie
// and a sign-in both get 503 naming the console session store: not 401 (the person is
// not signed out), not 500, and never the URL or its password.
func TestConsoleSessionStoreOutageAnswers503NotUnauthenticated(t *testing.T) {
	u, err := url.Parse(sqldbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	relay := newTCPRelay(t, u.Host)
	const password = "pw-canary-7f3a"
	u.Host, u.User = relay.ln.Addr().String(), url.UserPassword(u.User.Username(), password)
	st := newStack(t, stackOptions{console: func(c *console.Config) { c.DatabaseURL = u.String() }})
	alice := st.signIn(token(t, "alice", "acme", "approver"))
	if status, _ := alice.get("/console/api/session"); status != 200 {
		t.Fatalf("session with the store up: %d", status)
	}

	relay.down()
	check := func(what string, status int, body string, hdr http.Header) {
		t.Helper()
		if status != 503 || !strings.Contains(body, `"code":"console_store_unavailable"`) || !strings.Contains(body, "console session store") {
			t.Errorf("%s with the store down: %d %s; want 503 console_store_unavailable", what, status, body)
		}
		for _, leak := range []string{password, u.Host, "postgres://", "dial", "connect"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: the answer quotes %q: %s", what, leak, body)
			}
		}
		if hdr != nil && hdr.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", what)
		}
	}
	req, _ := http.NewRequest("GET", st.url+"/console/api/approvals", nil)
	req.AddCookie(&http.Cookie{Name: "portcullis_console", Value: alice.cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("the inbox with a session cookie", resp.StatusCode, string(b), resp.Header)
	status, body := alice.get("/console/api/session")
	check("the session", status, body, nil)
	fresh := &client{t: t, st: st}
	status, body = fresh.do("POST", "/console/auth/token", `{"token":"`+token(t, "bob", "acme", "approver")+`"}`, st.url)
	check("a sign-in", status, body, nil)
	if fresh.cookie != "" {
		t.Error("a sign-in that could not be stored set a session cookie")
	}
	status, body = alice.post("/console/auth/logout", "")
	check("a sign-out", status, body, nil)
	// Without a cookie nothing is asked of the store: still 401.
	if status, body := (&client{t: t, st: st}).get("/console/api/session"); status != 401 {
		t.Errorf("no cookie with the store down: %d %s, want 401", status, body)
	}
}

// An OIDC sign-in started on one replica finishes on another: the provider's redirect
// lands wherever the balancer sends it, and the state is still spent once.
func TestConsoleOIDCLoginStartedOnOneReplicaFinishesOnAnother(t *testing.T) {
	pg := sqldbtest.PostgresURL(t)
	idp := newTestIdP(t, "portcullis-console", "client-secret-1", map[string]any{"sub": "dana", "org": "acme", "roles": []string{"auditor"}})
	oidcCfg := func(redirect string) func(*console.Config) {
		return func(c *console.Config) {
			c.DatabaseURL = pg
			c.OIDC = console.OIDCConfig{Issuer: idp.srv.URL, ClientID: "portcullis-console", ClientSecret: "client-secret-1", RedirectURL: redirect}
		}
	}
	a := newStack(t, stackOptions{console: oidcCfg("")})
	// Replicas share one public URL, so one redirect URL: A's.
	b := newStack(t, stackOptions{console: oidcCfg(a.url + "/console/auth/callback")})

	cb, login := startOIDC(t, a)
	if !strings.HasPrefix(cb, a.url+"/console/auth/callback?") {
		t.Fatalf("the provider redirected to %s", cb)
	}
	onB := b.url + strings.TrimPrefix(cb, a.url)
	status, body, session := callback(t, onB, login)
	if status != 200 || session == nil {
		t.Fatalf("callback on B for a sign-in started on A: %d %s", status, body)
	}
	if _, who := (&client{t: t, st: a, cookie: session.Value}).get("/console/api/session"); !strings.Contains(who, `"sub":"dana"`) ||
		!strings.Contains(who, `"method":"oidc"`) {
		t.Errorf("the session made on B, read on A: %s", who)
	}
	if status, _, s := callback(t, cb, login); status != 400 || s != nil {
		t.Errorf("the same callback replayed on A: %d, session %v", status, s)
	}
}
