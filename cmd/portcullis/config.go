package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/backend"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
	"github.com/portcullis/portcullis/proxy/console"
)

// Config is the whole config file. Every section documents its fields where it is
// defined; docs/config.example.yaml shows them all.
type Config struct {
	// DataDir holds the SQLite databases and generated keys. Default ./data
	// (env PORTCULLIS_DATA_DIR).
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogRepeatInterval limits repeated WARN and ERROR lines (same level, message and
	// component) to the first per interval; the next one written, or a summary line,
	// carries suppressed=N. It keeps a failing dependency (a full disk, a store down)
	// from flooding the log. Default 10s; negative writes every line.
	LogRepeatInterval time.Duration       `yaml:"log_repeat_interval"`
	Proxy             proxy.Config        `yaml:"proxy"`
	Auth              authn.Config        `yaml:"auth"`
	Policy            PolicyConfig        `yaml:"policy"`
	Audit             audit.Config        `yaml:"audit"`
	Backend           BackendConfig       `yaml:"backend"`
	Limits            RateLimitConfig     `yaml:"rate_limit"`
	Approval          approvals.Config    `yaml:"approvals"`
	Console           console.Config      `yaml:"console"`
	Metrics           proxy.MetricsConfig `yaml:"metrics"`

	// from names the environment variable or flag a value came from, for messages.
	from map[*string]string
}

// PolicyConfig says where policy comes from.
type PolicyConfig struct {
	// Path is a .rego file or a directory of them (with data.json/data.yaml). Default
	// policy.example.rego in the working directory, or the embedded copy of it.
	Path string `yaml:"path"`
	// Timeout is the per-evaluation deadline; past it the call is denied. Default 25ms.
	Timeout time.Duration `yaml:"timeout"`
	// AllowNetwork enables built-ins that reach the network (http.send,
	// net.lookup_ip_addr). Off by default.
	AllowNetwork bool `yaml:"allow_network"`
	// ShadowPath is a candidate policy (file or directory) evaluated beside the live one
	// on every call; where it would decide differently, a "shadow" audit row and the
	// portcullis_shadow_differences_total metric record it. It never decides anything.
	ShadowPath string `yaml:"shadow_path"`
}

// BackendConfig runs the bundled integrations backend beside the proxy.
type BackendConfig struct {
	// Enabled starts the backend with serve. Default true unless both proxy upstream
	// URLs are set.
	Enabled        *bool `yaml:"enabled"`
	backend.Config `yaml:",inline"`
}

// RateLimitConfig selects where rate-limit counters live.
type RateLimitConfig struct {
	// RedisURL (redis://host:port/db) shares limits across replicas; empty keeps them in
	// memory (env PORTCULLIS_REDIS_URL).
	RedisURL string `yaml:"redis_url"`
	// MaxKeys bounds in-memory counters. Default 200000.
	MaxKeys int `yaml:"max_keys"`
	// OnStoreError is what a call gets while Redis cannot answer: "deny" (default: 503
	// rate_limiter_unavailable) or "allow" (admitted uncounted). Either way
	// portcullis_ratelimit_store_errors_total{action} counts it.
	OnStoreError string `yaml:"on_store_error"`
}

// defaultLogRepeatInterval is log_repeat_interval's default.
const defaultLogRepeatInterval = 10 * time.Second

// overrides are the command-line flags that beat the file and the environment.
type overrides struct {
	configPath, listen, backendListen, dataDir, policy, mcpUpstream, restUpstream string
}

// loadConfig reads the file (strictly: unknown fields are errors), applies environment
// overrides, then flags, then defaults, and validates. Every problem is reported at once:
// fields the file gets wrong (unknown, or of the wrong type) together with the values
// that fail validation.
func loadConfig(o overrides) (*Config, error) {
	cfg := &Config{from: map[*string]string{}}
	var errs []error
	if o.configPath != "" {
		raw, err := os.ReadFile(o.configPath)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			// A *yaml.TypeError leaves the other fields decoded: keep going, so validation
			// reports its problems too. Anything else (a syntax error) decoded nothing.
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, fmt.Errorf("config: %s: %w", o.configPath, err)
			}
			for _, msg := range yamlProblems(raw, te.Errors, cfg) {
				errs = append(errs, fmt.Errorf("config: %s: %s", o.configPath, msg))
			}
		}
	}
	env := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*dst = v
			cfg.from[dst] = name
		}
	}
	env("PORTCULLIS_DATA_DIR", &cfg.DataDir)
	env("PORTCULLIS_LOG_LEVEL", &cfg.LogLevel)
	env("PORTCULLIS_LISTEN", &cfg.Proxy.Listen)
	env("PORTCULLIS_PUBLIC_URL", &cfg.Proxy.PublicURL)
	env("PORTCULLIS_POLICY", &cfg.Policy.Path)
	env("PORTCULLIS_MCP_UPSTREAM", &cfg.Proxy.MCP.Upstream.URL)
	env("PORTCULLIS_REST_UPSTREAM", &cfg.Proxy.REST.Upstream.URL)
	env("PORTCULLIS_BACKEND_LISTEN", &cfg.Backend.Listen)
	env("PORTCULLIS_METRICS_LISTEN", &cfg.Metrics.Listen)
	env("PORTCULLIS_JWT_HS256_SECRET", &cfg.Auth.HS256Secret)
	env("PORTCULLIS_JWKS_URL", &cfg.Auth.JWKSURL)
	env("PORTCULLIS_JWT_ISSUER", &cfg.Auth.Issuer)
	env("PORTCULLIS_JWT_AUDIENCE", &cfg.Auth.Audience)
	env("PORTCULLIS_REDIS_URL", &cfg.Limits.RedisURL)
	env("PORTCULLIS_AUDIT_CENTRAL_URL", &cfg.Audit.CentralURL)
	env("PORTCULLIS_KEK", &cfg.Backend.KEK)
	env("PORTCULLIS_APPROVAL_WEBHOOK_URL", &cfg.Approval.WebhookURL)
	env("PORTCULLIS_APPROVAL_WEBHOOK_SECRET", &cfg.Approval.WebhookSecret)
	env("PORTCULLIS_APPROVALS_DATABASE_URL", &cfg.Approval.DatabaseURL)
	env("PORTCULLIS_CONSOLE_DATABASE_URL", &cfg.Console.DatabaseURL)
	if v := os.Getenv("PORTCULLIS_APPROVAL_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("env PORTCULLIS_APPROVAL_WAIT: %v", err))
		}
		cfg.Approval.WaitBudget = d
	}
	if v := os.Getenv("PORTCULLIS_AUDIT_MODE"); v != "" {
		cfg.Audit.Mode = v
	}
	set := func(flag, v string, dst *string) {
		if v != "" {
			*dst = v
			cfg.from[dst] = flag
		}
	}
	set("--data-dir", o.dataDir, &cfg.DataDir)
	set("--listen", o.listen, &cfg.Proxy.Listen)
	set("--backend-listen", o.backendListen, &cfg.Backend.Listen)
	set("--policy", o.policy, &cfg.Policy.Path)
	set("--mcp-upstream", o.mcpUpstream, &cfg.Proxy.MCP.Upstream.URL)
	set("--rest-upstream", o.restUpstream, &cfg.Proxy.REST.Upstream.URL)

	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) backendEnabled() bool {
	if c.Backend.Enabled != nil {
		return *c.Backend.Enabled
	}
	return true
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogRepeatInterval == 0 {
		c.LogRepeatInterval = defaultLogRepeatInterval
	}
	if c.Backend.Enabled == nil && c.Proxy.MCP.Upstream.URL != "" && c.Proxy.REST.Upstream.URL != "" {
		off := false
		c.Backend.Enabled = &off
	}
	if c.Backend.DataDir == "" {
		c.Backend.DataDir = c.DataDir
	}
	c.Backend.SetDefaults()
	if c.backendEnabled() {
		base := "http://" + c.Backend.Listen
		if c.Proxy.MCP.Upstream.URL == "" {
			c.Proxy.MCP.Upstream.URL = base + "/mcp"
		}
		if c.Proxy.REST.Upstream.URL == "" {
			c.Proxy.REST.Upstream.URL = base
		}
	}
	c.Approval.SetDefaults()
	c.Metrics.SetDefaults()
	c.Proxy.Metrics = c.Metrics
	c.Proxy.SetDefaults(c.DataDir)
	c.Policy.SetDefaults()
	if c.Policy.Path == "" {
		if _, err := os.Stat("policy.example.rego"); err == nil {
			c.Policy.Path = "policy.example.rego"
		}
	}
	// With no key source configured, serve runs in dev mode: tokens minted by
	// `portcullis token` with the generated dev key.
	if c.Auth.HS256Secret == "" && c.Auth.HS256SecretFile == "" && len(c.Auth.PublicKeyFiles) == 0 && c.Auth.JWKSURL == "" {
		c.Auth.PublicKeyFiles = []string{authn.DevPublicKeyPath(c.DataDir)}
		if c.Auth.Issuer == "" {
			c.Auth.Issuer = authn.DevIssuer
		}
		if c.Auth.Audience == "" {
			c.Auth.Audience = authn.DevAudience
		}
	}
	c.Auth.SetDefaults()
	c.Audit.SetDefaults(c.DataDir)
	if c.Approval.DBPath == "" {
		c.Approval.DBPath = filepath.Join(c.DataDir, "approvals.db")
	}
	if c.Approval.PublicURL == "" {
		c.Approval.PublicURL = c.Proxy.PublicURL
	}
	// One PostgreSQL for the fleet: the console's sessions go where approvals do.
	if c.Console.DatabaseURL == "" {
		c.Console.DatabaseURL = c.Approval.DatabaseURL
	}
	c.Console.SetDefaults(c.Proxy.PublicURL)
	if c.Console.On() {
		c.Approval.ConsoleURL = c.Console.PublicURL + console.Prefix
	}
	c.Limits.SetDefaults()
}

// SetDefaults fills the policy section's unset fields.
func (c *PolicyConfig) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = policies.DefaultTimeout
	}
}

// Validate reports the policy section's problems.
func (c *PolicyConfig) Validate() error {
	if c.Timeout < 0 {
		return errors.New("policy.timeout: must not be negative")
	}
	return nil
}

// SetDefaults fills the rate-limit section's unset fields.
func (c *RateLimitConfig) SetDefaults() {
	if c.MaxKeys == 0 {
		c.MaxKeys = 200_000
	}
	if c.OnStoreError == "" {
		c.OnStoreError = "deny"
	}
}

// Validate reports every problem of the rate-limit section (redis_url is checked with
// the rest of the config, which knows where it came from).
func (c *RateLimitConfig) Validate() error {
	var errs []error
	if c.MaxKeys < 0 {
		errs = append(errs, errors.New("rate_limit.max_keys: must not be negative, got "+strconv.Itoa(c.MaxKeys)))
	}
	if c.OnStoreError != "deny" && c.OnStoreError != "allow" {
		errs = append(errs, fmt.Errorf("rate_limit.on_store_error: must be deny or allow, got %q", c.OnStoreError))
	}
	return errors.Join(errs...)
}

// devMode reports whether auth uses the generated dev key.
func (c *Config) devMode() bool {
	return len(c.Auth.PublicKeyFiles) == 1 && c.Auth.PublicKeyFiles[0] == authn.DevPublicKeyPath(c.DataDir) &&
		c.Auth.HS256Secret == "" && c.Auth.HS256SecretFile == "" && c.Auth.JWKSURL == ""
}

func (c *Config) validate() error {
	var errs []error
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: must be debug, info, warn or error, got %q", c.LogLevel))
	}
	if c.LogRepeatInterval > time.Hour {
		errs = append(errs, fmt.Errorf("log_repeat_interval: must be at most 1h (negative: no limit), got %s", c.LogRepeatInterval))
	}
	if err := c.checkListen("proxy.listen", &c.Proxy.Listen); err != nil {
		errs = append(errs, err)
	}
	if err := c.checkListen("metrics.listen", &c.Metrics.Listen); err != nil {
		errs = append(errs, err)
	} else if c.Metrics.Listen != "" && c.backendEnabled() && c.Metrics.Listen == c.Backend.Listen {
		errs = append(errs, fmt.Errorf("metrics.listen%s: %q is backend.listen; a separate listener needs its own address", c.source(&c.Metrics.Listen), c.Metrics.Listen))
	}
	if c.Limits.RedisURL != "" {
		if _, err := url.Parse(c.Limits.RedisURL); err != nil {
			// Not err: its text holds the URL (or a piece of it), and with it any password.
			errs = append(errs, fmt.Errorf("rate_limit.redis_url%s: not a URL", c.source(&c.Limits.RedisURL)))
		} else if _, err := redis.ParseURL(c.Limits.RedisURL); err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = errors.New("not a URL")
			}
			errs = append(errs, fmt.Errorf("rate_limit.redis_url%s: %v", c.source(&c.Limits.RedisURL), err))
		}
	}
	if c.Console.On() && c.Console.Listen != "" {
		if err := c.checkListen("console.listen", &c.Console.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	sections := []interface{ Validate() error }{&c.Policy, &c.Limits, &c.Proxy, &c.Audit, &c.Approval, &c.Console}
	if !c.devMode() { // in dev mode serve creates the key before it is read
		sections = append(sections, &c.Auth)
	}
	for _, v := range sections {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.backendEnabled() {
		b := c.Backend.Config
		if err := c.checkListen("backend.listen", &c.Backend.Listen); err != nil {
			errs = append(errs, err)
			b.Listen = "127.0.0.1:0" // reported above, with where it came from
		}
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkListen reports a listen address net.Listen would refuse, before serve creates
// anything.
func (c *Config) checkListen(field string, addr *string) error {
	if *addr == "" {
		return nil // the section reports a missing address
	}
	_, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("%s%s: %q is not host:port", field, c.source(addr), *addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s%s: %q: port %q is not a port number from 0 to 65535", field, c.source(addr), *addr, port)
	}
	return nil
}

// source is " (PORTCULLIS_LISTEN)" or " (--listen)" when the value at p came from the
// environment or a flag rather than the file.
func (c *Config) source(p *string) string {
	if name := c.from[p]; name != "" {
		return " (" + name + ")"
	}
	return ""
}

var (
	yamlUnknownField = regexp.MustCompile(`^line (\d+): field (.*) not found in type \S+$`)
	yamlFieldTwice   = regexp.MustCompile(`^line (\d+): (?:field (.*) already set in type \S+|mapping key (".*") already defined at line \d+)$`)
	yamlWrongType    = regexp.MustCompile(`^line (\d+): cannot unmarshal (!!\w+)`)
	yamlGoType       = regexp.MustCompile(` (?:into|in type) \S+$`)
)

// yamlSpot is one node of the config document: a key, or a value with its key path.
type yamlSpot struct {
	line     int
	key      string   // for a key: its name
	path     []string // for a key: its section; for a value: its own path ("[0]" for an index)
	node     *yaml.Node
	reported bool
}

// yamlProblems rewrites yaml.v3's decode errors, which name Go types ("field lisen not
// found in type proxy.Config", "cannot unmarshal !!seq into string"), to name the
// section and field of the file instead, found by the line number in the document. A
// field of the wrong type is reset in cfg to unset, so it gets its default rather than
// what yaml.v3 left there (a *bool that failed is left pointing at false).
func yamlProblems(raw []byte, msgs []string, cfg *Config) []string {
	var doc yaml.Node
	_ = yaml.Unmarshal(raw, &doc) // it decoded once already
	var keys, values []*yamlSpot
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		if n.Kind != yaml.DocumentNode {
			values = append(values, &yamlSpot{line: n.Line, path: path, node: n})
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				keys = append(keys, &yamlSpot{line: k.Line, key: k.Value, path: path})
				walk(n.Content[i+1], append(path[:len(path):len(path)], k.Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(path[:len(path):len(path)], "["+strconv.Itoa(i)+"]"))
			}
		}
	}
	walk(&doc, nil)
	key := func(line int, name string) *yamlSpot {
		for _, s := range keys {
			if s.line == line && s.key == name && !s.reported {
				s.reported = true
				return s
			}
		}
		return nil
	}

	out := make([]string, 0, len(msgs))
	for _, msg := range msgs {
		if m := yamlUnknownField.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if s := key(line, m[2]); s != nil {
				out = append(out, fmt.Sprintf("line %d: %s: unknown field %q", line, yamlPath(s.path), m[2]))
				continue
			}
		}
		if m := yamlFieldTwice.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			name := m[2]
			if m[3] != "" {
				name, _ = strconv.Unquote(m[3])
			}
			if s := key(line, name); s != nil {
				out = append(out, fmt.Sprintf("line %d: %s: field %q is set more than once", line, yamlPath(s.path), name))
				continue
			}
		}
		if m := yamlWrongType.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			var spot *yamlSpot
			for _, s := range values {
				// A mapping or list that starts on the line where it is expected is not the
				// one that failed: a value inside it is.
				want := yamlWant(s.path)
				if s.line == line && s.node.ShortTag() == m[2] && !s.reported &&
					!(s.node.Kind == yaml.MappingNode && want == "a mapping") &&
					!(s.node.Kind == yaml.SequenceNode && want == "a list") {
					spot = s
					break
				}
			}
			if spot != nil {
				spot.reported = true
				yamlReset(reflect.ValueOf(cfg).Elem(), spot.path)
				out = append(out, fmt.Sprintf("line %d: %s: want %s, got %s", line, yamlPath(spot.path),
					yamlWant(spot.path), yamlGot(spot.node)))
				continue
			}
		}
		out = append(out, yamlGoType.ReplaceAllString(msg, ""))
	}
	return out
}

// yamlPath is a key path as the config's messages write it: proxy.rest.prefixes[0].
func yamlPath(path []string) string {
	if len(path) == 0 {
		return "top level"
	}
	var b strings.Builder
	for i, p := range path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// yamlWant describes what Config holds at path.
func yamlWant(path []string) string {
	t := reflect.TypeFor[Config]()
	for _, p := range path {
		if t = yamlField(t, p); t == nil {
			return "another kind of value"
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration like 30s"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "another kind of value"
}

// yamlField is the type of the element or field name of t, as yaml.v3 maps it; nil if none.
func yamlField(t reflect.Type, name string) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return t.Elem()
	case reflect.Struct:
		if idx := yamlFieldIndex(t, name); idx != nil {
			return t.FieldByIndex(idx).Type
		}
	}
	return nil
}

// yamlFieldIndex is the index of the field of struct t that yaml.v3 decodes key name
// into, through inline fields; nil if none.
func yamlFieldIndex(t reflect.Type, name string) []int {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case tag == "-":
		case strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct:
			if idx := yamlFieldIndex(f.Type, name); idx != nil {
				return append([]int{i}, idx...)
			}
		case tag == name || (tag == "" && strings.ToLower(f.Name) == name):
			return []int{i}
		}
	}
	return nil
}

// yamlReset sets the struct field at path in v back to its zero value (unset). Paths
// through lists and maps are left alone.
func yamlReset(v reflect.Value, path []string) {
	if len(path) == 0 {
		return // the whole document: nothing was decoded
	}
	for _, p := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return
		}
		idx := yamlFieldIndex(v.Type(), p)
		if idx == nil {
			return
		}
		v = v.FieldByIndex(idx)
	}
	if v.CanSet() {
		v.SetZero()
	}
}

// yamlGot describes the value found: a list, a mapping, or the (shortened) scalar.
func yamlGot(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	v := n.Value
	if len(v) > 16 {
		v = v[:13] + "..."
	}
	return strconv.Quote(v)
}
