package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/sqldb"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

// benchExternal are the targets that need servers of their own, by what they need (the
// flag names).
var benchExternal = map[string][]string{
	// Two replicas as serve runs them (Redis limiter, audit shipped to PostgreSQL,
	// approvals in PostgreSQL), the load alternating its connections between them, on
	// full's call: the example policy's plain allowed read, which touches neither Redis
	// nor PostgreSQL on its way.
	"replicas": {"postgres", "redis"},
	// The same two replicas on the minimal policy as role bench-ratelimit: every call is
	// a rate_limit decision (a limit never reached), counted in Redis.
	"replicas-ratelimit": {"postgres", "redis"},
	// One node with the Redis limiter and nothing else shared: what Redis costs alone.
	"min-ratelimit-redis": {"redis"},
}

// benchOptions are the servers the external targets use.
type benchOptions struct {
	postgres string // URL
	redis    string // host:port or redis:// URL
}

// check says what target name lacks, naming the flag.
func (o benchOptions) check(name string) error {
	for _, need := range benchExternal[name] {
		switch need {
		case "postgres":
			if o.postgres == "" {
				return fmt.Errorf("target %s needs PostgreSQL: set --postgres URL (or PORTCULLIS_BENCH_POSTGRES)", name)
			}
			// The URL may hold a password: it is never echoed.
			if u, err := url.Parse(o.postgres); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				return errors.New("--postgres must be a postgres:// or postgresql:// URL")
			}
		case "redis":
			if o.redis == "" {
				return fmt.Errorf("target %s needs Redis: set --redis ADDR (or PORTCULLIS_BENCH_REDIS)", name)
			}
			if _, err := redisOptions(o.redis); err != nil {
				return err
			}
		}
	}
	return nil
}

func redisOptions(addr string) (*redis.Options, error) {
	if !strings.Contains(addr, "://") {
		return &redis.Options{Addr: addr}, nil
	}
	opt, err := redis.ParseURL(addr)
	if err != nil {
		return nil, errors.New("--redis must be host:port or a redis:// URL")
	}
	return opt, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startExternal starts the targets of benchExternal that names asks for. What they
// leave in Redis and PostgreSQL is removed when the run ends.
func (e *benchEnv) startExternal(ctx context.Context, names []string, opts benchOptions) error {
	var fleets []string
	for _, name := range []string{"replicas", "replicas-ratelimit"} {
		if slices.Contains(names, name) {
			fleets = append(fleets, name)
		}
	}
	wantRedisNode := slices.Contains(names, "min-ratelimit-redis")
	if len(fleets) == 0 && !wantRedisNode {
		return nil
	}
	// One key prefix for the run: the replicas share their counters, as a fleet does.
	prefix := "portcullis:bench:" + randomSuffix() + ":rl:"
	newClient := func() (*redis.Client, error) {
		opt, err := redisOptions(opts.redis)
		if err != nil {
			return nil, err
		}
		rc := redis.NewClient(opt)
		e.onClose(func() { _ = rc.Close() })
		if err := rc.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		return rc, nil
	}
	admin, err := newClient()
	if err != nil {
		return err
	}
	e.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := admin.Scan(cctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(cctx) {
			admin.Del(cctx, iter.Val())
		}
	})
	// Each server has its own client (its own pool), as each replica has.
	newLimiter := func() (ratelimit.Limiter, error) {
		rc, err := newClient()
		if err != nil {
			return nil, err
		}
		return ratelimit.NewRedisWithOptions(rc, ratelimit.RedisOptions{Prefix: prefix})
	}
	if wantRedisNode {
		lim, err := newLimiter()
		if err != nil {
			return err
		}
		u, _, err := e.startProxy(ctx, proxySpec{name: "min-ratelimit-redis", policy: e.minimalPolicy(), auditOn: true, limiter: lim})
		if err != nil {
			return fmt.Errorf("min-ratelimit-redis: %w", err)
		}
		token, err := e.mint("bench-ratelimit")
		if err != nil {
			return err
		}
		e.targets["min-ratelimit-redis"] = benchTarget{name: "min-ratelimit-redis", urls: []string{u}, token: token}
	}
	for _, target := range fleets {
		policy, role := e.examplePolicy(), "agent"
		if target == "replicas-ratelimit" {
			policy, role = e.minimalPolicy(), "bench-ratelimit"
		}
		// Each fleet ships to a schema of its own: one fleet's rows never slow the other's.
		pgURL, schema, err := e.benchSchema(ctx, opts.postgres)
		if err != nil {
			return err
		}
		f := &benchFleet{target: target, schema: schema}
		var urls []string
		for _, replica := range []string{"a", "b"} {
			name := target + "-" + replica
			lim, err := newLimiter()
			if err != nil {
				return err
			}
			appr, err := approvals.Open(ctx, approvals.Config{DatabaseURL: pgURL}, e.log)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			e.onClose(func() { _ = appr.Close() })
			r := benchReplica{name: name}
			u, alog, err := e.startProxy(ctx, proxySpec{name: name, policy: policy, auditOn: true, limiter: lim, approvals: appr,
				ship: func(alog *audit.Log, path string) (func(), error) {
					central, err := audit.NewCentral(pgURL)
					if err != nil {
						return nil, err
					}
					sh, err := audit.NewShipper(ctx, central, audit.ShipperConfig{Path: path, Log: alog}, e.log)
					if err != nil {
						_ = central.Close()
						return nil, err
					}
					go sh.Run()
					r.shipper, r.central = sh, central
					return func() {
						sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						_ = sh.Close(sctx)
						_ = central.Close()
					}, nil
				}})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			r.log = alog
			f.replicas = append(f.replicas, r)
			urls = append(urls, u)
		}
		token, err := e.mint(role)
		if err != nil {
			return err
		}
		e.fleets[target] = f
		e.targets[target] = benchTarget{name: target, urls: urls, token: token}
	}
	return nil
}

// benchSchema creates a fresh schema for the run, dropped when it ends, and returns the
// URL that uses it (search_path) and its name.
func (e *benchEnv) benchSchema(ctx context.Context, base string) (string, string, error) {
	// Errors never include the URL, which may hold a password.
	redacted := func(err error) error {
		return fmt.Errorf("--postgres: %w", errors.New(strings.ReplaceAll(err.Error(), base, "<--postgres>")))
	}
	db, err := sqldb.OpenPostgres(ctx, base, 1)
	if err != nil {
		return "", "", redacted(err)
	}
	schema := "bench_" + randomSuffix()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = db.Close()
		return "", "", redacted(err)
	}
	e.onClose(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = db.ExecContext(cctx, "DROP SCHEMA "+schema+" CASCADE")
		_ = db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		return "", "", errors.New("--postgres is not a URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}

// benchFleet is a replicas target's servers and what the run saw of their shipping.
type benchFleet struct {
	target   string
	schema   string
	replicas []benchReplica
	lags     []fleetLag // one per measurement of the target, in order
}

type benchReplica struct {
	name    string
	log     *audit.Log
	shipper *audit.Shipper
	central *audit.Central
}

// fleetLag is the shipping left when one measurement ended.
type fleetLag struct {
	conns    int
	rows     []int64       // per replica: appended, not yet in PostgreSQL
	caughtUp time.Duration // until PostgreSQL held every row
	ok       bool          // false: not within fleetSettleBound
}

// fleetSettleBound is the longest the bench waits for the shipping to catch up.
const fleetSettleBound = 30 * time.Second

// unshipped returns, per replica, the rows appended to its log and not yet in the
// central store.
func (f *benchFleet) unshipped() []int64 {
	out := make([]int64, len(f.replicas))
	for i, r := range f.replicas {
		out[i] = max(r.log.JournaledSeq()-r.shipper.Status().ShippedSeq, 0)
	}
	return out
}

// settle waits, up to fleetSettleBound, until the central store holds every row
// appended so far.
func (f *benchFleet) settle(ctx context.Context) (time.Duration, bool) {
	start := time.Now()
	for {
		if !slices.ContainsFunc(f.unshipped(), func(n int64) bool { return n > 0 }) {
			return time.Since(start), true
		}
		if time.Since(start) > fleetSettleBound || ctx.Err() != nil {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// measured records the lag at the end of a measurement at c connections, then waits
// for the shipping to catch up.
func (f *benchFleet) measured(ctx context.Context, c int) {
	l := fleetLag{conns: c, rows: f.unshipped()}
	l.caughtUp, l.ok = f.settle(ctx)
	f.lags = append(f.lags, l)
}

// report prints how the load spread over the replicas, the shipping lag of each
// measurement, and what the central store holds.
func (f *benchFleet) report(ctx context.Context, w io.Writer, conns int, served []int64) {
	names := make([]string, len(f.replicas))
	for i, r := range f.replicas {
		names[i] = r.name
	}
	if len(served) == len(f.replicas) {
		parts := make([]string, len(served))
		for i, n := range served {
			parts[i] = fmt.Sprintf("%s %d", names[i], n)
		}
		fmt.Fprintf(w, "%s: requests answered at %d connections (all rounds): %s\n", f.target, conns, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "%s: audit rows not yet in PostgreSQL when each measurement ended (%s), and how long until they were:\n", f.target, strings.Join(names, " + "))
	for _, l := range f.lags {
		parts := make([]string, len(l.rows))
		for i, n := range l.rows {
			parts[i] = fmt.Sprint(n)
		}
		state := fmt.Sprintf("caught up in %s", l.caughtUp.Round(time.Millisecond))
		if !l.ok {
			state = fmt.Sprintf("NOT caught up after %s", l.caughtUp.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  %2d conns: %s rows, %s\n", l.conns, strings.Join(parts, " + "), state)
	}
	for _, r := range f.replicas {
		if st := r.shipper.Status(); st.Fault != "" || st.LastError != "" {
			fmt.Fprintf(w, "%s: %s shipping: fault %q, last error %q\n", f.target, r.name, st.Fault, st.LastError)
		}
	}
	central := f.replicas[0].central
	logs, err := central.Logs(ctx)
	if err != nil {
		fmt.Fprintf(w, "%s: central store: %v\n", f.target, err)
		return
	}
	parts := make([]string, 0, len(logs))
	for _, id := range logs {
		h, err := central.Head(ctx, id)
		if err != nil {
			fmt.Fprintf(w, "%s: central store: %v\n", f.target, err)
			return
		}
		parts = append(parts, fmt.Sprintf("%s through seq %d", id, h.Seq))
	}
	fmt.Fprintf(w, "%s: central store (schema %s, dropped at exit) holds %d logs: %s\n", f.target, f.schema, len(logs), strings.Join(parts, ", "))
}
