package ssrf

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestIsPublic(t *testing.T) {
	cases := []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"198.18.0.1", false},
		{"::1", false},
		{"::", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::127.0.0.1", false},
		{"fd00::1", false},
		{"fe80::1", false},
		{"64:ff9b::7f00:1", false},
		{"2002:7f00:1::", false},
		{"2001:db8::1", false},
		{"ff02::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			if got := IsPublic(netip.MustParseAddr(tc.addr)); got != tc.public {
				t.Fatalf("IsPublic(%s) = %v, want %v", tc.addr, got, tc.public)
			}
		})
	}
}

func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

func port(ts *httptest.Server) string {
	_, p, _ := net.SplitHostPort(ts.Listener.Addr().String())
	return p
}

// Row 8: every private spelling is refused and the listener never sees a connection.
func TestProbeHTTPRefusesPrivateTargets(t *testing.T) {
	ts, hits := counting(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	p := port(ts)
	g := &Guard{Timeout: 2 * time.Second}
	cases := []struct{ name, url string }{
		{"loopback", "http://127.0.0.1:" + p + "/"},
		{"decimal integer", "http://2130706433:" + p + "/"},
		{"hex", "http://0x7f000001:" + p + "/"},
		{"short dotted", "http://127.1:" + p + "/"},
		{"octal dotted", "http://0177.0.0.1:" + p + "/"},
		{"ipv4-mapped ipv6", "http://[::ffff:127.0.0.1]:" + p + "/"},
		{"ipv6 loopback", "http://[::1]:" + p + "/"},
		{"metadata", "http://169.254.169.254/latest/meta-data/"},
		{"ula ipv6", "http://[fd00::1]/"},
		{"unspecified", "http://0.0.0.0:" + p + "/"},
		{"gopher", "gopher://127.0.0.1:" + p + "/_x"},
		{"file", "file:///etc/passwd"},
		{"user info", "http://user:pass@example.com/"},
		{"name resolving to loopback", "http://localhost:" + p + "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.ProbeHTTP(context.Background(), tc.url)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("ProbeHTTP(%s) err = %v, want ErrRefused", tc.url, err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("test server saw %d requests, want 0", n)
	}
}

func TestProbeHTTPAllowedAndRedirect(t *testing.T) {
	target, targetHits := counting(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	redirector, redirHits := counting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/private", http.StatusFound)
	})
	ok, okHits := counting(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) })
	only := func(ts ...*httptest.Server) func(netip.AddrPort) bool {
		return func(ap netip.AddrPort) bool {
			for _, s := range ts {
				if strconv.Itoa(int(ap.Port())) == port(s) && ap.Addr().IsLoopback() {
					return true
				}
			}
			return false
		}
	}
	// Positive control: an admitted server is reached, and a 401 still means reachable.
	g := &Guard{Timeout: 2 * time.Second, Allow: only(ok, redirector)}
	res, err := g.ProbeHTTP(context.Background(), ok.URL)
	if err != nil || !res.Reachable || res.StatusCode != 401 || okHits.Load() != 1 {
		t.Fatalf("allowed probe: %+v %v hits=%d", res, err, okHits.Load())
	}
	// A redirect (here to a non-admitted server) is refused, not followed.
	_, err = g.ProbeHTTP(context.Background(), redirector.URL)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("redirect: err = %v, want ErrRefused", err)
	}
	if redirHits.Load() != 1 || targetHits.Load() != 0 {
		t.Fatalf("redirect hits: redirector=%d target=%d, want 1 and 0", redirHits.Load(), targetHits.Load())
	}
	// Even a redirect to an admitted address is not followed.
	g2 := &Guard{Timeout: 2 * time.Second, Allow: only(redirector, target)}
	if _, err := g2.ProbeHTTP(context.Background(), redirector.URL); !errors.Is(err, ErrRefused) || targetHits.Load() != 0 {
		t.Fatalf("redirect to admitted target followed: %v hits=%d", err, targetHits.Load())
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	p := ln.Addr().(*net.TCPAddr).Port
	g := &Guard{Timeout: time.Second}
	for _, host := range []string{"127.0.0.1", "localhost", "2130706433", "::ffff:127.0.0.1", "0"} {
		if _, err := g.ProbeTCP(context.Background(), host, p); !errors.Is(err, ErrRefused) {
			t.Fatalf("ProbeTCP(%s) err = %v, want ErrRefused", host, err)
		}
	}
	if _, err := g.ProbeTCP(context.Background(), "example.com", 70000); !errors.Is(err, ErrRefused) {
		t.Fatalf("port out of range: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if accepted.Load() != 0 {
		t.Fatalf("listener accepted %d connections, want 0", accepted.Load())
	}
	g.Allow = func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() && int(ap.Port()) == p }
	if res, err := g.ProbeTCP(context.Background(), "127.0.0.1", p); err != nil || !res.Reachable {
		t.Fatalf("allowed TCP probe: %+v %v", res, err)
	}
}
