package audit

import (
	"errors"
	"io"
)

// ErrLocked is returned when another process (a running serve) holds an audit log's
// one-writer lock, <path>.lock.
var ErrLocked = errors.New("held by another writer of this audit log (another portcullis serve?); only one may write it")

// LockWriter takes the one-writer lock of the audit log at dbPath, the lock Open
// takes and a running serve holds, until the returned Closer is closed: a command that
// must not run beside serve (migrate) takes it, and serve cannot start meanwhile. The
// error wraps ErrLocked when a writer holds it.
func LockWriter(dbPath string) (io.Closer, error) {
	return lockFile(dbPath + ".lock")
}
