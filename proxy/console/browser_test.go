package console_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/console"
)

// chromium finds a Chromium or Chrome binary: $PORTCULLIS_CHROMIUM, then Debian's
// chromium, then the usual names on PATH.
func chromium() string {
	if p := os.Getenv("PORTCULLIS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// shared is one headless Chromium for the package's browser tests: starting one takes
// seconds on a busy machine. Each test gets a new tab and starts with no cookies (the
// tests do not run in parallel), so one test's session cannot leak into another.
var shared struct {
	once    sync.Once
	ctx     context.Context // the browser's; nil when it could not start
	err     error
	path    string
	cancel  func()
	profile string
}

// TestMain stops the shared browser after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
		for i := 0; i < 20 && os.RemoveAll(shared.profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

func startBrowser() {
	shared.path = chromium()
	if shared.path == "" {
		return
	}
	// Not a test's TempDir: Chromium's helpers may still be writing as it stops.
	profile, err := os.MkdirTemp("", "portcullis-console-chromium-")
	if err != nil {
		shared.err = err
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(shared.path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Run(bctx); err != nil {
		cancelB()
		cancelA()
		shared.err = err
		return
	}
	shared.ctx, shared.profile = bctx, profile
	shared.cancel = func() { cancelB(); cancelA() }
}

// browser gives the test a fresh browser context in the shared headless Chromium, or
// skips the test when none is installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	if raceEnabled {
		t.Skip("browser tests skip under -race: the browser is not what the detector checks, and it doubles the run")
	}
	shared.once.Do(startBrowser)
	if shared.path == "" {
		t.Skip("no Chromium found: the console's browser tests need one (apt-get install -y chromium, or set PORTCULLIS_CHROMIUM)")
	}
	if shared.err != nil {
		t.Fatalf("starting %s: %v", shared.path, shared.err)
	}
	ctx, cancel := chromedp.NewContext(shared.ctx)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancel() })
	if err := chromedp.Run(ctx, network.ClearBrowserCookies()); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

var screenshotDirOnce sync.Once

// screenshotDir is where the browser tests save a screenshot of each page:
// $PORTCULLIS_CONSOLE_SCREENSHOTS, or portcullis-console-screenshots in the temp dir.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("PORTCULLIS_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "portcullis-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	screenshotDirOnce.Do(func() { t.Logf("console screenshots are saved in %s", dir) })
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var buf []byte
	if err := chromedp.Run(ctx, chromedp.Sleep(150*time.Millisecond), chromedp.FullScreenshot(&buf, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir(t), name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var text string
		_ = chromedp.Run(ctx, chromedp.Text("body", &text, chromedp.ByQuery))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

// browserSignIn signs in on the console's page by pasting a token.
func browserSignIn(t *testing.T, ctx context.Context, st *stack, tok, page string) {
	t.Helper()
	run(t, ctx, "token sign-in",
		chromedp.Navigate(st.url+page),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SetValue("#token", tok, chromedp.ByID),
		chromedp.Click("#token-signin", chromedp.ByID),
		chromedp.WaitVisible("#nav", chromedp.ByID))
}

// noScriptRan asserts no injected script set window.__xss and no payload element exists.
func noScriptRan(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	var ran bool
	var injected int
	run(t, ctx, "checking for injected script",
		chromedp.Evaluate(`window.__xss !== undefined`, &ran),
		chromedp.Evaluate(`document.querySelectorAll('main img, main script, main iframe, main svg[onload]').length`, &injected))
	if ran {
		t.Errorf("%s: an injected script ran", where)
	}
	if injected != 0 {
		t.Errorf("%s: %d injected elements made it into the page", where, injected)
	}
}

func TestBrowserApproverApprovesHeldDeleteWhileAgentWaits(t *testing.T) {
	ctx := browser(t)
	st := newStack(t, stackOptions{wait: 45 * time.Second})
	browserSignIn(t, ctx, st, token(t, "bob", "acme", "approver", "auditor"), "/console/approvals")
	run(t, ctx, "empty inbox", chromedp.WaitVisible("#inbox-status", chromedp.ByID))

	// The call arrives while the approver watches: the inbox shows it with no reload.
	result := make(chan string, 1)
	go func() {
		_, body := st.mcpCall(token(t, "agent-1", "acme", "agent"), "delete_integration", `{"slug":"openai-prod","force":true}`)
		result <- body
	}()
	id := st.pending("acme", "delete_integration")
	card := `[data-approval-id="` + id + `"]`
	var tool, caller, args string
	run(t, ctx, "the held call appears in the inbox",
		chromedp.WaitVisible(card+" button.approve", chromedp.ByQuery),
		chromedp.Text(card+" .tool", &tool, chromedp.ByQuery),
		chromedp.Text(card+" .caller", &caller, chromedp.ByQuery),
		chromedp.Text(card+" .arguments", &args, chromedp.ByQuery))
	if tool != "delete_integration" || caller != "agent-1" || !strings.Contains(args, `"openai-prod"`) {
		t.Errorf("card shows tool %q caller %q arguments %q", tool, caller, args)
	}
	screenshot(t, ctx, "approvals-inbox")
	select {
	case body := <-result:
		t.Fatalf("the agent's call returned before a decision: %s", body)
	default:
	}
	run(t, ctx, "approve", chromedp.Click(card+" button.approve", chromedp.ByQuery))
	select {
	case body := <-result:
		if !strings.Contains(body, "integration deleted") {
			t.Fatalf("the agent's held call did not get the upstream's result: %s", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent's held call did not complete after the approval")
	}
	if st.upstream.Load() != 1 {
		t.Errorf("upstream calls: %d, want 1", st.upstream.Load())
	}
	// The deep link the webhook sends opens the approval, now decided.
	var decided string
	run(t, ctx, "deep link",
		chromedp.Navigate(st.url+"/console/approvals/"+id),
		chromedp.WaitVisible(card+` .decided-by`, chromedp.ByQuery),
		chromedp.Text(card+" .decided-by", &decided, chromedp.ByQuery))
	if !strings.HasPrefix(decided, "bob at ") {
		t.Errorf("decided by %q", decided)
	}
	screenshot(t, ctx, "approval-deep-link")
	if got := st.approvals.URL(id); got != st.url+"/console/approvals/"+id {
		t.Errorf("webhook link %q does not open the console", got)
	}
}

const (
	xssArg     = `<img src=x onerror="window.__xss='argument'">`
	xssScript  = `<script>window.__xss='script'</script>`
	xssComment = `<img src=x onerror="window.__xss='comment'"> not today <b>bold</b>`
	xssSub     = `<svg onload="window.__xss='sub'">`
	xssTool    = `<img src=x onerror="window.__xss='tool'">`
)

func TestBrowserDenyCommentReachesAgentAndInjectedMarkupStaysInert(t *testing.T) {
	ctx := browser(t)
	st := newStack(t, stackOptions{wait: 45 * time.Second})
	browserSignIn(t, ctx, st, token(t, "bob", "acme", "approver", "auditor"), "/console/approvals")
	result := make(chan string, 1)
	args, _ := json.Marshal(map[string]any{"slug": xssArg, "note": xssScript, xssScript: "key"})
	go func() {
		_, body := st.mcpCall(token(t, xssSub, "acme", "agent"), "delete_integration", string(args))
		result <- body
	}()
	id := st.pending("acme", "delete_integration")
	card := `[data-approval-id="` + id + `"]`
	run(t, ctx, "the held call appears", chromedp.WaitVisible(card+" button.deny", chromedp.ByQuery))
	noScriptRan(t, ctx, "inbox")
	var shownArgs, shownCaller string
	run(t, ctx, "read card", chromedp.Text(card+" .arguments", &shownArgs, chromedp.ByQuery), chromedp.Text(card+" .caller", &shownCaller, chromedp.ByQuery))
	if !strings.Contains(shownArgs, "window.__xss='argument'") || shownCaller != xssSub {
		t.Errorf("payloads are not shown as text: args %q caller %q", shownArgs, shownCaller)
	}
	// Deny needs a comment: without one the page says so and nothing is sent.
	var msg string
	run(t, ctx, "deny without comment", chromedp.Click(card+" button.deny", chromedp.ByQuery),
		chromedp.Text(card+" .decision-error", &msg, chromedp.ByQuery))
	if !strings.Contains(msg, "comment is required") {
		t.Errorf("deny without a comment: %q", msg)
	}
	if a, _ := st.approvals.Get(context.Background(), id); a.Status != approvals.StatusPending {
		t.Fatalf("denied without a comment: %s", a.Status)
	}
	run(t, ctx, "deny with comment",
		chromedp.SetValue(card+" textarea.decision-comment", xssComment, chromedp.ByQuery),
		chromedp.Click(card+" button.deny", chromedp.ByQuery))
	select {
	case body := <-result:
		var r struct {
			Result struct {
				IsError bool `json:"isError"`
				Content []struct{ Text string }
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || !r.Result.IsError || len(r.Result.Content) == 0 ||
			!strings.Contains(r.Result.Content[0].Text, xssComment) {
			t.Fatalf("the agent did not receive the deny comment: %s", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent's held call did not complete after the denial")
	}
	if st.upstream.Load() != 0 {
		t.Errorf("a denied call reached the upstream")
	}
	var comment string
	run(t, ctx, "decided tab",
		chromedp.Click(`button[data-tab="decided"]`, chromedp.ByQuery),
		chromedp.WaitVisible(card+`[data-status="denied"] .comment`, chromedp.ByQuery),
		chromedp.Text(card+" .comment", &comment, chromedp.ByQuery))
	if comment != xssComment {
		t.Errorf("comment shown as %q, want the literal text", comment)
	}
	noScriptRan(t, ctx, "decided approvals")
	screenshot(t, ctx, "approvals-decided-injected-markup")
	// The same payloads in the audit explorer and the timeline, with a tool named as
	// markup whose denial reason quotes it.
	st.mcpCall(token(t, "agent-9", "acme", "agent"), xssTool, `{}`)
	run(t, ctx, "audit explorer", chromedp.Navigate(st.url+"/console/audit?approval_id="+url.QueryEscape(id)),
		chromedp.WaitVisible("#audit-rows tr", chromedp.ByQuery))
	noScriptRan(t, ctx, "audit explorer")
	var reasons []string
	run(t, ctx, "audit explorer, every row", chromedp.Navigate(st.url+"/console/audit"),
		chromedp.WaitVisible("#audit-rows tr", chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll('#audit-rows .reason')].map(e => e.textContent)`, &reasons))
	noScriptRan(t, ctx, "audit explorer, every row")
	if !slices.Contains(reasons, "tool "+xssTool+" is not on the list") {
		t.Errorf("the reason quoting the tool is not shown as text: %q", reasons)
	}
	run(t, ctx, "overview", chromedp.Navigate(st.url+"/console/"), chromedp.WaitVisible("#overview svg", chromedp.ByQuery))
	noScriptRan(t, ctx, "overview")
	run(t, ctx, "timeline", chromedp.Navigate(st.url+"/console/audit/approval/"+id),
		chromedp.WaitVisible(`#timeline li[data-kind="approval"]`, chromedp.ByQuery))
	noScriptRan(t, ctx, "timeline")
}

func TestBrowserAuditorFindsCallersDeniedCallsAndOpensTimeline(t *testing.T) {
	ctx := browser(t)
	st := newStack(t, stackOptions{})
	agent := token(t, "agent-7", "acme", "agent")
	st.mcpCall(agent, "forbidden", `{"n":1}`)
	st.mcpCall(agent, "list_integrations", `{}`)
	st.mcpCall(token(t, "agent-8", "acme", "agent"), "forbidden", `{"n":2}`)
	eventually(t, 3*time.Second, func() bool {
		n := 0
		for _, ev := range mustQuery(t, st) {
			if ev.Kind == "decision" {
				n++
			}
		}
		return n >= 3
	}, "three decision rows")

	browserSignIn(t, ctx, st, token(t, "audrey", "acme", "auditor"), "/console/audit")
	run(t, ctx, "filter",
		chromedp.WaitVisible("#audit-filter", chromedp.ByID),
		chromedp.SetValue(`#audit-filter [name="sub"]`, "agent-7", chromedp.ByQuery),
		chromedp.SetValue(`#audit-filter [name="decision"]`, "deny", chromedp.ByQuery),
		chromedp.Click("#last-hour", chromedp.ByID),
		chromedp.WaitVisible("#audit-rows tr", chromedp.ByQuery))
	var rows []string
	var loc string
	run(t, ctx, "read rows", chromedp.Evaluate(`[...document.querySelectorAll('#audit-rows tr')].map(r => r.innerText)`, &rows),
		chromedp.Location(&loc))
	if len(rows) != 1 || !strings.Contains(rows[0], "forbidden") || !strings.Contains(rows[0], "agent-7") || !strings.Contains(rows[0], "deny") {
		t.Errorf("filtered rows: %q", rows)
	}
	if !strings.Contains(loc, "sub=agent-7") || !strings.Contains(loc, "decision=deny") || !strings.Contains(loc, "since=") {
		t.Errorf("the filter is not in the page's URL: %s", loc)
	}
	var verify string
	run(t, ctx, "chain status", chromedp.WaitVisible("#verify-status", chromedp.ByID), chromedp.Text("#verify-status", &verify, chromedp.ByID))
	if !strings.Contains(verify, "Chain verifies") {
		t.Errorf("verify status %q", verify)
	}
	var href string
	var ok bool
	run(t, ctx, "export link", chromedp.AttributeValue("#export-csv", "href", &href, &ok, chromedp.ByID))
	if !strings.Contains(href, "format=csv") || !strings.Contains(href, "sub=agent-7") || !strings.Contains(href, "decision=deny") {
		t.Errorf("export link %q does not carry the filter", href)
	}
	screenshot(t, ctx, "audit-explorer")
	var reason string
	run(t, ctx, "open timeline",
		chromedp.Click("#audit-rows .timeline-link", chromedp.ByQuery),
		chromedp.WaitVisible(`#timeline li[data-kind="decision"]`, chromedp.ByQuery),
		chromedp.Text(`#timeline li[data-kind="decision"] .reason`, &reason, chromedp.ByQuery))
	if !strings.Contains(reason, "forbidden tool") {
		t.Errorf("timeline decision reason %q", reason)
	}
	screenshot(t, ctx, "audit-timeline")
}

func TestBrowserCrossOriginPageCannotApprove(t *testing.T) {
	ctx := browser(t)
	st := newStack(t, stackOptions{wait: 30 * time.Second})
	go st.mcpCall(token(t, "agent-1", "acme", "agent"), "delete_integration", `{"slug":"prod"}`)
	id := st.pending("acme", "delete_integration")
	browserSignIn(t, ctx, st, token(t, "bob", "acme", "approver"), "/console/approvals")

	// Another origin (same site: 127.0.0.1 on another port, so the Strict cookie does
	// travel) posts to the approve endpoint by fetch and by a form.
	target := st.url + "/console/api/approvals/" + id + "/approve"
	var fetched atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/evil.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write([]byte(`fetch(` + jsString(target) + `, {method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: {'Content-Type': 'text/plain'}, body: '{}'}).finally(() => { document.title = 'fetched'; document.getElementById('f').submit(); });`))
		case "/done":
			fetched.Add(1)
		default:
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(`<!doctype html><title>evil</title><form id="f" method="POST" enctype="text/plain" action="` + target +
				`"><input name="{}" value=""></form><script src="/evil.js"></script>`))
		}
	}))
	defer evil.Close()
	var body string
	run(t, ctx, "cross-origin attempts",
		chromedp.Navigate(evil.URL+"/"),
		chromedp.Sleep(1500*time.Millisecond),
		chromedp.Text("body", &body, chromedp.ByQuery))
	if a, _ := st.approvals.Get(context.Background(), id); a.Status != approvals.StatusPending {
		t.Fatalf("a cross-origin page decided the approval: %s", a.Status)
	}
	if !strings.Contains(body, "csrf") {
		t.Errorf("the form post was not refused as CSRF; page says %q", body)
	}
	// The console itself still can.
	run(t, ctx, "same-origin approve",
		chromedp.Navigate(st.url+"/console/approvals"),
		chromedp.WaitVisible(`[data-approval-id="`+id+`"] button.approve`, chromedp.ByQuery),
		chromedp.Click(`[data-approval-id="`+id+`"] button.approve`, chromedp.ByQuery))
	eventually(t, 5*time.Second, func() bool {
		a, _ := st.approvals.Get(context.Background(), id)
		return a.Status != approvals.StatusPending
	}, "the console's own approve")
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestBrowserPolicyPlaygroundReplayAndOverview(t *testing.T) {
	ctx := browser(t)
	st := newStack(t, stackOptions{})
	agent := token(t, "agent-1", "acme", "agent")
	st.mcpCall(agent, "list_integrations", `{}`)
	st.mcpCall(agent, "get_integration", `{"slug":"a"}`)
	st.mcpCall(agent, "forbidden", `{}`)
	browserSignIn(t, ctx, st, token(t, "paula", "acme", "auditor"), "/console/policy")
	stricter := "package portcullis\n\nimport rego.v1\n\ndefault decision := {\"action\": \"deny\", \"reason\": \"stricter: nothing by default\"}\n\n" +
		"decision := {\"action\": \"allow\", \"reason\": \"listing is fine\"} if input.tool == \"list_integrations\"\n"
	var live, differs string
	run(t, ctx, "playground",
		chromedp.WaitVisible("#live-revision", chromedp.ByID),
		chromedp.Text("#live-revision", &live, chromedp.ByID),
		chromedp.SetValue("#pg-candidate", stricter, chromedp.ByID),
		chromedp.Click("#pg-eval", chromedp.ByID),
		chromedp.WaitVisible("#pg-differs", chromedp.ByID),
		chromedp.Text("#pg-differs", &differs, chromedp.ByID))
	if live != st.engine.Revision() || !strings.Contains(differs, "differently") {
		t.Errorf("live revision %q (want %q), differs %q", live, st.engine.Revision(), differs)
	}
	var summary string
	run(t, ctx, "replay",
		chromedp.Click("#replay-run", chromedp.ByID),
		chromedp.WaitVisible("#replay-summary", chromedp.ByID),
		chromedp.Text("#replay-summary", &summary, chromedp.ByID))
	// get_integration goes allow -> deny; list stays allowed; forbidden stays denied.
	if !strings.HasPrefix(summary, "1 of 3 ") {
		t.Errorf("replay summary %q", summary)
	}
	screenshot(t, ctx, "policy")
	run(t, ctx, "overview", chromedp.Navigate(st.url+"/console/"), chromedp.WaitVisible("#overview svg", chromedp.ByQuery))
	var bars int
	run(t, ctx, "count bars", chromedp.Evaluate(`document.querySelectorAll('#overview svg rect').length`, &bars))
	if bars == 0 {
		t.Error("the overview drew no bars")
	}
	screenshot(t, ctx, "overview")
}

// testIdP is an OpenID provider for one client: discovery, an authorize endpoint that
// signs "dana" in at once, a token endpoint that checks the PKCE verifier, and JWKS.
type testIdP struct {
	srv       *httptest.Server
	key       *rsa.PrivateKey
	mu        sync.Mutex
	codes     map[string]url.Values
	pkceOK    atomic.Int64
	exchanges atomic.Int64
}

func newTestIdP(t *testing.T, clientID, secret string, claims map[string]any) *testIdP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{key: key, codes: map[string]url.Values{}}
	mux := http.NewServeMux()
	idp.srv = httptest.NewServer(mux)
	t.Cleanup(idp.srv.Close)
	iss := idp.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "authorization_endpoint": iss + "/authorize",
			"token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported": []string{"S256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	})
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != clientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			http.Error(w, "bad authorize request: "+r.URL.RawQuery, 400)
			return
		}
		code := "code-" + q.Get("state")[:8]
		idp.mu.Lock()
		idp.codes[code] = q
		idp.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+url.QueryEscape(code)+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		idp.exchanges.Add(1)
		user, pass, ok := r.BasicAuth()
		if !ok {
			user, pass = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		idp.mu.Lock()
		auth := idp.codes[r.PostForm.Get("code")]
		delete(idp.codes, r.PostForm.Get("code"))
		idp.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if auth == nil || user != clientID || pass != secret || r.PostForm.Get("grant_type") != "authorization_code" ||
			r.PostForm.Get("redirect_uri") != auth.Get("redirect_uri") {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		if base64.RawURLEncoding.EncodeToString(sum[:]) != auth.Get("code_challenge") {
			http.Error(w, `{"error":"invalid_grant","error_description":"PKCE verifier does not match"}`, 400)
			return
		}
		idp.pkceOK.Add(1)
		c := jwt.MapClaims{"iss": iss, "aud": clientID, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "nonce": auth.Get("nonce")}
		for k, v := range claims {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = "k1"
		signed, err := tok.SignedString(key)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": signed})
	})
	return idp
}

func TestBrowserOIDCSignInWithPKCE(t *testing.T) {
	ctx := browser(t)
	idp := newTestIdP(t, "portcullis-console", "client-secret-1", map[string]any{
		"sub": "dana", "org": "acme", "groups": []string{"approver", "auditor"}})
	st := newStack(t, stackOptions{console: func(c *console.Config) {
		c.OIDC = console.OIDCConfig{Issuer: idp.srv.URL, ClientID: "portcullis-console", ClientSecret: "client-secret-1",
			Claims: console.ClaimNames{Roles: "groups"}}
	}})
	var who string
	var tokenBox int
	run(t, ctx, "OIDC sign-in",
		chromedp.Navigate(st.url+"/console/audit"),
		chromedp.WaitVisible("#oidc-login", chromedp.ByID),
		chromedp.Evaluate(`document.querySelectorAll('#token').length`, &tokenBox))
	if tokenBox != 0 {
		t.Error("token sign-in is offered though OIDC is configured and token_sign_in is not set")
	}
	screenshot(t, ctx, "sign-in")
	run(t, ctx, "OIDC round trip",
		chromedp.Click("#oidc-login button", chromedp.ByQuery),
		chromedp.WaitVisible("#nav", chromedp.ByID),
		chromedp.WaitVisible("#audit-filter", chromedp.ByID),
		chromedp.Text("#who", &who, chromedp.ByID))
	if !strings.Contains(who, "dana") || !strings.Contains(who, "acme") || !strings.Contains(who, "auditor") {
		t.Errorf("signed in as %q", who)
	}
	if idp.pkceOK.Load() != 1 {
		t.Errorf("PKCE-checked code exchanges: %d, want 1", idp.pkceOK.Load())
	}
	screenshot(t, ctx, "oidc-signed-in-audit")
	// A replayed callback (the code is spent, the state used) signs nobody in.
	resp, err := http.Get(st.url + "/console/auth/callback?code=code-x&state=never-issued")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || len(resp.Cookies()) > 0 && resp.Cookies()[0].Name == "portcullis_console" && resp.Cookies()[0].Value != "" {
		t.Errorf("callback with an unknown state: %d", resp.StatusCode)
	}
}
