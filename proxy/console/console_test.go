package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/console"
)

func TestConsolePagesCarryStrictCSPAndRefuseFraming(t *testing.T) {
	st := newStack(t, stackOptions{})
	for _, p := range []string{"/console/", "/console/approvals/apr_x", "/console/assets/app.js", "/console/api/session"} {
		resp, err := http.Get(st.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
			!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q is not strict", p, csp)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q, want DENY", p, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", p, got)
		}
	}
	resp, _ := http.Get(st.url + "/console/assets/app.js")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js served as %q, want text/javascript (modules need it)", ct)
	}
}

func TestConsoleAssetsHoldNoInlineScriptOrHTMLSinks(t *testing.T) {
	// The CSP forbids inline script; the scripts must never parse data as HTML.
	st := newStack(t, stackOptions{})
	for _, name := range []string{"index.html", "app.js", "api.js", "dom.js", "approvals.js", "audit.js", "policy.js", "overview.js", "charts.js"} {
		resp, err := http.Get(st.url + "/console/assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = io_copy(&b, resp)
		src := b.String()
		if resp.StatusCode != 200 || len(src) == 0 {
			t.Fatalf("%s: status %d", name, resp.StatusCode)
		}
		for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "onerror=", "onclick="} {
			if strings.Contains(src, sink) {
				t.Errorf("%s uses %s", name, sink)
			}
		}
		if name == "index.html" && strings.Contains(src, "<script>") {
			t.Errorf("index.html has an inline script")
		}
	}
}

func TestTokenSignInSetsStrictSecureHttpOnlyCookieScopedToConsole(t *testing.T) {
	st := newStack(t, stackOptions{})
	req, _ := http.NewRequest("POST", st.url+"/console/auth/token", strings.NewReader(`{"token":"`+token(t, "alice", "acme", "approver")+`"}`))
	req.Header.Set("Origin", st.url)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	raw := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"portcullis_console=", "httponly", "secure", "samesite=strict", "path=/console;"} {
		if !strings.Contains(strings.ToLower(raw), want) {
			t.Errorf("Set-Cookie %q lacks %s", raw, want)
		}
	}
	// The session holds the caller, not the token.
	tok := token(t, "alice", "acme", "approver")
	c := st.signIn(tok)
	_, body := c.get("/console/api/session")
	if strings.Contains(body, tok) || !strings.Contains(body, `"sub":"alice"`) {
		t.Errorf("session view: %s", body)
	}
}

func TestTokenSignInRefusesABadTokenAndAnotherOrigin(t *testing.T) {
	st := newStack(t, stackOptions{})
	c := &client{t: t, st: st}
	status, body := c.do("POST", "/console/auth/token", `{"token":"not-a-jwt"}`, st.url)
	if status != 401 || !strings.Contains(body, `"field":"token"`) || c.cookie != "" {
		t.Errorf("bad token: %d %s (cookie %q)", status, body, c.cookie)
	}
	status, body = c.do("POST", "/console/auth/token", `{"token":"`+token(t, "alice", "acme")+`"}`, "https://evil.example")
	if status != 403 || c.cookie != "" {
		t.Errorf("sign-in from another origin: %d %s", status, body)
	}
	status, body = c.do("POST", "/console/auth/token", `{"token":"x","extra":1}`, st.url)
	if status != 400 || !strings.Contains(body, `"field":"extra"`) {
		t.Errorf("unknown field: %d %s", status, body)
	}
}

func TestStateChangeNeedsSessionCSRFTokenAndConsoleOrigin(t *testing.T) {
	st := newStack(t, stackOptions{})
	agent := token(t, "agent-1", "acme", "agent")
	go st.mcpCall(agent, "delete_integration", `{"slug":"prod"}`)
	id := st.pending("acme", "delete_integration")
	bob := st.signIn(token(t, "bob", "acme", "approver"))
	path := "/console/api/approvals/" + id + "/approve"

	for _, tc := range []struct {
		name, origin, csrf string
	}{
		{"another origin", "https://evil.example", bob.csrf},
		{"no origin", "", bob.csrf},
		{"no token", st.url, ""},
		{"a wrong token", st.url, "forged"},
	} {
		c := *bob
		c.csrf = tc.csrf
		status, body := c.do("POST", path, `{}`, tc.origin)
		if status != 403 || !strings.Contains(body, `"code":"csrf"`) {
			t.Errorf("%s: %d %s, want 403 csrf", tc.name, status, body)
		}
	}
	if a, _ := st.approvals.Get(context.Background(), id); a.Status != approvals.StatusPending {
		t.Fatalf("a refused request decided the approval: %s", a.Status)
	}
	if status, body := bob.post(path, `{}`); status != 200 {
		t.Fatalf("same-origin approve with the token: %d %s", status, body)
	}
}

func TestConsoleHoldsPeopleToTheAdminAPIRules(t *testing.T) {
	st := newStack(t, stackOptions{})
	agent := token(t, "agent-1", "acme", "agent", "approver")
	go st.mcpCall(agent, "delete_integration", `{"slug":"prod"}`)
	id := st.pending("acme", "delete_integration")

	self := st.signIn(agent) // the requester, though an approver
	if status, body := self.post("/console/api/approvals/"+id+"/approve", `{}`); status != 403 || !strings.Contains(body, "self_approval") {
		t.Errorf("self-approval: %d %s", status, body)
	}
	other := st.signIn(token(t, "eve", "globex", "approver", "auditor"))
	if status, _ := other.get("/console/api/approvals/" + id); status != 404 {
		t.Errorf("another org's approval: %d, want 404", status)
	}
	if status, _ := other.post("/console/api/approvals/"+id+"/approve", `{}`); status != 404 {
		t.Errorf("another org's approve: %d, want 404", status)
	}
	_, body := other.get("/console/api/audit?tool=delete_integration")
	if strings.Contains(body, "agent-1") {
		t.Errorf("an auditor of another org read acme's rows: %s", body)
	}
	if status, body := other.get("/console/api/audit?org=acme"); status != 403 {
		t.Errorf("org=acme from globex: %d %s", status, body)
	}
	plain := st.signIn(token(t, "carol", "acme", "developer"))
	if status, _ := plain.post("/console/api/approvals/"+id+"/approve", `{}`); status != 403 {
		t.Errorf("a non-approver approved: %d", status)
	}
	if status, _ := plain.get("/console/api/audit"); status != 403 {
		t.Errorf("a non-auditor read the trail: %d", status)
	}
	_, body = plain.get("/console/api/approvals")
	if strings.Contains(body, id) {
		t.Errorf("a non-approver sees the approval in the inbox: %s", body)
	}
	bob := st.signIn(token(t, "bob", "acme", "approver"))
	if status, body := bob.post("/console/api/approvals/"+id+"/deny", `{"comment":"  "}`); status != 400 || !strings.Contains(body, `"field":"comment"`) {
		t.Errorf("deny without a comment: %d %s", status, body)
	}
	if a, _ := st.approvals.Get(context.Background(), id); a.Status != approvals.StatusPending {
		t.Fatalf("approval decided by a refused request: %s", a.Status)
	}
}

func TestSessionEndsAfterIdleAndAbsoluteTimeoutsAndLogout(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	st := newStack(t, stackOptions{
		console: func(c *console.Config) { c.IdleTimeout, c.AbsoluteTimeout = time.Minute, 3*time.Minute },
		deps:    func(d *console.Deps) { d.Now = clock },
	})
	c := st.signIn(token(t, "alice", "acme", "auditor"))
	for i := 0; i < 5; i++ { // used every 50s: idle never trips, absolute does at 3m
		if status, _ := c.get("/console/api/session"); status != 200 {
			t.Fatalf("at %s: session ended early (%d)", now.Sub(clock()), status)
		}
		now = now.Add(50 * time.Second)
		if i == 3 {
			break
		}
	}
	now = now.Add(30 * time.Second) // 3m20s after sign-in
	if status, _ := c.get("/console/api/session"); status != 401 {
		t.Errorf("session outlived the absolute timeout: %d", status)
	}
	c = st.signIn(token(t, "alice", "acme", "auditor"))
	now = now.Add(61 * time.Second)
	if status, _ := c.get("/console/api/session"); status != 401 {
		t.Errorf("session outlived the idle timeout: %d", status)
	}
	c = st.signIn(token(t, "alice", "acme", "auditor"))
	if status, _ := c.post("/console/auth/logout", ""); status != 200 {
		t.Fatalf("logout: %d", status)
	}
	if status, _ := c.get("/console/api/session"); status != 401 {
		t.Errorf("session alive after logout: %d", status)
	}
}

func TestAuditTimelineLinksDecisionApprovalAndOutcome(t *testing.T) {
	st := newStack(t, stackOptions{wait: 10 * time.Second})
	agent := token(t, "agent-1", "acme", "agent")
	done := make(chan string, 1)
	go func() { _, body := st.mcpCall(agent, "delete_integration", `{"slug":"prod"}`); done <- body }()
	id := st.pending("acme", "delete_integration")
	bob := st.signIn(token(t, "bob", "acme", "approver", "auditor"))
	if status, body := bob.post("/console/api/approvals/"+id+"/approve", `{"comment":"ok"}`); status != 200 {
		t.Fatalf("approve: %d %s", status, body)
	}
	if body := <-done; !strings.Contains(body, "integration deleted") {
		t.Fatalf("agent's call: %s", body)
	}
	var rid string
	eventually(t, 3*time.Second, func() bool {
		p, _ := st.audit.Query(context.Background(), audit.Filter{ApprovalID: id, Kind: string(audit.KindOutcome)})
		if len(p.Events) > 0 {
			rid = p.Events[0].RequestID
		}
		return rid != ""
	}, "the outcome row")
	var got struct{ Data []audit.Event }
	_, body := bob.get("/console/api/audit/timeline?request_id=" + rid)
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, ev := range got.Data {
		kinds[string(ev.Kind)+":"+string(ev.Decision)] = true
	}
	for _, want := range []string{"decision:approval_granted", "approval:approval_requested", "approval:approval_granted", "outcome:outcome"} {
		if !kinds[want] {
			t.Errorf("timeline lacks %s: %v", want, kinds)
		}
	}
}

func io_copy(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

func TestHeldCallTellsTheAgentWhereTheConsolePageIs(t *testing.T) {
	st := newStack(t, stackOptions{})
	_, body := st.mcpCall(token(t, "agent-1", "acme", "agent"), "delete_integration", `{"slug":"prod"}`)
	id := st.pending("acme", "delete_integration")
	if !strings.Contains(body, "decide it in the console: "+st.url+"/console/approvals/"+id) {
		t.Errorf("the pending answer does not link the console page: %s", body)
	}
}

func TestBackgroundRefreshesDoNotKeepAnIdleSessionAlive(t *testing.T) {
	now := time.Now()
	st := newStack(t, stackOptions{
		console: func(c *console.Config) { c.IdleTimeout, c.AbsoluteTimeout = time.Minute, time.Hour },
		deps:    func(d *console.Deps) { d.Now = func() time.Time { return now } },
	})
	c := st.signIn(token(t, "alice", "acme", "approver"))
	poll := func() int {
		req, _ := http.NewRequest("GET", st.url+"/console/api/approvals", nil)
		req.AddCookie(&http.Cookie{Name: "portcullis_console", Value: c.cookie})
		req.Header.Set("X-Console-Background", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 1; i <= 2; i++ { // an open inbox polling, nobody at the keyboard
		now = now.Add(20 * time.Second)
		if got := poll(); got != 200 {
			t.Fatalf("poll at %ds: %d", 20*i, got)
		}
	}
	now = now.Add(21 * time.Second) // 61s since the last thing the person did
	if got := poll(); got != 401 {
		t.Errorf("the session outlived its idle timeout through background polls: %d", got)
	}
}
