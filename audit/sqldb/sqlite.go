package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Access is how a SQLite database is opened.
type Access int

const (
	// ReadWrite creates the file if needed and migrates it; write transactions
	// take the write lock at BEGIN.
	ReadWrite Access = iota
	// ReadOnly opens an existing file with SQLite's mode=ro.
	ReadOnly
	// QueryOnly opens an existing file read-write at the file level (so a reader
	// can still create the -shm index of a WAL database) with PRAGMA query_only.
	QueryOnly
)

// SQLite says how to open one SQLite database.
type SQLite struct {
	Path   string
	Access Access
	// Synchronous is the synchronous pragma of read-write connections: OFF,
	// NORMAL (the default), FULL or EXTRA.
	Synchronous string
	// Pragmas are more per-connection pragmas, each "name(value)", applied before
	// journal_mode (so page_size can take effect on a new file).
	Pragmas []string
	// MaxOpenConns bounds the pool; 0 leaves database/sql's default.
	MaxOpenConns int
}

// BusyTimeoutMillis is how long a connection waits for another's lock.
const BusyTimeoutMillis = 5000

var synchronousModes = map[string]bool{"OFF": true, "NORMAL": true, "FULL": true, "EXTRA": true}

// DSN is the modernc.org/sqlite data source name for o. The path is escaped, so
// no character of it is read as a URI parameter.
func (o SQLite) DSN() (string, error) {
	if o.Path == "" {
		return "", errors.New("sqldb: the database path is empty")
	}
	if strings.ContainsRune(o.Path, 0) {
		return "", errors.New("sqldb: the database path contains a NUL byte")
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeoutMillis))
	switch o.Access {
	case ReadOnly:
		q.Set("mode", "ro")
	case QueryOnly:
		q.Set("_query_only", "1")
	case ReadWrite:
		sync := strings.ToUpper(o.Synchronous)
		if sync == "" {
			sync = "NORMAL"
		}
		if !synchronousModes[sync] {
			return "", fmt.Errorf("sqldb: synchronous must be OFF, NORMAL, FULL or EXTRA, got %q", o.Synchronous)
		}
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", sync)
		q.Set("_foreign_keys", "1")
		q.Set("_txlock", "immediate")
	default:
		return "", fmt.Errorf("sqldb: unknown access mode %d", o.Access)
	}
	for _, p := range o.Pragmas {
		if strings.ContainsAny(p, ";&#") {
			return "", fmt.Errorf("sqldb: pragma %q must be a single name(value)", p)
		}
		q.Add("_pragma", p)
	}
	return "file:" + (&url.URL{Path: o.Path}).EscapedPath() + "?" + q.Encode(), nil
}

// OpenSQLite opens the database o describes and checks that it answers. A
// read-write open creates the file (mode 0600) and its directory (0700) if needed
// and narrows the modes of the database and its -wal, -shm and -journal files to
// 0600; the other modes require the file to exist.
func OpenSQLite(ctx context.Context, o SQLite) (*sql.DB, error) {
	dsn, err := o.DSN()
	if err != nil {
		return nil, err
	}
	if o.Access == ReadWrite {
		if err := PrivateDir(filepath.Dir(o.Path)); err != nil {
			return nil, err
		}
		if err := privateDatabaseFiles(o.Path); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(o.Path); err != nil {
		return nil, fmt.Errorf("sqldb: opening %s: %w", o.Path, err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqldb: opening %s: %w", o.Path, err)
	}
	if o.MaxOpenConns > 0 {
		db.SetMaxOpenConns(o.MaxOpenConns)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqldb: opening %s: %w", o.Path, err)
	}
	return db, nil
}

// Sidecars are the suffixes of the files SQLite keeps beside a database.
var Sidecars = []string{"-wal", "-shm", "-journal"}

// privateDatabaseFiles creates path (0600) if it does not exist and narrows it and
// any sidecar file to 0600. SQLite creates the -wal and -shm files with the
// database's mode, so they follow.
func privateDatabaseFiles(path string) error {
	if err := PrivateFile(path); err != nil {
		return err
	}
	for _, s := range Sidecars {
		err := narrow(path + s)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// PrivateFile creates path with mode 0600 if it does not exist, and sets an
// existing file's mode to 0600 when it is more open. The mode does not depend on
// the umask.
func PrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		cerr := f.Chmod(0o600) // the umask may have narrowed it further
		if err := f.Close(); cerr == nil {
			cerr = err
		}
		if cerr != nil {
			return fmt.Errorf("sqldb: creating %s: %w", path, cerr)
		}
		return nil
	case errors.Is(err, fs.ErrExist):
		return narrow(path)
	default:
		return fmt.Errorf("sqldb: creating %s: %w", path, err)
	}
}

// narrow sets path's mode to 0600 unless it already is; fs.ErrNotExist passes
// through unwrapped for the caller to ignore.
func narrow(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("sqldb: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("sqldb: %s is not a regular file", path)
	}
	if st.Mode().Perm() == 0o600 {
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("sqldb: making %s private (mode 0600): %w", path, err)
	}
	return nil
}

// PrivateDir creates dir, and any missing parent, with mode 0700 whatever the
// umask. An existing directory keeps its mode: it may be one the operator chose
// (the working directory, say), and the files in it are private anyway.
func PrivateDir(dir string) error {
	if dir == "" || dir == "." {
		return nil
	}
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("sqldb: %s is not a directory", dir)
		}
		return nil
	}
	if err := PrivateDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sqldb: creating %s: %w", dir, err)
	} else if err == nil {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("sqldb: creating %s: %w", dir, err)
		}
	}
	return nil
}
