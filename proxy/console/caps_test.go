package console_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy/console"
)

// browserAt is a client whose connections come from ip (any 127.0.0.0/8 address reaches
// the test server on Linux): another client address, as the console sees it. It does
// not follow redirects.
func browserAt(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: noRedirect.CheckRedirect}
}

type answer struct {
	status int
	body   string
	header http.Header
}

func send(t *testing.T, hc *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// startLoginFrom starts an OIDC sign-in from hc and, when the console accepts it, takes
// it through the provider: the callback URL and the login cookie. Otherwise the
// console's answer.
func startLoginFrom(t *testing.T, st *stack, hc *http.Client) (cb string, login *http.Cookie, refused *answer) {
	t.Helper()
	req, _ := http.NewRequest("GET", st.url+"/console/auth/login", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", nil, &answer{resp.StatusCode, string(b), resp.Header}
	}
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_console_login" {
			login = c
		}
	}
	r2, err := noRedirect.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	return r2.Header.Get("Location"), login, nil
}

func finishLoginFrom(t *testing.T, hc *http.Client, cb string, login *http.Cookie) (answer, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", cb, nil)
	req.AddCookie(login)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	signedIn := false
	for _, c := range resp.Cookies() {
		signedIn = signedIn || (c.Name == "portcullis_console" && c.Value != "")
	}
	return answer{resp.StatusCode, string(b), resp.Header}, signedIn
}

func wantRefusal(t *testing.T, what string, a answer, codes ...string) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("%s: %d (Retry-After %q) %s; want 429 with Retry-After", what, a.status, a.header.Get("Retry-After"), a.body)
	}
	for _, c := range codes {
		if strings.Contains(a.body, `"code":"`+c+`"`) {
			return
		}
	}
	t.Fatalf("%s: %s; want code %s", what, a.body, strings.Join(codes, " or "))
}

// Anonymous GET /console/auth/login from one address: past the address's cap of sign-ins
// in flight, and past its sign-in rate, 429. The sign-in another address started before
// the flood still finishes, and a third address can still start one.
func TestConsoleLoginFloodFromOneAddressIsLimitedAndKeepsAnotherAddressesSignIn(t *testing.T) {
	st := oidcStack(t, map[string]any{"sub": "dana", "org": "acme"})
	victim, flooder := browserAt(t, "127.0.0.2"), browserAt(t, "127.0.0.1")
	cb, login, refused := startLoginFrom(t, st, victim)
	if refused != nil {
		t.Fatalf("the victim's sign-in: %+v", *refused)
	}
	started, codes := 0, map[string]int{}
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequest("GET", st.url+"/console/auth/login", nil)
		a := send(t, flooder, req)
		if a.status == http.StatusFound {
			started++
			continue
		}
		wantRefusal(t, "a login in the flood", a, "too_many_sign_ins", "too_many_requests")
		for _, c := range []string{"too_many_sign_ins", "too_many_requests"} {
			if strings.Contains(a.body, c) {
				codes[c]++
			}
		}
	}
	if started != console.DefaultMaxPendingLoginsPerAddress || codes["too_many_sign_ins"] == 0 || codes["too_many_requests"] == 0 {
		t.Errorf("the flood started %d sign-ins (want the address's cap, %d) and was refused %v; want both refusals",
			started, console.DefaultMaxPendingLoginsPerAddress, codes)
	}
	if _, _, refused := startLoginFrom(t, st, browserAt(t, "127.0.0.3")); refused != nil {
		t.Errorf("another address after the flood: %+v", *refused)
	}
	if a, ok := finishLoginFrom(t, victim, cb, login); a.status != 200 || !ok {
		t.Errorf("the victim's sign-in, finished after the flood: %d %s", a.status, a.body)
	}
}

// With the table of sign-ins in flight full, a new one is refused (429 sign_ins_full),
// and the ones in flight finish: nobody's is dropped to make room.
func TestConsoleFullLoginTableRefusesNewLoginsAndKeepsThoseInFlight(t *testing.T) {
	idp := newTestIdP(t, "portcullis-console", "client-secret-1", map[string]any{"sub": "dana", "org": "acme"})
	st := newStack(t, stackOptions{console: func(c *console.Config) {
		c.OIDC = console.OIDCConfig{Issuer: idp.srv.URL, ClientID: "portcullis-console", ClientSecret: "client-secret-1"}
		c.MaxPendingLogins, c.MaxPendingLoginsPerAddress, c.SignInRate = 3, 2, -1
	}})
	victim, a, b := browserAt(t, "127.0.0.2"), browserAt(t, "127.0.0.1"), browserAt(t, "127.0.0.3")
	cb, login, refused := startLoginFrom(t, st, victim)
	if refused != nil {
		t.Fatalf("the victim's sign-in: %+v", *refused)
	}
	for i := 0; i < 2; i++ {
		if _, _, refused := startLoginFrom(t, st, a); refused != nil {
			t.Fatalf("sign-in %d from a: %+v", i, *refused)
		}
	}
	_, _, refused = startLoginFrom(t, st, a)
	if refused == nil {
		t.Fatal("a third sign-in from a, past its cap of 2, was accepted")
	}
	wantRefusal(t, "a's third sign-in", *refused, "too_many_sign_ins")
	_, _, refused = startLoginFrom(t, st, b)
	if refused == nil {
		t.Fatal("a sign-in into the full table was accepted")
	}
	wantRefusal(t, "b's sign-in into the full table", *refused, "sign_ins_full")
	if ans, ok := finishLoginFrom(t, victim, cb, login); ans.status != 200 || !ok {
		t.Errorf("the victim's sign-in in flight, finished: %d %s", ans.status, ans.body)
	}
	// Finished, it no longer counts: b may start one.
	if _, _, refused := startLoginFrom(t, st, b); refused != nil {
		t.Errorf("b after the victim's sign-in finished: %+v", *refused)
	}
}

func tokenSignIn(t *testing.T, st *stack, hc *http.Client, tok string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", st.url+"/console/auth/token", strings.NewReader(`{"token":"`+tok+`"}`))
	req.Header.Set("Origin", st.url)
	req.Header.Set("Content-Type", "application/json")
	return send(t, hc, req)
}

// Finding: one agent token in another org, signed in 10,000 times, signed everyone out.
// Now token sign-ins from one address are rate limited, and with the table full a new
// sign-in is refused (429 console_full) while everyone signed in stays signed in.
func TestConsoleTokenSignInFloodSignsNobodyElseOut(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		st := newStack(t, stackOptions{})
		sam := st.signIn(token(t, "sam", "acme", "approver"))
		flooder, evil := browserAt(t, "127.0.0.1"), token(t, "agent", "evil", "agent")
		ok := 0
		for i := 0; i < 100; i++ {
			a := tokenSignIn(t, st, flooder, evil)
			if a.status == 200 {
				ok++
				continue
			}
			wantRefusal(t, "a token sign-in in the flood", a, "too_many_requests")
		}
		// sam's sign-in spent one of the address's 60 a minute.
		if ok != console.DefaultSignInRate-1 {
			t.Errorf("%d of 100 token sign-ins from one address passed, want %d", ok, console.DefaultSignInRate-1)
		}
		if status, body := sam.get("/console/api/session"); status != 200 {
			t.Errorf("sam after the flood: %d %s", status, body)
		}
		if a := tokenSignIn(t, st, browserAt(t, "127.0.0.3"), token(t, "bob", "acme", "approver")); a.status != 200 {
			t.Errorf("a sign-in from another address after the flood: %d %s", a.status, a.body)
		}
	})
	t.Run("full", func(t *testing.T) {
		st := newStack(t, stackOptions{console: func(c *console.Config) { c.MaxSessions, c.SignInRate = 3, -1 }})
		sam := st.signIn(token(t, "sam", "acme", "approver"))
		bob := st.signIn(token(t, "bob", "acme", "approver"))
		evil := token(t, "agent", "evil", "agent")
		if a := tokenSignIn(t, st, http.DefaultClient, evil); a.status != 200 {
			t.Fatalf("the third sign-in: %d %s", a.status, a.body)
		}
		for i := 0; i < 20; i++ {
			wantRefusal(t, "a sign-in into the full table", tokenSignIn(t, st, http.DefaultClient, evil), "console_full")
		}
		for name, c := range map[string]*client{"sam": sam, "bob": bob} {
			if status, body := c.get("/console/api/session"); status != 200 {
				t.Errorf("%s after sign-ins into the full table: %d %s", name, status, body)
			}
		}
	})
}

// Finding: 50 sign-ins from each of 201 addresses filled the table (default caps) and
// refused every OIDC sign-in fleet-wide. Now the addresses of one network (an IPv4 /24)
// start at most console.max_pending_logins_per_network between them: 51 addresses of one
// /24 are refused past it, a sign-in one of them started before still finishes, and an
// address of another network still signs in.
func TestConsoleLoginFloodFromOneNetworkIsLimitedAndKeepsOtherNetworksSignIn(t *testing.T) {
	st := oidcStack(t, map[string]any{"sub": "dana", "org": "acme"})
	victim := browserAt(t, "127.0.5.200")
	cb, login, refused := startLoginFrom(t, st, victim)
	if refused != nil {
		t.Fatalf("the victim's sign-in: %+v", *refused)
	}
	const perAddr = console.DefaultMaxPendingLoginsPerNetwork / 50 // 51 addresses of 4: past the network's cap
	started, refusedN := 1, 0
	for a := 1; a <= 51; a++ {
		hc := browserAt(t, fmt.Sprintf("127.0.5.%d", a))
		for i := 0; i < perAddr; i++ {
			req, _ := http.NewRequest("GET", st.url+"/console/auth/login", nil)
			ans := send(t, hc, req)
			if ans.status == http.StatusFound {
				started++
				continue
			}
			wantRefusal(t, "a login in the network's flood", ans, "too_many_sign_ins")
			if !strings.Contains(ans.body, "console.max_pending_logins_per_network") {
				t.Fatalf("the refusal does not name the network's cap: %s", ans.body)
			}
			refusedN++
		}
	}
	if started != console.DefaultMaxPendingLoginsPerNetwork || refusedN != 51*perAddr+1-started {
		t.Errorf("the network started %d sign-ins (want its cap, %d) and was refused %d times", started, console.DefaultMaxPendingLoginsPerNetwork, refusedN)
	}
	other := browserAt(t, "127.0.6.1")
	ocb, ologin, refused := startLoginFrom(t, st, other)
	if refused != nil {
		t.Fatalf("an address of another network after the flood: %+v", *refused)
	}
	if a, ok := finishLoginFrom(t, other, ocb, ologin); a.status != 200 || !ok {
		t.Errorf("the other network's sign-in: %d %s", a.status, a.body)
	}
	if a, ok := finishLoginFrom(t, victim, cb, login); a.status != 200 || !ok {
		t.Errorf("the victim's sign-in, finished after the flood: %d %s", a.status, a.body)
	}
	// Finished, the victim's no longer counts: its network may start one more.
	if _, _, refused := startLoginFrom(t, st, victim); refused != nil {
		t.Errorf("the victim's network after its sign-in finished: %+v", *refused)
	}
}
