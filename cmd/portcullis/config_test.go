package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The documented example must load as it is: it is what users copy.
func TestConfigExampleLoads(t *testing.T) {
	cfg, err := loadConfig(overrides{configPath: "../../docs/config.example.yaml", dataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("docs/config.example.yaml: %v", err)
	}
	if cfg.Proxy.Listen != "127.0.0.1:8080" || cfg.Proxy.MCP.Upstream.URL != "http://127.0.0.1:8081/mcp" || cfg.Approval.WaitBudget.String() != "30s" {
		t.Fatalf("unexpected config: %+v", cfg.Proxy)
	}
	if cfg.Proxy.MCP.MaxBatchCalls != 64 || cfg.Proxy.AuthFailures.Interval.String() != "10s" || cfg.Proxy.AuthFailures.MaxKeys != 1000 ||
		cfg.Proxy.Metrics.Listen != "" || cfg.Proxy.Metrics.Role != "metrics" {
		t.Fatalf("the example's flood limits and metrics do not reach the proxy: %+v", cfg.Proxy)
	}
}

// A bad config reports every problem at once, each naming its field.
func TestConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(`
log_level: loud
log_repeat_interval: 2h
proxy:
  body_limit: 10
  auth_failures:
    interval: 1ms
    max_keys: -1
  mcp:
    max_batch_calls: 5000
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
metrics:
  listen: 127.0.0.1:99999
  role: ""
`), 0o600)
	_, err := loadConfig(overrides{configPath: path, dataDir: dir})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, want := range []string{"log_level", "proxy.body_limit", "proxy.mcp.upstream.url", "proxy.rest.prefixes[0]", "proxy.identity.alg", "synchronous",
		"log_repeat_interval: must be at most 1h", "proxy.auth_failures.interval: must be between 100ms and 1h, got 1ms",
		"proxy.auth_failures.max_keys: must be between 1 and 1000000, got -1", "proxy.mcp.max_batch_calls: must be between 1 and 1000, got 5000",
		`metrics.listen: "127.0.0.1:99999": port "99999"`} {
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

// A file with a field yaml.v3 cannot decode still gets validated: the typo and the bad
// values are reported together, by section and field, without Go type names.
func TestConfigDecodeAndValidationErrorsTogether(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "typo.yaml")
	os.WriteFile(path, []byte(`log_level: info
proxy:
  public_url:
    - http://example.com
  lisen: 127.0.0.1:1
  body_limit: 10
  read_timeout: soon
  rest:
    prefixes: [/v1/, {a: 1}]
audit:
  synchronous: SOMETIMES
  mode: maybe
backend:
  enabled: perhaps
`), 0o600)
	_, err := loadConfig(overrides{configPath: path, dataDir: dir})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`line 4: proxy.public_url: want a string, got a list`,
		`line 5: proxy: unknown field "lisen"`,
		`line 7: proxy.read_timeout: want a duration like 30s, got "soon"`,
		`line 9: proxy.rest.prefixes[1]: want a string, got a mapping`,
		`line 14: backend.enabled: want true or false, got "perhaps"`,
		"proxy.body_limit", "audit.synchronous", "audit.mode",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %s:\n%v", want, msg)
		}
	}
	for _, leak := range []string{"main.", "proxy.Config", "cannot unmarshal", "not found in type", "into "} {
		if strings.Contains(msg, leak) {
			t.Errorf("error names Go types (%q):\n%v", leak, msg)
		}
	}
	// backend.enabled failed, so it is unset (the backend's default, on), not false: no
	// follow-on complaint that the upstream URLs are missing.
	if strings.Contains(msg, "upstream.url") {
		t.Errorf("a field that failed to decode was not reset to its default:\n%v", msg)
	}
}

func TestConfigDuplicateAndTopLevelProblemsNameTheField(t *testing.T) {
	dir := t.TempDir()
	for body, want := range map[string]string{
		"proxy:\n  listen: a:1\n  listen: b:1\n": `line 3: proxy: field "listen" is set more than once`,
		"- a\n- b\n":                             `line 1: top level: want a mapping, got a list`,
		"nope: 1\n":                              `line 1: top level: unknown field "nope"`,
	} {
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := loadConfig(overrides{configPath: path, dataDir: dir}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %s, got:\n%v", body, want, err)
		}
	}
}

// A listen address net.Listen would refuse is a configuration error naming its field and
// where the value came from, found before serve creates anything.
func TestConfigListenAddressesValidated(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PORTCULLIS_LISTEN", "banana")
	t.Setenv("PORTCULLIS_BACKEND_LISTEN", "127.0.0.1:99999")
	_, err := loadConfig(overrides{dataDir: dir})
	if err == nil {
		t.Fatal("bad listen addresses were accepted")
	}
	for _, want := range []string{`proxy.listen (PORTCULLIS_LISTEN): "banana" is not host:port`,
		`backend.listen (PORTCULLIS_BACKEND_LISTEN): "127.0.0.1:99999": port "99999"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %s:\n%v", want, err)
		}
	}
	if strings.Count(err.Error(), "99999") != 2 { // once in the value, once as the port: one message
		t.Errorf("backend.listen reported more than once:\n%v", err)
	}

	if _, err := loadConfig(overrides{dataDir: dir, listen: "localhost"}); err == nil || !strings.Contains(err.Error(), `proxy.listen (--listen): "localhost" is not host:port`) {
		t.Errorf("--listen: %v", err)
	}
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("proxy:\n  listen: nope\n"), 0o600)
	t.Setenv("PORTCULLIS_LISTEN", "")
	t.Setenv("PORTCULLIS_BACKEND_LISTEN", "")
	if _, err := loadConfig(overrides{configPath: file, dataDir: dir}); err == nil || !strings.Contains(err.Error(), `proxy.listen: "nope" is not host:port`) {
		t.Errorf("proxy.listen in the file: %v", err)
	}
	t.Setenv("PORTCULLIS_REDIS_URL", "redis://:hunter2@exa mple.com:6379")
	if _, err := loadConfig(overrides{dataDir: dir}); err == nil || !strings.Contains(err.Error(), "rate_limit.redis_url (PORTCULLIS_REDIS_URL): ") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("redis_url: %v", err)
	}

	t.Setenv("PORTCULLIS_REDIS_URL", "")
	t.Setenv("PORTCULLIS_METRICS_LISTEN", "127.0.0.1:8081")
	if _, err := loadConfig(overrides{dataDir: dir}); err == nil || !strings.Contains(err.Error(), `metrics.listen (PORTCULLIS_METRICS_LISTEN): "127.0.0.1:8081" is backend.listen`) {
		t.Errorf("metrics.listen on the backend's address: %v", err)
	}
	t.Setenv("PORTCULLIS_METRICS_LISTEN", "metrics")
	if _, err := loadConfig(overrides{dataDir: dir}); err == nil || !strings.Contains(err.Error(), `metrics.listen (PORTCULLIS_METRICS_LISTEN): "metrics" is not host:port`) {
		t.Errorf("metrics.listen not host:port: %v", err)
	}
	t.Setenv("PORTCULLIS_METRICS_LISTEN", "")

	// serve stops at the configuration: the data dir is never created.
	t.Setenv("PORTCULLIS_LISTEN", "banana")
	t.Setenv("PORTCULLIS_REDIS_URL", "")
	data := filepath.Join(dir, "never")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--data-dir", data}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "proxy.listen (PORTCULLIS_LISTEN)") {
		t.Fatalf("serve with PORTCULLIS_LISTEN=banana: exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("serve created %s before refusing its configuration: %v", data, err)
	}
}

// A copy of the example with only data_dir changed writes nothing outside the new data
// dir, and still starts the bundled backend and points both upstreams at it.
func TestConfigExampleFollowsItsDataDir(t *testing.T) {
	raw, err := os.ReadFile("../../docs/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "elsewhere")
	text := strings.Replace(string(raw), "data_dir: ./data ", "data_dir: "+dir+" ", 1)
	if text == string(raw) {
		t.Fatal("docs/config.example.yaml has no top-level `data_dir: ./data` line to change")
	}
	path := filepath.Join(t.TempDir(), "copy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_BACKEND_LISTEN", "127.0.0.1:9181")
	cfg, err := loadConfig(overrides{configPath: path})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{
		"audit.path": cfg.Audit.Path, "audit.signing_key_path": cfg.Audit.SigningKeyPath,
		"audit.hmac_key_path": cfg.Audit.HMACKeyPath, "approvals.db_path": cfg.Approval.DBPath,
		"proxy.identity.secret_file": cfg.Proxy.Identity.SecretFile, "proxy.identity.key_file": cfg.Proxy.Identity.KeyFile,
		"backend.data_dir": cfg.Backend.DataDir,
	} {
		if rel, err := filepath.Rel(dir, p); err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("%s is %q, outside data_dir %s", name, p, dir)
		}
	}
	if !cfg.backendEnabled() {
		t.Error("the example turns the bundled backend off")
	}
	if cfg.Proxy.MCP.Upstream.URL != "http://127.0.0.1:9181/mcp" || cfg.Proxy.REST.Upstream.URL != "http://127.0.0.1:9181" {
		t.Errorf("upstreams %q and %q do not follow backend.listen", cfg.Proxy.MCP.Upstream.URL, cfg.Proxy.REST.Upstream.URL)
	}
	if cfg.Approval.PublicURL != cfg.Proxy.PublicURL || cfg.Proxy.PublicURL != "http://127.0.0.1:8080" {
		t.Errorf("public urls: proxy %q, approvals %q", cfg.Proxy.PublicURL, cfg.Approval.PublicURL)
	}
}

func TestConfigCentralAuditAndRedisOutageSettingsAreValidated(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("rate_limit:\n  on_store_error: open\naudit:\n  central_url: mysql://root:hunter2@db/audit\n  central_max_lag: 10ms\n  central_interval: 2m\n"), 0o600)
	_, err := loadConfig(overrides{configPath: file, dataDir: dir})
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, want := range []string{
		`rate_limit.on_store_error: must be deny or allow, got "open"`,
		"audit.central_url: must be a postgres:// URL",
		"audit.central_max_lag: must be at least 1s, got 10ms",
		"audit.central_interval: must be between 10ms and 1m, got 2m0s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the central URL's password is in the error: %v", err)
	}
	os.WriteFile(file, []byte("rate_limit:\n  on_store_error: allow\n"), 0o600)
	t.Setenv("PORTCULLIS_AUDIT_CENTRAL_URL", "postgres://portcullis@db:5432/audit")
	cfg, err := loadConfig(overrides{configPath: file, dataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.OnStoreError != "allow" || cfg.Audit.CentralURL != "postgres://portcullis@db:5432/audit" ||
		cfg.Audit.CentralMaxLag != 5*time.Minute || cfg.Audit.CentralInterval != time.Second {
		t.Fatalf("settings: on_store_error %q central_url %q max_lag %s interval %s", cfg.Limits.OnStoreError,
			cfg.Audit.CentralURL, cfg.Audit.CentralMaxLag, cfg.Audit.CentralInterval)
	}
	t.Setenv("PORTCULLIS_AUDIT_CENTRAL_URL", "")
	if cfg, err := loadConfig(overrides{dataDir: dir}); err != nil || cfg.Limits.OnStoreError != "deny" || cfg.Audit.CentralURL != "" {
		t.Fatalf("defaults: %+v %v", cfg.Limits, err)
	}
}
