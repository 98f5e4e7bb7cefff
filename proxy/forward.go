package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/pacer"
)

// forwardedHeaders are the request headers passed upstream. Everything else, the caller's
// Authorization and any identity header it sent included, stays at the proxy.
var forwardedHeaders = []string{
	fiber.HeaderContentType, fiber.HeaderAccept, "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name",
	"Last-Event-Id", fiber.HeaderUserAgent, fiber.HeaderIfMatch, fiber.HeaderIfNoneMatch,
}

// hopHeaders are response headers that describe the upstream connection, not the response.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Te", "Trailer", "Upgrade"}

// outbound is a request to send upstream, copied out of the caller's request so it can be
// sent after the handler has returned (held approvals stream from a body writer).
type outbound struct {
	method  string
	uri     string
	header  *fasthttp.RequestHeader // the caller's headers; only forwardedHeaders are sent
	body    []byte
	timeout time.Duration
}

// outboundFrom describes the caller's request for roundTrip. With detach, the headers
// and body are copied so the request can be sent after the handler returned; otherwise
// they are read from the caller's request in place.
func (s *Server) outboundFrom(c *fiber.Ctx, uri string, timeout time.Duration, detach bool) *outbound {
	o := &outbound{method: methodOf(c), uri: uri, timeout: timeout, header: &c.Request().Header, body: c.Request().Body()}
	if detach {
		h := &fasthttp.RequestHeader{}
		c.Request().Header.CopyTo(h)
		o.header, o.body = h, append([]byte(nil), o.body...)
	}
	return o
}

// errorClass says why an upstream call did not complete, as outcome rows and metrics
// record it; "" is a call that got an answer.
type errorClass string

// The error classes.
const (
	classTimeout       errorClass = "timeout"        // no answer in time
	classRefused       errorClass = "refused"        // the connection was refused: nothing was sent
	classUpstreamError errorClass = "upstream_error" // any other transport failure
	classPaced         errorClass = "paced"          // the upstream's pace was exceeded: not sent
	classCanceled      errorClass = "canceled"       // the caller left while waiting for the pace
	classIdentity      errorClass = "identity"       // the identity assertion could not be signed
	classNotForwarded  errorClass = "not_forwarded"  // a batch call that was never sent
)

// roundTrip sends o upstream on behalf of cl and reads the response head into resp; the
// body streams (resp.StreamBody) so server-sent events pass event by event. It returns the
// status to report and an error class ("" on success).
func (s *Server) roundTrip(ctx context.Context, cl *call, up *upstream, o *outbound, resp *fasthttp.Response) (int, errorClass) {
	if up.pace != nil {
		if err := up.pace.Wait(ctx); err != nil {
			if errors.Is(err, pacer.ErrBusy) {
				return fiber.StatusServiceUnavailable, classPaced
			}
			return fiber.StatusServiceUnavailable, classCanceled
		}
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(o.method)
	req.SetRequestURI(o.uri)
	for _, h := range forwardedHeaders {
		if v := o.header.Peek(h); len(v) > 0 {
			req.Header.SetBytesV(h, v)
		}
	}
	for _, h := range up.headers {
		req.Header.Set(h[0], h[1])
	}
	bp := signBufs.Get().(*signBuf)
	tok, err := s.d.Identity.AppendSign(bp.token[:0], &cl.id.Caller, cl.rid, cl.did, time.Now())
	if err != nil {
		signBufs.Put(bp)
		s.log.Error("identity assertion failed", "request_id", cl.rid, "err", err)
		return fiber.StatusInternalServerError, classIdentity
	}
	req.Header.SetBytesV(IdentityHeader, tok) // copies
	bp.token = tok
	signBufs.Put(bp)
	req.Header.Set("X-Request-Id", cl.rid)
	req.SetBodyRaw(o.body)
	resp.StreamBody = true
	err = s.client.DoTimeout(req, resp, o.timeout)
	if err != nil {
		class, status := classifyUpstreamError(err)
		s.log.Warn("upstream call failed", "request_id", cl.rid, "upstream", up.cfg.Name, "class", class, "err", err)
		return status, class
	}
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	return resp.StatusCode(), ""
}

func classifyUpstreamError(err error) (errorClass, int) {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout), errors.As(err, &ne) && ne.Timeout():
		return classTimeout, fiber.StatusGatewayTimeout
	case strings.Contains(err.Error(), "connection refused"):
		return classRefused, fiber.StatusBadGateway
	default:
		return classUpstreamError, fiber.StatusBadGateway
	}
}

// forward sends the caller's request upstream and writes the upstream's response as the
// caller's, streaming its body.
func (s *Server) forward(c *fiber.Ctx, cl *call, up *upstream, uri string, timeout time.Duration) error {
	o := s.outboundFrom(c, uri, timeout, false)
	status, class := s.roundTrip(c.UserContext(), cl, up, o, c.Response())
	s.recordOutcome(cl, status, class, time.Since(cl.start))
	c.Set("X-Request-Id", cl.rid)
	if class != "" {
		return upstreamError(status, class)
	}
	return nil
}

func upstreamError(status int, class errorClass) error {
	switch class {
	case classTimeout:
		return &apierror.Error{Status: status, Code: "upstream_timeout", Message: "the upstream did not answer in time"}
	case classPaced:
		return &apierror.Error{Status: status, Code: "upstream_busy", Message: "the upstream is at its configured pace; try again shortly",
			Header: [][2]string{{"Retry-After", "1"}}}
	case classRefused:
		return &apierror.Error{Status: status, Code: "upstream_unavailable", Message: "the upstream refused the connection"}
	}
	return &apierror.Error{Status: status, Code: "upstream_error", Message: "the upstream call failed"}
}

// copyStream relays a streamed body to w, flushing after every read so each server-sent
// event reaches the caller as soon as the upstream sends it.
func copyStream(w *bufio.Writer, r io.Reader) error {
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := w.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
