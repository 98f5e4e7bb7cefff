package proxy

import (
	"bytes"
	"iter"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portcullis/portcullis/proxy/apierror"
	"github.com/portcullis/portcullis/proxy/ratelimit"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// handleREST serves the configured REST prefixes: the route table names the tool, the
// arguments are the path parameters, query parameters and JSON body fields together.
func (s *Server) handleREST(c *fiber.Ctx) error {
	path := string(c.Request().URI().Path())
	// Fiber routed on the path as sent; decide and forward only what, once normalised
	// ("/v1/../mcp" is "/mcp"), is still under a configured prefix.
	if !s.underPrefix(path) {
		return apierror.BadRequest("invalid_path", "path", "the normalised path %q is outside the proxied prefixes", path)
	}
	tool, info, params, renames, ref := s.routes.match(methodOf(c), path)
	body := c.Request().Body()
	if len(body) > 0 {
		if err := requireJSON(c, true); err != nil {
			return err
		}
	}
	args, err := restArguments(c.Context().QueryArgs().All(), body, params, renames, tool)
	if err != nil {
		return err
	}
	cl := s.newCall(c, "rest", tool, info, args)
	if cl.rtype != nil {
		cl.ref = ref
	}
	r := s.decide(c.UserContext(), cl)
	if r != nil && r.code == "approval_required" {
		cl.queryArgs = queryArgNames(c) // only an approval needs them
		r = s.holdREST(c, cl)
	} else {
		r = s.settle(c.UserContext(), cl, r)
	}
	if r != nil {
		return s.restRefusal(c, r)
	}
	uri := s.restUp.base + (&url.URL{Path: path}).EscapedPath()
	if q := c.Request().URI().QueryString(); len(q) > 0 {
		uri += "?" + string(q)
	}
	err = s.forward(c, cl, s.restUp, uri, s.restUp.cfg.Timeout)
	if cl.rl != nil {
		setRateLimitHeaders(c, cl.rl)
	}
	return err
}

// holdREST keeps a call that needs approval on the open request for the wait budget.
func (s *Server) holdREST(c *fiber.Ctx, cl *call) *refusal {
	outcome, r := s.requestApproval(c.UserContext(), cl)
	if outcome == approvalStillPending {
		ctx, cancel := s.holdContext(c.UserContext())
		outcome, r = s.awaitApproval(ctx, cl)
		cancel()
	}
	if outcome == approvalStillPending {
		r = s.pendingRefusal(cl)
	}
	return s.settle(c.UserContext(), cl, r)
}

func (s *Server) restRefusal(c *fiber.Ctx, r *refusal) error {
	var hdr [][2]string
	if r.retryAfter > 0 {
		hdr = append(hdr, [2]string{"Retry-After", retryAfterSeconds(r.retryAfter)})
	}
	if r.rl != nil {
		setRateLimitHeaders(c, r.rl)
	}
	if r.code == "approval_pending" {
		loc := "/admin/v1/approvals/" + r.approval.ID
		c.Set(fiber.HeaderLocation, loc)
		return c.Status(fiber.StatusAccepted).JSON(fiber.Map{
			"status": "pending_approval", "approval_id": r.approval.ID, "approval_url": s.cfg.PublicURL + loc,
			"expires_at": r.approval.ExpiresAt, "message": r.msg, "request_id": requestID(c),
		})
	}
	he := &apierror.Error{Status: r.status, Code: r.code, Message: r.msg, Header: hdr}
	if he.Status == 0 {
		he.Status = fiber.StatusForbidden
	}
	return he
}

// setRateLimitHeaders writes the IETF RateLimit header fields.
func setRateLimitHeaders(c *fiber.Ctx, res *ratelimit.Result) {
	c.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
	c.Set("RateLimit-Remaining", strconv.Itoa(max(res.Remaining, 0)))
	c.Set("RateLimit-Reset", retryAfterSeconds(res.Reset))
}

func (s *Server) underPrefix(path string) bool {
	for _, p := range s.cfg.REST.Prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// requireJSON refuses a body whose media type is not JSON (application/json, or with
// plusJSON a +json type; any case, parameters allowed): a body the proxy reads as JSON
// must be one the upstream reads as JSON too. MCP's transport takes application/json only.
func requireJSON(c *fiber.Ctx, plusJSON bool) error {
	ct := c.Request().Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	if bytes.EqualFold(ct, []byte(fiber.MIMEApplicationJSON)) ||
		(plusJSON && len(ct) > 5 && bytes.EqualFold(ct[len(ct)-5:], []byte("+json")) && bytes.IndexByte(ct, '/') > 0) {
		return nil
	}
	msg := "request bodies must be application/json (or a +json type)"
	if !plusJSON {
		msg = "request bodies must be application/json"
	}
	return &apierror.Error{Status: fiber.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type", Message: msg}
}

// queryArgNames lists the query parameter names, sorted and quoted (a name may hold any
// character, so the list reads one way only), for the approval hash.
func queryArgNames(c *fiber.Ctx) string {
	qa := c.Context().QueryArgs()
	if qa.Len() == 0 {
		return ""
	}
	names := make([]string, 0, qa.Len())
	for k := range qa.All() {
		names = append(names, strconv.Quote(string(k)))
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// restArguments assembles the arguments policy sees of a REST call: the query, the JSON
// body (an object's members; any other value as "body") and the path's parameters,
// then the route's renames. A name given twice (a repeated query parameter, or the same
// name in two places) could be read one way by policy and another by the upstream, so
// it is refused (400 ambiguous_argument), as is a body that is not JSON.
func restArguments(query iter.Seq2[[]byte, []byte], body []byte, params, renames map[string]string, tool string) (map[string]any, error) {
	args := make(map[string]any, 8)
	for k, v := range query {
		if _, dup := args[string(k)]; dup {
			return nil, apierror.BadRequest("ambiguous_argument", string(k), "query parameter %q is given more than once", k)
		}
		args[string(k)] = string(v)
	}
	if len(body) > 0 {
		v, err := strictjson.Parse(body, strictjson.DefaultMaxDepth)
		if err != nil {
			return nil, apierror.BadRequest("invalid_json", "body", "request body: %v", err)
		}
		if obj, ok := v.(map[string]any); ok {
			for k, x := range obj {
				if _, dup := args[k]; dup {
					return nil, apierror.BadRequest("ambiguous_argument", k, "%q is given both in the query and in the body", k)
				}
				args[k] = x
			}
		} else {
			if _, dup := args["body"]; dup {
				return nil, apierror.BadRequest("ambiguous_argument", "body", `"body" is given in the query, and the JSON body (not an object) is read as "body" too`)
			}
			args["body"] = v
		}
	}
	for k, v := range params {
		if x, dup := args[k]; dup && x != v {
			return nil, apierror.BadRequest("ambiguous_argument", k, "%q in the query or body differs from the path", k)
		}
		args[k] = v
	}
	for from, to := range renames {
		v, ok := args[from]
		if !ok {
			continue
		}
		if _, dup := args[to]; dup {
			return nil, apierror.BadRequest("ambiguous_argument", from, "%q and %q name the same argument of %s; give one", from, to, tool)
		}
		delete(args, from)
		args[to] = v
	}
	return args, nil
}
