package approvals

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// An approvals.db written by the previous release (its schema, PRAGMA user_version 1,
// no schema_migrations) opens with its approvals intact.
func TestApprovalsDatabaseFromBeforeSchemaMigrationsKeepsItsApprovals(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "approvals.db")
	old, err := os.ReadFile("migrations/sqlite/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(string(old) + `;
		INSERT INTO approvals (id, status, hash, caller_sub, caller_org, caller_workspace, caller_session, caller_roles,
			tool, surface, arguments, reason, policy_revision, approvers, created_at, expires_at)
		VALUES ('old-1', 'pending', 'h', 'agent-7', 'acme', '', '', '[]', 'delete_integration', 'mcp', '{}', 'r', 'rev', '[]', 1, 9999999999999);
		PRAGMA user_version = 1;`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	for i := 0; i < 2; i++ {
		s, err := Open(ctx, Config{DBPath: path}, nil)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		got, err := s.Get(ctx, "old-1")
		if err != nil || got.Status != StatusPending || got.Caller.Sub != "agent-7" {
			t.Fatalf("the approval written before the upgrade: %+v %v", got, err)
		}
		s.Close()
	}
	// A database from a newer release is refused rather than misread.
	raw, _ = sql.Open("sqlite", path)
	if _, err := raw.Exec(`INSERT INTO schema_migrations VALUES ('approvals', 2, 'later')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if _, err := Open(ctx, Config{DBPath: path}, nil); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestDatabaseURLIsValidatedWithoutEchoingIt(t *testing.T) {
	c := Config{DatabaseURL: "mysql://user:hunter2@db/approvals"}
	c.SetDefaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "database_url") {
		t.Fatalf("a non-PostgreSQL URL: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatal("the error echoes the URL's password")
	}
	ok := Config{DatabaseURL: "postgres://user:pw@db/approvals"}
	ok.SetDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("database_url without db_path: %v", err)
	}
}

// approvals.database_url: the service on PostgreSQL keeps its approvals across a
// restart, as on SQLite.
func TestApprovalsOnPostgresSurviveRestart(t *testing.T) {
	ctx := context.Background()
	cfg := Config{DatabaseURL: sqldbtest.PostgresURL(t)}
	s1, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending := mustRequest(t, s1, request(t, agent, `{"a":1}`))
	approved := mustRequest(t, s1, request(t, agent, `{"a":2}`))
	if _, err := s1.Approve(ctx, approved.ID, alice, "fine"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Get(ctx, pending.ID); err != nil || got.Status != StatusPending || string(got.Arguments) != `{"a":1}` {
		t.Fatalf("pending after restart: %+v %v", got, err)
	}
	if used, ok, err := s2.Consume(ctx, approved.Hash); err != nil || !ok || used.DecidedBy != "alice" {
		t.Fatalf("Consume after restart: %+v %v %v", used, ok, err)
	}
	r := request(t, agent, `{"a":3}`)
	r.TTL = time.Second
	short := mustRequest(t, s2, r)
	if got, err := s2.Get(ctx, short.ID); err != nil || got.ExpiresAt.Sub(got.CreatedAt) != time.Second {
		t.Fatalf("stored ttl: %+v %v", got, err)
	}
}
