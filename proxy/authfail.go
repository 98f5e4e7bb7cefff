package proxy

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/audit"
)

// AuthFailureConfig bounds the audit rows failed authentication writes. Every 401 used
// to write a row, so an anonymous flood could fill the disk of an audit trail that
// fails closed, and stop the service.
type AuthFailureConfig struct {
	// Interval is the aggregation period. The first failure from a client address (an
	// IPv6 client: its /64) for a reason gets a row at once; further failures from that
	// address for that reason are counted, and written as one row per interval carrying
	// the count and the first request id. An address quiet for a whole interval starts
	// over. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// MaxKeys bounds the (address, reason) pairs tracked at once. Failures from further
	// addresses are counted in one row per reason per interval with client_addr "*".
	// So a flood from any number of addresses writes at most about 2*MaxKeys rows (plus
	// one per reason) per interval. Default 1000.
	MaxKeys int `yaml:"max_keys"`
}

// overflowAddr is the client address of a row that counts failures from addresses past
// auth_failures.max_keys.
const overflowAddr = "*"

// maxOverflowReasons bounds the overflow rows; reasons are the authenticator's fixed
// descriptions, a handful, so this is a guard only.
const maxOverflowReasons = 64

// authFailure is one failed authentication, copied out of the request.
type authFailure struct {
	at     time.Time
	addr   string
	reason string
	rid    string
	method string
	path   string
}

type authFailureKey struct{ addr, reason string }

// authFailureSpan is what is known of an (address, reason) pair since its last row.
type authFailureSpan struct {
	first authFailure // the span's first failure: its request id, method, path and time
	last  time.Time
	count int64
	// fresh marks a pair whose immediate row was written in the current interval: it is
	// kept through the next tick even when nothing more came, so a steady flood writes
	// one row per interval and not one per tick plus one.
	fresh bool
}

// authFailures aggregates auth_failure rows. It is safe for concurrent use.
type authFailures struct {
	sink     AuditLog
	interval time.Duration
	maxKeys  int
	rows     prometheus.Counter // auth_failure rows written
	folded   prometheus.Counter // failures counted into another failure's row

	mu       sync.Mutex
	spans    map[authFailureKey]*authFailureSpan
	overflow map[string]*authFailureSpan // by reason
	stopped  bool

	stop chan struct{}
	done chan struct{}
}

func newAuthFailures(cfg AuthFailureConfig, sink AuditLog, rows, folded prometheus.Counter) *authFailures {
	a := &authFailures{
		sink: sink, interval: cfg.Interval, maxKeys: cfg.MaxKeys, rows: rows, folded: folded,
		spans: map[authFailureKey]*authFailureSpan{}, overflow: map[string]*authFailureSpan{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go a.run()
	return a
}

func (a *authFailures) run() {
	defer close(a.done)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.flush(false)
		case <-a.stop:
			a.flush(true)
			return
		}
	}
}

// close writes the counts still held and stops the ticker. Failures recorded after it
// get a row each, as nothing would flush them.
func (a *authFailures) close() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
}

// record counts f, writing its row now when f is the first of its pair.
func (a *authFailures) record(f authFailure) {
	k := authFailureKey{f.addr, f.reason}
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		a.write(&authFailureSpan{first: f, last: f.at, count: 1}, f.addr)
		return
	}
	sp := a.spans[k]
	if sp == nil {
		if len(a.spans) < a.maxKeys {
			a.spans[k] = &authFailureSpan{fresh: true}
			a.mu.Unlock()
			a.write(&authFailureSpan{first: f, last: f.at, count: 1}, f.addr)
			return
		}
		reason := f.reason
		if _, ok := a.overflow[reason]; !ok && len(a.overflow) >= maxOverflowReasons {
			reason = "other reasons"
		}
		if sp = a.overflow[reason]; sp == nil {
			sp = &authFailureSpan{}
			a.overflow[reason] = sp
		}
		f.reason = reason
	}
	if sp.count == 0 {
		sp.first = f
	}
	sp.count++
	sp.last = f.at
	a.mu.Unlock()
	a.folded.Inc()
}

// flush writes a row for every pair with failures since its last row, and forgets pairs
// quiet for a whole interval. final writes everything and forgets all.
func (a *authFailures) flush(final bool) {
	var out []authFailureSpan
	var addrs []string
	a.mu.Lock()
	for k, sp := range a.spans {
		switch {
		case sp.count > 0:
			out, addrs = append(out, *sp), append(addrs, k.addr)
			sp.count, sp.fresh = 0, false
		case sp.fresh && !final:
			sp.fresh = false
			continue
		default:
			delete(a.spans, k)
			continue
		}
		if final {
			delete(a.spans, k)
		}
	}
	for reason, sp := range a.overflow {
		out, addrs = append(out, *sp), append(addrs, overflowAddr)
		delete(a.overflow, reason)
	}
	a.mu.Unlock()
	for i := range out {
		a.write(&out[i], addrs[i])
	}
}

// authFailureCounts is an auth_failure row's arguments: how many failures it stands for,
// between when and when. The row's request id, method and path are the first one's.
type authFailureCounts struct {
	Count   int64     `json:"count"`
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
}

func (a *authFailures) write(sp *authFailureSpan, addr string) {
	args, _ := json.Marshal(authFailureCounts{Count: sp.count, FirstAt: sp.first.at.UTC(), LastAt: sp.last.UTC()})
	a.rows.Inc()
	a.sink.AppendAsync(&audit.Event{
		Time:      sp.last.UTC(),
		Kind:      audit.KindAuthFailure,
		RequestID: sp.first.rid,
		Caller:    audit.Caller{ClientAddr: addr},
		Method:    sp.first.method,
		Path:      sp.first.path,
		Arguments: args,
		Decision:  audit.DecisionAuthFailed,
		Reason:    sp.first.reason,
	})
}
