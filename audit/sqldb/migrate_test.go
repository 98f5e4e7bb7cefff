package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

func migrationsDir(t *testing.T, name string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(os.DirFS("testdata/migrations"), name)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func openTemp(t *testing.T) *sql.DB {
	t.Helper()
	db, err := OpenSQLite(context.Background(), SQLite{Path: filepath.Join(t.TempDir(), "m.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrationsApplyEachVersionOnceInOrder(t *testing.T) {
	db := openTemp(t)
	m := Migrations{Component: "things", FS: migrationsDir(t, "good")}
	for i := 0; i < 2; i++ {
		v, err := m.Run(context.Background(), db)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if v != 2 {
			t.Fatalf("run %d: version %d, want 2", i, v)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM schema_migrations WHERE component = 'things'`); n != 2 {
		t.Fatalf("%d versions recorded, want 2", n)
	}
	if _, err := db.Exec(`INSERT INTO things (id, name, colour) VALUES (1, 'a', 'red')`); err != nil {
		t.Fatalf("migration 2 not applied: %v", err)
	}
}

func TestStoresSharingADatabaseKeepSeparateHistories(t *testing.T) {
	db := openTemp(t)
	if _, err := (Migrations{Component: "things", FS: migrationsDir(t, "good")}).Run(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	other := fstest.MapFS{"0001_init.sql": {Data: []byte(`CREATE TABLE others (id INTEGER)`)}}
	if _, err := (Migrations{Component: "others", FS: other}).Run(context.Background(), db); err != nil {
		t.Fatalf("a second component's version 1 was taken as applied: %v", err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM sqlite_master WHERE name = 'others'`); n != 1 {
		t.Fatal("the second component's migration did not run")
	}
}

func TestMigrationFilesMustBeNumberedWithoutGaps(t *testing.T) {
	if _, err := (Migrations{Component: "x", FS: migrationsDir(t, "gap")}).Load(); err == nil || !strings.Contains(err.Error(), "0003_late.sql") {
		t.Fatalf("a gap in the numbering: %v", err)
	}
	bad := fstest.MapFS{"0001_init.sql": {}, "init.sql": {}}
	if _, err := (Migrations{Component: "x", FS: bad}).Load(); err == nil || !strings.Contains(err.Error(), "init.sql") {
		t.Fatalf("a misnamed file: %v", err)
	}
}

func TestADatabaseNewerThanTheBinaryIsRefused(t *testing.T) {
	db := openTemp(t)
	m := Migrations{Component: "things", FS: migrationsDir(t, "good")}
	if _, err := m.Run(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations VALUES ('things', 3, 'later')`); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(context.Background(), db); err == nil || !strings.Contains(err.Error(), "newer than this binary's 2") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestAFailedMigrationLeavesNoVersionRecorded(t *testing.T) {
	db := openTemp(t)
	broken := fstest.MapFS{
		"0001_init.sql": {Data: []byte(`CREATE TABLE a (id INTEGER)`)},
		"0002_bad.sql":  {Data: []byte(`CREATE TABLE b (id INTEGER); THIS IS NOT SQL`)},
	}
	_, err := (Migrations{Component: "x", FS: broken}).Run(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") {
		t.Fatalf("broken migration: %v", err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM sqlite_master WHERE name IN ('a', 'b', 'schema_migrations')`); n != 0 {
		t.Fatalf("a failed run left %d objects behind", n)
	}
}

func TestLegacyTrackingIsAdoptedAndOnlyLaterVersionsRun(t *testing.T) {
	db := openTemp(t)
	// The old way: the table made by hand and PRAGMA user_version.
	if _, err := db.Exec(`CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO things VALUES (1, 'kept'); PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	m := Migrations{Component: "things", FS: migrationsDir(t, "good"), Legacy: func(ctx context.Context, tx *sql.Tx) (int, error) {
		var v int
		err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v)
		return v, err
	}}
	if _, err := m.Run(context.Background(), db); err != nil {
		t.Fatalf("legacy database: %v", err)
	}
	var name, colour string
	if err := db.QueryRow(`SELECT name, colour FROM things WHERE id = 1`).Scan(&name, &colour); err != nil || name != "kept" {
		t.Fatalf("existing row after adoption: %q %q %v", name, colour, err)
	}
	// Adopted once: the hook is not consulted again.
	m.Legacy = func(context.Context, *sql.Tx) (int, error) { t.Fatal("legacy hook ran twice"); return 0, nil }
	if _, err := m.Run(context.Background(), db); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentStartersApplyEachMigrationOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	count := fstest.MapFS{"0001_init.sql": {Data: []byte(`CREATE TABLE runs (n INTEGER); INSERT INTO runs VALUES (1);`)}}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := OpenSQLite(context.Background(), SQLite{Path: path})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = (Migrations{Component: "c", FS: count}).Run(context.Background(), db)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenSQLite(context.Background(), SQLite{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countRows(t, db, `SELECT count(*) FROM runs`); n != 1 {
		t.Fatalf("migration 1 ran %d times", n)
	}
}

func TestMigrationsOnPostgresAreTrackedAndSerialised(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	m := Migrations{Component: "things", FS: migrationsDir(t, "good"), Dialect: PostgresDialect}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := OpenPostgres(context.Background(), url, 2)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = m.Run(context.Background(), db)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenPostgres(context.Background(), url, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := countRows(t, db, `SELECT count(*) FROM schema_migrations WHERE component = 'things'`); n != 2 {
		t.Fatalf("%d versions recorded, want 2", n)
	}
	if _, err := db.Exec(`INSERT INTO things (id, name, colour) VALUES (1, 'a', 'red')`); err != nil {
		t.Fatal(err)
	}
}

// Two stores on one fresh schema (approvals and the central audit trail of a replica
// starting) migrate at the same moment: they share schema_migrations, so neither may
// fail on creating it.
func TestStoresStartingTogetherOnOnePostgresSchemaBothMigrate(t *testing.T) {
	for round := 0; round < 5; round++ {
		url := sqldbtest.PostgresURL(t)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				db, err := OpenPostgres(context.Background(), url, 1)
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				name := fmt.Sprintf("store%d", i)
				m := Migrations{Component: name, Dialect: PostgresDialect,
					FS: fstest.MapFS{"0001_init.sql": {Data: []byte(`CREATE TABLE ` + name + ` (id INTEGER)`)}}}
				_, err = m.Run(context.Background(), db)
				errs <- err
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
