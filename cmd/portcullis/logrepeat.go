package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// repeatLimit is a slog.Handler that keeps a failing dependency from flooding the log:
// of the WARN and ERROR records with the same level, message and component, the first in
// each interval is written and the rest are counted. The count is reported as
// suppressed=N on the next record of that kind written, or, when none comes, on a
// summary record with the same level and message once the interval is over. A full disk
// once made every refused call write two ERROR lines: 182 MB in 25 s.
//
// INFO and DEBUG records pass untouched: they describe normal traffic, one line per
// event, and log_level warn turns them off.
type repeatLimit struct {
	next      slog.Handler
	component string // from With("component", ...): the backend's lines are not the proxy's
	st        *repeatState
}

type repeatKey struct {
	level     slog.Level
	msg       string
	component string
}

type repeatEntry struct {
	until      time.Time
	suppressed int64
	to         slog.Handler // where the summary goes: the handler of the records counted
}

type repeatState struct {
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	mu   sync.Mutex
	seen map[repeatKey]*repeatEntry

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// repeatMinLevel is the lowest level limited.
const repeatMinLevel = slog.LevelWarn

// repeatMaxKeys bounds the kinds tracked. Messages are constants in the code, so this is
// a guard: past it, records of kinds not tracked are written as they come.
const repeatMaxKeys = 4096

// newRepeatLimit wraps next. close stops the summary ticker and writes the counts
// still held.
func newRepeatLimit(next slog.Handler, interval time.Duration) (h *repeatLimit, close func()) {
	st := &repeatState{interval: interval, maxKeys: repeatMaxKeys, now: time.Now,
		seen: map[repeatKey]*repeatEntry{}, stop: make(chan struct{}), done: make(chan struct{})}
	go st.run()
	return &repeatLimit{next: next, st: st}, st.close
}

func (h *repeatLimit) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *repeatLimit) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < repeatMinLevel {
		return h.next.Handle(ctx, r)
	}
	n, pass := h.st.admit(repeatKey{r.Level, r.Message, h.component}, h.next)
	if !pass {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int64("suppressed", n))
	}
	return h.next.Handle(ctx, r)
}

func (h *repeatLimit) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "component" {
			c.component = a.Value.String()
		}
	}
	return &c
}

func (h *repeatLimit) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

// admit reports whether a record of kind k is written now and how many of its kind were
// suppressed before it.
func (st *repeatState) admit(k repeatKey, to slog.Handler) (suppressed int64, pass bool) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.seen[k]
	if e == nil {
		if len(st.seen) >= st.maxKeys {
			return 0, true
		}
		st.seen[k] = &repeatEntry{until: now.Add(st.interval), to: to}
		return 0, true
	}
	if now.Before(e.until) {
		e.suppressed++
		e.to = to
		return 0, false
	}
	n := e.suppressed
	e.until, e.suppressed, e.to = now.Add(st.interval), 0, to
	return n, true
}

func (st *repeatState) run() {
	defer close(st.done)
	t := time.NewTicker(st.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			st.sweep(false)
		case <-st.stop:
			st.sweep(true)
			return
		}
	}
}

func (st *repeatState) close() {
	st.once.Do(func() {
		close(st.stop)
		<-st.done
	})
}

// sweep writes a summary for every kind whose interval is over with records suppressed,
// and forgets kinds whose interval is over. final summarises everything.
func (st *repeatState) sweep(final bool) {
	type summary struct {
		k  repeatKey
		n  int64
		to slog.Handler
	}
	var out []summary
	now := st.now()
	st.mu.Lock()
	for k, e := range st.seen {
		if !final && now.Before(e.until) {
			continue
		}
		if e.suppressed > 0 {
			out = append(out, summary{k, e.suppressed, e.to})
		}
		delete(st.seen, k)
	}
	st.mu.Unlock()
	for _, s := range out {
		r := slog.NewRecord(now, s.k.level, s.k.msg, 0)
		r.AddAttrs(slog.Int64("suppressed", s.n), slog.String("suppressed_within", st.interval.String()))
		_ = s.to.Handle(context.Background(), r)
	}
}

var _ slog.Handler = (*repeatLimit)(nil)
