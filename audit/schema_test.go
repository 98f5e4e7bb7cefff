package audit

import (
	"context"
	"database/sql"
	"os"
	"testing"
)

// copyFile copies a fixture into a test's dir with the mode older versions gave it.
func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// testdata/legacy-v1 was written by the previous release (schema created with CREATE
// IF NOT EXISTS, no schema_migrations): 25 rows, periodic checkpoints at 10 and 20
// and a close checkpoint at 25, all signed for log f60bf36c...
const legacyLogID = "f60bf36cb21701b0c55cf5229973221c"

func TestAuditDatabaseFromBeforeNumberedMigrationsKeepsItsChain(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	copyFile(t, "testdata/legacy-v1/audit.db", cfg.Path, 0o644)
	copyFile(t, "testdata/legacy-v1/audit-signing.key", cfg.SigningKeyPath, 0o600)
	l := openTest(t, cfg)
	appendN(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Rows != 30 || rep.LogID != legacyLogID {
		t.Fatalf("after adoption: %s (log %s)", rep.String(), rep.LogID)
	}
	db, err := openDB(cfg.Path, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var versions int
	if err := db.QueryRow(`SELECT count(*) FROM schema_migrations WHERE component = 'audit'`).Scan(&versions); err != nil || versions != 2 {
		t.Fatalf("schema_migrations after adoption: %d rows, %v", versions, err)
	}
	if st, _ := os.Stat(cfg.Path); st.Mode().Perm() != 0o600 {
		t.Fatalf("the old 0644 database kept mode %v", st.Mode().Perm())
	}
}

// A database from before checkpoints named their log: no log_id column, and the two
// indexes the lookup table replaced. It gains the column (migration 0002) and loses
// the indexes.
func TestAuditDatabaseFromBeforeLogIDsGainsTheColumn(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	raw, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(schemaSQL + `
		CREATE INDEX audit_events_request ON audit_events(request_id);
		CREATE INDEX audit_events_sub ON audit_events(caller_sub);`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	l := openTest(t, cfg)
	appendN(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := openDB(cfg.Path, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if has, err := hasLogIDColumn(ctx, db); err != nil || !has {
		t.Fatalf("log_id column: %v %v", has, err)
	}
	var old int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('audit_events_request', 'audit_events_sub')`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("%d replaced indexes left, %v", old, err)
	}
	rep, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 3 {
		t.Fatalf("verify: %v %v", rep.String(), err)
	}
}
