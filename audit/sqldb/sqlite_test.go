package sqldb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDSNEscapesThePathSoNoCharacterBecomesAParameter(t *testing.T) {
	dir := t.TempDir()
	// A '?' would start the URI's parameters, '#' a fragment, '%' an escape: each
	// must stay part of the file name.
	path := filepath.Join(dir, "odd dir?mode=ro#x", "a%20b&_txlock=deferred.db")
	db, err := OpenSQLite(context.Background(), SQLite{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatalf("the database was not opened read-write at the literal path: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at the literal path: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "odd dir?mode=ro#x" {
		t.Fatalf("files made beside the literal path: %v", entries)
	}
}

func TestOpenSQLiteAppliesTheProjectPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := OpenSQLite(context.Background(), SQLite{Path: path, Synchronous: "full", Pragmas: []string{"secure_delete(1)"}, MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1",
		"busy_timeout": "5000", "secure_delete": "1"} {
		var got string
		if err := db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	// Write transactions take the lock at BEGIN: a second writer's BEGIN waits.
	if !strings.Contains(mustDSN(t, SQLite{Path: path}), "_txlock=immediate") {
		t.Error("read-write DSN does not ask for immediate transactions")
	}
}

func mustDSN(t *testing.T, o SQLite) string {
	t.Helper()
	d, err := o.DSN()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDSNRefusesWhatItCannotPassSafely(t *testing.T) {
	for name, o := range map[string]SQLite{
		"empty path":      {},
		"NUL in path":     {Path: "a\x00b"},
		"bad synchronous": {Path: "a.db", Synchronous: "SOMETIMES"},
		"pragma with ;":   {Path: "a.db", Pragmas: []string{"a(1); DROP TABLE x"}},
	} {
		if _, err := o.DSN(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadOnlyOpensNeitherCreateNorWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	if _, err := OpenSQLite(context.Background(), SQLite{Path: path, Access: ReadOnly}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("read-only open created the file: %v", err)
	}
	rw, err := OpenSQLite(context.Background(), SQLite{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	for _, access := range []Access{ReadOnly, QueryOnly} {
		db, err := OpenSQLite(context.Background(), SQLite{Path: path, Access: access})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO t VALUES (1)`); err == nil {
			t.Errorf("access %d: insert succeeded", access)
		}
		db.Close()
	}
}

func countRows(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
