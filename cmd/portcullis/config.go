package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/backend"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/approvals"
	"github.com/portcullis/portcullis/proxy/authn"
)

// Config is the whole config file. Every section documents its fields where it is
// defined; docs/config.example.yaml shows them all.
type Config struct {
	// DataDir holds the SQLite databases and generated keys. Default ./data
	// (env PORTCULLIS_DATA_DIR).
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string           `yaml:"log_level"`
	Proxy    proxy.Config     `yaml:"proxy"`
	Auth     authn.Config     `yaml:"auth"`
	Policy   PolicyConfig     `yaml:"policy"`
	Audit    audit.Config     `yaml:"audit"`
	Backend  BackendConfig    `yaml:"backend"`
	Limits   RateLimitConfig  `yaml:"rate_limit"`
	Approval approvals.Config `yaml:"approvals"`
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
}

// overrides are the command-line flags that beat the file and the environment.
type overrides struct {
	configPath, listen, backendListen, dataDir, policy, mcpUpstream, restUpstream string
}

// loadConfig reads the file (strictly: unknown fields are errors), applies environment
// overrides, then flags, then defaults, and validates. Every problem is reported at once.
func loadConfig(o overrides) (*Config, error) {
	cfg := &Config{}
	var errs []error
	if o.configPath != "" {
		raw, err := os.ReadFile(o.configPath)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: %s: %w", o.configPath, err)
		}
	}
	env := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*dst = v
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
	env("PORTCULLIS_JWT_HS256_SECRET", &cfg.Auth.HS256Secret)
	env("PORTCULLIS_JWKS_URL", &cfg.Auth.JWKSURL)
	env("PORTCULLIS_JWT_ISSUER", &cfg.Auth.Issuer)
	env("PORTCULLIS_JWT_AUDIENCE", &cfg.Auth.Audience)
	env("PORTCULLIS_REDIS_URL", &cfg.Limits.RedisURL)
	env("PORTCULLIS_KEK", &cfg.Backend.KEK)
	env("PORTCULLIS_APPROVAL_WEBHOOK_URL", &cfg.Approval.WebhookURL)
	env("PORTCULLIS_APPROVAL_WEBHOOK_SECRET", &cfg.Approval.WebhookSecret)
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
	set := func(v string, dst *string) {
		if v != "" {
			*dst = v
		}
	}
	set(o.dataDir, &cfg.DataDir)
	set(o.listen, &cfg.Proxy.Listen)
	set(o.backendListen, &cfg.Backend.Listen)
	set(o.policy, &cfg.Policy.Path)
	set(o.mcpUpstream, &cfg.Proxy.MCP.Upstream.URL)
	set(o.restUpstream, &cfg.Proxy.REST.Upstream.URL)

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
	c.Proxy.ApprovalWait = c.Approval.WaitBudget
	c.Proxy.SetDefaults(c.DataDir)
	if c.Policy.Timeout == 0 {
		c.Policy.Timeout = policies.DefaultTimeout
	}
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
	if c.Audit.Path == "" {
		c.Audit.Path = filepath.Join(c.DataDir, "audit.db")
	}
	c.Audit.SetDefaults(c.DataDir)
	if c.Approval.DBPath == "" {
		c.Approval.DBPath = filepath.Join(c.DataDir, "approvals.db")
	}
	if c.Approval.PublicURL == "" {
		c.Approval.PublicURL = c.Proxy.PublicURL
	}
	if c.Limits.MaxKeys == 0 {
		c.Limits.MaxKeys = 200_000
	}
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
	if c.Policy.Timeout < 0 {
		errs = append(errs, errors.New("policy.timeout: must not be negative"))
	}
	if c.Limits.MaxKeys < 0 {
		errs = append(errs, errors.New("rate_limit.max_keys: must not be negative, got "+strconv.Itoa(c.Limits.MaxKeys)))
	}
	sections := []interface{ Validate() error }{&c.Proxy, &c.Audit, &c.Approval}
	if !c.devMode() { // in dev mode serve creates the key before it is read
		sections = append(sections, &c.Auth)
	}
	for _, v := range sections {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.backendEnabled() {
		if err := c.Backend.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
