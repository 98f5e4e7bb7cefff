//go:build unix

package sqldb

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// withUmask runs the test body under umask m (process-wide: these tests are not parallel).
func withUmask(t *testing.T, m int) {
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestNewDatabaseAndItsWALAreOwnerOnlyWhateverTheUmask(t *testing.T) {
	withUmask(t, 0)
	dir := filepath.Join(t.TempDir(), "data", "sub")
	path := filepath.Join(dir, "x.db")
	db, err := OpenSQLite(context.Background(), SQLite{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o700 {
			t.Errorf("created dir %s has mode %v, want 0700", d, st.Mode().Perm())
		}
	}
}

func TestDatabaseFilesLeftOpenByAnOlderVersionAreNarrowed(t *testing.T) {
	withUmask(t, 0o022)
	path := filepath.Join(t.TempDir(), "old.db")
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db, err := OpenSQLite(context.Background(), SQLite{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s kept mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
}
