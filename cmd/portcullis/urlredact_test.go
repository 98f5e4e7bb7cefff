package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A configured URL may carry a password (user:pw@) or a token (?token=): serve's log
// and stdout show where it listens and what it forwards to without either.
func TestServeLogsNoURLCredentials(t *testing.T) {
	const canary = "CANARY"
	var backendListen string
	stdout := &syncBuffer{}
	_, logs, stop := startServeOut(t, overrides{dataDir: t.TempDir()}, func(cfg *Config) {
		backendListen = cfg.Backend.Listen
		// Set after validation (which refuses a query on an upstream): the log line must
		// not depend on validation to keep a token out.
		cfg.Proxy.MCP.Upstream.URL = "http://svc:" + canary + "MCPPW@" + backendListen + "/mcp?token=" + canary + "MCPTOK#" + canary + "FRAG"
		cfg.Proxy.REST.Upstream.URL = "http://svc:" + canary + "RESTPW@" + backendListen + "?token=" + canary + "RESTTOK"
		cfg.Proxy.PublicURL = "http://u:" + canary + "PUBPW@" + cfg.Proxy.Listen + "?token=" + canary + "PUBTOK"
	}, stdout)
	// Let tool discovery (which calls the upstream) run and log.
	time.Sleep(500 * time.Millisecond)
	stop()
	if !strings.Contains(logs.String(), `"portcullis listening"`) && !strings.Contains(logs.String(), "portcullis listening") {
		t.Fatalf("no startup line in the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "***@"+backendListen+"/mcp") {
		t.Errorf("the startup line does not show the MCP upstream (masked):\n%s", logs.String())
	}
	for name, out := range map[string]string{"log": logs.String(), "stdout": stdout.String()} {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, canary) {
				t.Errorf("%s line carries a URL credential: %s", name, line)
			}
		}
	}
}

// A malformed URL with a password is refused by field, without the password (nor the
// url.Parse error, whose text holds the whole URL).
func TestConfigURLErrorsDoNotEchoCredentials(t *testing.T) {
	const canary = "CANARYQ"
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(`
proxy:
  public_url: "http://u:`+canary+`P1@[::1?token=`+canary+`P2"
  mcp:
    upstream:
      url: "http://u:`+canary+`M@[::1/mcp"
  rest:
    upstream:
      url: "http://u:`+canary+`R%zz@127.0.0.1:9/"
rate_limit:
  redis_url: "redis://:`+canary+`RD@[::1"
approvals:
  public_url: "http://u:`+canary+`A1@[::1?token=`+canary+`A2"
console:
  enabled: true
  public_url: "http://u:`+canary+`C1@127.0.0.1:9/?token=`+canary+`C2"
`), 0o600)
	_, err := loadConfig(overrides{configPath: path, dataDir: dir})
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"proxy.public_url: must be an absolute http(s) URL",
		"proxy.mcp.upstream.url: not a URL",
		"proxy.rest.upstream.url: not a URL",
		"rate_limit.redis_url",
		"approvals: public_url must be an absolute http or https URL",
		"console.public_url: want an origin",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, canary) {
		t.Errorf("error echoes a URL credential:\n%s", msg)
	}
}

// health never echoes its --url's password or query token: not for a malformed URL,
// nor for one that does not answer.
func TestHealthDoesNotEchoURLCredentials(t *testing.T) {
	const canary = "CANARYH"
	ln := freeAddr(t) // nothing listens there
	for _, tc := range []struct {
		url  string
		code int
	}{
		{"http://u:" + canary + "X6@[::1", 2},
		{"http://u:" + canary + "PCT%zz@127.0.0.1/readyz", 2},
		{"u:" + canary + "@127.0.0.1/readyz?token=" + canary, 2},
		{"http://u:" + canary + "PW@" + ln + "/readyz?token=" + canary + "TOK#" + canary + "FRAG", 1},
	} {
		var stdout, stderr bytes.Buffer
		code := runHealth(context.Background(), []string{"--url", tc.url, "--timeout", "2s"}, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("health --url %q: exit %d, want %d; stderr: %s", tc.url, code, tc.code, stderr.String())
		}
		out := stdout.String() + stderr.String()
		if !strings.Contains(out, "portcullis health") {
			t.Errorf("health --url %q said nothing: %q", tc.url, out)
		}
		if strings.Contains(out, canary) {
			t.Errorf("health --url %q echoes a credential: %s", tc.url, out)
		}
	}
	// The connection error still says where it went.
	var stderr bytes.Buffer
	runHealth(context.Background(), []string{"--url", "http://u:" + canary + "@" + ln + "/readyz?token=" + canary}, io.Discard, &stderr)
	if !strings.Contains(stderr.String(), "http://***@"+ln+"/readyz") {
		t.Errorf("health connection error does not name the (masked) URL: %s", stderr.String())
	}
}
