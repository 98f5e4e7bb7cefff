package audit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Under synchronous=NORMAL, a checkpoint's commit still runs at FULL (its WAL is synced
// before the line goes to the witness log), and the rows after it are back at NORMAL.
func TestCheckpointCommitIsSyncedUnderNormal(t *testing.T) {
	var mu sync.Mutex
	var levels []int
	cfg := testConfig(t)
	cfg.checkpointSyncHook = func(level int) {
		mu.Lock()
		levels = append(levels, level)
		mu.Unlock()
	}
	if cfg.Synchronous != "NORMAL" {
		t.Fatalf("default synchronous %q, want NORMAL", cfg.Synchronous)
	}
	l := openTest(t, cfg)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := l.Append(ctx, sampleEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The first rows of a log are signed at once.
	for deadline := time.Now().Add(5 * time.Second); l.checkpoints.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint signed for the first rows")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var after int
	if err := l.wdb.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != 1 {
		t.Fatalf("synchronous after a checkpoint is %d, want 1 (NORMAL) for the rows", after)
	}
	for i := 5; i < 8; i++ { // rows for the close checkpoint to cover
		if err := l.Append(ctx, sampleEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(levels) < 2 { // the first rows' checkpoint and the close checkpoint
		t.Fatalf("checkpoint commits seen: %v, want at least 2", levels)
	}
	for _, lv := range levels {
		if lv != 2 {
			t.Fatalf("a checkpoint committed at synchronous %d, want 2 (FULL): %v", lv, levels)
		}
	}
}

// An Append whose caller has already given up writes nothing and fails: the caller
// must not act, and no row claims a decision it did not act on.
func TestAppendWithDoneContextWritesNothing(t *testing.T) {
	l := openTest(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, sampleEvent(1)); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context: %v, want ErrUnavailable and context.Canceled", err)
	}
	if err := l.Append(context.Background(), sampleEvent(2)); err != nil {
		t.Fatal(err)
	}
	if l.appended.Load() != 1 {
		t.Fatalf("%d rows appended, want 1 (only the live caller's)", l.appended.Load())
	}
}
