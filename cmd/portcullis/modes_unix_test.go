//go:build unix

package main

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The whole stack on a fresh data dir under umask 0: the dir is 0700 and every file
// serve writes (databases with their WAL and SHM, the audit journal and lock, the
// witness file, every key) is 0600. The dev public key is the one exception: it is public, 0644 on
// purpose, inside the 0700 dir.
func TestFreshDataDirIsOwnerOnlyWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	listen := freeAddr(t)
	cfg, err := loadConfig(overrides{dataDir: dir, listen: listen, backendListen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, newLogger(logs, "debug"), io.Discard) }()
	url := "http://" + listen
	up := false
	for i := 0; i < 100 && !up; i++ {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			up = true
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !up {
		cancel()
		t.Fatalf("serve did not come up; log:\n%s", logs.String())
	}
	// Write through every store: a created integration (backend), its audit rows.
	token := mintToken(t, dir, "--sub", "agent-1", "--org", "acme", "--roles", "agent")
	if resp, body := postJSON(t, url+"/v1/integrations", token, `{"name":"modes","ai_provider_id":"openai","key":"sk-modes-0123456789"}`); resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	// The witness file gets its first line at the first checkpoint (every second while rows arrive).
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(dir, "witness.log")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	check := func(when string) map[string]bool {
		seen := map[string]bool{}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			switch {
			case d.IsDir():
				want = 0o700
			case strings.HasSuffix(d.Name(), ".pub.pem"):
				want = 0o644
			}
			if info.Mode().Perm() != want {
				t.Errorf("%s: %s has mode %v, want %v", when, p, info.Mode().Perm(), want)
			}
			seen[d.Name()] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	seen := check("running")
	for _, f := range []string{"audit.db", "audit.db-wal", "audit.db-shm", "audit.db.journal", "audit-signing.key",
		"audit-hmac.key", "backend.db", "backend.db-wal", "approvals.db", "approvals.db-wal", "kek.key", "dev-signing-key.pem", "witness.log"} {
		if !seen[f] {
			t.Errorf("%s was not created; its mode went unchecked (have %v)", f, seen)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	check("stopped")
}
