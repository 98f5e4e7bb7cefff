package ratelimit

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock drives Memory through time without sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(int64(1000 * time.Hour))
	return c
}
func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestMemory(cfg MemoryConfig) (*Memory, *fakeClock) {
	c := newFakeClock()
	return newMemory(cfg, c.now), c
}

// maxInAnyWindow returns the largest number of times that fall in one half-open
// interval [s, s+window), over every start s (it suffices to start at each time).
func maxInAnyWindow(times []int64, window int64) int {
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j] < times[i]+window {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

func TestMemoryNeverExceedsMaxInAnyWindow(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		window time.Duration
		// arrivals: mean gap between attempts, as a fraction of window/max
		gapFrac float64
	}{
		{name: "10 per minute, hammered", max: 10, window: time.Minute, gapFrac: 0.05},
		{name: "10 per minute, near the rate", max: 10, window: time.Minute, gapFrac: 0.9},
		{name: "1 per second", max: 1, window: time.Second, gapFrac: 0.3},
		{name: "100 per 10s, bursty", max: 100, window: 10 * time.Second, gapFrac: 0.2},
		{name: "3 per 7ms, odd sizes", max: 3, window: 7 * time.Millisecond, gapFrac: 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, clk := newTestMemory(MemoryConfig{})
			rng := rand.New(rand.NewPCG(1, uint64(tc.max)))
			meanGap := float64(tc.window) / float64(tc.max) * tc.gapFrac
			var admitted []int64
			for i := 0; i < 20000; i++ {
				// Bursts (zero gaps) and long pauses both occur.
				switch r := rng.Float64(); {
				case r < 0.3:
				case r < 0.95:
					clk.advance(time.Duration(rng.ExpFloat64() * meanGap))
				default:
					clk.advance(time.Duration(rng.Float64() * float64(tc.window)))
				}
				res, err := m.Allow(context.Background(), "k", tc.max, tc.window)
				if err != nil {
					t.Fatal(err)
				}
				if res.Allowed {
					admitted = append(admitted, clk.now())
				}
			}
			if got := maxInAnyWindow(admitted, int64(tc.window)); got > tc.max {
				t.Fatalf("admitted %d calls within one %s window, max is %d", got, tc.window, tc.max)
			}
		})
	}
}

// Strictness must not starve callers: under constant demand the limiter admits at
// least max calls per window*17/16, the documented worst case.
func TestMemoryThroughputUnderConstantDemand(t *testing.T) {
	ctx := context.Background()
	for _, max := range []int{1, 10, 100} {
		t.Run(strconv.Itoa(max), func(t *testing.T) {
			m, clk := newTestMemory(MemoryConfig{})
			const window = time.Minute
			step := window / time.Duration(max*20)
			admitted := 0
			const windows = 50
			for elapsed := time.Duration(0); elapsed < windows*window; elapsed += step {
				if res, _ := m.Allow(ctx, "k", max, window); res.Allowed {
					admitted++
				}
				clk.advance(step)
			}
			floor := int(float64(windows*max) * 16 / 17)
			if admitted < floor || admitted > windows*max {
				t.Fatalf("admitted %d over %d windows, want between %d and %d", admitted, windows, floor, windows*max)
			}
		})
	}
}

func TestMemoryRetryAfterIsExact(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory(MemoryConfig{})
	const max, window = 5, 16 * time.Second // sub-window = 1s
	for i := 0; i < max; i++ {
		res, _ := m.Allow(ctx, "k", max, window)
		if !res.Allowed || res.Remaining != max-1-i || res.Limit != max {
			t.Fatalf("call %d: %+v, want allowed with remaining %d", i, res, max-1-i)
		}
	}
	res, _ := m.Allow(ctx, "k", max, window)
	if res.Allowed || res.Remaining != 0 {
		t.Fatalf("call over the limit: %+v, want rejected", res)
	}
	if res.RetryAfter <= window || res.RetryAfter > window+window/SubWindows {
		t.Fatalf("RetryAfter = %s, want within (%s, %s]", res.RetryAfter, window, window+window/SubWindows)
	}
	if res.Reset != res.RetryAfter {
		t.Fatalf("all calls in one sub-window: Reset %s should equal RetryAfter %s", res.Reset, res.RetryAfter)
	}
	wait := res.RetryAfter
	clk.advance(wait - time.Nanosecond)
	if res, _ := m.Allow(ctx, "k", max, window); res.Allowed {
		t.Fatalf("allowed 1ns before RetryAfter: %+v", res)
	}
	clk.advance(time.Nanosecond)
	if res, _ := m.Allow(ctx, "k", max, window); !res.Allowed {
		t.Fatalf("rejected at RetryAfter: %+v", res)
	}
}

func TestMemoryRetryAfterFreesOnlyEnough(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory(MemoryConfig{})
	const window = 16 * time.Second
	// 2 calls at t0, 1 call at t0+3s; max 3.
	m.Allow(ctx, "k", 3, window)
	m.Allow(ctx, "k", 3, window)
	clk.advance(3 * time.Second)
	m.Allow(ctx, "k", 3, window)
	res, _ := m.Allow(ctx, "k", 3, window)
	if res.Allowed {
		t.Fatal("4th call admitted with max 3")
	}
	// The oldest sub-window (2 calls) frees first; Reset waits for the newest one.
	if res.Reset-res.RetryAfter != 3*time.Second {
		t.Fatalf("Reset %s - RetryAfter %s, want 3s apart", res.Reset, res.RetryAfter)
	}
}

func TestMemoryInvalidLimit(t *testing.T) {
	m, _ := newTestMemory(MemoryConfig{})
	cases := []struct {
		name   string
		max    int
		window time.Duration
		want   []string
	}{
		{"zero max", 0, time.Second, []string{"rate_limit.max"}},
		{"negative max", -1, time.Second, []string{"rate_limit.max"}},
		{"zero window", 1, 0, []string{"rate_limit.window"}},
		{"both", 0, time.Microsecond, []string{"rate_limit.max", "rate_limit.window"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := m.Allow(context.Background(), "k", tc.max, tc.window)
			if !errors.Is(err, ErrInvalidLimit) || res.Allowed {
				t.Fatalf("got %+v, %v; want ErrInvalidLimit and not allowed", res, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestMemoryRefund(t *testing.T) {
	ctx := context.Background()
	const window = time.Minute
	t.Run("refund frees a slot", func(t *testing.T) {
		m, _ := newTestMemory(MemoryConfig{})
		m.Allow(ctx, "k", 2, window)
		m.Allow(ctx, "k", 2, window)
		if err := m.Refund(ctx, "k", window); err != nil {
			t.Fatal(err)
		}
		if res, _ := m.Allow(ctx, "k", 2, window); !res.Allowed {
			t.Fatal("call after refund rejected")
		}
		if res, _ := m.Allow(ctx, "k", 2, window); res.Allowed {
			t.Fatal("refund gave back more than one call")
		}
	})
	t.Run("refunds never go below zero", func(t *testing.T) {
		m, _ := newTestMemory(MemoryConfig{})
		m.Allow(ctx, "k", 2, window)
		for i := 0; i < 5; i++ {
			m.Refund(ctx, "k", window)
		}
		allowed := 0
		for i := 0; i < 5; i++ {
			if res, _ := m.Allow(ctx, "k", 2, window); res.Allowed {
				allowed++
			}
		}
		if allowed != 2 {
			t.Fatalf("allowed %d after over-refunding, want 2", allowed)
		}
	})
	t.Run("unknown key and other window are no-ops", func(t *testing.T) {
		m, _ := newTestMemory(MemoryConfig{})
		m.Allow(ctx, "k", 1, window)
		if err := m.Refund(ctx, "nope", window); err != nil {
			t.Fatal(err)
		}
		m.Refund(ctx, "k", time.Second)
		if res, _ := m.Allow(ctx, "k", 1, window); res.Allowed {
			t.Fatal("refund under another window freed a slot")
		}
		if m.Stats().Keys != 1 {
			t.Fatalf("refund created keys: %d", m.Stats().Keys)
		}
	})
	t.Run("refund after the call aged out is a no-op", func(t *testing.T) {
		m, clk := newTestMemory(MemoryConfig{})
		m.Allow(ctx, "k", 1, window)
		clk.advance(2 * window)
		m.Allow(ctx, "k", 1, window)
		m.Refund(ctx, "k", window) // gives back the new call
		m.Refund(ctx, "k", window) // nothing left
		n := 0
		for i := 0; i < 3; i++ {
			if res, _ := m.Allow(ctx, "k", 1, window); res.Allowed {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("allowed %d, want 1", n)
		}
	})
}

func TestMemoryKeysAndWindowsAreIndependent(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(MemoryConfig{})
	if res, _ := m.Allow(ctx, "a", 1, time.Minute); !res.Allowed {
		t.Fatal("a rejected")
	}
	if res, _ := m.Allow(ctx, "b", 1, time.Minute); !res.Allowed {
		t.Fatal("b rejected after a used its quota")
	}
	if res, _ := m.Allow(ctx, "a", 1, time.Minute); res.Allowed {
		t.Fatal("a admitted twice")
	}
	// A changed window (policy reload) starts the key afresh rather than misreading counts.
	if res, _ := m.Allow(ctx, "a", 1, time.Hour); !res.Allowed {
		t.Fatal("a with a new window rejected")
	}
	// A raised max takes effect at once on the existing count.
	if res, _ := m.Allow(ctx, "a", 2, time.Hour); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("raised max: %+v", res)
	}
}

func TestMemoryCountersResetOnTheirOwn(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory(MemoryConfig{})
	for i := 0; i < 3; i++ {
		m.Allow(ctx, "k", 3, time.Second)
	}
	clk.advance(time.Second + time.Second/SubWindows)
	for i := 0; i < 3; i++ {
		if res, _ := m.Allow(ctx, "k", 3, time.Second); !res.Allowed {
			t.Fatalf("call %d after the window rejected", i)
		}
	}
}

func TestMemoryBoundedKeys(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(MemoryConfig{MaxKeys: 1000, Shards: 16})
	for i := 0; i < 120_000; i++ {
		if _, err := m.Allow(ctx, "caller-"+strconv.Itoa(i), 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		if i%10_000 == 0 {
			if k := m.Stats().Keys; k > 1000 {
				t.Fatalf("after %d keys the map holds %d, MaxKeys is 1000", i, k)
			}
		}
	}
	st := m.Stats()
	if st.Keys > 1000 || st.Keys < 900 {
		t.Fatalf("holds %d keys, want at most 1000 and close to it", st.Keys)
	}
	if st.EvictedLive < 119_000 {
		t.Fatalf("EvictedLive = %d, want every live eviction counted", st.EvictedLive)
	}
	// The most recent key survived.
	if res, _ := m.Allow(ctx, "caller-119999", 1, time.Minute); res.Allowed {
		t.Fatal("most recent key was evicted")
	}
}

func TestMemoryReclaimsExpiredKeys(t *testing.T) {
	ctx := context.Background()
	m, clk := newTestMemory(MemoryConfig{MaxKeys: 10_000, Shards: 1})
	for i := 0; i < 5000; i++ {
		m.Allow(ctx, "old-"+strconv.Itoa(i), 1, time.Second)
	}
	clk.advance(2 * time.Second)
	for i := 0; i < 2500; i++ {
		m.Allow(ctx, "new-"+strconv.Itoa(i), 1, time.Second)
	}
	// Each call reclaims up to two aged-out keys: all 5000 old keys are gone.
	st := m.Stats()
	if st.Keys != 2500 {
		t.Fatalf("holds %d keys, want the 2500 live ones", st.Keys)
	}
	if st.EvictedLive != 0 {
		t.Fatalf("EvictedLive = %d, want 0 (only expired keys were dropped)", st.EvictedLive)
	}
}

func TestMemoryConcurrentExactCount(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if res, _ := m.Allow(context.Background(), "shared", 100, time.Hour); res.Allowed {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Fatalf("admitted %d of 1000 concurrent calls, want exactly 100", ok.Load())
	}
}

func TestMemoryConfigValidate(t *testing.T) {
	c := MemoryConfig{MaxKeys: -1, Shards: -2}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "max_keys") || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("Validate() = %v, want both fields named", err)
	}
	c = MemoryConfig{}
	c.SetDefaults()
	if err := c.Validate(); err != nil || c.MaxKeys != DefaultMaxKeys || c.Shards != DefaultShards {
		t.Fatalf("defaults %+v invalid: %v", c, err)
	}
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "agent-" + strconv.Itoa(i) + "|session-1|create_integration"
	}
	return keys
}

func BenchmarkMemoryAllow(b *testing.B) {
	ctx := context.Background()
	b.Run("serial/one-key", func(b *testing.B) {
		m := NewMemory(MemoryConfig{})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			m.Allow(ctx, "agent-1|s|tool", 1_000_000_000, time.Minute)
		}
	})
	b.Run("serial/100k-keys", func(b *testing.B) {
		m := NewMemory(MemoryConfig{})
		keys := benchKeys(100_000)
		for _, k := range keys {
			m.Allow(ctx, k, 1_000_000_000, time.Minute)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			m.Allow(ctx, keys[i%len(keys)], 1_000_000_000, time.Minute)
		}
	})
	b.Run("parallel/100k-keys", func(b *testing.B) {
		m := NewMemory(MemoryConfig{})
		keys := benchKeys(100_000)
		for _, k := range keys {
			m.Allow(ctx, k, 1_000_000_000, time.Minute)
		}
		var seq atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(7919))
			for pb.Next() {
				m.Allow(ctx, keys[i%len(keys)], 1_000_000_000, time.Minute)
				i++
			}
		})
	})
	b.Run("parallel/one-key", func(b *testing.B) {
		m := NewMemory(MemoryConfig{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Allow(ctx, "agent-1|s|tool", 1_000_000_000, time.Minute)
			}
		})
	})
}

// TestMemoryFootprint measures what 100k live keys cost, the figure doc.go quotes.
func TestMemoryFootprint(t *testing.T) {
	keys := benchKeys(100_000)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m := NewMemory(MemoryConfig{})
	for _, k := range keys {
		m.Allow(context.Background(), k, 10, time.Minute)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapInuse-before.HeapInuse) / float64(len(keys))
	t.Logf("100k keys: %.1f MB, %.0f bytes per key (keys' own strings excluded)", perKey*float64(len(keys))/(1<<20), perKey)
	if perKey > 400 {
		t.Fatalf("%.0f bytes per key, want under 400", perKey)
	}
	if m.Stats().Keys != len(keys) {
		t.Fatalf("holds %d keys, want %d", m.Stats().Keys, len(keys))
	}
	runtime.KeepAlive(m)
}
