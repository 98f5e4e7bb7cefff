package pacer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDisabledPacerNeverWaits(t *testing.T) {
	for _, rate := range []int{0, -5} {
		p := New(rate, 0)
		if p != nil {
			t.Fatalf("New(%d) = %v, want nil (no pacing)", rate, p)
		}
		start := time.Now()
		for i := 0; i < 1000; i++ {
			if err := p.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("1000 unpaced calls took %s", d)
		}
		if p.Queued() != 0 {
			t.Fatal("nil pacer reports queued callers")
		}
	}
}

func TestBurstIsSpacedAndExcessRefusedFast(t *testing.T) {
	const rate = 100 // 10ms apart
	const maxWait = 50 * time.Millisecond
	p := New(rate, maxWait)
	type outcome struct {
		err      error
		returned time.Time
		took     time.Duration
	}
	results := make([]outcome, 30)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			err := p.Wait(context.Background())
			results[i] = outcome{err: err, returned: time.Now(), took: time.Since(t0)}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()

	var admitted []time.Time
	for _, r := range results {
		switch {
		case r.err == nil:
			admitted = append(admitted, r.returned)
		case errors.Is(r.err, ErrBusy):
			// Refused before waiting, not after.
			if r.took > 25*time.Millisecond {
				t.Errorf("a refused call took %s to be refused", r.took)
			}
		default:
			t.Errorf("unexpected error %v", r.err)
		}
	}
	// Slots at 0,10,...,50ms fit the budget; races may admit one more.
	if len(admitted) < 4 || len(admitted) > 8 {
		t.Fatalf("admitted %d of 30, want about maxWait/interval+1 = 6", len(admitted))
	}
	// The k-th admitted call (in return order) returns no earlier than k intervals after
	// the burst began. Measured this way, a goroutine delayed after its slot (the machine
	// is busy) only makes its own return later and cannot make two slots look close.
	slices.SortFunc(admitted, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(admitted); i++ {
		if at, slot := admitted[i].Sub(began), time.Duration(i)*10*time.Millisecond; at < slot-2*time.Millisecond {
			t.Errorf("admitted call %d returned %s after the burst began, before its slot at %s", i, at, slot)
		}
	}
	if total := admitted[len(admitted)-1].Sub(admitted[0]); total > maxWait+40*time.Millisecond {
		t.Errorf("admitted calls spread over %s, budget %s", total, maxWait)
	}
	if q := p.Queued(); q != 0 {
		t.Fatalf("Queued() = %d after all calls returned", q)
	}
}

func TestSequentialCallsWithZeroBudget(t *testing.T) {
	p := New(50, 0) // 20ms apart, no waiting allowed
	if err := p.Wait(context.Background()); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if err := p.Wait(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("immediate second call: %v, want ErrBusy", err)
	}
	time.Sleep(25 * time.Millisecond)
	if err := p.Wait(context.Background()); err != nil {
		t.Fatalf("call after the interval: %v", err)
	}
}

func TestContextEndsTheWait(t *testing.T) {
	t.Run("deadline shorter than the expected wait fails at once", func(t *testing.T) {
		p := New(10, time.Second) // 100ms apart
		p.Wait(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if d := time.Since(t0); d > 15*time.Millisecond {
			t.Fatalf("took %s, want an immediate refusal", d)
		}
	})
	t.Run("cancel while queued returns promptly", func(t *testing.T) {
		p := New(10, time.Second)
		p.Wait(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		t0 := time.Now()
		if err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want Canceled", err)
		}
		if d := time.Since(t0); d > 60*time.Millisecond {
			t.Fatalf("cancelled wait returned after %s", d)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		p := New(10, time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		if p.Queued() != 0 {
			t.Fatal("cancelled call left a queued count")
		}
	})
}

func BenchmarkPacerUnpacedNil(b *testing.B) {
	var p *Pacer
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		p.Wait(ctx)
	}
}

func TestGenerousBudgetAdmitsAllAtThePace(t *testing.T) {
	p := New(200, time.Second) // 5ms apart
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	var times []time.Time
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Wait(context.Background()); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(times) != n {
		t.Fatalf("admitted %d of %d", len(times), n)
	}
	// n calls at 5ms apart take at least (n-1)*5ms: the upstream never sees a burst.
	if d := time.Since(start); d < time.Duration(n-1)*5*time.Millisecond-2*time.Millisecond {
		t.Fatalf("%d paced calls done in %s, want at least %s", n, d, time.Duration(n-1)*5*time.Millisecond)
	}
}
