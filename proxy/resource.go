package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/policies/principal"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

// ResourcesConfig says how the proxy reads the resource a call acts on (its owner
// workspace, its grants), so policy can decide on the target and not only on the
// arguments: input.resource. Only the tools listed in Types are resolved; every other
// call costs nothing.
//
// A lookup is a GET on the REST upstream, signed with the proxy's identity assertion for
// an org-wide reader of the caller's org (sub "portcullis:resolver", no workspace), so
// policy sees the true owner even of a resource the caller's own workspace cannot read.
// It fails closed: a timeout, a transport error, a status other than 200 or 404, a body
// that is not a JSON object or is over MaxBytes denies the call (503, audited as
// "resource_error") without evaluating policy. A 404 is {"found": false}: policy decides,
// and the upstream will answer 404 itself.
type ResourcesConfig struct {
	// Timeout bounds one lookup, response included. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBytes is the largest lookup response read; a larger one denies the call.
	// Default 262144 (256 KiB).
	MaxBytes int `yaml:"max_bytes"`
	// CacheTTL is how long a found resource is reused. Default 5s; negative disables the
	// cache. A call on the resource that is not a read drops the entry once forwarded;
	// "not found" is never cached (a create would otherwise be invisible for a TTL).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// CacheSize bounds the cached resources (random eviction when full). Default 10000.
	CacheSize int `yaml:"cache_size"`
	// Types maps a resource type (input.resource.type) to how it is read. Unset: the
	// bundled backend's integrations (DefaultResourceTypes). {} resolves nothing.
	Types map[string]ResourceType `yaml:"types"`
}

// ResourceType is how one type of resource is read, and which tools act on one.
type ResourceType struct {
	// Path is the GET path on the REST upstream; {ref} is replaced by the path-escaped
	// reference. The answer (a JSON object) is input.resource, with type, ref and found set.
	Path string `yaml:"path"`
	// Tools are the tools whose calls act on one resource of this type.
	Tools []string `yaml:"tools"`
	// Arg is the MCP argument that names the resource. Default "slug". Over REST the
	// reference is the path parameter the route names as its ref (Route.Ref), never a
	// body or query field, so it is what the upstream acts on.
	Arg string `yaml:"arg"`
}

// DefaultResourceTypes resolves the bundled backend's integrations for every tool that
// changes one: GET /v1/integrations/{ref}/scope answers the owner workspace and the
// workspace grants. Reads are left out: policy admits them and the backend scopes them.
var DefaultResourceTypes = map[string]ResourceType{
	"integration": {
		Path: "/v1/integrations/{ref}/scope",
		Arg:  "slug",
		Tools: []string{"update_integration", "delete_integration", "update_integration_models",
			"delete_integration_model", "update_integration_workspaces"},
	},
}

// ResolverSubject is the sub of the identity assertion a lookup is signed with.
const ResolverSubject = "portcullis:resolver"

const maxRefLen = 512

func (c *ResourcesConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 << 10
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = 10000
	}
	if c.Types == nil {
		c.Types = make(map[string]ResourceType, len(DefaultResourceTypes))
		for k, v := range DefaultResourceTypes {
			v.Tools = slices.Clone(v.Tools)
			c.Types[k] = v
		}
	}
	for name, t := range c.Types {
		if t.Arg == "" {
			t.Arg = "slug"
			c.Types[name] = t
		}
	}
}

func (c *ResourcesConfig) validate(bad func(field, format string, args ...any)) {
	if c.Timeout < 0 {
		bad("resources.timeout", "must not be negative")
	}
	if c.MaxBytes < 1024 || c.MaxBytes > 16<<20 {
		bad("resources.max_bytes", "must be between 1024 and 16777216 bytes, got %d", c.MaxBytes)
	}
	owner := map[string]string{}
	for name, t := range c.Types {
		f := "resources.types." + name
		if name == "" {
			bad("resources.types", "a type name must not be empty")
		}
		if !strings.HasPrefix(t.Path, "/") || strings.Count(t.Path, "{ref}") != 1 || strings.ContainsAny(t.Path, "?#") {
			bad(f+".path", "must start with '/', hold {ref} exactly once and no query or fragment, got %q", t.Path)
		}
		if len(t.Tools) == 0 {
			bad(f+".tools", "must name at least one tool")
		}
		for i, tool := range t.Tools {
			if tool == "" {
				bad(fmt.Sprintf("%s.tools[%d]", f, i), "must not be empty")
			} else if prev, dup := owner[tool]; dup {
				bad(fmt.Sprintf("%s.tools[%d]", f, i), "tool %q is already resolved as type %q", tool, prev)
			}
			owner[tool] = name
		}
	}
}

// resourceType is a configured type, ready to resolve.
type resourceType struct {
	name, arg      string
	prefix, suffix string // Path around {ref}
}

// resolver reads resources for policy, with a bounded cache and one lookup in flight per
// resource.
type resolver struct {
	cfg     ResourcesConfig
	byTool  map[string]*resourceType
	client  *fasthttp.Client
	up      *upstream
	sign    *IdentitySigner
	redact  func(any) any
	lookups *prometheus.CounterVec

	mu      sync.Mutex
	entries map[string]resourceEntry
	flights map[string]*flight
	// gen counts invalidations. A lookup caches its answer only if none happened while it
	// was in flight: the resource may have changed under it.
	gen atomic.Uint64
}

type resourceEntry struct {
	res map[string]any
	exp time.Time
}

type flight struct {
	done chan struct{}
	res  map[string]any
	err  error
}

// newResolver returns nil when no type is configured: nothing is resolved.
func newResolver(cfg ResourcesConfig, up *upstream, sign *IdentitySigner, redact func(any) any, reg prometheus.Registerer) (*resolver, error) {
	if len(cfg.Types) == 0 {
		return nil, nil
	}
	r := &resolver{
		cfg: cfg, up: up, sign: sign, redact: redact, byTool: map[string]*resourceType{},
		entries: map[string]resourceEntry{}, flights: map[string]*flight{},
		client: &fasthttp.Client{
			Name:                     "portcullis-resolver",
			NoDefaultUserAgentHeader: true,
			MaxConnsPerHost:          256,
			MaxIdleConnDuration:      30 * time.Second,
			ReadTimeout:              cfg.Timeout,
			WriteTimeout:             cfg.Timeout,
			MaxResponseBodySize:      cfg.MaxBytes,
			DisablePathNormalizing:   true,
		},
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_resource_lookups_total",
			Help: "Resource lookups for policy (input.resource) by result: cached, fetched, not_found, error."}, []string{"result"}),
	}
	for name, t := range cfg.Types {
		pre, suf, _ := strings.Cut(t.Path, "{ref}")
		rt := &resourceType{name: name, arg: t.Arg, prefix: pre, suffix: suf}
		for _, tool := range t.Tools {
			r.byTool[tool] = rt
		}
	}
	if err := reg.Register(r.lookups); err != nil {
		return nil, fmt.Errorf("proxy: registering metrics: %w", err)
	}
	return r, nil
}

// typeFor is the resource type a tool acts on, or nil.
func (r *resolver) typeFor(tool string) *resourceType {
	if r == nil {
		return nil
	}
	return r.byTool[tool]
}

// mcpRef is the reference an MCP call names in its configured argument ("" if none).
func (rt *resourceType) mcpRef(args map[string]any) string {
	s, _ := args[rt.arg].(string)
	return s
}

func cacheKey(rt *resourceType, org, ref string) string {
	return rt.name + "\x00" + org + "\x00" + ref
}

// resolve returns input.resource for a call on ref in org: {"found": false} for a 404,
// the upstream's object (redacted) otherwise. Any error means the call must be denied.
// The lookup runs on its own timeout, not the caller's context: callers waiting on the
// same lookup share it, and one giving up must not fail the others.
func (r *resolver) resolve(rt *resourceType, org, ref, rid string) (map[string]any, error) {
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	key := cacheKey(rt, org, ref)
	now := time.Now()
	r.mu.Lock()
	if e, ok := r.entries[key]; ok {
		if now.Before(e.exp) {
			r.mu.Unlock()
			r.lookups.WithLabelValues("cached").Inc()
			return e.res, nil
		}
		delete(r.entries, key)
	}
	if f, ok := r.flights[key]; ok {
		r.mu.Unlock()
		<-f.done
		return f.res, f.err
	}
	f := &flight{done: make(chan struct{})}
	r.flights[key] = f
	gen := r.gen.Load()
	r.mu.Unlock()

	f.res, f.err = r.fetchSafely(rt, org, ref, rid)
	switch {
	case f.err != nil:
		r.lookups.WithLabelValues("error").Inc()
	case f.res["found"] == false:
		r.lookups.WithLabelValues("not_found").Inc()
	default:
		r.lookups.WithLabelValues("fetched").Inc()
	}

	r.mu.Lock()
	if r.flights[key] == f {
		delete(r.flights, key)
	}
	if f.err == nil && f.res["found"] == true && r.cfg.CacheTTL > 0 && r.gen.Load() == gen {
		if len(r.entries) >= r.cfg.CacheSize {
			for k := range r.entries { // map iteration starts at a random entry: random eviction
				delete(r.entries, k)
				break
			}
		}
		r.entries[key] = resourceEntry{res: f.res, exp: now.Add(r.cfg.CacheTTL)}
	}
	r.mu.Unlock()
	close(f.done)
	return f.res, f.err
}

// invalidate drops what is cached or in flight for these keys, so the next call reads
// the resource as the forwarded call left it.
func (r *resolver) invalidate(keys []string) {
	r.gen.Add(1)
	r.mu.Lock()
	for _, k := range keys {
		delete(r.entries, k)
		delete(r.flights, k) // a lookup already running may predate the change
	}
	r.mu.Unlock()
}

// errBadReference is a reference that cannot name a resource: the caller's error (400),
// not a failed lookup.
var errBadReference = errors.New("bad reference")

// checkRef refuses references that cannot name one resource as a path segment.
func checkRef(ref string) error {
	if err := refProblem(ref); err != nil {
		return fmt.Errorf("%w: %v", errBadReference, err)
	}
	return nil
}

func refProblem(ref string) error {
	switch {
	case ref == "" || ref == "." || ref == "..":
		return fmt.Errorf("reference %q cannot name a resource", ref)
	case len(ref) > maxRefLen:
		return fmt.Errorf("reference is longer than %d bytes", maxRefLen)
	case strings.IndexFunc(ref, func(c rune) bool { return c < 0x20 || c == 0x7f }) >= 0:
		return errors.New("reference holds control characters")
	}
	return nil
}

var errNotObject = errors.New("the answer is not a JSON object")

// fetchSafely is fetch with a panic turned into an error: the callers waiting on this
// lookup must be released, and the call denied, whatever happens.
func (r *resolver) fetchSafely(rt *resourceType, org, ref, rid string) (res map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("lookup panicked: %v", p)
		}
	}()
	return r.fetch(rt, org, ref, rid)
}

func (r *resolver) fetch(rt *resourceType, org, ref, rid string) (map[string]any, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(r.up.base + rt.prefix + url.PathEscape(ref) + rt.suffix)
	for _, h := range r.up.headers {
		req.Header.Set(h[0], h[1])
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Request-Id", rid)
	tok, err := r.sign.AppendSign(nil, &principal.Caller{Sub: ResolverSubject, Org: org}, rid, "", time.Now())
	if err != nil {
		return nil, fmt.Errorf("signing the lookup: %w", err)
	}
	req.Header.SetBytesV(IdentityHeader, tok)
	if err := r.client.DoTimeout(req, resp, r.cfg.Timeout); err != nil {
		switch {
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			return nil, fmt.Errorf("the answer is larger than %d bytes", r.cfg.MaxBytes)
		case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
			return nil, fmt.Errorf("no answer within %s", r.cfg.Timeout)
		}
		class, _ := classifyUpstreamError(err)
		return nil, fmt.Errorf("upstream unreachable (%s)", class)
	}
	switch resp.StatusCode() {
	case fasthttp.StatusOK:
	case fasthttp.StatusNotFound, fasthttp.StatusBadRequest:
		// No such resource, or a reference the upstream cannot read as one (a malformed
		// slug): either way nothing is found, and policy decides. A client's bad
		// reference is not a lookup failure (a 503 would invite retries).
		return map[string]any{"type": rt.name, "ref": r.redact(ref), "found": false}, nil
	default:
		return nil, fmt.Errorf("the upstream answered %d", resp.StatusCode())
	}
	v, err := strictjson.Parse(resp.Body(), strictjson.DefaultMaxDepth)
	if err != nil {
		return nil, fmt.Errorf("the answer is not usable JSON: %v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errNotObject
	}
	// Redacted like arguments, before it is cached: whatever the upstream answers, no
	// secret reaches policy.
	obj, _ = r.redact(obj).(map[string]any)
	if obj == nil {
		return nil, errNotObject
	}
	out := make(map[string]any, len(obj)+3)
	for k, v := range obj {
		out[k] = v
	}
	out["type"], out["ref"], out["found"] = rt.name, r.redact(ref), true
	return out, nil
}

// resolveResource fills cl.input.Resource for a call on a configured tool that names its
// resource. A lookup failure is a refusal: the call is denied without evaluating policy.
func (s *Server) resolveResource(cl *call) *refusal {
	rt := cl.rtype
	if rt == nil || cl.ref == "" {
		return nil
	}
	org := cl.id.Caller.Org
	res, err := s.resources.resolve(rt, org, cl.ref, cl.rid)
	if errors.Is(err, errBadReference) {
		detail := "resolving " + rt.name + ": " + err.Error()
		cl.dec = policies.Decision{Action: policies.ActionDeny, Reason: detail, Revision: s.d.Policy.Revision()}
		return &refusal{status: fiber.StatusBadRequest, code: "invalid_arguments", detail: detail,
			msg: "the reference to the " + rt.name + " this call acts on cannot name one (" + strings.TrimPrefix(err.Error(), errBadReference.Error()+": ") + ")"}
	}
	if err != nil {
		detail := "resolving " + rt.name + " " + strconv.Quote(s.d.Redactor.String(cl.ref)) + ": " + err.Error()
		s.log.Warn("resource lookup failed: denying", "request_id", cl.rid, "tool", cl.tool, "err", detail)
		cl.dec = policies.Decision{Action: policies.ActionDeny, Reason: detail, Revision: s.d.Policy.Revision()}
		return &refusal{status: fiber.StatusServiceUnavailable, code: "resource_unavailable", retryAfter: time.Second, detail: detail,
			msg: "denied: the " + rt.name + " this call acts on could not be read to check policy (request " + cl.rid + "); try again later"}
	}
	cl.input.Resource = res
	if cl.input.ToolInfo.Category != "read" {
		cl.resKeys = append(cl.resKeys[:0], cacheKey(rt, org, cl.ref))
		for _, f := range [...]string{"id", "slug"} {
			if alias, ok := res[f].(string); ok && alias != cl.ref {
				cl.resKeys = append(cl.resKeys, cacheKey(rt, org, alias))
			}
		}
	}
	return nil
}
