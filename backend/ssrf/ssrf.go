package ssrf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrRefused wraps every refusal by the guard (as opposed to a network failure).
var ErrRefused = errors.New("ssrf: refused")

// Guard dials only addresses Allow accepts. The zero value is usable: public
// addresses only, 5 s timeout.
type Guard struct {
	// Allow decides on the resolved address and port at dial time. Nil means
	// IsPublic(addr). Tests inject a func that admits one 127.0.0.1 test server.
	Allow   func(netip.AddrPort) bool
	Timeout time.Duration
}

// Result of a connectivity probe.
type Result struct {
	Reachable  bool   `json:"reachable"`
	Target     string `json:"target"`
	StatusCode int    `json:"status_code,omitempty"`
	LatencyMS  int64  `json:"latency_ms"`
}

func (g *Guard) timeout() time.Duration {
	if g.Timeout > 0 {
		return g.Timeout
	}
	return 5 * time.Second
}

func (g *Guard) allowed(ap netip.AddrPort) bool {
	if g.Allow != nil {
		return g.Allow(ap)
	}
	return IsPublic(ap.Addr())
}

// control runs after name resolution, immediately before connect(2): the address here
// is the one that will actually be dialed.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable dial address", ErrRefused)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !g.allowed(ap) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, ap.Addr())
	}
	return nil
}

// Dialer returns a dialer that refuses non-allowed addresses at connect time.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: g.timeout(), Control: g.control}
}

// HTTPClient returns a client that never follows redirects, ignores proxy environment
// variables, and dials through the guard.
func (g *Guard) HTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.Dialer().DialContext,
		TLSHandshakeTimeout:    g.timeout(),
		ResponseHeaderTimeout:  g.timeout(),
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   g.timeout(),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return fmt.Errorf("%w: redirects are not followed", ErrRefused)
		},
	}
}

var numericHostRe = regexp.MustCompile(`^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$`)

// CheckURL accepts only absolute http(s) URLs without credentials, and refuses literal
// addresses that are not allowed (and numeric host spellings such as 2130706433 or
// 0x7f.1 that resolvers read as IPs) before any DNS or dial happens.
func (g *Guard) CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not a URL", ErrRefused)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q is not http or https", ErrRefused, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: URLs with user info are not allowed", ErrRefused)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: URL has no host", ErrRefused)
	}
	if err := g.checkHost(host, u.Port()); err != nil {
		return nil, err
	}
	return u, nil
}

func (g *Guard) checkHost(host, port string) error {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		p, _ := strconv.Atoi(port)
		if !g.allowed(netip.AddrPortFrom(a.Unmap(), uint16(p))) {
			return fmt.Errorf("%w: %s is not a public address", ErrRefused, a)
		}
		return nil
	}
	if numericHostRe.MatchString(strings.ToLower(host)) {
		return fmt.Errorf("%w: numeric host %q is not a dotted-quad address", ErrRefused, host)
	}
	if strings.ContainsAny(host, "%/\\@ ") {
		return fmt.Errorf("%w: host %q has invalid characters", ErrRefused, host)
	}
	return nil
}

// ProbeHTTP sends one GET to raw and reports whether an HTTP response came back. A
// redirect is an error: following it could reach an address the guard never saw.
func (g *Guard) ProbeHTTP(ctx context.Context, raw string) (Result, error) {
	u, err := g.CheckURL(raw)
	if err != nil {
		return Result{Target: raw}, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{Target: raw}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	req.Header.Set("User-Agent", "portcullis-test-connection/1")
	start := time.Now()
	resp, err := g.HTTPClient().Do(req)
	res := Result{Target: u.Redacted(), LatencyMS: time.Since(start).Milliseconds()}
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	res.StatusCode = resp.StatusCode
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return res, fmt.Errorf("%w: redirects are not followed (status %d)", ErrRefused, resp.StatusCode)
	}
	res.Reachable = true
	return res, nil
}

// ProbeTCP opens (and closes) one TCP connection to host:port.
func (g *Guard) ProbeTCP(ctx context.Context, host string, port int) (Result, error) {
	target := net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))
	if port <= 0 || port > 65535 {
		return Result{Target: target}, fmt.Errorf("%w: port %d out of range", ErrRefused, port)
	}
	if host == "" {
		return Result{Target: target}, fmt.Errorf("%w: empty host", ErrRefused)
	}
	if err := g.checkHost(host, strconv.Itoa(port)); err != nil {
		return Result{Target: target}, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout())
	defer cancel()
	start := time.Now()
	c, err := g.Dialer().DialContext(ctx, "tcp", target)
	res := Result{Target: target, LatencyMS: time.Since(start).Milliseconds()}
	if err != nil {
		return res, err
	}
	_ = c.Close()
	res.Reachable = true
	return res, nil
}

var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/96", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32",
		"2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// IsPublic reports whether a is a globally routable unicast address: not private,
// loopback, link-local (cloud metadata lives at 169.254.169.254), CGNAT, documentation,
// multicast, or an IPv6 form that embeds an IPv4 address (NAT64, 6to4, Teredo, mapped).
func IsPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
