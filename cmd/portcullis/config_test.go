package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented example must load as it is: it is what users copy.
func TestConfigExampleLoads(t *testing.T) {
	cfg, err := loadConfig(overrides{configPath: "../../docs/config.example.yaml", dataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("docs/config.example.yaml: %v", err)
	}
	if cfg.Proxy.Listen != "127.0.0.1:8080" || cfg.Proxy.MCP.Upstream.URL != "http://127.0.0.1:8081/mcp" || cfg.Proxy.ApprovalWait.String() != "30s" {
		t.Fatalf("unexpected config: %+v", cfg.Proxy)
	}
}

// A bad config reports every problem at once, each naming its field.
func TestConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(`
log_level: loud
proxy:
  body_limit: 10
  mcp:
    upstream:
      url: ftp://example.com/mcp
  rest:
    prefixes: [v1]
    upstream:
      url: http://127.0.0.1:9/
  identity:
    alg: none
audit:
  synchronous: SOMETIMES
`), 0o600)
	_, err := loadConfig(overrides{configPath: path, dataDir: dir})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, want := range []string{"log_level", "proxy.body_limit", "proxy.mcp.upstream.url", "proxy.rest.prefixes[0]", "proxy.identity.alg", "synchronous"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func TestConfigUnknownFieldIsAnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "typo.yaml")
	os.WriteFile(path, []byte("proxy:\n  listne: 127.0.0.1:1\n"), 0o600)
	if _, err := loadConfig(overrides{configPath: path, dataDir: dir}); err == nil || !strings.Contains(err.Error(), "listne") {
		t.Fatalf("unknown field: %v", err)
	}
}
