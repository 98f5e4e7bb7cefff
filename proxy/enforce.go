package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/jsonenc"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

// call is one action being decided: a tools/call or a mapped REST request. Everything in
// it is owned by the proxy (copied out of the fiber.Ctx), so it may outlive the handler.
type call struct {
	rid, did string
	start    time.Time
	id       *authn.Identity
	clientIP string
	surface  string
	tool     string
	method   string
	path     string
	argsJSON []byte // the redacted arguments, encoded once for the audit rows
	input    policies.Input
	dec      policies.Decision
	refund   string // rate-limit key to refund if the upstream fails and policy asked for it
	rl       *ratelimit.Result
	window   time.Duration
	approval *approvals.Approval
	// queryArgs names the REST arguments that came from the query string, sorted: the
	// approval hash covers it, as the upstream may read an argument differently by where
	// it was sent.
	queryArgs string
	// outStatus and outClass are what recordOutcome recorded (a batch's other calls share
	// the forwarded request's outcome).
	outStatus int
	outClass  errorClass
	// rtype and ref say which resource the call acts on, when its tool is resolved
	// (proxy.resources); resKeys are the cache entries its outcome invalidates.
	rtype   *resourceType
	ref     string
	resKeys []string
}

func (s *Server) newCall(c *fiber.Ctx, surface, tool string, info policies.ToolInfo, args map[string]any) *call {
	id := c.Locals(localIdentity).(*authn.Identity)
	cl := &call{
		rid:      requestID(c),
		did:      s.ids.next("dec_"),
		start:    time.Now(),
		id:       id,
		clientIP: c.Context().RemoteIP().String(),
		surface:  surface,
		tool:     s.scrubTool(tool), // an unmapped route's tool name holds its path
		method:   methodOf(c),
		// What policy, the audit row and the log see; the upstream gets the path as sent.
		path: s.scrubPath(string(c.Request().URI().Path())),
	}
	// Only the redacted arguments are kept: secrets never reach policy, audit or logs.
	redacted, _ := s.d.Redactor.ValueSchema(args, s.secrets.For(tool)).(map[string]any)
	if redacted == nil {
		redacted = map[string]any{}
	}
	cl.input = policies.Input{
		Surface:   surface,
		Tool:      cl.tool,
		Arguments: redacted,
		HTTP:      policies.HTTPInfo{Method: cl.method, Path: cl.path},
		Caller:    id.Caller,
		ToolInfo:  info,
		Upstream:  s.upstreamFor(surface).cfg.Name,
		Mode:      "call",
	}
	if cl.rtype = s.resources.typeFor(cl.tool); cl.rtype != nil && surface == "mcp" {
		// From the raw arguments: the redacted copy may have replaced a value that only
		// looks like a credential, and the upstream acts on the raw one. (REST takes the
		// route's path parameter instead; see handleREST.)
		cl.ref = cl.rtype.mcpRef(args)
	}
	c.Locals(localCall, cl)
	return cl
}

// scrubPath redacts credential-looking parts of a path one segment at a time, so a
// pattern that runs on (a bearer token may hold '/') never swallows the segments after
// it: policy and the audit row still see where the call goes. Clean paths are returned
// as they are, without allocating.
func (s *Server) scrubPath(p string) string {
	if s.d.Redactor.String(p) == p {
		return p
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		segs[i] = s.d.Redactor.String(seg)
	}
	return strings.Join(segs, "/")
}

// scrubTool redacts a tool name; an unmapped route's ("http:GET /path") path part is
// scrubbed as a path.
func (s *Server) scrubTool(tool string) string {
	if rest, ok := strings.CutPrefix(tool, "http:"); ok {
		if method, path, ok := strings.Cut(rest, " "); ok {
			if sp := s.scrubPath(path); sp != path {
				return "http:" + method + " " + sp
			}
			return tool
		}
	}
	return s.d.Redactor.String(tool)
}

func (s *Server) upstreamFor(surface string) *upstream {
	if surface == "mcp" {
		return s.mcpUp
	}
	return s.restUp
}

// refusal is why a call is not forwarded, in terms both surfaces can render.
type refusal struct {
	status     int    // REST status
	code       string // policy_denied, policy_error, rate_limited, approval_pending, approval_denied, audit_unavailable, upstream_busy
	msg        string // shown to the agent
	retryAfter time.Duration
	rl         *ratelimit.Result
	approval   *approvals.Approval
	detail     string // what the audit row records instead of msg, when set
}

// serviceError is r as an HTTP error with Retry-After: for refusals that say the gateway
// itself cannot serve (audit, rate limiter or approvals store down), not the call.
func (r *refusal) serviceError() *apierror.Error {
	return &apierror.Error{Status: r.status, Code: r.code, Message: r.msg, Header: [][2]string{{"Retry-After", retryAfterSeconds(r.retryAfter)}}}
}

// decide evaluates policy and applies rate limits. It does not wait for approvals: a
// require_approval decision comes back as a refusal with code "approval_required" and the
// caller of decide chooses how to hold (long-poll or SSE).
func (s *Server) decide(ctx context.Context, cl *call) *refusal {
	if r := s.resolveResource(cl); r != nil {
		return r
	}
	cl.dec = s.d.Policy.Decide(ctx, &cl.input)
	s.metrics.decision(cl.surface, string(cl.dec.Action)).Inc()
	if sd, ok := s.d.Policy.(ShadowDecider); ok {
		s.shadow(ctx, sd, cl)
	}
	switch cl.dec.Action {
	case policies.ActionAllow:
		return nil
	case policies.ActionRateLimit:
		return s.rateLimit(ctx, cl)
	case policies.ActionRequireApproval:
		return &refusal{code: "approval_required"}
	}
	if cl.dec.PolicyError {
		s.log.Error("policy error: denying", "request_id", cl.rid, "tool", cl.tool, "revision", cl.dec.Revision, "err", cl.dec.Error)
		return &refusal{status: fiber.StatusForbidden, code: "policy_error", msg: "denied: the policy could not be evaluated (request " + cl.rid + ")"}
	}
	return &refusal{status: fiber.StatusForbidden, code: "policy_denied", msg: cl.dec.Reason}
}

func (s *Server) rateLimit(ctx context.Context, cl *call) *refusal {
	rl := cl.dec.RateLimit
	key := rl.Key
	if key == "" {
		// Org, not session: a sub is often unique only within its tenant, and a new
		// session (a fresh token) must not be a fresh quota.
		key = cl.id.Caller.Org + "\x00" + cl.id.Caller.Sub + "\x00" + cl.tool
	}
	// The window is part of the key: two rules sharing a key (a per-org limit) with
	// different windows count separately. Sharing one counter, each would reset the other's
	// window, and a cheap call under one rule would restore the quota of the other.
	key += "\x00" + rl.Window.String()
	res, err := s.limiter.Allow(ctx, key, rl.Max, rl.Window)
	if err != nil {
		// The limiter's store is down: fail closed, as for any policy we cannot enforce.
		s.log.Error("rate limiter failed: denying", "request_id", cl.rid, "err", err)
		return &refusal{status: fiber.StatusServiceUnavailable, code: "rate_limiter_unavailable", msg: "rate limiter unavailable; try again later", retryAfter: time.Second}
	}
	if !res.Allowed {
		return &refusal{status: fiber.StatusTooManyRequests, code: "rate_limited", retryAfter: res.RetryAfter, rl: &res,
			msg: "rate limit exceeded for " + cl.tool + ": at most " + strconv.Itoa(rl.Max) + " calls per " + rl.Window.String() +
				"; retry after " + retryAfterSeconds(res.RetryAfter) + "s"}
	}
	cl.rl = &res
	if rl.RefundOnError {
		cl.refund, cl.window = key, rl.Window
	}
	return nil
}

// auditDecision writes the decision row and waits until it is durable. A call that is about
// to be forwarded must not be when this fails.
func (s *Server) auditDecision(ctx context.Context, cl *call, decision audit.Decision, reason string) error {
	ev := s.event(cl, audit.KindDecision)
	ev.Decision, ev.Reason = decision, reason
	if err := s.d.Audit.Append(ctx, ev); err != nil {
		s.metrics.auditFailures.Inc()
		s.log.Error("audit write failed", "request_id", cl.rid, "err", err)
		return err
	}
	return nil
}

var auditUnavailable = &refusal{status: fiber.StatusServiceUnavailable, code: "audit_unavailable",
	msg: "the audit trail cannot record this call, so it was not forwarded; try again later", retryAfter: time.Second}

func (s *Server) event(cl *call, kind audit.Kind) *audit.Event {
	c := &cl.id.Caller
	if cl.argsJSON == nil {
		cl.argsJSON, _ = jsonenc.Append(nil, cl.input.Arguments)
	}
	ev := &audit.Event{
		Time:           time.Now().UTC(),
		Kind:           kind,
		RequestID:      cl.rid,
		DecisionID:     cl.did,
		Caller:         audit.Caller{Caller: *c, ClientAddr: cl.clientIP},
		Surface:        cl.surface,
		Tool:           cl.tool,
		Method:         cl.method,
		Path:           cl.path,
		Arguments:      cl.argsJSON,
		PolicyRevision: cl.dec.Revision,
	}
	if cl.approval != nil {
		ev.ApprovalID, ev.Approver = cl.approval.ID, cl.approval.DecidedBy
	}
	return ev
}

// decisionLabel is the audit row's decision for a refusal (nil: allowed).
func decisionLabel(cl *call, r *refusal) (audit.Decision, string) {
	if r == nil {
		if cl.approval != nil {
			return audit.DecisionApprovalGranted, cl.dec.Reason
		}
		return audit.DecisionAllow, cl.dec.Reason
	}
	switch r.code {
	case "policy_denied":
		return audit.DecisionDeny, r.msg
	case "policy_error":
		return audit.DecisionPolicyError, cl.dec.Error
	case "rate_limited":
		return audit.DecisionRateLimited, r.msg
	case "approval_pending":
		return audit.DecisionApprovalRequested, cl.dec.Reason
	case "approval_denied":
		return audit.DecisionApprovalDenied, r.msg
	case "approval_expired":
		return audit.DecisionApprovalExpired, r.msg
	case "resource_unavailable":
		return audit.DecisionResourceError, r.detail
	}
	return audit.Decision(r.code), r.msg // the refusal code names it (invalid_arguments, approvals_unavailable...)
}

// settle audits the outcome of decide (and any approval wait) and returns the refusal the
// caller must render, or nil when the call may be forwarded.
func (s *Server) settle(ctx context.Context, cl *call, r *refusal) *refusal {
	decision, reason := decisionLabel(cl, r)
	if err := s.auditDecision(ctx, cl, decision, reason); err != nil {
		if r == nil {
			s.refundIfAsked(cl)
			if cl.approval != nil && cl.approval.Status == approvals.StatusUsed {
				// Not forwarded, so not used: the identical retry may still use it.
				if _, rerr := s.d.Approvals.Release(context.Background(), cl.approval.ID); rerr != nil {
					s.log.Error("approvals: release failed", "request_id", cl.rid, "approval_id", cl.approval.ID, "err", rerr)
				}
			}
			return auditUnavailable
		}
	}
	if r != nil {
		s.log.Info("call refused", "request_id", cl.rid, "sub", cl.id.Caller.Sub, "tool", cl.tool, "code", r.code)
	}
	return r
}

// notExecuted reports an outcome that says the upstream did not act on the call, the only
// kind refund_on_error gives the unit back for: it was never sent (refused connection,
// pacing, not forwarded) or the upstream turned it away (429, 503). A 500, 502 or a
// timeout may come after the work was done, so they keep the unit: otherwise a call that
// acts and then fails would escape the limit.
func notExecuted(status int, errClass errorClass) bool {
	switch errClass {
	case classRefused, classPaced, classCanceled, classNotForwarded, classIdentity:
		return true
	case "":
		return status == fiber.StatusTooManyRequests || status == fiber.StatusServiceUnavailable
	}
	return false
}

func (s *Server) refundIfAsked(cl *call) {
	if cl.refund != "" {
		_ = s.limiter.Refund(context.Background(), cl.refund, cl.window)
		cl.refund = ""
	}
}

// recordOutcome writes the outcome row (status, error class, latency) without waiting.
func (s *Server) recordOutcome(cl *call, status int, errClass errorClass, latency time.Duration) {
	ev := s.event(cl, audit.KindOutcome)
	ev.Decision = audit.DecisionOutcome
	ev.Status, ev.ErrorClass, ev.LatencyMicros = status, string(errClass), latency.Microseconds()
	cl.outStatus, cl.outClass = status, errClass
	s.d.Audit.AppendAsync(ev)
	if len(cl.resKeys) > 0 {
		s.resources.invalidate(cl.resKeys)
	}
	if notExecuted(status, errClass) {
		s.refundIfAsked(cl)
	}
	s.metrics.outcome(cl.surface, status, string(errClass), time.Since(cl.start))
}

// approvalOutcome is what came of holding a call for approval.
type approvalOutcome int

const (
	approvalGranted approvalOutcome = iota
	approvalStillPending
	approvalRefused
)

// requestApproval finds an approved, unused approval for this exact request (and uses it),
// or files (or finds) a pending one. It returns granted when the call may proceed now.
func (s *Server) requestApproval(ctx context.Context, cl *call) (approvalOutcome, *refusal) {
	svc := s.d.Approvals
	if svc == nil {
		return approvalRefused, &refusal{status: fiber.StatusForbidden, code: "policy_denied",
			msg: "this call requires human approval, and approvals are not enabled on this gateway"}
	}
	// The hash is over the redacted arguments: secrets are keyed HMACs there, so the hash
	// still tells two secrets apart but cannot be brute-forced from the approvals table.
	raw, err := json.Marshal(cl.input.Arguments)
	if err != nil {
		return approvalRefused, &refusal{status: fiber.StatusBadRequest, code: "invalid_arguments", msg: "arguments cannot be encoded"}
	}
	target := cl.surface + " " + cl.method + " " + cl.path + " " + s.upstreamFor(cl.surface).cfg.Name + " query:" + cl.queryArgs
	hash, err := approvals.CanonicalHash(cl.id.Caller, cl.tool, target, raw, cl.dec.Revision)
	if err != nil {
		return approvalRefused, &refusal{status: fiber.StatusBadRequest, code: "invalid_arguments", msg: "arguments cannot be canonicalised"}
	}
	if a, ok, err := svc.Consume(ctx, hash); err == nil && ok {
		cl.approval = a
		return approvalGranted, nil
	} else if err != nil {
		s.log.Error("approvals: consume failed", "request_id", cl.rid, "err", err)
		return approvalRefused, &refusal{status: fiber.StatusServiceUnavailable, code: "approvals_unavailable", msg: "approval store unavailable; try again later", retryAfter: time.Second}
	}
	var approvers []string
	var ttl time.Duration
	if cl.dec.Approval != nil {
		approvers, ttl = cl.dec.Approval.Approvers, cl.dec.Approval.TTL
	}
	a, created, err := svc.Request(ctx, approvals.Request{
		Caller: cl.id.Caller, Tool: cl.tool, Surface: cl.surface, Arguments: raw, Hash: hash,
		Reason: cl.dec.Reason, PolicyRevision: cl.dec.Revision, Approvers: approvers, TTL: ttl,
	})
	if err != nil {
		s.log.Error("approvals: request failed", "request_id", cl.rid, "err", err)
		return approvalRefused, &refusal{status: fiber.StatusServiceUnavailable, code: "approvals_unavailable", msg: "approval store unavailable; try again later", retryAfter: time.Second}
	}
	cl.approval = a
	if a.Status == approvals.StatusDenied {
		return approvalRefused, s.approvalDenied(a)
	}
	if created {
		ev := s.event(cl, "approval")
		ev.Decision, ev.Reason = "approval_requested", cl.dec.Reason
		if err := s.d.Audit.Append(ctx, ev); err != nil {
			return approvalRefused, auditUnavailable
		}
	}
	return approvalStillPending, nil
}

// awaitApproval blocks until the approval is decided or ctx ends, then tries to use it.
func (s *Server) awaitApproval(ctx context.Context, cl *call) (approvalOutcome, *refusal) {
	a, err := s.d.Approvals.Wait(ctx, cl.approval.ID)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return approvalRefused, &refusal{status: fiber.StatusServiceUnavailable, code: "approvals_unavailable", msg: "approval store unavailable"}
	}
	if a == nil {
		return approvalStillPending, nil
	}
	cl.approval = a
	switch a.Status {
	case approvals.StatusApproved:
		got, ok, err := s.d.Approvals.Consume(context.Background(), a.Hash)
		if err != nil {
			// The store, or this replica's redaction key no longer the fleet's
			// (approvals.ErrFleetKeyMismatch): the approval stays unused.
			s.log.Error("approvals: consume failed", "request_id", cl.rid, "err", err)
			return approvalRefused, &refusal{status: fiber.StatusServiceUnavailable, code: "approvals_unavailable", msg: "approval store unavailable; try again later", retryAfter: time.Second}
		}
		if !ok {
			return approvalRefused, &refusal{status: fiber.StatusConflict, code: "approval_used",
				msg: "the approval " + a.ID + " was already used by an identical call; request a new one"}
		}
		cl.approval = got
		return approvalGranted, nil
	case approvals.StatusDenied:
		return approvalRefused, s.approvalDenied(a)
	case approvals.StatusExpired:
		return approvalRefused, &refusal{status: fiber.StatusForbidden, code: "approval_expired", approval: a,
			msg: "the approval " + a.ID + " expired before anyone approved it; call again to request a new one"}
	}
	return approvalStillPending, nil
}

func (s *Server) approvalDenied(a *approvals.Approval) *refusal {
	msg := "an approver denied this call (approval " + a.ID + ")"
	if a.Comment != "" {
		msg += ": " + a.Comment
	}
	msg += ". The denial holds for this exact call until " + a.ExpiresAt.UTC().Format(time.RFC3339) +
		"; a call with different arguments asks for a new approval"
	return &refusal{status: fiber.StatusForbidden, code: "approval_denied", msg: msg, approval: a}
}

func (s *Server) pendingRefusal(cl *call) *refusal {
	a := cl.approval
	url := s.cfg.PublicURL + "/admin/v1/approvals/" + a.ID
	return &refusal{status: fiber.StatusAccepted, code: "approval_pending", approval: a,
		msg: "this call needs human approval (" + strings.TrimSpace(cl.dec.Reason) + "). Approval " + a.ID +
			" is pending; an approver can approve it with POST " + url + "/approve or with `portcullis approvals approve " + a.ID +
			"`. Call again with exactly the same arguments after it is approved; it expires at " + a.ExpiresAt.UTC().Format(time.RFC3339) + "." +
			consoleHint(s.d.Approvals.URL(a.ID), url)}
}

// consoleHint points a person at the approval's console page, when the console is on.
func consoleHint(link, adminURL string) string {
	if link == adminURL {
		return ""
	}
	return " A person can decide it in the console: " + link
}

// auditApprovalDecision records an approver's decision when it is made, and an approval's
// expiry when it lapses, so a denial or expiry that is never retried still has its row.
func (s *Server) auditApprovalDecision(_ context.Context, a approvals.Approval) {
	decision := audit.DecisionApprovalGranted
	switch a.Status {
	case approvals.StatusDenied:
		decision = audit.DecisionApprovalDenied
	case approvals.StatusExpired:
		decision = audit.DecisionApprovalExpired
	}
	c := &a.Caller
	s.d.Audit.AppendAsync(&audit.Event{
		Time: time.Now().UTC(), Kind: audit.KindApproval, Surface: a.Surface, Tool: a.Tool,
		Caller:    audit.Caller{Caller: *c},
		Arguments: a.Arguments, Decision: decision, Reason: a.Comment, PolicyRevision: a.PolicyRevision,
		ApprovalID: a.ID, Approver: a.DecidedBy,
	})
}

// shadow records where the candidate policy would have decided differently. It never
// changes what happens to the call.
func (s *Server) shadow(ctx context.Context, sd ShadowDecider, cl *call) {
	sh, ok := sd.DecideShadow(ctx, &cl.input)
	if !ok {
		return
	}
	if sh.PolicyError {
		s.log.Warn("shadow policy error", "request_id", cl.rid, "tool", cl.tool, "shadow_revision", sh.Revision, "err", sh.Error)
	}
	if !policies.ShadowDiffers(cl.dec, sh) {
		return
	}
	s.metrics.shadowDiffs.Inc()
	ev := s.event(cl, audit.KindShadow)
	ev.Decision = audit.ShadowDecision(string(sh.Action))
	ev.Reason = "shadow policy " + sh.Revision + " would " + string(sh.Action) + " (live: " + string(cl.dec.Action) + "): " + sh.Reason
	s.d.Audit.AppendAsync(ev)
}

// holdContext bounds a held call's wait for its approval: the wait budget, or until the
// server starts to shut down, when the call answers as pending (with the approval id
// to retry with) instead of holding the stop up.
func (s *Server) holdContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, s.d.Approvals.WaitBudget())
	stop := context.AfterFunc(s.draining, cancel)
	return ctx, func() { stop(); cancel() }
}
