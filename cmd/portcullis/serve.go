package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis"
	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/backend"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/console"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

func serveFlags(fs *flag.FlagSet) *overrides {
	o := &overrides{}
	fs.StringVar(&o.configPath, "config", os.Getenv("PORTCULLIS_CONFIG"), "YAML config `FILE` (env PORTCULLIS_CONFIG)")
	fs.StringVar(&o.listen, "listen", "", "proxy listen `HOST:PORT` (default 127.0.0.1:8080; env PORTCULLIS_LISTEN)")
	fs.StringVar(&o.backendListen, "backend-listen", "", "bundled backend listen `HOST:PORT` (default 127.0.0.1:8081; env PORTCULLIS_BACKEND_LISTEN)")
	fs.StringVar(&o.dataDir, "data-dir", "", "data `DIR` (default ./data; env PORTCULLIS_DATA_DIR)")
	fs.StringVar(&o.policy, "policy", "", "policy file or directory `PATH` (default policy.example.rego, else the embedded copy; env PORTCULLIS_POLICY)")
	fs.StringVar(&o.mcpUpstream, "mcp-upstream", "", "MCP upstream `URL` (streamable HTTP; default the bundled backend's /mcp; env PORTCULLIS_MCP_UPSTREAM)")
	fs.StringVar(&o.restUpstream, "rest-upstream", "", "REST upstream base `URL` (default the bundled backend; env PORTCULLIS_REST_UPSTREAM)")
	return o
}

func newLogger(w io.Writer, level string) *slog.Logger {
	log, _, _ := newLoggers(w, level, defaultLogRepeatInterval)
	return log
}

// newLoggers returns the server's logger and the audit witness's, both writing JSON lines
// to w (one write per line, under one lock), and a func that writes the log's pending
// suppressed counts. The witness writes the checkpoint lines `audit verify --witness`
// reads at INFO whatever level says: log_level warn quiets the log, not the witness. The
// log limits repeated WARN and ERROR lines to one per repeat interval (negative: no
// limit); the witness is never limited.
func newLoggers(w io.Writer, level string, repeat time.Duration) (log, witness *slog.Logger, closeLog func()) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	lw := &lockedWriter{w: w}
	var h slog.Handler = slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: l})
	closeLog = func() {}
	if repeat > 0 {
		h, closeLog = newRepeatLimit(h, repeat)
	}
	return slog.New(h), slog.New(slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: min(l, slog.LevelInfo)})), closeLog
}

// lockedWriter serialises writes from handlers that share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

const serveAbout = `Run the proxy and, unless both upstream URLs are set, the bundled integrations backend.
Settings come from the config file, then environment variables, then these flags; every
config key is in docs/configuration.md. With no JWT key configured, serve runs in dev mode
and prints the 'portcullis token' command that mints tokens it accepts.`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := commandFlags("serve", "[flags]", serveAbout, stderr)
	o := serveFlags(fs)
	if code, ok := parseFlagsOnly(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(*o)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: invalid configuration:\n%v\n", err)
		return 2
	}
	log, witness, closeLog := newLoggers(stderr, cfg.LogLevel, cfg.LogRepeatInterval)
	defer closeLog()
	cfg.Audit.Witness = witness
	if err := serve(ctx, cfg, log, stdout); err != nil {
		log.Error("portcullis stopped", "err", err)
		fmt.Fprintf(stderr, "portcullis: %v\n", err)
		return 1
	}
	return 0
}

// policyOptions is how serve and the policy command find policy: the configured path, or
// the embedded example.
func policyOptions(path string, timeout time.Duration, allowNet bool, log *slog.Logger) policies.Options {
	o := policies.Options{Path: path, Timeout: timeout, AllowNetwork: allowNet, Logger: log}
	if path == "" {
		o.Modules = map[string]string{"policy.example.rego": portcullis.ExamplePolicy}
	}
	return o
}

// stack is everything serve starts, in start order, so it can be stopped in reverse.
type stack struct {
	closers []func()
}

func (s *stack) onClose(f func()) { s.closers = append(s.closers, f) }

func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func serve(ctx context.Context, cfg *Config, log *slog.Logger, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	st := &stack{}
	defer st.close()

	popts := policyOptions(cfg.Policy.Path, cfg.Policy.Timeout, cfg.Policy.AllowNetwork, log)
	popts.ShadowPath = cfg.Policy.ShadowPath
	engine, err := policies.New(ctx, popts)
	if err != nil {
		return fmt.Errorf("loading policy: %w", err)
	}
	policyName := cfg.Policy.Path
	if policyName == "" {
		policyName = "embedded policy.example.rego"
	}
	log.Info("policy loaded", "policy", policyName, "revision", engine.Revision())
	if cfg.Policy.Path != "" {
		go func() {
			if err := engine.Watch(ctx); err != nil && ctx.Err() == nil {
				log.Error("policy watch stopped", "err", err)
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	st.onClose(func() { signal.Stop(hup) })
	go func() {
		for range hup {
			if cfg.Policy.Path == "" {
				log.Info("SIGHUP: the embedded policy does not change; nothing to reload")
				continue
			}
			if err := engine.Reload(ctx); err != nil {
				log.Error("SIGHUP: policy refused; the last good policy keeps serving", "err", err, "revision", engine.Revision())
			} else {
				log.Info("SIGHUP: policy reloaded", "revision", engine.Revision())
			}
		}
	}()

	// The shipper closes after the log (closers run in reverse), so its last pass
	// ships the rows and the checkpoint the log's Close stored.
	var shipper *audit.Shipper
	var central *audit.Central
	st.onClose(func() {
		if shipper != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shipper.Close(sctx); err != nil {
				log.Warn("audit: last central shipping pass failed; the next start ships the rest", "err", err)
			}
		}
		if central != nil {
			_ = central.Close()
		}
	})
	auditLog, err := audit.Open(ctx, cfg.Audit, log)
	if err != nil {
		return fmt.Errorf("opening audit trail: %w", err)
	}
	st.onClose(func() { _ = auditLog.Close() })
	var auditQ proxy.AuditQuerier = auditLog
	if cfg.Audit.CentralURL != "" {
		// Not connected yet: a replica starts and serves while PostgreSQL is down (its
		// rows are durable locally); the lag shows in /readyz and the metrics.
		if central, err = audit.NewCentral(cfg.Audit.CentralURL); err != nil {
			return err
		}
		shipper, err = audit.NewShipper(ctx, central, audit.ShipperConfig{Path: cfg.Audit.Path,
			Interval: cfg.Audit.CentralInterval, MaxLag: cfg.Audit.CentralMaxLag, Log: auditLog},
			log.With("component", "audit-shipper"))
		if err != nil {
			return fmt.Errorf("audit.central_url: %w", err)
		}
		go shipper.Run()
		auditQ = central
		log.Info("audit: shipping to the central store", "log_id", shipper.LogID(), "max_lag", cfg.Audit.CentralMaxLag.String())
	}

	identity, err := proxy.NewIdentitySigner(cfg.Proxy.Identity)
	if err != nil {
		return err
	}

	if cfg.backendEnabled() {
		bcfg := cfg.Backend.Config
		bcfg.Identity.Secret, bcfg.Identity.PublicKey = identity.Secret(), identity.PublicKey()
		bcfg.Identity.Audience = cfg.Proxy.Identity.Audience
		be, err := backend.New(ctx, bcfg, log.With("component", "backend"))
		if err != nil {
			return fmt.Errorf("starting backend: %w", err)
		}
		ln, err := net.Listen("tcp", bcfg.Listen)
		if err != nil {
			_ = be.Close()
			return fmt.Errorf("backend listen: %w", err)
		}
		go func() {
			if err := be.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("backend stopped", "err", err)
			}
		}()
		st.onClose(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = be.Shutdown(sctx)
			_ = be.Close()
		})
		log.Info("bundled backend listening", "url", "http://"+ln.Addr().String())
	}

	var limiter ratelimit.Limiter
	var redisCollectors []prometheus.Collector
	if cfg.Limits.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.Limits.RedisURL)
		if err != nil {
			return fmt.Errorf("rate_limit.redis_url: %w", err)
		}
		if opt.DialerRetries == 0 {
			// One dial per command while Redis is down (go-redis would try 5 times, 100ms
			// apart): rate_limit.on_store_error decides at once, not after half a second.
			opt.DialerRetries = 1
		}
		rc := redis.NewClient(opt)
		st.onClose(func() { _ = rc.Close() })
		rl, err := ratelimit.NewRedisWithOptions(rc, ratelimit.RedisOptions{Prefix: "portcullis:rl:", OnStoreError: cfg.Limits.OnStoreError})
		if err != nil {
			return err
		}
		redisCollectors = rl.Collectors()
		limiter = rl
	} else {
		limiter = ratelimit.NewMemory(ratelimit.MemoryConfig{MaxKeys: cfg.Limits.MaxKeys})
	}

	// Arguments are redacted before they are hashed: replicas sharing approvals must
	// redact alike, or a call carrying a secret hashes differently on each. On
	// PostgreSQL the store refuses a replica whose key id differs from the others'.
	acfg := cfg.Approval
	acfg.RedactionKeyID = auditLog.RedactionKeyID()
	appr, err := approvals.Open(ctx, acfg, log.With("component", "approvals"))
	if err != nil {
		return fmt.Errorf("opening approvals: %w", err)
	}
	st.onClose(func() { _ = appr.Close() })
	if acfg.DatabaseURL != "" {
		log.Info("approvals: on the shared store; this replica's redaction key matches the other replicas'", "hmac_key_id", acfg.RedactionKeyID)
	}

	var devKey any
	if cfg.devMode() {
		key, created, err := authn.LoadOrCreateDevKey(cfg.DataDir, log)
		if err != nil {
			return fmt.Errorf("dev signing key: %w", err)
		}
		devKey = key
		if created {
			log.Warn("generated a dev signing key; configure auth.jwks_url or auth.public_key_files for production", "path", authn.DevKeyPath(cfg.DataDir))
		}
	}
	auth, err := authn.New(ctx, cfg.Auth, log.With("component", "authn"))
	if err != nil {
		return fmt.Errorf("authentication: %w", err)
	}
	st.onClose(auth.Close)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(auditLog.Collectors()...)
	reg.MustRegister(redisCollectors...)
	reg.MustRegister(appr.Collectors()...)
	deps := proxy.Deps{
		Logger: log, Auth: auth, Policy: engine, Audit: auditLog, AuditQ: auditQ,
		Redactor: auditLog.Redactor(), Identity: identity, Limiter: limiter, Approvals: appr,
		Registry: reg, Gatherer: reg,
		Ready: func(context.Context) error {
			if err := auditLog.Healthy(); err != nil {
				return err
			}
			if shipper != nil {
				return shipper.Ready()
			}
			return nil
		},
	}
	if shipper != nil {
		reg.MustRegister(shipper.Collectors()...)
		deps.ReadyDetail = func() (string, map[string]any) {
			st := shipper.Status()
			degraded := ""
			switch {
			case st.Fault != "":
				degraded = "audit central shipping stopped on a fault"
			case st.LastError != "":
				degraded = "audit central store unreachable; rows wait in the local database"
			}
			// /readyz answers anyone: the errors' text (hosts, users, database names)
			// stays in the log and the metrics.
			switch {
			case st.Fault != "":
				st.Fault, st.LastError = "the central store and this replica disagree (see the log)", ""
			case st.LastError != "":
				st.LastError = "shipping to the central store failed (see the log)"
			}
			return degraded, map[string]any{"audit_central": st}
		}
	}
	if cfg.Console.On() {
		var store console.AuditStore = auditLog
		if central != nil {
			store = consoleAudit{Central: central, log: auditLog}
		}
		cons, err := newConsole(ctx, cfg, log, auth, appr, store, central, engine, auditLog.Redactor().Value)
		if err != nil {
			return err
		}
		st.onClose(func() { _ = cons.Close() })
		deps.Console, deps.ConsoleOwnListener = cons, cfg.Console.Listen != ""
	}
	srv, err := proxy.New(cfg.Proxy, deps)
	if err != nil {
		return err
	}
	if deps.ConsoleOwnListener {
		cln, err := net.Listen("tcp", cfg.Console.Listen)
		if err != nil {
			return fmt.Errorf("console listen: %w", err)
		}
		go func() {
			if err := srv.ServeConsole(cln); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("console stopped", "err", err)
			}
		}()
	}
	ln, err := net.Listen("tcp", cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go discoverTools(ctx, srv, log)
	if cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return fmt.Errorf("metrics listen: %w", err)
		}
		go func() {
			if err := srv.ServeMetrics(mln); err != nil {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		log.Info("metrics listening without authentication", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	publicURL := redact.URL(cfg.Proxy.PublicURL)
	log.Info("portcullis listening", "url", publicURL, "mcp", publicURL+cfg.Proxy.MCP.Path,
		"mcp_upstream", redact.URL(cfg.Proxy.MCP.Upstream.URL), "rest_upstream", redact.URL(cfg.Proxy.REST.Upstream.URL), "data_dir", cfg.DataDir)
	fmt.Fprintf(stdout, "Portcullis is listening on %s (MCP at %s%s)\n", publicURL, publicURL, cfg.Proxy.MCP.Path)
	if cfg.Console.On() {
		fmt.Fprintf(stdout, "Console at %s%s/\n", redact.URL(cfg.Console.PublicURL), console.Prefix)
	}
	if devKey != nil {
		hint := devTokenHint(cfg)
		fmt.Fprintf(stdout, "Dev mode: mint a token with\n  %s\n", hint)
		log.Info("dev mode: mint a token with `"+hint+"`", "data_dir", cfg.DataDir)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("proxy stopped: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// discoverTools learns the secret marks of the MCP upstream's tool schemas: at start
// (retrying while the upstream comes up), then every 10 minutes. The route table's marks
// apply meanwhile; a failure keeps what was learned.
func discoverTools(ctx context.Context, srv *proxy.Server, log *slog.Logger) {
	wait := 500 * time.Millisecond
	for {
		n, err := srv.DiscoverTools(ctx)
		next := 10 * time.Minute
		if err != nil {
			log.Warn("tool discovery failed; redacting by the route table's marks and field names meanwhile", "err", err, "retry_in", wait.String())
			next, wait = wait, min(2*wait, time.Minute)
		} else {
			log.Debug("tool discovery: learned the secret marks of the upstream's tools", "tools", n)
			wait = 500 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// newConsole builds the console over the services serve started.
func newConsole(ctx context.Context, cfg *Config, log *slog.Logger, auth *authn.Authenticator, appr *approvals.Service,
	store console.AuditStore, central *audit.Central, engine *policies.Engine, redactValue func(any) any) (*console.Console, error) {
	rebuild := proxy.NewInputRebuilder(cfg.Proxy)
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := console.New(octx, cfg.Console, console.Deps{
		Logger: log, Auth: auth, Approvals: appr, Audit: store, Policy: engine, Input: rebuild.Input, Redact: redactValue,
		Verify: func(ctx context.Context) (audit.Report, error) {
			key, err := audit.LoadSigningKey(cfg.Audit.SigningKeyPath)
			if err != nil {
				return audit.Report{}, err
			}
			if central != nil {
				// This replica's chain, with its shipped copy as the witness of its tail.
				return audit.VerifyAgainstCentral(ctx, cfg.Audit.Path, key.Public().(ed25519.PublicKey), central)
			}
			return audit.Verify(ctx, cfg.Audit.Path, key.Public().(ed25519.PublicKey))
		},
		AuditorRole: "auditor",
	})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return c, nil
}

// consoleAudit is the console's audit store with audit.central_url: it reads every
// replica's rows from the central store and writes this replica's rows to its own log.
type consoleAudit struct {
	*audit.Central
	log *audit.Log
}

func (c consoleAudit) AppendAsync(ev *audit.Event) { c.log.AppendAsync(ev) }

// devTokenHint is the one command serve prints and logs for minting a token it accepts in
// dev mode: --data-dir when the data dir is not the default, --iss and --aud when the
// environment changed them.
func devTokenHint(cfg *Config) string {
	cmd := cliName() + " token"
	if filepath.Clean(cfg.DataDir) != "data" {
		cmd += " --data-dir " + shellQuote(cfg.DataDir)
	}
	if cfg.Auth.Issuer != authn.DevIssuer {
		cmd += " --iss " + shellQuote(cfg.Auth.Issuer)
	}
	if cfg.Auth.Audience != authn.DevAudience {
		cmd += " --aud " + shellQuote(cfg.Auth.Audience)
	}
	return cmd + " --sub agent-1 --org acme --roles agent"
}

// cliName is how to run this binary again: `go run` builds it in a temporary go-build
// directory, and the quick start runs it from the repository root.
func cliName() string {
	if strings.Contains(filepath.ToSlash(os.Args[0]), "/go-build") {
		return "go run ./cmd/portcullis"
	}
	return "portcullis"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
