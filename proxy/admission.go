package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/ratelimit"
)

// errorHandler is the one place a handler's error becomes a response: an *apierror.Error
// is written as {"error":{code,message,field,request_id}}, with its headers. It never
// writes err.Error() of an unknown error to the client: that goes to the log with the
// request id, and the client gets a 500.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	rid := requestID(c)
	early := rid == ""
	if early {
		// Refused before admission ran (a body over the limit, a malformed request line):
		// it still gets a request id, and the log is its only record.
		rid = s.ids.next("req_")
		c.Locals(localRequestID, rid)
		c.Set("X-Request-Id", rid)
	}
	var he *apierror.Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &he):
	case errors.As(err, &fe):
		he = &apierror.Error{Status: fe.Code, Code: fiberCode(fe.Code), Message: fiberMessage(fe)}
	default:
		s.log.Error("request failed", "request_id", rid, "err", err)
		he = &apierror.Error{Status: fiber.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	}
	s.metrics.refused(he.Code)
	if early {
		s.log.Warn("request refused before admission", "request_id", rid, "status", he.Status, "code", he.Code,
			"method", methodOf(c), "path", s.d.Redactor.String(string(c.Request().URI().Path())), "client_addr", c.Context().RemoteIP().String())
	}
	if he.Status >= 400 && he.Status < 500 && he.Status != fiber.StatusUnauthorized {
		s.auditRejected(c, he.Code, he.Message) // 401s have their auth_failure rows
	}
	for _, h := range he.Header {
		c.Set(h[0], h[1])
	}
	body := fiber.Map{"code": he.Code, "message": he.Message, "request_id": rid}
	if he.Field != "" {
		body["field"] = he.Field
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(he.Status).JSON(fiber.Map{"error": body})
}

func fiberCode(status int) string {
	switch status {
	case fiber.StatusRequestEntityTooLarge:
		return "body_too_large"
	case fiber.StatusRequestTimeout:
		return "request_timeout"
	case fiber.StatusNotFound:
		return "not_found"
	case fiber.StatusMethodNotAllowed:
		return "method_not_allowed"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return "headers_too_large"
	default:
		if status >= 500 {
			return "internal_error"
		}
		return "bad_request"
	}
}

// fiberMessage is a fixed text per status: a fiber.Error's own message may quote the
// request (fasthttp's parse errors hold the whole request head, Authorization included),
// and an error response never repeats the request.
func fiberMessage(fe *fiber.Error) string {
	switch fe.Code {
	case fiber.StatusRequestEntityTooLarge:
		return "request body exceeds the limit"
	case fiber.StatusRequestTimeout:
		return "request not received in time"
	case fiber.StatusBadRequest:
		return "malformed HTTP request"
	case fiber.StatusNotFound:
		return "no such route"
	case fiber.StatusMethodNotAllowed:
		return "method not allowed"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return "request headers too large"
	}
	if fe.Code >= 500 {
		return "internal error"
	}
	if t := utils.StatusMessage(fe.Code); t != "" {
		return strings.ToLower(t)
	}
	return "request refused"
}

// admit is the first middleware: panic containment, request id, content encoding.
func (s *Server) admit(c *fiber.Ctx) (err error) {
	rid := s.ids.next("req_")
	c.Locals(localRequestID, rid)
	c.Set("X-Request-Id", rid)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "request_id", rid, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.metrics.panics.Inc()
			if cl, ok := c.Locals(localCall).(*call); ok && cl != nil {
				s.recordOutcome(cl, fiber.StatusInternalServerError, "panic", time.Since(cl.start))
			}
			c.Response().Reset()
			c.Set("X-Request-Id", rid)
			err = &apierror.Error{Status: fiber.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
		}
	}()
	// Fiber's c.Body() inflates compressed bodies without a size limit, and a decoder
	// upstream could read the bytes differently from the proxy: bodies must be sent as is.
	if ce := c.Request().Header.Peek(fiber.HeaderContentEncoding); len(ce) > 0 && !strings.EqualFold(string(ce), "identity") {
		return &apierror.Error{Status: fiber.StatusUnsupportedMediaType, Code: "unsupported_content_encoding", Field: "Content-Encoding",
			Message: "request bodies must not be compressed"}
	}
	return c.Next()
}

// retrySeconds rounds a wait up to whole seconds (at least 1). It is the one rounding
// every rendering uses (Retry-After, RateLimit-Reset, retry_after_seconds and the
// message), so they agree to the second.
func retrySeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

func retryAfterSeconds(d time.Duration) string { return strconv.Itoa(retrySeconds(d)) }

// authenticate admits only a valid Bearer JWT in the Authorization header. A token in the
// query string is refused outright, even alongside a valid header: query strings end up in
// logs and browser history.
//
// The per-address pre-authentication limit is spent only on what costs before anyone
// is known: verifying a token not in the cache, and every failure. A token verified
// already passes without spending, so a fleet behind one address (a NAT, an
// orchestrator) is limited by policy, per caller, not by its address.
func (s *Server) authenticate(c *fiber.Ctx) error {
	if queryHoldsToken(c.Context().QueryArgs()) {
		if err := s.spendPreAuth(c); err != nil {
			return err
		}
		return s.unauthorized(c, &authn.Error{Code: "invalid_request", Description: "tokens in the query string are not accepted; use the Authorization header"})
	}
	h := c.Request().Header.Peek(fiber.HeaderAuthorization)
	id := s.d.Auth.CachedHeader(h)
	if id == nil {
		if err := s.spendPreAuth(c); err != nil {
			return err
		}
		var err error
		if id, err = s.d.Auth.AuthenticateHeader(h); err != nil {
			return s.unauthorized(c, err)
		}
	}
	c.Locals(localIdentity, id)
	return c.Next()
}

// spendPreAuth takes one unit of the client address's pre-authentication budget, or
// refuses the request with 429 when it is spent. The key is the socket peer (addrKey),
// never X-Forwarded-For, which a client can forge.
func (s *Server) spendPreAuth(c *fiber.Ctx) error {
	if s.preAuth == nil {
		return nil
	}
	res, err := s.preAuth.Allow(c.UserContext(), addrKey(c.Context().RemoteIP()), s.cfg.PreAuthRate, time.Second)
	if err != nil || res.Allowed {
		return nil // the in-memory limiter does not fail; if it did, authentication still runs
	}
	s.metrics.preAuthRejected.Inc()
	return &apierror.Error{Status: fiber.StatusTooManyRequests, Code: "too_many_requests",
		Message: "too many requests from this address",
		Header:  [][2]string{{"Retry-After", retryAfterSeconds(res.RetryAfter)}}}
}

// addrKey is the key of a client address for what is counted per address before
// authentication (the pre-auth limit, auth failure rows): ratelimit.AddrKey, an IPv6
// address as its /64.
func addrKey(ip net.IP) string { return ratelimit.AddrKey(ip) }

// queryHoldsToken reports a query parameter named access_token, token or jwt, in any case.
func queryHoldsToken(args *fasthttp.Args) bool {
	if args.Len() == 0 {
		return false
	}
	for k := range args.All() {
		if bytes.EqualFold(k, []byte("access_token")) || bytes.EqualFold(k, []byte("token")) || bytes.EqualFold(k, []byte("jwt")) {
			return true
		}
	}
	return false
}

func (s *Server) unauthorized(c *fiber.Ctx, err error) error {
	s.metrics.authFailures.Inc()
	meta := s.cfg.PublicURL + "/.well-known/oauth-protected-resource"
	var ae *authn.Error
	desc := "authentication required"
	challenge := `Bearer realm="` + s.cfg.AuthRealm + `", resource_metadata="` + meta + `"`
	if errors.As(err, &ae) {
		desc = ae.Description
		challenge = ae.WWWAuthenticate(s.cfg.AuthRealm, meta)
	} else {
		s.log.Error("authentication error", "request_id", requestID(c), "err", err)
	}
	s.authFails.record(authFailure{at: time.Now(), addr: addrKey(c.Context().RemoteIP()), reason: desc,
		rid: requestID(c), method: methodOf(c), path: string(c.Request().URI().Path())})
	return &apierror.Error{Status: fiber.StatusUnauthorized, Code: "unauthorized", Message: desc,
		Header: [][2]string{{fiber.HeaderWWWAuthenticate, challenge}}}
}

// methodOf returns the request method as a string that does not alias fasthttp's buffers
// (c.Method() does): calls, audit events and held approvals outlive the request.
func methodOf(c *fiber.Ctx) string {
	switch m := c.Method(); m {
	case fiber.MethodGet:
		return fiber.MethodGet
	case fiber.MethodPost:
		return fiber.MethodPost
	case fiber.MethodPut:
		return fiber.MethodPut
	case fiber.MethodPatch:
		return fiber.MethodPatch
	case fiber.MethodDelete:
		return fiber.MethodDelete
	case fiber.MethodHead:
		return fiber.MethodHead
	case fiber.MethodOptions:
		return fiber.MethodOptions
	default:
		return strings.Clone(m)
	}
}

// auditRejected records a request of a known caller that was refused before it reached
// a decision (malformed JSON or JSON-RPC, duplicate keys, an ambiguous argument, no
// such route, a refusal of the audit or approvals API): an auditor sees the attempt, with
// the reason, though nothing was decided or forwarded. Requests that reached a decision
// (a call exists) have their decision row already; unauthenticated ones have their
// auth_failure row. The row is not waited for: nothing is forwarded either way.
func (s *Server) auditRejected(c *fiber.Ctx, code, msg string) {
	if cl, ok := c.Locals(localCall).(*call); ok && cl != nil {
		return
	}
	id, ok := c.Locals(localIdentity).(*authn.Identity)
	if !ok || id == nil {
		return
	}
	surface := "rest"
	path := string(c.Request().URI().Path())
	if path == s.cfg.MCP.Path {
		surface = "mcp"
	}
	reason, _ := s.d.Redactor.Value(code + ": " + msg).(string) // messages may quote input
	s.d.Audit.AppendAsync(&audit.Event{
		Time:      time.Now().UTC(),
		Kind:      audit.KindDecision,
		RequestID: requestID(c),
		Caller:    audit.Caller{Caller: id.Caller, ClientAddr: c.Context().RemoteIP().String()},
		Surface:   surface,
		Method:    methodOf(c),
		Path:      path,
		Decision:  audit.DecisionRejected,
		Reason:    reason,
	})
}
