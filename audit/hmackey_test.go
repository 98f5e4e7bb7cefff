package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/audit/redact"
)

// PORTCULLIS_AUDIT_HMAC_KEY keys the redactor instead of the file, which is then
// neither read nor created: two logs in different data dirs given the same value
// mark a secret alike and publish the same key id.
func TestHMACKeyFromEnv(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	t.Setenv(HMACKeyEnv, base64.StdEncoding.EncodeToString(key))
	const secret = "password=hunter2-hunter2"
	want := redact.New(key).String(secret)
	var ids []string
	for i := 0; i < 2; i++ {
		cfg := testConfig(t)
		var logs bytes.Buffer
		l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Redactor().String(secret); got != want || got == secret {
			t.Fatalf("log %d marks the secret %q, want %q (the env key's mark)", i, got, want)
		}
		ids = append(ids, l.RedactionKeyID())
		l.Close()
		if _, err := os.Stat(cfg.HMACKeyPath); !os.IsNotExist(err) {
			t.Fatalf("log %d: %s exists (%v) although the env variable provides the key", i, cfg.HMACKeyPath, err)
		}
		if strings.Contains(logs.String(), base64.StdEncoding.EncodeToString(key)) {
			t.Fatal("the log output holds the key")
		}
	}
	if ids[0] != ids[1] || ids[0] != HMACKeyID(key) || len(ids[0]) != 16 {
		t.Fatalf("key ids %v, want both %s (16 hex)", ids, HMACKeyID(key))
	}
	// The id names the key without being it, and differs between keys.
	other := append([]byte{}, key...)
	other[0] ^= 1
	if HMACKeyID(other) == ids[0] {
		t.Fatal("two keys share a key id")
	}
}

// A malformed or short PORTCULLIS_AUDIT_HMAC_KEY stops Open with an error naming the
// variable and never its value; no file is written in its place.
func TestMalformedHMACKeyEnvIsRefused(t *testing.T) {
	short := base64.StdEncoding.EncodeToString([]byte("sixteen-bytes-ok"))
	for _, v := range []string{"not base64 at all!!", short} {
		t.Setenv(HMACKeyEnv, v)
		cfg := testConfig(t)
		_, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), HMACKeyEnv) {
			t.Fatalf("%q: error %v, want one naming %s", v, err, HMACKeyEnv)
		}
		if strings.Contains(err.Error(), strings.TrimSpace(v)) {
			t.Fatalf("the error echoes the value: %v", err)
		}
		if _, err := os.Stat(cfg.HMACKeyPath); !os.IsNotExist(err) {
			t.Fatalf("%s written although the env key was refused (%v)", cfg.HMACKeyPath, err)
		}
	}
}

// Without the env variable the file is generated once and reused, and its key id is
// logged (never the key).
func TestGeneratedHMACKeyLogsItsIDOnly(t *testing.T) {
	t.Setenv(HMACKeyEnv, "")
	cfg := testConfig(t)
	var logs bytes.Buffer
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	id := l.RedactionKeyID()
	l.Close()
	key, err := LoadHMACKey(cfg.HMACKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if id != HMACKeyID(key) || !strings.Contains(logs.String(), id) {
		t.Fatalf("key id %s, want %s, logged: %s", id, HMACKeyID(key), logs.String())
	}
	if strings.Contains(logs.String(), base64.StdEncoding.EncodeToString(key)) {
		t.Fatal("the log output holds the key")
	}
	if l2 := openTest(t, cfg); l2.RedactionKeyID() != id {
		t.Fatal("the generated key is not reused")
	}
}
