package console

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultMaxSessions     = 10000
	// DefaultMaxSessionsPerSubject bounds one person's (sub and org) live sessions.
	DefaultMaxSessionsPerSubject = 10
	// DefaultMaxPendingLogins bounds the OIDC sign-ins in flight,
	// DefaultMaxPendingLoginsPerAddress those one client address started, and
	// DefaultMaxPendingLoginsPerNetwork those started from one network (an IPv4 /24, an
	// IPv6 /48): filling the table takes addresses in 50 networks.
	DefaultMaxPendingLogins           = 10000
	DefaultMaxPendingLoginsPerAddress = 50
	DefaultMaxPendingLoginsPerNetwork = 200
	// DefaultSignInRate is how many requests to the sign-in endpoints one client
	// address may make per minute.
	DefaultSignInRate = 60
	// Prefix is where the console lives on its listener.
	Prefix = "/console"
)

// Config is the console section of the config file.
type Config struct {
	// Enabled serves the console. Default true.
	Enabled *bool `yaml:"enabled"`
	// Listen serves the console on its own address instead of the proxy's listener
	// (it is still under /console). Empty: on the proxy's listener.
	Listen string `yaml:"listen"`
	// PublicURL is the console origin as browsers reach it (scheme://host[:port]); it is
	// the Origin every state change must come from, and the base of the OIDC redirect
	// URL. Default: proxy.public_url, or http://<listen> with Listen.
	PublicURL string `yaml:"public_url"`
	// TokenSignIn lets a person sign in by pasting a token minted by `portcullis token`
	// (or any token the proxy accepts). Default true without OIDC, false with it.
	TokenSignIn *bool `yaml:"token_sign_in"`
	// IdleTimeout ends a session unused this long. Default 30m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends a session this long after sign-in, however used. Default 12h.
	// A token sign-in also ends when the token expires.
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
	// MaxSessions bounds live sessions. With the table full of live sessions a new
	// sign-in is refused (429 console_full): nobody's session is ended to make room.
	// Default 10000.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerSubject bounds the live sessions of one person (sub and org); a
	// sign-in past it ends that person's own least recently used session. Default 10.
	MaxSessionsPerSubject int `yaml:"max_sessions_per_subject"`
	// MaxPendingLogins bounds the OIDC sign-ins in flight (started, not yet back from
	// the provider; each lives 5 minutes). Past it a new one is refused (429
	// sign_ins_full), never one in flight dropped. Default 10000.
	MaxPendingLogins int `yaml:"max_pending_logins"`
	// MaxPendingLoginsPerAddress bounds the OIDC sign-ins in flight that one client
	// address (IPv6: one /64) started. Default 50.
	MaxPendingLoginsPerAddress int `yaml:"max_pending_logins_per_address"`
	// MaxPendingLoginsPerNetwork bounds the OIDC sign-ins in flight started from the
	// addresses of one network: an IPv4 /24, an IPv6 /48. Default 200.
	MaxPendingLoginsPerNetwork int `yaml:"max_pending_logins_per_network"`
	// SignInRate is how many requests one client address (IPv6: one /64) may make per
	// minute to the sign-in endpoints (/console/auth/login, /callback, /token), on
	// each replica; past it 429 too_many_requests. Negative disables. Default 60.
	SignInRate int `yaml:"sign_in_rate"`
	// DatabaseURL (postgres://...) keeps sessions and OIDC sign-ins in flight in
	// PostgreSQL, shared by every replica: a person signed in through one is signed in
	// on all, and the provider's redirect may land on any. serve defaults it to
	// approvals.database_url. Empty: in memory, this process only. Never logged or
	// echoed in errors.
	DatabaseURL string `yaml:"database_url"`
	// OIDC signs people in with an OpenID Connect provider.
	OIDC OIDCConfig `yaml:"oidc"`
}

// OIDCConfig is single sign-on with an OpenID Connect provider (authorization code flow
// with PKCE). Issuer, ClientID and the org claim are required to turn it on.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; its discovery document is fetched at start.
	Issuer string `yaml:"issuer"`
	// ClientID and ClientSecret are the console's registration at the provider. The
	// secret may be empty for a public client (PKCE alone). Never logged.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// RedirectURL is registered at the provider. Default <public_url>/console/auth/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes requested besides openid. Default ["profile", "email"].
	Scopes []string `yaml:"scopes"`
	// Claims name the ID token claims that give the person's identity: sub (default
	// "sub"), org (default "org"), roles (default "roles"; a list or a space or comma
	// separated string). A dotted name is also looked up as a path ("realm_access.roles").
	Claims ClaimNames `yaml:"claims"`
}

// ClaimNames says which ID token claims carry the person's fields.
type ClaimNames struct {
	Sub   string `yaml:"sub"`
	Org   string `yaml:"org"`
	Roles string `yaml:"roles"`
}

// On reports whether the console is served.
func (c *Config) On() bool { return c.Enabled == nil || *c.Enabled }

// OIDCOn reports whether OIDC sign-in is configured.
func (c *Config) OIDCOn() bool { return c.OIDC.Issuer != "" }

// TokenSignInOn reports whether pasting a token signs in.
func (c *Config) TokenSignInOn() bool {
	if c.TokenSignIn != nil {
		return *c.TokenSignIn
	}
	return !c.OIDCOn()
}

// SetDefaults fills zero fields; proxyPublicURL is the proxy's public URL.
func (c *Config) SetDefaults(proxyPublicURL string) {
	if c.PublicURL == "" {
		if c.Listen != "" {
			c.PublicURL = "http://" + c.Listen
		} else {
			c.PublicURL = proxyPublicURL
		}
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessionsPerSubject == 0 {
		c.MaxSessionsPerSubject = DefaultMaxSessionsPerSubject
	}
	if c.MaxPendingLogins == 0 {
		c.MaxPendingLogins = DefaultMaxPendingLogins
	}
	if c.MaxPendingLoginsPerAddress == 0 {
		c.MaxPendingLoginsPerAddress = DefaultMaxPendingLoginsPerAddress
	}
	if c.MaxPendingLoginsPerNetwork == 0 {
		c.MaxPendingLoginsPerNetwork = DefaultMaxPendingLoginsPerNetwork
	}
	if c.SignInRate == 0 {
		c.SignInRate = DefaultSignInRate
	}
	if c.OIDC.RedirectURL == "" && c.PublicURL != "" {
		c.OIDC.RedirectURL = c.PublicURL + Prefix + "/auth/callback"
	}
	if c.OIDC.Scopes == nil {
		c.OIDC.Scopes = []string{"profile", "email"}
	}
	if c.OIDC.Claims.Sub == "" {
		c.OIDC.Claims.Sub = "sub"
	}
	if c.OIDC.Claims.Org == "" {
		c.OIDC.Claims.Org = "org"
	}
	if c.OIDC.Claims.Roles == "" {
		c.OIDC.Claims.Roles = "roles"
	}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	if !c.On() {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		errs = append(errs, errors.New("console.public_url: want an origin like https://console.example.com, without user:password@, path or query"))
	}
	if c.IdleTimeout < 0 || c.AbsoluteTimeout < 0 {
		errs = append(errs, errors.New("console.idle_timeout, console.absolute_timeout: must not be negative"))
	}
	if c.IdleTimeout > c.AbsoluteTimeout {
		errs = append(errs, fmt.Errorf("console.idle_timeout: %s is longer than console.absolute_timeout %s", c.IdleTimeout, c.AbsoluteTimeout))
	}
	if c.DatabaseURL != "" {
		// The URL may hold a password: it is never echoed back.
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, errors.New("console.database_url: must be a postgres:// or postgresql:// URL"))
		}
	}
	if c.MaxSessions < 0 {
		errs = append(errs, errors.New("console.max_sessions: must not be negative"))
	}
	if c.MaxSessionsPerSubject < 0 {
		errs = append(errs, errors.New("console.max_sessions_per_subject: must not be negative"))
	}
	if c.MaxPendingLogins < 0 {
		errs = append(errs, errors.New("console.max_pending_logins: must not be negative"))
	}
	if c.MaxPendingLoginsPerAddress < 0 {
		errs = append(errs, errors.New("console.max_pending_logins_per_address: must not be negative"))
	}
	if c.MaxPendingLoginsPerNetwork < 0 {
		errs = append(errs, errors.New("console.max_pending_logins_per_network: must not be negative"))
	}
	if c.OIDCOn() {
		if u, err := url.Parse(c.OIDC.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !loopback(u.Hostname())) {
			errs = append(errs, errors.New("console.oidc.issuer: want an https URL (http only for a loopback host)"))
		}
		if c.OIDC.ClientID == "" {
			errs = append(errs, errors.New("console.oidc.client_id: must be set with console.oidc.issuer"))
		}
		if u, err := url.Parse(c.OIDC.RedirectURL); err != nil || u.Host == "" || !strings.HasSuffix(u.Path, Prefix+"/auth/callback") {
			errs = append(errs, fmt.Errorf("console.oidc.redirect_url: want <console origin>%s/auth/callback", Prefix))
		}
	} else if c.OIDC.ClientID != "" || c.OIDC.ClientSecret != "" {
		errs = append(errs, errors.New("console.oidc.issuer: must be set with console.oidc.client_id or client_secret"))
	}
	if !c.OIDCOn() && !c.TokenSignInOn() {
		errs = append(errs, errors.New("console.token_sign_in: is off and console.oidc is not configured, so nobody could sign in"))
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
