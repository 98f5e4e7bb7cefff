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
	url   string
	token string
}

type benchResult struct {
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // process CPU time (user+system) per request: client, upstream and target together
	errors   int64
}

// discardAudit is the bench's "audit off" comparator only; serve always audits.
type discardAudit struct{}

func (discardAudit) Append(context.Context, *audit.Event) error { return nil }
func (discardAudit) AppendAsync(*audit.Event)                   {}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := commandFlags("bench", "[flags]", `Measure direct calls, a plain Fiber proxy hop and Portcullis in interleaved rounds on
127.0.0.1 (medians over rounds): requests/s, p50/p99, the ratio to a direct call, CPU
per request, and the latency added at one connection. docs/benchmarks.md explains the
targets and the figures.`, stderr)
	duration := fs.Duration("duration", 3*time.Second, "length of each measurement")
	rounds := fs.Int("rounds", 3, "interleaved rounds; figures are medians over rounds")
	conns := fs.Int("conns", 32, "concurrent connections of the load generator")
	targetsFlag := fs.String("targets", "direct,plain,full,full-nocache,full-noaudit,min-allow,min-ratelimit", "targets to measure, comma-separated")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile of the whole run to this file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *duration <= 0 || *duration > 5*time.Minute || *rounds < 1 || *rounds > 20 || *conns < 1 || *conns > 1024 {
		fmt.Fprintln(stderr, "bench: --duration must be in (0, 5m], --rounds in [1, 20], --conns in [1, 1024]")
		return 2
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
	env, err := newBenchEnv(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer env.close()
	var targets []benchTarget
	for _, name := range strings.Split(*targetsFlag, ",") {
		t, ok := env.targets[strings.TrimSpace(name)]
		if !ok {
			fmt.Fprintf(stderr, "bench: unknown target %q\n", name)
			return 2
		}
		targets = append(targets, t)
	}
	// Every target must answer correctly before anything is timed.
	for _, t := range targets {
		if err := probe(t); err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", t.name, err)
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
	fmt.Fprintf(stdout, "\n%-14s %12s %10s %10s %8s %10s %8s\n", "target", "req/s", "p50", "p99", "x direct", "cpu/req", "errors")
	for _, t := range targets {
		r := res[t.name]
		ratio := "-"
		if direct.rps > 0 {
			ratio = fmt.Sprintf("%.2f", r.rps/direct.rps)
		}
		fmt.Fprintf(stdout, "%-14s %12.0f %10s %10s %8s %10s %8d\n", t.name, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), ratio, r.cpu.Round(100*time.Nanosecond), r.errors)
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
	return 0
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
	for _, r := range rs {
		errs += r.errors
	}
	return benchResult{
		rps:    pick(func(r benchResult) float64 { return r.rps }),
		p50:    time.Duration(pick(func(r benchResult) float64 { return float64(r.p50) })),
		p99:    time.Duration(pick(func(r benchResult) float64 { return float64(r.p99) })),
		cpu:    time.Duration(pick(func(r benchResult) float64 { return float64(r.cpu) })),
		errors: errs,
	}
}

func newRequest(t benchTarget) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod("POST")
	req.SetRequestURI(t.url)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	req.SetBodyString(benchBody)
	return req
}

func probe(t benchTarget) error {
	req := newRequest(t)
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
func load(ctx context.Context, t benchTarget, c int, d time.Duration) benchResult {
	client := &fasthttp.HostClient{Addr: strings.Split(strings.TrimPrefix(t.url, "http://"), "/")[0], MaxConns: c}
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
			req := newRequest(t)
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
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return benchResult{errors: errs.Load()}
	}
	slices.Sort(all)
	return benchResult{
		rps:    float64(len(all)) / elapsed.Seconds(),
		p50:    all[len(all)/2],
		p99:    all[len(all)*99/100],
		cpu:    cpu / time.Duration(len(all)),
		errors: errs.Load(),
	}
}

type benchEnv struct {
	targets map[string]benchTarget
	closers []func()
}

func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func listenLocal() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + ln.Addr().String(), nil
}

func newBenchEnv(ctx context.Context) (*benchEnv, error) {
	e := &benchEnv{targets: map[string]benchTarget{}}
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
	e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))

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
	e.closers = append(e.closers, func() { _ = up.Shutdown() })
	e.targets["direct"] = benchTarget{name: "direct", url: upURL + "/mcp"}

	// A plain Fiber proxy hop: the floor any proxy pays.
	plain := fiber.New(fiber.Config{DisableStartupMessage: true})
	plain.Post("/mcp", fiberproxy.Forward(upURL+"/mcp"))
	plLn, plURL, err := listenLocal()
	if err != nil {
		return nil, err
	}
	go plain.Listener(plLn)
	e.closers = append(e.closers, func() { _ = plain.Shutdown() })
	e.targets["plain"] = benchTarget{name: "plain", url: plURL + "/mcp"}

	// ES256 caller tokens, verified against a public key file as in production.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	pubPath := filepath.Join(dir, "bench.pub.pem")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	kid, err := authn.Thumbprint(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	mint := func(roles ...string) (string, error) {
		return authn.Mint(key, kid, authn.MintOptions{Sub: "bench-agent", Org: "acme", Session: "s1", Roles: roles,
			TTL: time.Hour, Issuer: "bench", Audience: "portcullis"})
	}

	mk := func(name string, policy policies.Options, auditOn bool, roles ...string) error {
		sub := filepath.Join(dir, name)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return err
		}
		engine, err := policies.New(ctx, policy)
		if err != nil {
			return err
		}
		acfg := audit.Config{Path: filepath.Join(sub, "audit.db")}
		acfg.SetDefaults(sub)
		alog, err := audit.Open(ctx, acfg, log)
		if err != nil {
			return err
		}
		e.closers = append(e.closers, func() { _ = alog.Close() })
		var sink proxy.AuditLog = alog
		if !auditOn {
			sink = discardAudit{}
		}
		acfgAuth := authn.Config{PublicKeyFiles: []string{pubPath}, Issuer: "bench", Audience: "portcullis"}
		acfgAuth.SetDefaults()
		auth, err := authn.New(ctx, acfgAuth, log)
		if err != nil {
			return err
		}
		e.closers = append(e.closers, auth.Close)
		ln, u, err := listenLocal()
		if err != nil {
			return err
		}
		// The pre-auth limiter runs (its cost is part of the figure) but never trips.
		pcfg := proxy.Config{Listen: ln.Addr().String(), PreAuthRate: 1_000_000}
		pcfg.MCP.Upstream.URL = upURL + "/mcp"
		pcfg.REST.Upstream.URL = upURL
		pcfg.SetDefaults(sub)
		if err := pcfg.Validate(); err != nil {
			return err
		}
		id, err := proxy.NewIdentitySigner(pcfg.Identity)
		if err != nil {
			return err
		}
		srv, err := proxy.New(pcfg, proxy.Deps{Logger: log, Auth: auth, Policy: engine, Audit: sink, Redactor: alog.Redactor(),
			Identity: id, Limiter: ratelimit.NewMemory(ratelimit.MemoryConfig{})})
		if err != nil {
			return err
		}
		go srv.Serve(ln)
		e.closers = append(e.closers, func() { _ = srv.Shutdown(context.Background()) })
		tok, err := mint(roles...)
		if err != nil {
			return err
		}
		e.targets[name] = benchTarget{name: name, url: u + "/mcp", token: tok}
		return nil
	}
	example := policyOptions("", policies.DefaultTimeout, false, log)
	// Every request of the load is the same call, so the decision cache answers all but
	// the first; full-nocache evaluates the policy every time, as for calls never seen.
	uncached := example
	uncached.CacheSize = -1
	minimal := policies.Options{Modules: map[string]string{"bench.rego": benchPolicy}, Timeout: policies.DefaultTimeout, Logger: log}
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
		if err := mk(t.name, t.policy, t.auditOn, t.roles...); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	ok = true
	return e, nil
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
