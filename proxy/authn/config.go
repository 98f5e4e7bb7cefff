package authn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit/redact"
)

// Defaults and limits.
const (
	DefaultJWKSRefresh            = 15 * time.Minute
	DefaultJWKSMinRefreshInterval = 30 * time.Second
	DefaultLeeway                 = 30 * time.Second
	MaxLeeway                     = 5 * time.Minute
	DefaultCacheSize              = 10000
	DefaultCacheTTL               = 5 * time.Minute
	DefaultMaxTokenBytes          = 8192
	minHS256SecretBytes           = 32
)

// ClaimNames says which claims carry the caller's fields. A name containing dots is
// also looked up as a path into nested objects ("realm_access.roles") when no claim
// with the literal name exists.
type ClaimNames struct {
	Sub       string `yaml:"sub"`       // default "sub"
	Org       string `yaml:"org"`       // default "org"
	Workspace string `yaml:"workspace"` // default "workspace"
	Roles     string `yaml:"roles"`     // default "roles"; array of strings or a space/comma separated string
	Session   string `yaml:"session"`   // default "sid"; the standard "sid" is the fallback when renamed
}

// Config configures the Authenticator. At least one key source (HS256 secret, public key
// files or JWKS URL) is required.
type Config struct {
	// HS256Secret is the shared secret for HS256 tokens, at least 32 bytes. Prefer
	// HS256SecretFile or an environment override over putting it in the config file.
	// HS256 tokens are always checked against this secret, whatever their kid.
	HS256Secret string `yaml:"hs256_secret"`
	// HS256SecretFile holds the HS256 secret; surrounding whitespace is trimmed.
	HS256SecretFile string `yaml:"hs256_secret_file"`
	// PublicKeyFiles are PEM files (PKIX "PUBLIC KEY", "RSA PUBLIC KEY" or a
	// "CERTIFICATE"): RSA >= 2048 bits (RS256, PS256), ECDSA P-256 (ES256) or P-384
	// (ES384), Ed25519 (EdDSA). An entry is "path" or "kid=path"; without a kid, the key id
	// is the key's RFC 7638 JWK thumbprint (SHA-256, base64url), which is what
	// `portcullis token` puts in the header. A token without a kid is tried against every
	// file key of the matching type.
	PublicKeyFiles []string `yaml:"public_key_files"`
	// JWKSURL is fetched at start (failure is logged, not fatal) and every JWKSRefresh.
	// https is required except for loopback hosts. Tokens verified by JWKS keys must
	// carry a kid. Symmetric ("oct") and "use":"enc" keys are never used.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is the background refresh period (default 15m).
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// JWKSMinRefreshInterval bounds refreshes triggered by an unknown kid: at most one
	// per interval (default 30s). Requests with an unknown kid inside the interval are
	// refused at once, never queued.
	JWKSMinRefreshInterval time.Duration `yaml:"jwks_min_refresh_interval"`
	// Issuer and Audience are required to match when non-empty.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30s, at most 5m).
	Leeway time.Duration `yaml:"leeway"`
	Claims ClaimNames    `yaml:"claims"`
	// CacheSize bounds the verified-token cache (default 10000 entries; negative
	// disables the cache).
	CacheSize int `yaml:"cache_size"`
	// CacheTTL bounds how long a verified token is served from the cache before it is
	// verified again (default 5m; never past its exp). Removing a key from the JWKS or
	// the key files therefore refuses new tokens at once and already-seen ones within
	// CacheTTL.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// MaxTokenLifetime, when set, refuses tokens whose exp is further than this from their
	// iat (or, without iat, from now): a stolen long-lived token is not a key to keep.
	// Default 0: no cap.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// MaxTokenBytes refuses longer tokens before any parsing (default 8192).
	MaxTokenBytes int `yaml:"max_token_bytes"`
}

// SetDefaults fills zero fields with defaults.
func (c *Config) SetDefaults() {
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.JWKSMinRefreshInterval == 0 {
		c.JWKSMinRefreshInterval = DefaultJWKSMinRefreshInterval
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	n := &c.Claims
	for _, f := range []struct {
		p   *string
		def string
	}{{&n.Sub, "sub"}, {&n.Org, "org"}, {&n.Workspace, "workspace"}, {&n.Roles, "roles"}, {&n.Session, "sid"}} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
}

// Validate reports every problem at once. It checks shape only; New reads the files.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("authn: "+format, a...)) }

	if c.HS256Secret == "" && c.HS256SecretFile == "" && len(c.PublicKeyFiles) == 0 && c.JWKSURL == "" {
		add("no key source: set hs256_secret, hs256_secret_file, public_key_files or jwks_url")
	}
	if c.HS256Secret != "" && c.HS256SecretFile != "" {
		add("hs256_secret and hs256_secret_file are both set; use one")
	}
	if c.HS256Secret != "" && len(c.HS256Secret) < minHS256SecretBytes {
		// Never print the secret, only its length.
		add("hs256_secret is %d bytes; at least %d are required", len(c.HS256Secret), minHS256SecretBytes)
	}
	for i, f := range c.PublicKeyFiles {
		kid, path := splitKeyFile(f)
		if path == "" {
			add("public_key_files[%d]: empty path", i)
		}
		if strings.HasPrefix(f, "=") {
			add("public_key_files[%d]: empty kid before '='", i)
		}
		if kid != "" {
			if d := checkKid(kid); d != "" {
				add("public_key_files[%d]: kid %q: %s", i, kid, d)
			}
		}
	}
	if c.JWKSURL != "" {
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			add("jwks_url: %v", err)
		}
	}
	if c.JWKSRefresh < time.Second {
		add("jwks_refresh is %s; it must be at least 1s", c.JWKSRefresh)
	}
	if c.JWKSMinRefreshInterval < 0 {
		add("jwks_min_refresh_interval is %s; it must not be negative", c.JWKSMinRefreshInterval)
	}
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		add("leeway is %s; it must be between 0 and %s", c.Leeway, MaxLeeway)
	}
	if c.CacheTTL < 0 {
		add("cache_ttl must not be negative, got %s", c.CacheTTL)
	}
	if c.MaxTokenLifetime < 0 {
		add("max_token_lifetime must not be negative (0 means no cap), got %s", c.MaxTokenLifetime)
	}
	for name, v := range map[string]string{"claims.sub": c.Claims.Sub, "claims.org": c.Claims.Org,
		"claims.workspace": c.Claims.Workspace, "claims.roles": c.Claims.Roles, "claims.session": c.Claims.Session} {
		if v == "" {
			add("%s is empty", name)
		}
	}
	if c.MaxTokenBytes < 256 || c.MaxTokenBytes > 65536 {
		add("max_token_bytes is %d; it must be between 256 and 65536", c.MaxTokenBytes)
	}
	if c.CacheSize > 10_000_000 {
		add("cache_size is %d; at most 10000000 is allowed", c.CacheSize)
	}
	return errors.Join(errs...)
}

// LogValue keeps the HS256 secret out of logs when the config is logged.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.HS256Secret != "" {
		secret = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("hs256_secret", secret),
		slog.String("hs256_secret_file", c.HS256SecretFile),
		slog.Any("public_key_files", c.PublicKeyFiles),
		slog.String("jwks_url", redact.URL(c.JWKSURL)),
		slog.Duration("jwks_refresh", c.JWKSRefresh),
		slog.Duration("jwks_min_refresh_interval", c.JWKSMinRefreshInterval),
		slog.String("issuer", c.Issuer),
		slog.String("audience", c.Audience),
		slog.Duration("leeway", c.Leeway),
		slog.Int("cache_size", c.CacheSize),
		slog.Int("max_token_bytes", c.MaxTokenBytes),
	)
}

var _ slog.LogValuer = Config{}

// splitKeyFile splits "kid=path" (kid has no '/' so a path with '=' after a '/' stays a path).
func splitKeyFile(s string) (kid, path string) {
	i := strings.IndexByte(s, '=')
	if i < 0 || strings.ContainsAny(s[:i], `/\`) {
		return "", s
	}
	return s[:i], s[i+1:]
}

func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("http is allowed only for loopback hosts; use https")
		}
	default:
		return fmt.Errorf("scheme must be https")
	}
	if u.Host == "" {
		return fmt.Errorf("no host")
	}
	if u.User != nil {
		return fmt.Errorf("credentials in the URL are not allowed")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
