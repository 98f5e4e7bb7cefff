//go:build unix

package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// LockWriter is the lock an open Log holds: refused (ErrLocked) while one is open,
// and while it is held no Log opens.
func TestLockWriterIsTheOpenLogsLock(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	if _, err := LockWriter(cfg.Path); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), cfg.Path+".lock is held by another writer") {
		t.Fatalf("LockWriter beside an open log: %v; want ErrLocked naming the lock file", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lock, err := LockWriter(cfg.Path)
	if err != nil {
		t.Fatalf("LockWriter after Close: %v", err)
	}
	if l2, err := Open(context.Background(), cfg, nil); !errors.Is(err, ErrLocked) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("Open while LockWriter holds the lock: %v; want ErrLocked", err)
	}
	lock.Close()
	openTest(t, cfg)
}
