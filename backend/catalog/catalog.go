package catalog

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/portcullis/portcullis/audit/redact"

	"gopkg.in/yaml.v3"
)

//go:embed providers.yaml
var embedded []byte

// CommonFields are configuration fields every provider accepts (Portkey: any provider
// may set custom_host; custom_headers hold extra request headers whose values are secret).
var CommonFields = []string{"custom_host", "custom_headers"}

// Provider is one catalog row.
type Provider struct {
	Key             string              `yaml:"key" json:"key"`
	Name            string              `yaml:"name" json:"name"`
	Category        string              `yaml:"category" json:"category"`
	Logo            string              `yaml:"logo" json:"logo,omitempty"`
	Description     string              `yaml:"description" json:"description"`
	AuthTypes       []string            `yaml:"auth_types" json:"auth_types"`
	CredentialLabel string              `yaml:"credential_label" json:"credential_label"`
	CredentialHint  string              `yaml:"credential_hint" json:"credential_hint"`
	HelpURL         string              `yaml:"help_url" json:"help_url"`
	Instructions    string              `yaml:"instructions" json:"instructions,omitempty"`
	RequiredFields  []string            `yaml:"required_fields" json:"required_fields"`
	RequiredByAuth  map[string][]string `yaml:"required_by_auth" json:"required_by_auth,omitempty"`
	OptionalFields  []string            `yaml:"optional_fields" json:"optional_fields,omitempty"`
	SecretFields    []string            `yaml:"secret_fields" json:"secret_fields"`
	URLFields       []string            `yaml:"url_fields" json:"url_fields"`
	// BaseURL is where test-connection dials when no custom_host is set. Braces name
	// configuration values ({aws_region}).
	BaseURL string `yaml:"base_url" json:"base_url,omitempty"`
	// Connection is "http" (default) or "tcp" (databases, SFTP: host + port).
	Connection  string   `yaml:"connection" json:"connection,omitempty"`
	DefaultPort int      `yaml:"default_port" json:"default_port,omitempty"`
	Aliases     []string `yaml:"aliases" json:"aliases,omitempty"`
}

// Catalog is an immutable, validated set of providers.
type Catalog struct {
	providers []Provider
	byKey     map[string]*Provider
	byAlias   map[string]*Provider
}

var keyRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
var placeholderRe = regexp.MustCompile(`\{([a-z0-9_]+)\}`)

// Default returns the embedded catalog.
func Default() (*Catalog, error) { return Parse(embedded) }

// Load reads a catalog file; an empty path means the embedded default.
func Load(path string) (*Catalog, error) {
	if path == "" {
		return Default()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: reading %s: %w", path, err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a catalog strictly (unknown fields are errors) and reports every
// invalid row at once.
func Parse(b []byte) (*Catalog, error) {
	var doc struct {
		Providers []Provider `yaml:"providers"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("catalog: decoding: %w", err)
	}
	c := &Catalog{byKey: map[string]*Provider{}, byAlias: map[string]*Provider{}}
	var errs []error
	c.providers = doc.Providers
	if len(c.providers) == 0 {
		errs = append(errs, errors.New("catalog: providers: at least one row is required"))
	}
	for i := range c.providers {
		p := &c.providers[i]
		where := fmt.Sprintf("catalog: providers[%d] (%s)", i, p.Key)
		if !keyRe.MatchString(p.Key) {
			errs = append(errs, fmt.Errorf("%s: key: must match %s", where, keyRe))
		}
		if _, dup := c.byKey[p.Key]; dup {
			errs = append(errs, fmt.Errorf("%s: key: duplicate", where))
		}
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s: name: required", where))
		}
		if len(p.AuthTypes) == 0 {
			errs = append(errs, fmt.Errorf("%s: auth_types: at least one is required", where))
		}
		for a := range p.RequiredByAuth {
			if !slices.Contains(p.AuthTypes, a) {
				errs = append(errs, fmt.Errorf("%s: required_by_auth: %q is not in auth_types", where, a))
			}
		}
		switch p.Connection {
		case "":
			p.Connection = "http"
		case "http", "tcp":
		default:
			errs = append(errs, fmt.Errorf("%s: connection: must be http or tcp", where))
		}
		if p.Connection == "tcp" && (p.DefaultPort <= 0 || p.DefaultPort > 65535) {
			errs = append(errs, fmt.Errorf("%s: default_port: must be 1-65535 for tcp providers", where))
		}
		if p.BaseURL != "" {
			u, err := url.Parse(placeholderRe.ReplaceAllString(p.BaseURL, "x"))
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs = append(errs, fmt.Errorf("%s: base_url: must be an http(s) URL", where))
			}
		}
		c.byKey[p.Key] = p
		for _, a := range p.Aliases {
			c.byAlias[a] = p
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Get returns the provider with key k.
func (c *Catalog) Get(k string) (*Provider, bool) {
	p, ok := c.byKey[k]
	return p, ok
}

// ByAlias returns the provider a seed shape's enum value (OPENAI, AWS...) names.
func (c *Catalog) ByAlias(a string) (*Provider, bool) {
	p, ok := c.byAlias[a]
	return p, ok
}

// All returns the rows in catalog order. Callers must not modify them.
func (c *Catalog) All() []Provider { return c.providers }

// Keys returns the provider keys, sorted, for error messages.
func (c *Catalog) Keys() []string {
	ks := make([]string, 0, len(c.providers))
	for _, p := range c.providers {
		ks = append(ks, p.Key)
	}
	sort.Strings(ks)
	return ks
}

// Required returns the fields required for authType ("" = the provider's first).
func (p *Provider) Required(authType string) []string {
	if authType == "" {
		authType = p.AuthTypes[0]
	}
	out := slices.Clone(p.RequiredFields)
	for _, f := range p.RequiredByAuth[authType] {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// Knows reports whether f is a configuration field of p (or a common one).
func (p *Provider) Knows(f string) bool {
	for _, l := range [][]string{p.RequiredFields, p.OptionalFields, p.SecretFields, p.URLFields, CommonFields} {
		if slices.Contains(l, f) {
			return true
		}
	}
	for _, l := range p.RequiredByAuth {
		if slices.Contains(l, f) {
			return true
		}
	}
	return false
}

// ConfigFields lists every configuration field of p (not "key"), sorted.
func (p *Provider) ConfigFields() []string {
	var out []string
	add := func(l []string) {
		for _, f := range l {
			if f != "key" && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	for _, l := range [][]string{p.RequiredFields, p.OptionalFields, p.SecretFields, p.URLFields, CommonFields} {
		add(l)
	}
	for _, l := range p.RequiredByAuth {
		add(l)
	}
	sort.Strings(out)
	return out
}

// IsSecret reports whether field f of p must be encrypted and masked: listed by the
// row, or named like a secret (redact.IsSecretName, the rule the proxy redacts by).
// "key" is always secret.
func (p *Provider) IsSecret(f string) bool {
	return f == "key" || slices.Contains(p.SecretFields, f) || redact.IsSecretName(f)
}

// IsURL reports whether field f must hold an http(s) URL.
func (p *Provider) IsURL(f string) bool {
	return f == "custom_host" || slices.Contains(p.URLFields, f)
}

// ResolveBaseURL fills the base_url placeholders from cfg. Values must be plain host
// labels so a configuration value cannot steer the URL elsewhere.
func (p *Provider) ResolveBaseURL(cfg map[string]any) (string, error) {
	var bad error
	out := placeholderRe.ReplaceAllStringFunc(p.BaseURL, func(m string) string {
		name := m[1 : len(m)-1]
		v, _ := cfg[name].(string)
		if !hostLabelRe.MatchString(v) {
			bad = fmt.Errorf("configurations.%s: must be a host label (letters, digits, '-') to build the provider URL", name)
			return ""
		}
		return v
	})
	return out, bad
}

var hostLabelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// NormalizeName lowercases f and drops everything but letters and digits.
func NormalizeName(f string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(f) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}
