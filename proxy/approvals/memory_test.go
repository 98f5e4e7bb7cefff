package approvals

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestTenThousandPendingWithWaiters holds 10k pending approvals, each with a caller
// blocked in Wait, and checks the process stays well under 200 MB (heap + goroutine
// stacks), that one decision wakes only its own waiter, and that ending the waits
// releases every waiter entry.
func TestTenThousandPendingWithWaiters(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10k approvals; skipped with -short")
	}
	n := 10_000
	if raceEnabled {
		// The race detector multiplies memory and time; check the mechanics on fewer.
		n = 1_000
	}
	s, _ := newTestService(t, nil, nil)
	ctx := context.Background()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	start := time.Now()
	ids := make([]string, n)
	for i := range ids {
		a := mustRequest(t, s, request(t, agent, fmt.Sprintf(`{"slug":"integration-%d","note":"%064d"}`, i, i)))
		ids[i] = a.ID
	}
	created := time.Since(start)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i      int
		status Status
	}
	done := make(chan result, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := s.Wait(wctx, id)
			if err != nil {
				t.Error(err)
				return
			}
			done <- result{i, a.Status}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		registered := len(s.waiters)
		s.mu.Unlock()
		if registered == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d waiters registered", registered, n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	used := float64((during.HeapInuse+during.StackInuse)-(before.HeapInuse+before.StackInuse)) / (1 << 20)
	t.Logf("%d pending approvals + %d waiters: %.1f MB (heap %.1f MB, stacks %.1f MB); created in %s",
		n, n, used, float64(during.HeapInuse-before.HeapInuse)/(1<<20), float64(during.StackInuse-before.StackInuse)/(1<<20), created)
	if !raceEnabled && used > 200 {
		t.Fatalf("holding 10k pending approvals with waiters takes %.1f MB, budget 200 MB", used)
	}

	// One decision wakes exactly its own waiter.
	if _, err := s.Approve(ctx, ids[n/2], alice, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.i != n/2 || r.status != StatusApproved {
			t.Fatalf("woke waiter %d with %s, want %d approved", r.i, r.status, n/2)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("approved waiter not woken")
	}
	select {
	case r := <-done:
		t.Fatalf("waiter %d woke without a decision (%s)", r.i, r.status)
	case <-time.After(50 * time.Millisecond):
	}

	cancel()
	wg.Wait()
	close(done)
	stillPending := 0
	for r := range done {
		if r.status == StatusPending {
			stillPending++
		}
	}
	if stillPending != n-1 {
		t.Fatalf("%d waiters returned pending after cancel, want %d", stillPending, n-1)
	}
	s.mu.Lock()
	left := len(s.waiters)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiter entries left after all waits ended", left)
	}
}

func BenchmarkRequestApproveConsume(b *testing.B) {
	s, _ := newTestService(b, nil, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := request(b, agent, fmt.Sprintf(`{"n":%d}`, i))
		a, _, err := s.Request(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Approve(ctx, a.ID, alice, ""); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := s.Consume(ctx, r.Hash); !ok || err != nil {
			b.Fatal("consume failed", err)
		}
	}
}
