package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// testConfig returns a config rooted in a fresh temp dir with short durations.
func testConfig(t testing.TB) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{CheckpointInterval: time.Hour}
	cfg.SetDefaults(dir)
	return cfg
}

func openTest(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func pubKey(t testing.TB, cfg Config) ed25519.PublicKey {
	t.Helper()
	k, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatalf("LoadSigningKey: %v", err)
	}
	return k.Public().(ed25519.PublicKey)
}

func sampleEvent(i int) *Event {
	return &Event{
		Kind:       KindDecision,
		RequestID:  fmt.Sprintf("req-%d", i),
		DecisionID: fmt.Sprintf("dec-%d", i),
		Caller: Caller{Sub: fmt.Sprintf("agent-%d", i%7), Org: "acme", Workspace: "ws-1",
			Roles: []string{"agent"}, Session: "s1", ClientAddr: "127.0.0.1"},
		Surface: "mcp", Tool: []string{"create_integration", "list_integrations", "delete_integration"}[i%3],
		Method: "POST", Path: "/mcp",
		Arguments:      json.RawMessage(`{"name":"prod openai","key":"hmac-sha256:0123456789abcdef"}`),
		Decision:       []string{"allow", "deny", "rate_limited"}[i%3],
		Reason:         "policy says so",
		PolicyRevision: "rev-abc",
	}
}

func appendN(t testing.TB, l *Log, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if err := l.Append(ctx, sampleEvent(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func dbPathOf(cfg Config) string { return filepath.Clean(cfg.Path) }
