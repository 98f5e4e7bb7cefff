package proxy_test

import (
	"context"
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
	_, body := g.do("GET", "/metrics", "", "", "")
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
