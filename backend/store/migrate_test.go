package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// oldSchema is migration 1 as the previous release ran it, before schema_migrations.
func oldSchema(t *testing.T, dialect string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("migrations", dialect, "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const oldRow = `INSERT INTO service_keys (id, org, name, hash, prefix, created_at) VALUES ('sk-1', 'acme', 'ci', 'h', 'pcsk_', '2026-01-01T00:00:00Z')`

func assertAdopted(t *testing.T, db *sql.DB) {
	t.Helper()
	var name string
	if err := db.QueryRow(`SELECT name FROM service_keys WHERE id = 'sk-1'`).Scan(&name); err != nil || name != "ci" {
		t.Fatalf("the row written before the upgrade: %q %v", name, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM schema_migrations WHERE component = 'backend' AND version = 1`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("version 1 recorded %d times, %v", n, err)
	}
}

// A database the previous release created (schema and PRAGMA user_version = 1)
// opens without re-running migration 1, and keeps its rows.
func TestStoreCreatedBeforeSchemaMigrationsOpensWithItsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backend.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(oldSchema(t, "sqlite") + oldRow + `; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	for i := 0; i < 2; i++ {
		s, err := Open(context.Background(), path, nil)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		assertAdopted(t, s.db)
		s.Close()
	}
}

func TestPostgresStoreCreatedBeforeSchemaMigrationsOpensWithItsData(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TABLE backend_schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
		INSERT INTO backend_schema_migrations VALUES (1, now()::text);` + oldSchema(t, "postgres") + oldRow); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		s, err := OpenPostgres(context.Background(), url, nil)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		assertAdopted(t, s.db)
		s.Close()
	}
}
