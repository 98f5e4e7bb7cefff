package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestKeysGeneratedPrivately(t *testing.T) {
	cfg := testConfig(t)
	var logs bytes.Buffer
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, p := range []string{cfg.SigningKeyPath, cfg.HMACKeyPath} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v err %v", p, st.Mode().Perm(), err)
		}
	}
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	seed := base64.StdEncoding.EncodeToString(key.Seed())
	if strings.Contains(logs.String(), seed) || !strings.Contains(logs.String(), "generated a new checkpoint signing key") {
		t.Fatalf("log leaks the key or lacks the warning: %s", logs.String())
	}
	// A second Open reuses both keys: same redaction marks, same checkpoint key.
	l2 := openTest(t, cfg)
	if l2.Redactor().String("password=x") != l.Redactor().String("password=x") {
		t.Fatal("hmac key not reused")
	}
}

func TestSigningKeyFromEnv(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	t.Setenv(SigningKeyEnv, base64.StdEncoding.EncodeToString(priv.Seed()))
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 2)
	l.Close()
	if _, err := os.Stat(cfg.SigningKeyPath); err == nil {
		t.Fatal("key file written although the env variable provides the key")
	}
	rep, err := Verify(context.Background(), cfg.Path, priv.Public().(ed25519.PublicKey))
	if err != nil || !rep.OK {
		t.Fatalf("%+v %v", rep, err)
	}
	t.Setenv(SigningKeyEnv, "not-a-key-value-123")
	_, err = LoadSigningKey(cfg.SigningKeyPath)
	if err == nil || strings.Contains(err.Error(), "not-a-key-value-123") {
		t.Fatalf("bad env key: error %v (must not echo the value)", err)
	}
}

func TestPeriodicCheckpointIsSignedAndLogged(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointInterval = 20 * time.Millisecond
	var logs syncBuf
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 3)
	// The first batch is signed at once (seq 1); the ticker signs the rest (seq 3).
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"audit checkpoint","kind":"periodic","seq":3`) {
		if time.Now().After(deadline) {
			t.Fatal("no periodic checkpoint")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"msg":"audit checkpoint","kind":"periodic","seq":3`) ||
		!strings.Contains(logs.String(), `"signature":`) {
		t.Fatalf("checkpoint not logged: %s", logs.String())
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.UnsignedTail != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
}
