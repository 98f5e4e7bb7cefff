package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Memory defaults.
const (
	DefaultMaxKeys = 200_000
	DefaultShards  = 64
)

// MemoryConfig configures the in-memory limiter (single node).
type MemoryConfig struct {
	// MaxKeys bounds how many keys are remembered at once (default 200000). Size it
	// above the number of keys active within one window: evicting a live key forgets
	// its count.
	MaxKeys int `yaml:"max_keys"`
	// Shards splits the keys over independently locked maps (default 64; rounded up to
	// a power of two, at most MaxKeys).
	Shards int `yaml:"shards"`
}

// SetDefaults fills zero fields.
func (c *MemoryConfig) SetDefaults() {
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
}

// Validate reports every problem at once.
func (c *MemoryConfig) Validate() error {
	var errs []error
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("ratelimit: max_keys must be at least 1, got %d", c.MaxKeys))
	}
	if c.Shards < 1 || c.Shards > 1<<16 {
		errs = append(errs, fmt.Errorf("ratelimit: shards must be between 1 and 65536, got %d", c.Shards))
	}
	return errors.Join(errs...)
}

// Memory is the single-node Limiter.
type Memory struct {
	shards   []shard
	mask     uint64
	seed     maphash.Seed
	now      func() int64 // nanoseconds on a monotonic clock
	evicted  atomic.Uint64
	perShard int
}

var _ Limiter = (*Memory)(nil)

type shard struct {
	mu         sync.Mutex
	m          map[string]*entry
	head, tail *entry // LRU list: head is the most recently used
	_          [64]byte
}

// entry is the per-key state: a ring of SubWindows+1 counters ending at sub-window
// newest. All slots hold counts of sub-windows newest-SubWindows..newest.
type entry struct {
	key        string
	prev, next *entry
	window     int64 // ns; a call with another window resets the key
	width      int64 // ns per sub-window
	newest     int64 // absolute index of the newest sub-window in the ring
	total      int64 // sum of counts
	counts     [SubWindows + 1]uint32
}

// MemoryStats describes a Memory limiter's occupancy.
type MemoryStats struct {
	Keys int
	// EvictedLive counts keys evicted for room while their counters were still live.
	EvictedLive uint64
}

// NewMemory returns an in-memory limiter. cfg is defaulted; invalid values are clamped
// into range (call cfg.Validate first to report them).
func NewMemory(cfg MemoryConfig) *Memory {
	start := time.Now()
	// Monotonic time since start, offset by one hour so sub-window indices are never
	// near zero; a wall-clock jump therefore cannot reset or freeze counters.
	return newMemory(cfg, func() int64 { return int64(time.Since(start)) + int64(time.Hour) })
}

func newMemory(cfg MemoryConfig, now func() int64) *Memory {
	cfg.SetDefaults()
	cfg.MaxKeys = max(cfg.MaxKeys, 1)
	n := 1
	for n < cfg.Shards && n < 1<<16 {
		n <<= 1
	}
	for n > 1 && n > cfg.MaxKeys {
		n >>= 1
	}
	m := &Memory{
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		seed:     maphash.MakeSeed(),
		now:      now,
		perShard: cfg.MaxKeys / n,
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*entry)
	}
	return m
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, max int, window time.Duration) (Result, error) {
	if max < 1 || window < MinWindow {
		return Result{}, validate(max, window)
	}
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key)&m.mask]
	s.mu.Lock()
	s.reclaim(now)
	e := s.m[key]
	if e == nil {
		e = s.insert(key, m, now)
	} else {
		s.touch(e)
	}
	if e.window != int64(window) {
		e.reset(int64(window))
	}
	e.advance(now)
	var res Result
	res.Limit = max
	if e.total < int64(max) {
		e.counts[e.newest%(SubWindows+1)]++
		e.total++
		res.Allowed = true
		res.Remaining = max - int(e.total)
	} else {
		res.RetryAfter = e.retryAfter(now, int64(max))
	}
	res.Reset = e.resetIn(now)
	s.mu.Unlock()
	return res, nil
}

// Refund implements Limiter.
func (m *Memory) Refund(_ context.Context, key string, window time.Duration) error {
	now := m.now()
	s := &m.shards[maphash.String(m.seed, key)&m.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil || e.window != int64(window) {
		return nil
	}
	e.advance(now)
	for i := int64(0); i <= SubWindows; i++ {
		slot := (e.newest - i) % (SubWindows + 1)
		if e.counts[slot] > 0 {
			e.counts[slot]--
			e.total--
			return nil
		}
	}
	return nil
}

// Stats reports occupancy; it locks each shard briefly.
func (m *Memory) Stats() MemoryStats {
	st := MemoryStats{EvictedLive: m.evicted.Load()}
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		st.Keys += len(s.m)
		s.mu.Unlock()
	}
	return st
}

func (e *entry) reset(window int64) {
	e.window = window
	e.width = subWidth(window)
	e.newest = 0
	e.total = 0
	e.counts = [SubWindows + 1]uint32{}
}

// advance moves the ring to the sub-window holding now, zeroing sub-windows that aged
// out. A clock that appears to go backwards counts into the newest sub-window.
func (e *entry) advance(now int64) {
	n := now / e.width
	if n <= e.newest {
		return
	}
	if n-e.newest > SubWindows {
		e.counts = [SubWindows + 1]uint32{}
		e.total = 0
	} else {
		for i := e.newest + 1; i <= n; i++ {
			slot := i % (SubWindows + 1)
			e.total -= int64(e.counts[slot])
			e.counts[slot] = 0
		}
	}
	e.newest = n
}

// retryAfter is how long until dropping the oldest sub-windows leaves fewer than max
// counted calls. Sub-window j leaves the lookback when sub-window j+SubWindows+1 begins.
func (e *entry) retryAfter(now, max int64) time.Duration {
	remaining := e.total
	for j := e.newest - SubWindows; j <= e.newest; j++ {
		remaining -= int64(e.counts[j%(SubWindows+1)])
		if remaining < max {
			return time.Duration((j+SubWindows+1)*e.width - now)
		}
	}
	return time.Duration(e.window) // unreachable while counts sum to total
}

// resetIn is how long until the newest counted sub-window ages out.
func (e *entry) resetIn(now int64) time.Duration {
	for j := e.newest; j >= e.newest-SubWindows; j-- {
		if e.counts[j%(SubWindows+1)] > 0 {
			return time.Duration((j+SubWindows+1)*e.width - now)
		}
	}
	return 0
}

// expired reports whether every counter of e has aged out at now.
func (e *entry) expired(now int64) bool {
	return e.width == 0 || now/e.width > e.newest+SubWindows
}

func (s *shard) insert(key string, m *Memory, now int64) *entry {
	if len(s.m) >= m.perShard && s.tail != nil {
		victim := s.tail
		if !victim.expired(now) {
			m.evicted.Add(1)
		}
		s.remove(victim)
	}
	e := &entry{key: key}
	s.m[key] = e
	e.next = s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
	return e
}

// reclaim drops up to two aged-out keys from the cold end, so idle keys do not
// linger until the shard fills.
func (s *shard) reclaim(now int64) {
	for i := 0; i < 2 && s.tail != nil && s.tail.expired(now); i++ {
		s.remove(s.tail)
	}
}

func (s *shard) touch(e *entry) {
	if s.head == e {
		return
	}
	// unlink
	e.prev.next = e.next
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	// push front
	e.prev = nil
	e.next = s.head
	s.head.prev = e
	s.head = e
}

func (s *shard) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
	delete(s.m, e.key)
}
