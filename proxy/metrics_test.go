package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
)

// A refused reload shows on /metrics (and the revision serving), while /readyz stays
// ready on the last good policy.
func TestPolicyReloadFailureMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.rego")
	if err := os.WriteFile(path, []byte(allowAllPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	engine, err := policies.New(context.Background(), policies.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, gwOptions{decider: func(proxy.Decider) proxy.Decider { return engine }})
	rev := engine.Revision()
	if err := os.WriteFile(path, []byte("package portcullis\n\ndecision := {"), 0o600); err != nil {
		t.Fatal(err)
	}
	if engine.Reload(context.Background()) == nil {
		t.Fatal("a broken policy reloaded")
	}
	_, body := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", "")
	for _, want := range []string{
		`portcullis_policy_reload_failures_total{policy="live"} 1`,
		`portcullis_policy_reload_failures_total{policy="shadow"} 0`,
		`portcullis_policy_revision_info{policy="live",revision="` + rev + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, body := g.do("GET", "/readyz", "", "", ""); resp.StatusCode != 200 || !strings.Contains(body, rev) {
		t.Fatalf("/readyz after a refused reload: %d %s", resp.StatusCode, body)
	}
}

// By default /metrics is on the proxy listener for tokens with the metrics role only:
// anonymous scrapes get 401 (and spend the pre-auth budget like any unknown caller),
// other roles 403.
func TestMetricsOnTheProxyListenerNeedTheMetricsRole(t *testing.T) {
	g := newGateway(t, gwOptions{})
	if resp, body := g.do("GET", "/metrics", "", "", ""); resp.StatusCode != 401 || strings.Contains(body, "portcullis_") {
		t.Fatalf("anonymous /metrics: %d %.200s", resp.StatusCode, body)
	}
	if resp, body := g.do("GET", "/metrics", token(t, "agent-1", "acme", "agent", "admin"), "", ""); resp.StatusCode != 403 ||
		!strings.Contains(body, "needs the metrics role") || strings.Contains(body, "portcullis_") {
		t.Fatalf("/metrics for an agent: %d %.200s", resp.StatusCode, body)
	}
	resp, body := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "portcullis_auth_failures_total 1\n") {
		t.Fatalf("/metrics for the metrics role: %d %.300s", resp.StatusCode, body)
	}
}

// The role is configurable.
func TestMetricsRoleIsConfigurable(t *testing.T) {
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.Metrics.Role = "observer" }})
	if resp, _ := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", ""); resp.StatusCode != 403 {
		t.Fatalf("metrics role with metrics.role observer: %d", resp.StatusCode)
	}
	if resp, _ := g.do("GET", "/metrics", token(t, "prometheus", "ops", "observer"), "", ""); resp.StatusCode != 200 {
		t.Fatalf("observer role: %d", resp.StatusCode)
	}
}

// With metrics.listen, /metrics is served there without authentication and not at all on
// the proxy listener, whatever the token.
func TestMetricsListenServesMetricsOnlyThere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.Metrics.Listen = ln.Addr().String() }})
	done := make(chan error, 1)
	go func() { done <- g.srv.ServeMetrics(ln) }()

	if resp, body := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", ""); resp.StatusCode != 404 || strings.Contains(body, "portcullis_") {
		t.Fatalf("/metrics on the proxy listener with metrics.listen set: %d %.200s", resp.StatusCode, body)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "portcullis_decisions_total") {
		t.Fatalf("anonymous scrape of metrics.listen: %d %.200s", code, body)
	}
	if code, _ := get("/mcp"); code != 404 {
		t.Fatalf("metrics.listen serves /mcp: %d", code)
	}
	if err := g.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeMetrics after Shutdown: %v", err)
	}
}

// metrics.listen must differ from proxy.listen, and metrics.role must be set.
func TestMetricsConfigValidates(t *testing.T) {
	c := proxy.Config{Listen: "127.0.0.1:9000"}
	c.MCP.Upstream.URL, c.REST.Upstream.URL = "http://127.0.0.1:1/mcp", "http://127.0.0.1:1"
	c.SetDefaults(t.TempDir())
	if c.Metrics.Role != "metrics" {
		t.Fatalf("default metrics.role %q", c.Metrics.Role)
	}
	c.Metrics.Listen, c.Metrics.Role = "127.0.0.1:9000", " "
	err := c.Validate()
	for _, want := range []string{`metrics.listen: "127.0.0.1:9000" is proxy.listen`, "metrics.role: must be set"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
