//go:build linux

package audit

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// A journal write cut short by a full disk (here a file size limit) is undone: the
// batch is refused, nothing of it stays in the file, and later batches and a restart
// see a clean journal.
func TestJournalFailedWriteUndone(t *testing.T) {
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 3)
	off := l.j.off
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(off) + 700 // room for part of one row
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot limit the file size: %v", err)
	}
	for i := 0; i < 5; i++ {
		l.AppendAsync(sampleEvent(10 + i))
	}
	err := l.Append(context.Background(), sampleEvent(20))
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	if err == nil {
		t.Fatal("a batch that did not fit was acknowledged")
	}
	if fi, err := os.Stat(cfg.Path + JournalSuffix); err != nil || fi.Size() != off {
		t.Fatalf("journal is %d bytes after the failed write, want %d: %v", fi.Size(), off, err)
	}
	ev := sampleEvent(30)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 4 {
		t.Fatalf("append after the failed write: seq %d %v", ev.Seq, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 4 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
