package pacer

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/ratelimit"
)

// ErrBusy is returned when a call would wait longer than the pacer's budget.
var ErrBusy = errors.New("pacer: upstream busy, pacing wait exceeds budget")

// Pacer paces calls to one upstream. A nil *Pacer does no pacing.
type Pacer struct {
	limiter  ratelimit.Limiter
	interval time.Duration
	maxWait  time.Duration
	queued   atomic.Int64 // callers admitted and not yet returned from Take
	last     atomic.Int64 // unix nanoseconds of the latest slot Take returned
}

// New returns a Pacer for perSecond calls per second, refusing calls that would wait
// longer than maxWait (a negative maxWait is treated as 0). perSecond <= 0 returns nil:
// no pacing.
func New(perSecond int, maxWait time.Duration) *Pacer {
	if perSecond <= 0 {
		return nil
	}
	// WithoutSlack: unused time does not accumulate into a later burst; the point is to
	// smooth what the upstream sees.
	return &Pacer{
		limiter:  ratelimit.New(perSecond, ratelimit.WithoutSlack),
		interval: time.Second / time.Duration(perSecond),
		maxWait:  max(maxWait, 0),
	}
}

// Wait blocks until the caller may send its call upstream. It returns ErrBusy at once
// when the expected wait exceeds the budget, and ctx.Err() when ctx ends first (the
// slot already reserved is then forfeited, which only slows the pace slightly).
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ahead := p.queued.Add(1) - 1
	if wait := p.estimate(ahead); wait > p.maxWait {
		p.queued.Add(-1)
		return ErrBusy
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < p.estimate(ahead) {
		p.queued.Add(-1)
		return context.DeadlineExceeded
	}
	if ctx.Done() == nil {
		p.take()
		return nil
	}
	// Take cannot be interrupted: it runs aside so ctx can end the wait. The goroutine
	// lives at most about maxWait.
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.take()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pacer) take() {
	defer p.queued.Add(-1)
	slot := p.limiter.Take().UnixNano()
	for {
		last := p.last.Load()
		if slot <= last || p.last.CompareAndSwap(last, slot) {
			return
		}
	}
}

// Queued reports how many callers are waiting for a slot.
func (p *Pacer) Queued() int {
	if p == nil {
		return 0
	}
	return int(p.queued.Load())
}

func (p *Pacer) estimate(ahead int64) time.Duration {
	last := p.last.Load()
	if last == 0 {
		return time.Duration(ahead) * p.interval
	}
	next := last + (ahead+1)*int64(p.interval)
	return max(time.Duration(next-time.Now().UnixNano()), 0)
}
