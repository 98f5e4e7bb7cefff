package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
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
		Caller: Caller{Caller: principal.Caller{Sub: fmt.Sprintf("agent-%d", i%7), Org: "acme", Workspace: "ws-1",
			Roles: []string{"agent"}, Session: "s1"}, ClientAddr: "127.0.0.1"},
		Surface: "mcp", Tool: []string{"create_integration", "list_integrations", "delete_integration"}[i%3],
		Method: "POST", Path: "/mcp",
		Arguments:      json.RawMessage(`{"name":"prod openai","key":"hmac-sha256:0123456789abcdef"}`),
		Decision:       []Decision{DecisionAllow, DecisionDeny, DecisionRateLimited}[i%3],
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

// tamper runs statements on the raw database with the append-only triggers
// dropped, as an attacker with file access would.
func tamper(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all := append([]string{
		`DROP TRIGGER IF EXISTS audit_events_no_update`, `DROP TRIGGER IF EXISTS audit_events_no_delete`,
		`DROP TRIGGER IF EXISTS audit_checkpoints_no_update`, `DROP TRIGGER IF EXISTS audit_checkpoints_no_delete`,
	}, stmts...)
	for _, s := range all {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("tamper %q: %v", s, err)
		}
	}
	if _, err := db.Exec(schemaSQL); err != nil { // triggers back, as a careful attacker would
		t.Fatal(err)
	}
}

type runtimeMem struct{ heap uint64 }

func (m *runtimeMem) read() {
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.heap = s.HeapAlloc
}

func testNow() time.Time { return time.Now() }

// copyDB copies a closed (checkpointed, no WAL) database file.
func copyDB(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuf is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
