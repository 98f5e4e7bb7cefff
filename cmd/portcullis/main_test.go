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

// -h and --help on any command print its usage and exit 0; they never run the command.
func TestHelpExitsZero(t *testing.T) {
	t.Setenv("PORTCULLIS_DATA_DIR", t.TempDir())
	for _, args := range [][]string{
		{"serve", "-h"}, {"serve", "--help"}, {"backend", "-h"}, {"backend", "serve", "--help"},
		{"backend", "keys", "-h"}, {"backend", "keys", "create", "-h"}, {"backend", "rewrap", "-h"},
		{"token", "-h"}, {"policy", "test", "-h"}, {"policy", "check", "--help"}, {"policy", "eval", "-h"},
		{"audit", "verify", "-h"}, {"audit", "export", "--help"}, {"audit", "tail", "-h"}, {"audit", "prune", "-h"},
		{"approvals", "list", "-h"}, {"approvals", "approve", "--help"}, {"bench", "-h"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 || !strings.Contains(strings.ToLower(out.String()+errb.String()), "usage") {
			t.Errorf("%s: exit %d, want 0 with the usage; output:\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
	// A bad flag is still a usage error.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"audit", "tail", "--nope"}, &out, &errb); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

// token refuses to mint with a key serve does not have: it never creates one.
func TestTokenNeedsTheServersKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var out, errb bytes.Buffer
	code := runToken(context.Background(), []string{"--data-dir", dir, "--sub", "agent-1"}, &out, &errb)
	if code == 0 || out.Len() != 0 {
		t.Fatalf("token without a key: exit %d, stdout %q", code, out.String())
	}
	for _, want := range []string{filepath.Join(dir, "dev-signing-key.pem"), "portcullis serve", "--data-dir"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("error does not say %q: %s", want, errb.String())
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("token created %s: %v", dir, err)
	}
}

// serve prints and logs one hint, and it names the data dir when it is not the default.
func TestServeDevTokenHint(t *testing.T) {
	dir := t.TempDir()
	listen := freeAddr(t)
	cfg, err := loadConfig(overrides{dataDir: dir, listen: listen, backendListen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	stdout, logs := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, newLogger(logs, "info"), stdout) }()
	defer func() {
		cancel()
		<-done
	}()
	for !strings.Contains(stdout.String(), "Dev mode") {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	hint := devTokenHint(cfg)
	if !strings.Contains(hint, " token --data-dir "+dir+" --sub ") {
		t.Fatalf("hint %q does not name the data dir %s", hint, dir)
	}
	if !strings.Contains(stdout.String(), "\n  "+hint+"\n") || !strings.Contains(logs.String(), "`"+hint+"`") {
		t.Fatalf("stdout and log do not give the same hint %q:\nstdout: %s\nlog: %s", hint, stdout.String(), logs.String())
	}
	// The hint works: token with exactly its flags mints with the key serve created.
	args := strings.Fields(hint[strings.Index(hint, " token ")+len(" token "):])
	var out, errb bytes.Buffer
	if code := runToken(context.Background(), args, &out, &errb); code != 0 || out.Len() == 0 {
		t.Fatalf("the hinted command failed: %d %s", code, errb.String())
	}

	def := *cfg
	def.DataDir = "./data"
	if h := devTokenHint(&def); strings.Contains(h, "--data-dir") {
		t.Fatalf("hint for the default data dir: %q", h)
	}
	def.DataDir = "my data"
	def.Auth.Issuer = "other"
	if h := devTokenHint(&def); !strings.Contains(h, "--data-dir 'my data'") || !strings.Contains(h, "--iss other") {
		t.Fatalf("hint: %q", h)
	}
}
