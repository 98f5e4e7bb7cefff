package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit/redact"
)

// Config is the proxy section of the Portcullis config file.
type Config struct {
	// Listen is the address the proxy serves on. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// PublicURL is how callers reach the proxy; used in approval links and the RFC 9728
	// resource metadata. Default http://<listen>.
	PublicURL string `yaml:"public_url"`
	// BodyLimit is the largest request body accepted, in bytes (413 above). Default 256 KiB.
	BodyLimit int `yaml:"body_limit"`
	// ReadTimeout bounds reading a whole request, headers included (408 past it). Default 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a whole response, streamed ones included. Default 120s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// PreAuthRate is how many requests per second one client IP (IPv6: one /64) may send
	// that cost work before anyone is known: a token not yet verified (not in the auth cache) and every
	// authentication failure. A token verified already does not count, so many callers
	// behind one address are not throttled together. At most that many in any second;
	// negative disables. Default 1000.
	PreAuthRate int `yaml:"pre_auth_rate"`
	// AuthFailures bounds the audit rows that failed authentication writes.
	AuthFailures AuthFailureConfig `yaml:"auth_failures"`
	// MCP is the MCP surface: POST/GET/DELETE on Path, forwarded to Upstream.
	MCP MCPConfig `yaml:"mcp"`
	// REST is the REST surface: requests under Prefixes, forwarded to Upstream.
	REST RESTConfig `yaml:"rest"`
	// Identity is the assertion the proxy sends upstream instead of the caller's token.
	Identity IdentityConfig `yaml:"identity"`
	// Resources says how the proxy reads the resource a call acts on, for policy
	// (input.resource). Default: the bundled backend's integrations.
	Resources ResourcesConfig `yaml:"resources"`
	// Metrics says where /metrics is served. Configured as the top-level metrics section.
	Metrics MetricsConfig `yaml:"-"`
	// ApprovalKeepAlive is the interval of progress notifications (MCP over SSE) and
	// keep-alive comments while a call is held. Default 5s.
	ApprovalKeepAlive time.Duration `yaml:"approval_keep_alive"`
	// AuthRealm is the realm in WWW-Authenticate. Default "portcullis".
	AuthRealm string `yaml:"auth_realm"`
	// ResourceDocumentation is a page about using this gateway, advertised as
	// resource_documentation in the RFC 9728 resource metadata. Omitted when empty.
	ResourceDocumentation string `yaml:"resource_documentation"`
}

// MCPConfig configures the MCP surface.
type MCPConfig struct {
	// Path is where MCP clients connect. Default /mcp.
	Path string `yaml:"path"`
	// MaxBatchCalls is the most messages one JSON-RPC batch may hold (requests,
	// notifications and responses alike). A longer batch is refused whole with a JSON-RPC
	// invalid-request error and one audit row: every call in a batch is decided and
	// audited, so without a cap one request could make thousands of rows. Default 64.
	MaxBatchCalls int            `yaml:"max_batch_calls"`
	Upstream      UpstreamConfig `yaml:"upstream"`
}

// RESTConfig configures the REST surface.
type RESTConfig struct {
	// Prefixes are the path prefixes forwarded to the REST upstream.
	// Default ["/v1/", "/ai/", "/integrations/"] (Portkey API and the seed 003/004 shapes).
	Prefixes []string       `yaml:"prefixes"`
	Upstream UpstreamConfig `yaml:"upstream"`
	// Routes adds to (or overrides) the built-in route table that maps method + path
	// template to tool names.
	Routes []Route `yaml:"routes"`
}

// UpstreamConfig is one upstream the proxy forwards to.
type UpstreamConfig struct {
	// Name is the upstream's name in policy input (input.upstream). Default "integrations".
	Name string `yaml:"name"`
	// URL is the upstream's base URL (MCP: the endpoint itself; REST: the base the
	// request path is appended to).
	URL string `yaml:"url"`
	// Headers are sent on every forwarded request, e.g. the upstream's own API key.
	// They are never logged.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one upstream call, response included (504 past it). Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// StreamTimeout bounds long-lived GET streams (MCP server-sent events). Default 10m.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
	// RatePerSecond paces calls sent to this upstream (0: no pacing).
	RatePerSecond int `yaml:"rate_per_second"`
	// MaxPaceWait is the longest a call waits for its pacing slot before it is
	// refused with 503. Default 1s.
	MaxPaceWait time.Duration `yaml:"max_pace_wait"`
}

// MetricsConfig says where the Prometheus metrics are served, and to whom.
type MetricsConfig struct {
	// Listen is a separate address serving GET /metrics without authentication, for a
	// Prometheus on a private network; the proxy listener then has no /metrics. Default
	// empty: /metrics is on the proxy listener, for tokens with Role. Secure by default
	// on one port: the metrics name tools, codes and policy revisions, which an anonymous
	// caller has no need to read.
	Listen string `yaml:"listen"`
	// Role is the role a token needs to read /metrics on the proxy listener. A dedicated
	// role: a scraper needs no agent or admin role, and an agent cannot read the gateway's
	// metrics. Default "metrics".
	Role string `yaml:"role"`
}

// SetDefaults fills unset fields.
func (c *MetricsConfig) SetDefaults() {
	if c.Role == "" {
		c.Role = "metrics"
	}
}

// Validate reports every problem at once, each naming its field. The listen address's
// form is checked where listen addresses are (serve's config), with where it came from.
func (c *MetricsConfig) Validate() error {
	if strings.TrimSpace(c.Role) == "" {
		return errors.New("metrics.role: must be set")
	}
	return nil
}

// IdentityConfig configures the identity assertion sent upstream.
type IdentityConfig struct {
	// Alg is HS256 (shared secret, default) or EdDSA (Ed25519 key pair).
	Alg string `yaml:"alg"`
	// SecretFile holds the HS256 secret (base64). Default <data_dir>/identity.secret.
	SecretFile string `yaml:"secret_file"`
	// KeyFile holds the Ed25519 private key (PKCS8 PEM) for EdDSA. Default <data_dir>/identity-ed25519.pem.
	KeyFile string `yaml:"key_file"`
	// Audience is the aud claim. Default "portcullis-upstream".
	Audience string `yaml:"audience"`
	// TTL is the assertion's lifetime. Default 60s.
	TTL time.Duration `yaml:"ttl"`
}

// maxBatchCallsLimit is the largest mcp.max_batch_calls accepted: past it, one request
// could again write thousands of audit rows.
const maxBatchCallsLimit = 1000

// SetDefaults fills every unset field.
func (c *Config) SetDefaults(dataDir string) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Listen, "127.0.0.1:8080")
	def(&c.PublicURL, "http://"+c.Listen)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.BodyLimit == 0 {
		c.BodyLimit = 256 << 10
	}
	defDur(&c.ReadTimeout, 10*time.Second)
	defDur(&c.WriteTimeout, 120*time.Second)
	defDur(&c.IdleTimeout, 60*time.Second)
	if c.PreAuthRate == 0 {
		c.PreAuthRate = 1000
	}
	defDur(&c.AuthFailures.Interval, 10*time.Second)
	if c.AuthFailures.MaxKeys == 0 {
		c.AuthFailures.MaxKeys = 1000
	}
	def(&c.MCP.Path, "/mcp")
	if c.MCP.MaxBatchCalls == 0 {
		c.MCP.MaxBatchCalls = 64
	}
	if len(c.REST.Prefixes) == 0 {
		c.REST.Prefixes = []string{"/v1/", "/ai/", "/integrations/"}
	}
	for _, u := range []*UpstreamConfig{&c.MCP.Upstream, &c.REST.Upstream} {
		def(&u.Name, "integrations")
		defDur(&u.Timeout, 30*time.Second)
		defDur(&u.StreamTimeout, 10*time.Minute)
		defDur(&u.MaxPaceWait, time.Second)
	}
	def(&c.Identity.Alg, "HS256")
	def(&c.Identity.SecretFile, dataDir+"/identity.secret")
	def(&c.Identity.KeyFile, dataDir+"/identity-ed25519.pem")
	def(&c.Identity.Audience, "portcullis-upstream")
	defDur(&c.Identity.TTL, 60*time.Second)
	defDur(&c.ApprovalKeepAlive, 5*time.Second)
	def(&c.AuthRealm, "portcullis")
	c.Metrics.SetDefaults()
	c.Resources.setDefaults()
}

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("proxy.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Listen == "" {
		bad("listen", "must be set")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_url", "must be an absolute http(s) URL, got %q", redact.URL(c.PublicURL))
	}
	if c.ResourceDocumentation != "" {
		if u, err := url.Parse(c.ResourceDocumentation); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("resource_documentation", "must be an absolute http(s) URL, got %q", redact.URL(c.ResourceDocumentation))
		}
	}
	if c.BodyLimit < 1024 || c.BodyLimit > 64<<20 {
		bad("body_limit", "must be between 1024 and 67108864 bytes, got %d", c.BodyLimit)
	}
	for name, d := range map[string]time.Duration{"read_timeout": c.ReadTimeout, "write_timeout": c.WriteTimeout,
		"idle_timeout": c.IdleTimeout, "approval_keep_alive": c.ApprovalKeepAlive,
		"identity.ttl": c.Identity.TTL} {
		if d < 0 {
			bad(name, "must not be negative")
		}
	}
	if d := c.AuthFailures.Interval; d < 100*time.Millisecond || d > time.Hour {
		bad("auth_failures.interval", "must be between 100ms and 1h, got %s", d)
	}
	if n := c.AuthFailures.MaxKeys; n < 1 || n > 1_000_000 {
		bad("auth_failures.max_keys", "must be between 1 and 1000000, got %d", n)
	}
	if !strings.HasPrefix(c.MCP.Path, "/") {
		bad("mcp.path", "must start with '/', got %q", c.MCP.Path)
	}
	if c.MCP.MaxBatchCalls < 1 || c.MCP.MaxBatchCalls > maxBatchCallsLimit {
		bad("mcp.max_batch_calls", "must be between 1 and %d, got %d", maxBatchCallsLimit, c.MCP.MaxBatchCalls)
	}
	for i, p := range c.REST.Prefixes {
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || p == "/" {
			bad(fmt.Sprintf("rest.prefixes[%d]", i), "must start and end with '/' and not be '/', got %q", p)
		}
		if strings.HasPrefix(p, "/admin/") || strings.HasPrefix(c.MCP.Path+"/", p) {
			bad(fmt.Sprintf("rest.prefixes[%d]", i), "%q overlaps a reserved path", p)
		}
	}
	for _, u := range []struct {
		field string
		up    *UpstreamConfig
	}{{"mcp.upstream", &c.MCP.Upstream}, {"rest.upstream", &c.REST.Upstream}} {
		if err := validUpstreamURL(u.up.URL); err != nil {
			bad(u.field+".url", "%v", err)
		}
		if u.up.RatePerSecond < 0 {
			bad(u.field+".rate_per_second", "must not be negative")
		}
		for k := range u.up.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				bad(u.field+".headers", "invalid header name %q", k)
			}
		}
	}
	for i, r := range c.REST.Routes {
		if err := r.validate(); err != nil {
			bad(fmt.Sprintf("rest.routes[%d]", i), "%v", err)
		}
	}
	switch c.Identity.Alg {
	case "HS256", "EdDSA":
	default:
		bad("identity.alg", "must be HS256 or EdDSA, got %q", c.Identity.Alg)
	}
	if c.Identity.Audience == "" {
		bad("identity.audience", "must be set")
	}
	if err := c.Metrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Metrics.Listen != "" && c.Metrics.Listen == c.Listen {
		errs = append(errs, fmt.Errorf("metrics.listen: %q is proxy.listen; a separate listener needs its own address", c.Listen))
	}
	c.Resources.validate(bad)
	return errors.Join(errs...)
}

func validUpstreamURL(s string) error {
	if s == "" {
		return errors.New("must be set")
	}
	u, err := url.Parse(s)
	if err != nil {
		// Not err: its text holds the URL, and with it any password.
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("must include a host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a query or fragment")
	}
	return nil
}
