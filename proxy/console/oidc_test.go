package console_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy/console"
)

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func startOIDC(t *testing.T, st *stack) (callback string, loginCookie *http.Cookie) {
	t.Helper()
	r1, err := noRedirect.Get(st.url + "/console/auth/login?return_to=%2Fconsole%2Faudit")
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	if r1.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", r1.StatusCode)
	}
	auth, _ := url.Parse(r1.Header.Get("Location"))
	if q := auth.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("authorize request lacks PKCE, nonce or state: %s", auth)
	}
	for _, c := range r1.Cookies() {
		if c.Name == "portcullis_console_login" {
			loginCookie = c
		}
	}
	if loginCookie == nil || !loginCookie.HttpOnly || !loginCookie.Secure || loginCookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("login binding cookie %+v", loginCookie)
	}
	r2, err := noRedirect.Get(auth.String())
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	return r2.Header.Get("Location"), loginCookie
}

func callback(t *testing.T, target string, c *http.Cookie) (int, string, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "portcullis_console" && ck.Value != "" {
			return resp.StatusCode, string(b), ck
		}
	}
	return resp.StatusCode, string(b), nil
}

func oidcStack(t *testing.T, claims map[string]any) *stack {
	idp := newTestIdP(t, "portcullis-console", "client-secret-1", claims)
	return newStack(t, stackOptions{console: func(c *console.Config) {
		c.OIDC = console.OIDCConfig{Issuer: idp.srv.URL, ClientID: "portcullis-console", ClientSecret: "client-secret-1",
			Claims: console.ClaimNames{Roles: "realm.roles"}}
	}})
}

func TestOIDCCallbackSignsInAndReturnsToThePage(t *testing.T) {
	st := oidcStack(t, map[string]any{"sub": "dana", "org": "acme", "realm": map[string]any{"roles": []string{"auditor"}}})
	cb, login := startOIDC(t, st)
	status, body, session := callback(t, cb, login)
	if status != 200 || session == nil || !strings.Contains(body, `url=/console/audit"`) {
		t.Fatalf("callback: %d %s (session cookie %v)", status, body, session)
	}
	c := &client{t: t, st: st, cookie: session.Value}
	_, who := c.get("/console/api/session")
	if !strings.Contains(who, `"sub":"dana"`) || !strings.Contains(who, `"roles":["auditor"]`) || !strings.Contains(who, `"method":"oidc"`) {
		t.Errorf("session: %s", who)
	}
	// The state is spent: the same callback again signs nobody in.
	if status, _, s := callback(t, cb, login); status != 400 || s != nil {
		t.Errorf("replayed callback: %d, session %v", status, s)
	}
}

func TestOIDCCallbackRefusesASignInStartedInAnotherBrowser(t *testing.T) {
	st := oidcStack(t, map[string]any{"sub": "dana", "org": "acme"})
	cb, _ := startOIDC(t, st) // the attacker's sign-in, delivered to the victim's browser
	_, victim := startOIDC(t, st)
	status, body, session := callback(t, cb, victim)
	if status != 400 || session != nil || !strings.Contains(body, "another browser") {
		t.Errorf("cross-browser callback: %d %s (session %v)", status, body, session)
	}
	cb, _ = startOIDC(t, st)
	if status, _, session := callback(t, cb, nil); status != 400 || session != nil {
		t.Errorf("callback without the login cookie: %d (session %v)", status, session)
	}
}

func TestOIDCSignInNeedsTheOrgClaim(t *testing.T) {
	st := oidcStack(t, map[string]any{"sub": "dana"})
	cb, login := startOIDC(t, st)
	status, body, session := callback(t, cb, login)
	if status != 403 || session != nil || !strings.Contains(body, "console.oidc.claims.org") {
		t.Errorf("no org claim: %d %s", status, body)
	}
}

func TestConsoleConfigNamesEachBadKey(t *testing.T) {
	off := false
	for _, tc := range []struct {
		cfg  console.Config
		want string
	}{
		{console.Config{PublicURL: "ftp://x"}, "console.public_url"},
		{console.Config{PublicURL: "http://x/console"}, "console.public_url"},
		{console.Config{OIDC: console.OIDCConfig{Issuer: "http://idp.example.com", ClientID: "c"}}, "console.oidc.issuer"},
		{console.Config{OIDC: console.OIDCConfig{Issuer: "https://idp.example.com"}}, "console.oidc.client_id"},
		{console.Config{OIDC: console.OIDCConfig{ClientID: "c"}}, "console.oidc.issuer"},
		{console.Config{TokenSignIn: &off}, "console.token_sign_in"},
		{console.Config{IdleTimeout: 24 * 3600e9}, "console.idle_timeout"},
		{console.Config{DatabaseURL: "mysql://u:pw-canary@db.example.com/x"}, "console.database_url"},
		{console.Config{MaxSessionsPerSubject: -1}, "console.max_sessions_per_subject"},
		{console.Config{MaxPendingLogins: -1}, "console.max_pending_logins"},
		{console.Config{MaxPendingLoginsPerAddress: -1}, "console.max_pending_logins_per_address"},
		{console.Config{MaxPendingLoginsPerNetwork: -1}, "console.max_pending_logins_per_network"},
	} {
		c := tc.cfg
		if c.PublicURL == "" {
			c.PublicURL = "http://127.0.0.1:8080"
		}
		c.SetDefaults("http://127.0.0.1:8080")
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "client_secret") && tc.cfg.OIDC.ClientSecret != "" {
			t.Errorf("the error quotes the client secret: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "pw-canary") {
			t.Errorf("the error quotes the database URL's password: %v", err)
		}
	}
	disabled := console.Config{Enabled: &off, PublicURL: "nonsense"}
	if err := disabled.Validate(); err != nil {
		t.Errorf("a disabled console is not validated: %v", err)
	}
}
