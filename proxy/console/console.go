package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/jsonenc"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/ratelimit"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

//go:embed assets
var assetFS embed.FS

// Authenticator verifies a pasted token (token sign-in). *authn.Authenticator implements it.
type Authenticator interface {
	AuthenticateHeader(header []byte) (*authn.Identity, error)
}

// AuditStore is the trail the console reads, and where it records its users' reads and
// refusals. *audit.Log implements it.
type AuditStore interface {
	Query(ctx context.Context, f audit.Filter) (audit.Page, error)
	Export(ctx context.Context, w io.Writer, format string, f audit.Filter) error
	AppendAsync(ev *audit.Event)
}

// Policy is the live policy. *policies.Engine implements it.
type Policy interface {
	Decide(ctx context.Context, in *policies.Input) policies.Decision
	Status() policies.Status
}

// Decider is a compiled candidate policy.
type Decider interface {
	Decide(ctx context.Context, in *policies.Input) policies.Decision
	Revision() string
}

// Deps are the console's collaborators. Logger, Approvals, Audit and Policy are required.
type Deps struct {
	Logger    *slog.Logger
	Auth      Authenticator // required with token sign-in
	Approvals *approvals.Service
	Audit     AuditStore
	Policy    Policy
	// Verify checks the audit chain (audit.Verify with the checkpoint key). Optional:
	// without it the explorer says verification is not configured.
	Verify func(ctx context.Context) (audit.Report, error)
	// Input rebuilds the policy input of a recorded decision row (proxy.InputRebuilder).
	// Optional: without it the playground cannot load rows and replay is off.
	Input func(ev *audit.Event) (policies.Input, bool)
	// Candidate compiles a pasted candidate policy. Default: policies.New with the
	// source as one module and the default timeout, network built-ins off.
	Candidate func(ctx context.Context, src string) (Decider, error)
	// AuditorRole may read the trail. Default "auditor".
	AuditorRole string
	// Redact replaces secrets in what the console records of a request (its query):
	// the audit log's redactor, so marks match the rest of the trail. Default: a
	// redactor with a key of its own.
	Redact func(any) any
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// HTTPClient reaches the OIDC provider. Default http.DefaultClient with a timeout.
	HTTPClient *http.Client
}

// Console serves the console's pages and API.
type Console struct {
	cfg     Config
	d       Deps
	log     *slog.Logger
	store   store
	oidc    *oidcClient // nil without OIDC
	origins []string    // accepted Origin values for state changes
	assets  fs.FS
	index   []byte
	verify  verifyCache
	signIns ratelimit.Limiter // per client address, on the sign-in endpoints; nil: off
}

// New builds the console. cfg must have had SetDefaults and Validate called. With
// OIDC configured, the provider's discovery document is fetched now (ctx bounds it).
func New(ctx context.Context, cfg Config, d Deps) (*Console, error) {
	if d.Logger == nil || d.Approvals == nil || d.Audit == nil || d.Policy == nil {
		return nil, errors.New("console: Logger, Approvals, Audit and Policy are required")
	}
	if cfg.TokenSignInOn() && d.Auth == nil {
		return nil, errors.New("console: token sign-in needs an Authenticator")
	}
	if d.AuditorRole == "" {
		d.AuditorRole = "auditor"
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Redact == nil {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("console: redaction key: %w", err)
		}
		d.Redact = redact.New(key).Value
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if d.Candidate == nil {
		d.Candidate = compileCandidate
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, d: d, log: d.Logger.With("component", "console"), assets: sub, index: index}
	c.origins = []string{cfg.PublicURL}
	if cfg.OIDCOn() {
		if c.oidc, err = newOIDCClient(ctx, cfg.OIDC, d.HTTPClient); err != nil {
			return nil, err
		}
	}
	if cfg.SignInRate > 0 {
		// The proxy's pre-auth limiter, with its own budget: per minute, not per second.
		c.signIns = ratelimit.NewMemory(ratelimit.MemoryConfig{MaxKeys: 100_000})
	}
	if cfg.DatabaseURL != "" {
		if c.store, err = openPostgres(ctx, cfg.DatabaseURL, limitsOf(cfg), d.Now, c.log); err != nil {
			return nil, err
		}
	} else {
		c.store = newMemoryStore(limitsOf(cfg), d.Now)
	}
	return c, nil
}

// Close releases the session store (the PostgreSQL pool and its sweep).
func (c *Console) Close() error { return c.store.close() }

// storeCtx bounds one store operation.
func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// storeDown is the answer when the session store cannot be reached: 503, naming the
// store and not the cause (a driver's message may name hosts); the log has the cause.
func (c *Console) storeDown(op string, err error) *apierror.Error {
	c.log.Error("console: session store failed", "op", op, "err", err)
	e := apierror.New(fiber.StatusServiceUnavailable, "console_store_unavailable",
		"the console session store (console.database_url) is unavailable; try again shortly")
	e.Header = [][2]string{{fiber.HeaderRetryAfter, "5"}}
	return e
}

// clientAddr is the key the per-address limits count under: the socket peer, never
// X-Forwarded-For (which a client can forge); an IPv6 address as its /64.
func clientAddr(ctx *fiber.Ctx) string { return ratelimit.AddrKey(ctx.Context().RemoteIP()) }

// clientNetwork is the key the per-network cap counts under: the socket peer's IPv4
// /24 or IPv6 /48.
func clientNetwork(ctx *fiber.Ctx) string { return ratelimit.PrefixKey(ctx.Context().RemoteIP()) }

// signInLimit refuses a request to a sign-in endpoint with 429 once the client address
// has made console.sign_in_rate of them in the last minute.
func (c *Console) signInLimit(ctx *fiber.Ctx) error {
	if c.signIns == nil {
		return ctx.Next()
	}
	res, err := c.signIns.Allow(ctx.UserContext(), clientAddr(ctx), c.cfg.SignInRate, time.Minute)
	if err != nil || res.Allowed {
		return ctx.Next() // the in-memory limiter does not fail; if it did, the sign-in still runs
	}
	wait := retrySeconds(res.RetryAfter)
	return &apierror.Error{Status: fiber.StatusTooManyRequests, Code: "too_many_requests",
		Message: fmt.Sprintf("too many sign-in requests from this address (console.sign_in_rate: %d a minute); try again in %d s", c.cfg.SignInRate, wait),
		Header:  [][2]string{{fiber.HeaderRetryAfter, strconv.Itoa(wait)}}}
}

// retrySeconds rounds a wait up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int { return max(int((d+time.Second-1)/time.Second), 1) }

// refusedFull is the answer when a cap refuses a sign-in (errSessionsFull,
// errLoginsFull, errAddressLoginsFull, errNetworkLoginsFull): 429 with a code of its own and Retry-After.
// Nobody's session or sign-in was ended to make room.
func refusedFull(err error) *apierror.Error {
	var e *apierror.Error
	switch {
	case errors.Is(err, errSessionsFull):
		e = apierror.New(fiber.StatusTooManyRequests, "console_full",
			"the console has as many live sessions as it may hold (console.max_sessions); try again when some end")
	case errors.Is(err, errAddressLoginsFull):
		e = apierror.New(fiber.StatusTooManyRequests, "too_many_sign_ins",
			"too many sign-ins in flight from this address (console.max_pending_logins_per_address); finish one, or wait: they expire after %s", loginTTL)
	case errors.Is(err, errNetworkLoginsFull):
		e = apierror.New(fiber.StatusTooManyRequests, "too_many_sign_ins",
			"too many sign-ins in flight from this address's network, its IPv4 /24 or IPv6 /48 (console.max_pending_logins_per_network); finish one, or wait: they expire after %s", loginTTL)
	case errors.Is(err, errLoginsFull):
		e = apierror.New(fiber.StatusTooManyRequests, "sign_ins_full",
			"the console has as many sign-ins in flight as it may hold (console.max_pending_logins); try again shortly")
	default:
		return nil
	}
	e.Header = [][2]string{{fiber.HeaderRetryAfter, "60"}}
	return e
}

func compileCandidate(ctx context.Context, src string) (Decider, error) {
	return policies.New(ctx, policies.Options{Modules: map[string]string{"candidate.rego": src}, CacheSize: -1})
}

// Mount registers the console under /console on r.
func (c *Console) Mount(r fiber.Router) {
	g := r.Group(Prefix, c.headers)
	g.Get("/assets/*", c.asset)
	g.Get("/auth/methods", c.methods)
	// What anyone may call before signing in, and what writes to the store, spends the
	// client address's sign-in budget.
	g.Post("/auth/token", c.signInLimit, c.sameOrigin, c.tokenSignIn)
	g.Get("/auth/login", c.signInLimit, c.oidcLogin)
	g.Get("/auth/callback", c.signInLimit, c.oidcCallback)
	g.Post("/auth/logout", c.sameOrigin, c.logout)

	api := g.Group("/api", c.requireSession, c.csrf)
	api.Get("/session", c.sessionInfo)
	api.Get("/approvals", c.listApprovals)
	api.Get("/approvals/:id", c.getApproval)
	api.Post("/approvals/:id/approve", c.decide(approvals.StatusApproved))
	api.Post("/approvals/:id/deny", c.decide(approvals.StatusDenied))
	api.Get("/audit", c.auditQuery)
	api.Get("/audit/timeline", c.auditTimeline)
	api.Get("/audit/export", c.auditExport)
	api.Get("/audit/verify", c.auditVerify)
	api.Get("/policy", c.policyStatus)
	api.Get("/policy/input", c.policyInput)
	api.Post("/policy/eval", c.policyEval)
	api.Post("/policy/replay", c.policyReplay)
	api.Get("/overview", c.overview)
	api.All("/*", func(*fiber.Ctx) error { return apierror.NotFound("no such console API route") })

	// Every other path under /console is a page of the single-page app (deep links such
	// as /console/approvals/{id} included); the script routes it.
	g.Get("/", c.page)
	g.Get("/*", c.page)
}

// csp allows the console's own scripts, styles and API only: no inline script, no eval,
// no framing, no form posts elsewhere, no plugins.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) headers(ctx *fiber.Ctx) error {
	h := &ctx.Response().Header
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	return ctx.Next()
}

func (c *Console) page(ctx *fiber.Ctx) error {
	ctx.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return ctx.Send(c.index)
}

func (c *Console) asset(ctx *fiber.Ctx) error {
	name := path.Clean("/" + ctx.Params("*"))[1:]
	b, err := fs.ReadFile(c.assets, name)
	if err != nil || name == "" {
		return apierror.NotFound("no such asset")
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if strings.HasSuffix(name, ".js") {
		ct = "text/javascript; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.Set(fiber.HeaderContentType, ct)
	ctx.Set("Cache-Control", "no-cache")
	return ctx.Send(b)
}

// localSession holds the *session of a signed-in request.
type localKey int

const localSession localKey = 0

func sessionOf(ctx *fiber.Ctx) *session {
	s, _ := ctx.Locals(localSession).(*session)
	return s
}

func (c *Console) requireSession(ctx *fiber.Ctx) error {
	// X-Console-Background marks the pages' own refreshes (the inbox's polling): they do
	// not count as use, so an open tab left alone still reaches the idle timeout.
	id := ctx.Cookies(cookieName)
	if id == "" {
		return apierror.New(fiber.StatusUnauthorized, "unauthenticated", "sign in to the console first (no session, or it expired)")
	}
	sctx, cancel := storeCtx()
	defer cancel()
	s, err := c.store.getSession(sctx, hashKey(id), ctx.Get("X-Console-Background") != "1")
	if err != nil {
		return c.storeDown("reading a session", err)
	}
	if s == nil {
		return apierror.New(fiber.StatusUnauthorized, "unauthenticated", "sign in to the console first (no session, or it expired)")
	}
	ctx.Locals(localSession, s)
	return ctx.Next()
}

// csrf guards every state change of a signed-in session: the Origin must be the
// console's and X-CSRF-Token must be the session's token.
func (c *Console) csrf(ctx *fiber.Ctx) error {
	switch ctx.Method() {
	case fiber.MethodGet, fiber.MethodHead:
		return ctx.Next()
	}
	if err := c.checkOrigin(ctx); err != nil {
		c.refused(ctx, "csrf", err.Message)
		return err
	}
	if !sessionOf(ctx).csrfOK(ctx.Get("X-CSRF-Token")) {
		err := apierror.Forbidden("csrf", "header X-CSRF-Token: missing or not this session's token")
		c.refused(ctx, "csrf", err.Message)
		return err
	}
	return ctx.Next()
}

// sameOrigin guards the sign-in and sign-out posts, which have no session token yet
// (or any longer): the Origin must be the console's.
func (c *Console) sameOrigin(ctx *fiber.Ctx) error {
	if err := c.checkOrigin(ctx); err != nil {
		return err
	}
	return ctx.Next()
}

func (c *Console) checkOrigin(ctx *fiber.Ctx) *apierror.Error {
	origin := ctx.Get(fiber.HeaderOrigin)
	if origin == "" {
		return apierror.Forbidden("csrf", "header Origin: required on a state change")
	}
	for _, o := range c.origins {
		if origin == o {
			if site := ctx.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
				return apierror.Forbidden("csrf", "header Sec-Fetch-Site: the request did not come from the console's own pages")
			}
			return nil
		}
	}
	return apierror.Forbidden("csrf", "header Origin: %s is not the console's origin", quoteShort(origin))
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == 0x7f {
			return '?'
		}
		return r
	}, s) + `"`
}

func (c *Console) setSessionCookie(ctx *fiber.Ctx, value string, expires time.Time) {
	ctx.Cookie(&fiber.Cookie{
		Name: cookieName, Value: value, Path: Prefix, Expires: expires,
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
}

func (c *Console) clearSessionCookie(ctx *fiber.Ctx) {
	ctx.Cookie(&fiber.Cookie{
		Name: cookieName, Value: "", Path: Prefix, Expires: time.Unix(1, 0), MaxAge: -1,
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
}

func (c *Console) methods(ctx *fiber.Ctx) error {
	return ctx.JSON(fiber.Map{"data": fiber.Map{"token": c.cfg.TokenSignInOn(), "oidc": c.oidc != nil}})
}

// tokenSignIn is POST /console/auth/token {"token": "..."}: the token is verified as the
// proxy verifies a bearer token, and only the caller it names is kept.
func (c *Console) tokenSignIn(ctx *fiber.Ctx) error {
	if !c.cfg.TokenSignInOn() {
		return apierror.NotFound("token sign-in is off (console.token_sign_in)")
	}
	body, err := objectBody(ctx.Body(), "token")
	if err != nil {
		return err
	}
	tok, _ := body["token"].(string)
	tok = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(tok), "Bearer "))
	if tok == "" {
		return apierror.BadRequest("invalid_request", "token", "token: required (a JWT minted by `portcullis token`)")
	}
	id, aerr := c.d.Auth.AuthenticateHeader([]byte("Bearer " + tok))
	if aerr != nil {
		msg := "the token was refused"
		var ae *authn.Error
		if errors.As(aerr, &ae) {
			msg = ae.Description
		}
		return &apierror.Error{Status: fiber.StatusUnauthorized, Code: "unauthenticated", Field: "token", Message: "token: " + msg}
	}
	if id.Caller.Sub == "" || id.Caller.Org == "" {
		return apierror.BadRequest("invalid_request", "token", "token: must name a subject and an org")
	}
	expires := c.d.Now().Add(c.cfg.AbsoluteTimeout)
	if !id.Expires.IsZero() && id.Expires.Before(expires) {
		expires = id.Expires
	}
	caller := id.Caller
	caller.Claims = nil
	return c.startSession(ctx, caller, "token", expires)
}

func (c *Console) startSession(ctx *fiber.Ctx, caller principal.Caller, method string, expires time.Time) error {
	s, err := c.newSession(ctx, caller, method, expires)
	if err != nil {
		return err
	}
	return ctx.JSON(fiber.Map{"data": c.sessionView(s)})
}

// newSession ends the browser's previous session, if any, and starts one under a new
// id: a session id planted before sign-in never gains rights. The store keeps the
// id's hash only.
func (c *Console) newSession(ctx *fiber.Ctx, caller principal.Caller, method string, expires time.Time) (*session, error) {
	sctx, cancel := storeCtx()
	defer cancel()
	if old := ctx.Cookies(cookieName); old != "" {
		if err := c.store.deleteSession(sctx, hashKey(old)); err != nil {
			return nil, c.storeDown("ending the previous session", err)
		}
	}
	id, now := randomToken(), c.d.Now()
	s := &session{caller: callerOf(caller), method: method, csrf: randomToken(), created: now, lastSeen: now, expires: expires}
	if err := c.store.createSession(sctx, hashKey(id), s); err != nil {
		if e := refusedFull(err); e != nil {
			c.log.Warn("console: sign-in refused: the session table is full", "sub", caller.Sub, "org", caller.Org, "method", method)
			return nil, e
		}
		return nil, c.storeDown("starting a session", err)
	}
	c.setSessionCookie(ctx, id, expires)
	c.log.Info("console sign-in", "sub", caller.Sub, "org", caller.Org, "method", method)
	return s, nil
}

// logout ends the session everywhere. If the store cannot be reached the cookie is
// still cleared, and the answer (503) says the session may live on until it expires.
func (c *Console) logout(ctx *fiber.Ctx) error {
	c.clearSessionCookie(ctx)
	if id := ctx.Cookies(cookieName); id != "" {
		sctx, cancel := storeCtx()
		defer cancel()
		if err := c.store.deleteSession(sctx, hashKey(id)); err != nil {
			return c.storeDown("ending a session", err)
		}
	}
	return ctx.JSON(fiber.Map{"data": fiber.Map{"signed_out": true}})
}

func (c *Console) sessionView(s *session) fiber.Map {
	return fiber.Map{
		"sub": s.caller.Sub, "org": s.caller.Org, "workspace": s.caller.Workspace, "roles": s.caller.Roles,
		"method": s.method, "csrf_token": s.csrf, "expires_at": s.expires.UTC(),
		"idle_timeout_seconds": int(c.cfg.IdleTimeout / time.Second),
		"can_audit":            s.caller.HasRole(c.d.AuditorRole),
		"approver_role":        c.d.Approvals.ApproverRole(),
		"auditor_role":         c.d.AuditorRole,
	}
}

func (c *Console) sessionInfo(ctx *fiber.Ctx) error {
	return ctx.JSON(fiber.Map{"data": c.sessionView(sessionOf(ctx))})
}

// requireAuditor refuses a caller without the auditor role or an org.
func (c *Console) requireAuditor(ctx *fiber.Ctx) (*session, error) {
	s := sessionOf(ctx)
	if !s.caller.HasRole(c.d.AuditorRole) || s.caller.Org == "" {
		err := apierror.Forbidden("forbidden", "reading the audit trail needs the %s role and an org", c.d.AuditorRole)
		c.refused(ctx, "forbidden", err.Message)
		return nil, err
	}
	return s, nil
}

// record writes an audit row for a console user's read ("allow") or refusal
// ("rejected"): who, which console area, and the request's query.
func (c *Console) record(ctx *fiber.Ctx, area string, decision audit.Decision, reason string) {
	s := sessionOf(ctx)
	if s == nil {
		return
	}
	args := map[string]any{}
	for k, v := range ctx.Context().QueryArgs().All() {
		args[string(k)] = string(v)
	}
	argsJSON, _ := jsonenc.Append(nil, c.d.Redact(args)) // a filter may quote a secret
	c.d.Audit.AppendAsync(&audit.Event{
		Time: c.d.Now().UTC(), Kind: audit.KindDecision, RequestID: strings.Clone(ctx.GetRespHeader(fiber.HeaderXRequestID)),
		Caller: audit.Caller{Caller: principal.Caller{Sub: s.caller.Sub, Org: s.caller.Org, Workspace: s.caller.Workspace,
			Roles: s.caller.Roles, Session: s.caller.Session}, ClientAddr: ctx.Context().RemoteIP().String()},
		Surface: "console", Tool: "console:" + area, Method: strings.Clone(ctx.Method()), Path: strings.Clone(ctx.Path()),
		Arguments: argsJSON, Decision: decision, Reason: reason,
	})
}

func (c *Console) refused(ctx *fiber.Ctx, code, msg string) {
	c.record(ctx, "refused", "rejected", code+": "+msg)
}

// objectBody parses a JSON object body strictly and refuses fields other than allowed.
func objectBody(raw []byte, allowed ...string) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return map[string]any{}, nil
	}
	v, err := strictjson.Parse(raw, 64)
	if err != nil {
		return nil, apierror.BadRequest("invalid_request", "body", "body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, apierror.BadRequest("invalid_request", "body", "body: must be a JSON object")
	}
	for k := range obj {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return nil, apierror.BadRequest("invalid_request", k, "body: unknown field %s (want %s)", strictjson.QuoteKey(k), strings.Join(allowed, ", "))
		}
	}
	return obj, nil
}

// stringField reads an optional string field of a parsed body.
func stringField(obj map[string]any, name string) (string, error) {
	v, ok := obj[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", apierror.BadRequest("invalid_request", name, "%s: must be a string", name)
	}
	return s, nil
}

// query reads the query string as url.Values.
func query(ctx *fiber.Ctx) (url.Values, error) {
	q, err := url.ParseQuery(string(ctx.Request().URI().QueryString()))
	if err != nil {
		return nil, apierror.BadRequest("invalid_query", "", "query string: %v", err)
	}
	return q, nil
}

func param(ctx *fiber.Ctx, name string) string { return utils.CopyString(ctx.Params(name)) }
