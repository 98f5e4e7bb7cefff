package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	fiberproxy "github.com/gofiber/fiber/v2/middleware/proxy"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

// The bench policy for comparing an allow decision with a rate_limit decision at equal
// evaluation cost: only the action differs.
const benchPolicy = `package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "bench"}

decision := {"action": "allow", "reason": "bench"} if input.caller.roles[_] == "bench-allow"

decision := {"action": "rate_limit", "reason": "bench", "rate_limit": {"max": 1000000000, "window": "60s"}} if input.caller.roles[_] == "bench-ratelimit"
`

const benchBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_integration","arguments":{"slug":"prod-openai"}}}`

const upstreamReply = `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"ok\":true}"}],"structuredContent":{"ok":true,"data":{"slug":"prod-openai","masked_key":"sk-****abcd"}}}}`

type benchTarget struct {
	name  string
	urls  []string // one per replica; the load spreads its connections over them round-robin
	token string
}

type benchResult struct {
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // process CPU time (user+system) per request: client, upstream and target together
	errors   int64
	served   []int64 // answered requests per URL of the target (summed over rounds by medianResult)
}

// discardAudit is the bench's "audit off" comparator only; serve always audits.
type discardAudit struct{}

func (discardAudit) Append(context.Context, *audit.Event) error { return nil }
func (discardAudit) AppendAsync(*audit.Event)                   {}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := commandFlags("bench", "[flags]", `Measure direct calls, a plain Fiber proxy hop and Portcullis in interleaved rounds on
127.0.0.1 (medians over rounds): requests/s, p50/p99, the ratio to a direct call, CPU
per request, and the latency added at one connection. Two targets run only when
named in --targets: replicas (two replicas sharing a Redis limiter, shipping their
audit to PostgreSQL, approvals in PostgreSQL, on full's allowed call; needs --postgres
and --redis), replicas-ratelimit (the same on a rate-limited call, counted in Redis)
and min-ratelimit-redis (one node with the Redis limiter; needs --redis).
docs/benchmarks.md explains the targets and the figures.`, stderr)
	duration := fs.Duration("duration", 3*time.Second, "length of each measurement")
	rounds := fs.Int("rounds", 3, "interleaved rounds; figures are medians over rounds")
	conns := fs.Int("conns", 32, "concurrent connections of the load generator")
	targetsFlag := fs.String("targets", strings.Join(benchDefaultTargets, ","), "targets to measure, comma-separated; also "+strings.Join(slices.Sorted(maps.Keys(benchExternal)), ", "))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	var opts benchOptions
	fs.StringVar(&opts.postgres, "postgres", "", "PostgreSQL `URL` for the replicas target; the run uses a schema of its own and drops it (env PORTCULLIS_BENCH_POSTGRES)")
	fs.StringVar(&opts.redis, "redis", "", "Redis `ADDR` (host:port or redis:// URL) for the replicas and min-ratelimit-redis targets; the run deletes its keys (env PORTCULLIS_BENCH_REDIS)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *duration <= 0 || *duration > 5*time.Minute || *rounds < 1 || *rounds > 20 || *conns < 1 || *conns > 1024 {
		fmt.Fprintln(stderr, "bench: --duration must be in (0, 5m], --rounds in [1, 20], --conns in [1, 1024]")
		return 2
	}
	// Read after parsing, so that -h never prints a URL (and its password) from the environment.
	if opts.postgres == "" {
		opts.postgres = os.Getenv("PORTCULLIS_BENCH_POSTGRES")
	}
	if opts.redis == "" {
		opts.redis = os.Getenv("PORTCULLIS_BENCH_REDIS")
	}
	var names []string
	for _, name := range strings.Split(*targetsFlag, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(benchDefaultTargets, name) && benchExternal[name] == nil {
			fmt.Fprintf(stderr, "bench: unknown target %q\n", name)
			return 2
		}
		if err := opts.check(name); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		names = append(names, name)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err != nil {
				fmt.Fprintf(stderr, "bench: %v\n", err)
				return
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintf(stderr, "bench: %v\n", err)
			}
		}()
	}
	env, err := newBenchEnv(ctx, names, opts)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer env.close()
	var targets []benchTarget
	for _, name := range names {
		targets = append(targets, env.targets[name])
	}
	// Every target must answer correctly before anything is timed.
	for _, t := range targets {
		for _, u := range t.urls {
			if err := probe(u, t.token); err != nil {
				fmt.Fprintf(stderr, "bench: %s: %v\n", t.name, err)
				return 1
			}
		}
	}
	for _, f := range env.fleets {
		// The probes' rows (and the central tables' creation) are not the first round's work.
		if _, ok := f.settle(ctx); !ok {
			fmt.Fprintf(stderr, "bench: %s: the probes' audit rows did not reach PostgreSQL within %s\n", f.target, fleetSettleBound)
			return 1
		}
	}
	fmt.Fprintf(stdout, "portcullis bench: MCP tools/call get_integration, %d connections, %s x %d interleaved rounds, GOMAXPROCS=%d\n",
		*conns, *duration, *rounds, runtimeGOMAXPROCS())
	report := func(c int) map[string]benchResult {
		all := map[string][]benchResult{}
		for r := 0; r < *rounds; r++ {
			for _, t := range targets {
				all[t.name] = append(all[t.name], load(ctx, t, c, *duration))
				if f := env.fleets[t.name]; f != nil {
					// Shipping left behind is measured and then waited for, so that it neither
					// goes unseen nor burdens the next target's measurement.
					f.measured(ctx, c)
				}
			}
		}
		out := map[string]benchResult{}
		for name, rs := range all {
			out[name] = medianResult(rs)
		}
		return out
	}
	res := report(*conns)
	direct := res["direct"]
	fmt.Fprintf(stdout, "\n%-20s %12s %10s %10s %8s %10s %8s\n", "target", "req/s", "p50", "p99", "x direct", "cpu/req", "errors")
	for _, t := range targets {
		r := res[t.name]
		ratio := "-"
		if direct.rps > 0 {
			ratio = fmt.Sprintf("%.2f", r.rps/direct.rps)
		}
		fmt.Fprintf(stdout, "%-20s %12.0f %10s %10s %8s %10s %8d\n", t.name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), ratio, r.cpu.Round(100*time.Nanosecond), r.errors)
	}
	if a, ok := res["min-allow"]; ok {
		if rl, ok := res["min-ratelimit"]; ok && a.rps > 0 {
			fmt.Fprintf(stdout, "rate_limit vs allow (same policy cost): %.2fx req/s\n", rl.rps/a.rps)
		}
	}
	if f, ok := res["full"]; ok {
		if na, ok := res["full-noaudit"]; ok && na.rps > 0 {
			fmt.Fprintf(stdout, "audit on vs audit off: %.2fx req/s\n", f.rps/na.rps)
		}
	}
	for _, c := range benchComparisons {
		a, aok := res[c.a]
		b, bok := res[c.b]
		if aok && bok && b.rps > 0 {
			fmt.Fprintf(stdout, "%s / %s (%s): %.2fx req/s, p99 %s vs %s\n", c.a, c.b, c.what, a.rps/b.rps,
				a.p99.Round(time.Microsecond), b.p99.Round(time.Microsecond))
		}
	}
	// Added latency at one connection: the cost of the gateway on an idle machine.
	one := report(1)
	if d, ok := one["direct"]; ok {
		fmt.Fprintf(stdout, "\none connection: median latency direct %s", d.p50.Round(time.Microsecond))
		for _, t := range targets {
			if t.name != "direct" {
				fmt.Fprintf(stdout, ", %s %s (+%s)", t.name, one[t.name].p50.Round(time.Microsecond), (one[t.name].p50 - d.p50).Round(time.Microsecond))
			}
		}
		fmt.Fprintln(stdout)
	}
	for _, t := range targets {
		if f := env.fleets[t.name]; f != nil {
			fmt.Fprintln(stdout)
			f.report(ctx, stdout, *conns, res[t.name].served)
		}
	}
	return 0
}

// benchDefaultTargets run on any machine; benchExternal's only when asked for, with
// the servers they need.
var benchDefaultTargets = []string{"direct", "plain", "full", "full-nocache", "full-noaudit", "min-allow", "min-ratelimit"}

// benchComparisons are the ratios printed under the table when both targets ran.
var benchComparisons = []struct{ a, b, what string }{
	{"replicas", "full", "single-node SQLite, the same allowed call"},
	{"replicas-ratelimit", "min-ratelimit", "single node, same policy, in-memory limiter"},
	{"min-ratelimit-redis", "min-ratelimit", "the Redis limiter alone"},
	{"replicas-ratelimit", "min-ratelimit-redis", "two replicas and shipping, same Redis limiter"},
}

func medianResult(rs []benchResult) benchResult {
	pick := func(f func(benchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var errs int64
	var served []int64
	for _, r := range rs {
		errs += r.errors
		if served == nil {
			served = make([]int64, len(r.served))
		}
		for i, n := range r.served {
			served[i] += n
		}
	}
	return benchResult{
		rps:    pick(func(r benchResult) float64 { return r.rps }),
		p50:    time.Duration(pick(func(r benchResult) float64 { return float64(r.p50) })),
		p99:    time.Duration(pick(func(r benchResult) float64 { return float64(r.p99) })),
		cpu:    time.Duration(pick(func(r benchResult) float64 { return float64(r.cpu) })),
		errors: errs,
		served: served,
	}
}

func newRequest(url, token string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod("POST")
	req.SetRequestURI(url)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.SetBodyString(benchBody)
	return req
}

func probe(url, token string) error {
	req := newRequest(url, token)
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		return err
	}
	if resp.StatusCode() != 200 || !strings.Contains(string(resp.Body()), `"ok":true`) {
		return fmt.Errorf("probe got %d %s", resp.StatusCode(), resp.Body())
	}
	return nil
}

// load drives t with c connections for d and returns throughput and latency percentiles.
// Connection i goes to t.urls[i % len(t.urls)], as a round-robin balancer would place it.
func load(ctx context.Context, t benchTarget, c int, d time.Duration) benchResult {
	clients := make([]*fasthttp.HostClient, len(t.urls))
	for j, u := range t.urls {
		// Enough connections for this URL's share of c (the single-URL case keeps c).
		clients[j] = &fasthttp.HostClient{Addr: strings.Split(strings.TrimPrefix(u, "http://"), "/")[0], MaxConns: (c + len(t.urls) - 1) / len(t.urls)}
	}
	var wg sync.WaitGroup
	var errs atomic.Int64
	lat := make([][]time.Duration, c)
	deadline := time.Now().Add(d)
	start := time.Now()
	cpu0 := processCPU()
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := clients[i%len(clients)]
			req := newRequest(t.urls[i%len(t.urls)], t.token)
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			l := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				err := client.DoTimeout(req, resp, 5*time.Second)
				if err != nil || resp.StatusCode() != 200 {
					errs.Add(1)
					continue
				}
				l = append(l, time.Since(t0))
			}
			lat[i] = l
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	served := make([]int64, len(t.urls))
	var all []time.Duration
	for i, l := range lat {
		served[i%len(t.urls)] += int64(len(l))
		all = append(all, l...)
	}
	if len(all) == 0 {
		return benchResult{errors: errs.Load(), served: served}
	}
	slices.Sort(all)
	return benchResult{
		rps:    float64(len(all)) / elapsed.Seconds(),
		p50:    all[len(all)/2],
		p99:    all[len(all)*99/100],
		cpu:    cpu / time.Duration(len(all)),
		errors: errs.Load(),
		served: served,
	}
}

type benchEnv struct {
	targets map[string]benchTarget
	fleets  map[string]*benchFleet // the replicas targets', by name, when asked for
	closers []func()

	// What every Portcullis target shares.
	dir     string
	log     *slog.Logger
	upURL   string
	pubPath string
	key     *ecdsa.PrivateKey
	kid     string
}

func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func (e *benchEnv) onClose(f func()) { e.closers = append(e.closers, f) }

func listenLocal() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + ln.Addr().String(), nil
}

// newBenchEnv starts the upstream and every target of benchDefaultTargets, and those of
// benchExternal that names asks for.
func newBenchEnv(ctx context.Context, names []string, opts benchOptions) (*benchEnv, error) {
	e := &benchEnv{targets: map[string]benchTarget{}, fleets: map[string]*benchFleet{}}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	e.dir = dir
	e.onClose(func() { os.RemoveAll(dir) })
	e.log = slog.New(slog.NewJSONHandler(io.Discard, nil))

	// Upstream: a fixed MCP answer, the same for every target.
	upLn, upURL, err := listenLocal()
	if err != nil {
		return nil, err
	}
	up := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBodyString(upstreamReply)
	}}
	go up.Serve(upLn)
	e.onClose(func() { _ = up.Shutdown() })
	e.upURL = upURL
	e.targets["direct"] = benchTarget{name: "direct", urls: []string{upURL + "/mcp"}}

	// A plain Fiber proxy hop: the floor any proxy pays.
	plain := fiber.New(fiber.Config{DisableStartupMessage: true})
	plain.Post("/mcp", fiberproxy.Forward(upURL+"/mcp"))
	plLn, plURL, err := listenLocal()
	if err != nil {
		return nil, err
	}
	go plain.Listener(plLn)
	e.onClose(func() { _ = plain.Shutdown() })
	e.targets["plain"] = benchTarget{name: "plain", urls: []string{plURL + "/mcp"}}

	// ES256 caller tokens, verified against a public key file as in production.
	if e.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
	if err != nil {
		return nil, err
	}
	e.pubPath = filepath.Join(dir, "bench.pub.pem")
	if err := os.WriteFile(e.pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if e.kid, err = authn.Thumbprint(&e.key.PublicKey); err != nil {
		return nil, err
	}

	example := e.examplePolicy()
	// Every request of the load is the same call, so the decision cache answers all but
	// the first; full-nocache evaluates the policy every time, as for calls never seen.
	uncached := example
	uncached.CacheSize = -1
	minimal := e.minimalPolicy()
	for _, t := range []struct {
		name    string
		policy  policies.Options
		auditOn bool
		roles   []string
	}{
		{"full", example, true, []string{"agent"}},
		{"full-nocache", uncached, true, []string{"agent"}},
		{"full-noaudit", example, false, []string{"agent"}},
		{"min-allow", minimal, true, []string{"bench-allow"}},
		{"min-ratelimit", minimal, true, []string{"bench-ratelimit"}},
	} {
		u, _, err := e.startProxy(ctx, proxySpec{name: t.name, policy: t.policy, auditOn: t.auditOn})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		tok, err := e.mint(t.roles...)
		if err != nil {
			return nil, err
		}
		e.targets[t.name] = benchTarget{name: t.name, urls: []string{u}, token: tok}
	}
	if err := e.startExternal(ctx, names, opts); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// examplePolicy is the example policy as serve loads it by default.
func (e *benchEnv) examplePolicy() policies.Options {
	return policyOptions("", policies.DefaultTimeout, false, e.log)
}

func (e *benchEnv) minimalPolicy() policies.Options {
	return policies.Options{Modules: map[string]string{"bench.rego": benchPolicy}, Timeout: policies.DefaultTimeout, Logger: e.log}
}

func (e *benchEnv) mint(roles ...string) (string, error) {
	return authn.Mint(e.key, e.kid, authn.MintOptions{Sub: "bench-agent", Org: "acme", Session: "s1", Roles: roles,
		TTL: time.Hour, Issuer: "bench", Audience: "portcullis"})
}

// proxySpec is one Portcullis server of the bench.
type proxySpec struct {
	name      string // its directory under the run's temporary one
	policy    policies.Options
	auditOn   bool
	limiter   ratelimit.Limiter  // nil: in memory, as a single node runs
	approvals *approvals.Service // nil: none (the bench call never needs one)
	// ship, when set, starts shipping the opened audit log (at path) to the central
	// store, as serve does with audit.central_url, and returns how to stop it.
	ship func(alog *audit.Log, path string) (stop func(), err error)
}

// startProxy starts a Portcullis server wired as serve wires one and returns its MCP URL
// and its audit log.
func (e *benchEnv) startProxy(ctx context.Context, s proxySpec) (string, *audit.Log, error) {
	sub := filepath.Join(e.dir, s.name)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return "", nil, err
	}
	engine, err := policies.New(ctx, s.policy)
	if err != nil {
		return "", nil, err
	}
	acfg := audit.Config{Path: filepath.Join(sub, "audit.db")}
	acfg.SetDefaults(sub)
	// The shipper stops after the log closes (closers run in reverse), as in serve.
	var stopShip func()
	e.onClose(func() {
		if stopShip != nil {
			stopShip()
		}
	})
	alog, err := audit.Open(ctx, acfg, e.log)
	if err != nil {
		return "", nil, err
	}
	e.onClose(func() { _ = alog.Close() })
	if s.ship != nil {
		if stopShip, err = s.ship(alog, acfg.Path); err != nil {
			return "", nil, err
		}
	}
	var sink proxy.AuditLog = alog
	if !s.auditOn {
		sink = discardAudit{}
	}
	acfgAuth := authn.Config{PublicKeyFiles: []string{e.pubPath}, Issuer: "bench", Audience: "portcullis"}
	acfgAuth.SetDefaults()
	auth, err := authn.New(ctx, acfgAuth, e.log)
	if err != nil {
		return "", nil, err
	}
	e.onClose(auth.Close)
	ln, u, err := listenLocal()
	if err != nil {
		return "", nil, err
	}
	// The pre-auth limiter runs (its cost is part of the figure) but never trips.
	pcfg := proxy.Config{Listen: ln.Addr().String(), PreAuthRate: 1_000_000}
	pcfg.MCP.Upstream.URL = e.upURL + "/mcp"
	pcfg.REST.Upstream.URL = e.upURL
	pcfg.SetDefaults(sub)
	if err := pcfg.Validate(); err != nil {
		return "", nil, err
	}
	id, err := proxy.NewIdentitySigner(pcfg.Identity)
	if err != nil {
		return "", nil, err
	}
	lim := s.limiter
	if lim == nil {
		lim = ratelimit.NewMemory(ratelimit.MemoryConfig{})
	}
	srv, err := proxy.New(pcfg, proxy.Deps{Logger: e.log, Auth: auth, Policy: engine, Audit: sink, Redactor: alog.Redactor(),
		Identity: id, Limiter: lim, Approvals: s.approvals})
	if err != nil {
		return "", nil, err
	}
	go srv.Serve(ln)
	e.onClose(func() { _ = srv.Shutdown(context.Background()) })
	return u + "/mcp", alog, nil
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
