package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/pacer"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

// Authenticator verifies the Authorization header of a request.
type Authenticator interface {
	// AuthenticateHeader checks an Authorization header value; the slice is only
	// read during the call.
	AuthenticateHeader(header []byte) (*authn.Identity, error)
	// CachedHeader returns the identity of a header whose token was verified already and
	// is still cached, or nil; it must be cheap and verify nothing.
	CachedHeader(header []byte) *authn.Identity
}

var _ Authenticator = (*authn.Authenticator)(nil)

// Decider evaluates policy. *policies.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in *policies.Input) policies.Decision
	Revision() string
}

// AuditLog records decisions before the proxy acts and outcomes after. *audit.Log implements it.
type AuditLog interface {
	Append(ctx context.Context, ev *audit.Event) error
	AppendAsync(ev *audit.Event)
}

// AuditQuerier serves the auditors' admin API. *audit.Log implements it.
type AuditQuerier interface {
	Query(ctx context.Context, f audit.Filter) (audit.Page, error)
}

// Redactor replaces secret values in decoded JSON. *redact.Redactor implements it.
type Redactor interface {
	Value(v any) any
	// ValueSchema is Value with the secret marks of the tool's schema.
	ValueSchema(v any, s *redact.Schema) any
	// String redacts credential-looking parts of free text (a path, a tool name).
	String(s string) string
}

// Deps are the collaborators the proxy needs. Logger, Auth, Policy, Audit, Redactor and
// Identity are required.
type Deps struct {
	Logger    *slog.Logger
	Auth      Authenticator
	Policy    Decider
	Audit     AuditLog
	AuditQ    AuditQuerier // optional: enables GET /admin/v1/audit
	Redactor  Redactor
	Identity  *IdentitySigner
	Limiter   ratelimit.Limiter     // optional: default in-memory
	Approvals *approvals.Service    // optional: without it require_approval refuses the call
	Registry  prometheus.Registerer // optional: default a new registry served at /metrics
	Gatherer  prometheus.Gatherer
	// Ready reports whether dependencies are healthy, for /readyz. Optional.
	Ready func(ctx context.Context) error
	// ReadyDetail, when set, adds its members to both /readyz answers; a non-empty
	// degraded reason answers 200 with status "degraded" instead of "ready". Optional.
	ReadyDetail func() (degraded string, detail map[string]any)
	// AuditorRole is the role that may read the audit trail. Default "auditor".
	AuditorRole string
	// Console, when set, is mounted at /console on the proxy's listener, or, with
	// ConsoleOwnListener, served by ServeConsole only. It authenticates its own users
	// (session cookies), so it sits outside the bearer-token group.
	Console            Mountable
	ConsoleOwnListener bool
}

// Mountable registers routes on a router: the console (package proxy/console).
type Mountable interface {
	Mount(r fiber.Router)
}

// Server is the proxy.
type Server struct {
	secrets *toolSecrets // secret marks of each tool's arguments
	cfg     Config
	d       Deps
	log     *slog.Logger
	app     *fiber.App
	routes  *routeTable
	client  *fasthttp.Client
	mcpUp   *upstream
	restUp  *upstream
	preAuth ratelimit.Limiter
	limiter ratelimit.Limiter
	metrics *metrics
	ids     idSource
	// resources reads input.resource for the tools that need it; nil when none do.
	resources *resolver

	consoleApp     atomic.Pointer[fiber.App] // set by ServeConsole
	metricsHandler http.Handler
	metricsSrv     atomic.Pointer[http.Server] // serving metrics.listen, when configured
	// authFails aggregates auth_failure rows: one per address and reason per interval.
	authFails *authFailures
	// draining is cancelled when Shutdown begins: calls held for an approval answer
	// then as if their wait budget had run out (pending, with the approval id), so a
	// stop is not held up by callers waiting on people.
	draining context.Context
	drain    context.CancelFunc
}

type upstream struct {
	cfg     UpstreamConfig
	base    string // URL without trailing slash
	headers [][2]string
	pace    *pacer.Pacer
}

func newUpstream(cfg UpstreamConfig) *upstream {
	u := &upstream{cfg: cfg, base: trimSlash(cfg.URL)}
	for k, v := range cfg.Headers {
		u.headers = append(u.headers, [2]string{k, v})
	}
	if cfg.RatePerSecond > 0 {
		u.pace = pacer.New(cfg.RatePerSecond, cfg.MaxPaceWait)
	}
	return u
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// New builds the proxy. cfg must have had SetDefaults and Validate called.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Logger == nil || d.Auth == nil || d.Policy == nil || d.Audit == nil || d.Redactor == nil || d.Identity == nil {
		return nil, errors.New("proxy: Logger, Auth, Policy, Audit, Redactor and Identity are required")
	}
	if d.AuditorRole == "" {
		d.AuditorRole = "auditor"
	}
	secrets, err := newToolSecrets(append(append([]Route(nil), DefaultRoutes...), cfg.REST.Routes...))
	if err != nil {
		return nil, fmt.Errorf("proxy: rest: %w", err)
	}
	s := &Server{
		secrets: secrets,
		cfg:     cfg,
		d:       d,
		log:     d.Logger,
		routes:  newRouteTable(cfg.REST.Routes),
		mcpUp:   newUpstream(cfg.MCP.Upstream),
		restUp:  newUpstream(cfg.REST.Upstream),
		client: &fasthttp.Client{
			Name:                     "portcullis",
			NoDefaultUserAgentHeader: true,
			MaxConnsPerHost:          1024,
			MaxIdleConnDuration:      30 * time.Second,
			// A cap only: every call passes its own deadline (timeout, or stream_timeout
			// for event streams), which bounds reading the head and the streamed body.
			ReadTimeout:            max(cfg.MCP.Upstream.StreamTimeout, cfg.REST.Upstream.StreamTimeout),
			WriteTimeout:           30 * time.Second,
			DisablePathNormalizing: true, // the path was normalised, and decided, already
			Dial:                   (&fasthttp.TCPDialer{Concurrency: 1024}).Dial,
		},
		limiter: d.Limiter,
		ids:     newIDSource(),
	}
	if s.limiter == nil {
		s.limiter = ratelimit.NewMemory(ratelimit.MemoryConfig{})
	}
	if cfg.PreAuthRate > 0 {
		s.preAuth = ratelimit.NewMemory(ratelimit.MemoryConfig{MaxKeys: 100_000})
	}
	reg := d.Registry
	gat := d.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gat = r, r
	}
	m, err := newMetrics(reg, d.Policy)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.authFails = newAuthFailures(cfg.AuthFailures, d.Audit, m.authFailureRows, m.authFailuresFolded)
	s.draining, s.drain = context.WithCancel(context.Background())
	if s.resources, err = newResolver(cfg.Resources, s.restUp, d.Identity, d.Redactor.Value, reg); err != nil {
		return nil, err
	}
	if d.Approvals != nil {
		d.Approvals.OnDecision(s.auditApprovalDecision)
	}
	s.app = s.newApp(gat)
	return s, nil
}

func (s *Server) newApp(gat prometheus.Gatherer) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "portcullis",
		DisableStartupMessage: true,
		BodyLimit:             s.cfg.BodyLimit,
		ReadTimeout:           s.cfg.ReadTimeout,
		WriteTimeout:          s.cfg.WriteTimeout,
		IdleTimeout:           s.cfg.IdleTimeout,
		ReadBufferSize:        16 << 10, // room for large JWTs in headers
		ErrorHandler:          s.errorHandler,
		// Never trust X-Forwarded-For for identity or limits: c.IP() is the socket peer.
		EnableTrustedProxyCheck: true,
		TrustedProxies:          []string{},
		ProxyHeader:             "",
	})
	app.Use(s.admit)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", s.readyz)
	s.metricsHandler = promhttp.HandlerFor(gat, promhttp.HandlerOpts{})
	app.Get("/.well-known/oauth-protected-resource", s.resourceMetadata)
	app.Get("/.well-known/oauth-protected-resource/*", s.resourceMetadata)
	if s.d.Console != nil && !s.d.ConsoleOwnListener {
		s.d.Console.Mount(app)
	}

	authed := app.Group("", s.authenticate)
	if s.cfg.Metrics.Listen == "" {
		authed.Get("/metrics", s.metricsForRole, adaptor.HTTPHandler(s.metricsHandler))
	}
	authed.Post(s.cfg.MCP.Path, s.handleMCP)
	authed.Get(s.cfg.MCP.Path, s.handleMCPPassthrough)
	authed.Delete(s.cfg.MCP.Path, s.handleMCPPassthrough)
	admin := authed.Group("/admin/v1", s.auditAdminReads)
	if s.d.Approvals != nil {
		s.mountApprovals(admin)
	}
	admin.Get("/audit", s.handleAuditQuery)
	for _, p := range s.cfg.REST.Prefixes {
		authed.All(p+"*", s.handleREST)
	}
	app.Use(func(c *fiber.Ctx) error {
		return &apierror.Error{Status: fiber.StatusNotFound, Code: "not_found", Message: "no such route"}
	})
	return app
}

// ServeConsole serves the console alone on ln (console.listen), with the proxy's
// admission (request ids, panic containment, pre-auth limit) and error envelope, until
// Shutdown.
func (s *Server) ServeConsole(ln net.Listener) error {
	if s.d.Console == nil {
		return errors.New("proxy: no console configured")
	}
	app := fiber.New(fiber.Config{
		AppName:                 "portcullis-console",
		DisableStartupMessage:   true,
		BodyLimit:               s.cfg.BodyLimit,
		ReadTimeout:             s.cfg.ReadTimeout,
		WriteTimeout:            s.cfg.WriteTimeout,
		IdleTimeout:             s.cfg.IdleTimeout,
		ErrorHandler:            s.errorHandler,
		EnableTrustedProxyCheck: true,
		TrustedProxies:          []string{},
	})
	app.Use(s.admit)
	s.d.Console.Mount(app)
	app.Use(func(c *fiber.Ctx) error {
		return &apierror.Error{Status: fiber.StatusNotFound, Code: "not_found", Message: "no such route"}
	})
	s.consoleApp.Store(app)
	return app.Listener(ln)
}

// App exposes the Fiber app, for tests (app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting and waits for in-flight requests until ctx is done, on the
// console's own listener too, then writes the auth failures still being counted.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain()
	var cerr error
	if app := s.consoleApp.Load(); app != nil {
		cerr = app.ShutdownWithContext(ctx)
	}
	err := errors.Join(s.app.ShutdownWithContext(ctx), cerr)
	if ms := s.metricsSrv.Load(); ms != nil {
		err = errors.Join(err, ms.Shutdown(ctx))
	}
	s.authFails.close()
	return err
}

func (s *Server) readyz(c *fiber.Ctx) error {
	body := fiber.Map{"status": "ready", "policy_revision": s.d.Policy.Revision()}
	if s.d.ReadyDetail != nil {
		degraded, detail := s.d.ReadyDetail()
		for k, v := range detail {
			body[k] = v
		}
		if degraded != "" {
			body["status"], body["degraded"] = "degraded", degraded
		}
	}
	if s.d.Ready != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
		defer cancel()
		if err := s.d.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			body["status"] = "unavailable"
			delete(body, "policy_revision")
			delete(body, "degraded")
			return c.Status(fiber.StatusServiceUnavailable).JSON(body)
		}
	}
	return c.JSON(body)
}

// resourceMetadata is RFC 9728 protected resource metadata. Optional members are present
// only when known: resource_documentation when configured, authorization_servers when the
// required token issuer is an OAuth issuer identifier (an https URL, RFC 8414).
func (s *Server) resourceMetadata(c *fiber.Ctx) error {
	meta := fiber.Map{
		"resource":                 s.cfg.PublicURL + s.cfg.MCP.Path,
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "Portcullis",
	}
	if s.cfg.ResourceDocumentation != "" {
		meta["resource_documentation"] = s.cfg.ResourceDocumentation
	}
	if ir, ok := s.d.Auth.(IssuerReporter); ok && isIssuerIdentifier(ir.Issuer()) {
		meta["authorization_servers"] = []string{ir.Issuer()}
	}
	return c.JSON(meta)
}

// isIssuerIdentifier reports whether iss is an OAuth issuer identifier: an https URL
// with a host and no query or fragment (RFC 8414 section 2).
func isIssuerIdentifier(iss string) bool {
	u, err := url.Parse(iss)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
}

// idSource makes request and decision ids: a random per-process prefix plus a counter,
// unique without a syscall per request.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() idSource {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return idSource{prefix: hex.EncodeToString(b[:])}
}

func (g *idSource) next(kind string) string {
	n := g.n.Add(1)
	buf := make([]byte, 0, len(kind)+len(g.prefix)+17)
	buf = append(buf, kind...)
	buf = append(buf, g.prefix...)
	buf = append(buf, '-')
	buf = strconv.AppendUint(buf, n, 36)
	return string(buf)
}

func callerOf(c *fiber.Ctx) *principal.Caller {
	if id, ok := c.Locals(localIdentity).(*authn.Identity); ok {
		return &id.Caller
	}
	return nil
}

type localKey int

const (
	localIdentity localKey = iota
	localRequestID
	localCall
)

func requestID(c *fiber.Ctx) string {
	rid, _ := c.Locals(localRequestID).(string)
	return rid
}
