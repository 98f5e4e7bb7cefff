//go:build unix

package audit

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// Under umask 0 nothing the audit trail writes may be readable by anyone but its owner:
// the database and its WAL and SHM, the journal, the lock and both keys.
func TestAuditFilesAreOwnerOnlyWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	cfg := Config{}
	cfg.SetDefaults(dir)
	l := openTest(t, cfg)
	appendN(t, l, 20)
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, info.Mode().Perm(), want)
		}
		seen[d.Name()] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"audit.db", "audit.db-wal", "audit.db-shm", "audit.db.journal", "audit-signing.key", "audit-hmac.key"} {
		if !seen[f] {
			t.Errorf("%s was not created; its mode went unchecked", f)
		}
	}
}
