package backend

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/portcullis/portcullis/backend/crypto"
	"github.com/portcullis/portcullis/backend/store"
)

// Config configures the integrations backend.
type Config struct {
	// Listen is the address Serve's listener is expected on (cmd opens it).
	Listen string `yaml:"listen"`
	// DataDir holds backend.db and, when KEK is unset, the generated kek.key.
	DataDir string `yaml:"data_dir"`
	// DBPath overrides <data_dir>/backend.db.
	DBPath string `yaml:"db_path"`
	// DatabaseURL (postgres://...) stores integrations in PostgreSQL instead of SQLite,
	// for several backend replicas. Use search_path=<schema> in the URL on a shared
	// database.
	DatabaseURL string `yaml:"database_url"`
	// KEK is the primary key-encryption key, base64 of 32 bytes. Empty: env
	// PORTCULLIS_KEK, else <data_dir>/kek.key (generated 0600 with a warning).
	KEK string `yaml:"kek"`
	// PreviousKEKs are older KEKs (base64 of 32 bytes each; an optional "label:" prefix
	// is ignored) that may still unwrap data keys until `portcullis backend rewrap` has
	// moved every record to the primary. Key ids are derived from the keys themselves.
	PreviousKEKs []string `yaml:"previous_keks"`
	// CatalogPath is a provider catalog YAML file; empty means the embedded catalog.
	CatalogPath string `yaml:"catalog_path"`
	// MaxPerProvider caps integrations per provider per org (default 50).
	MaxPerProvider int `yaml:"max_per_provider"`
	// Identity verifies the proxy's X-Portcullis-Identity assertion. With neither key
	// set, assertions are refused and only service keys authenticate.
	Identity IdentityConfig `yaml:"identity"`
	// TestConnTimeout bounds one test-connection probe (default 5s).
	TestConnTimeout time.Duration `yaml:"test_conn_timeout"`
}

// IdentityConfig holds exactly one verification key for the proxy's assertion.
type IdentityConfig struct {
	Secret    []byte            `yaml:"-"` // HS256
	PublicKey ed25519.PublicKey `yaml:"-"` // EdDSA
	Audience  string            `yaml:"audience"`
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8081"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.MaxPerProvider == 0 {
		c.MaxPerProvider = 50
	}
	if c.Identity.Audience == "" {
		c.Identity.Audience = "portcullis-upstream"
	}
	if c.TestConnTimeout == 0 {
		c.TestConnTimeout = 5 * time.Second
	}
}

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("backend: listen: %q is not host:port", c.Listen))
	}
	if c.DataDir == "" && c.DBPath == "" {
		errs = append(errs, errors.New("backend: data_dir: required when db_path is empty"))
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, errors.New("backend: database_url: must be a postgres:// or postgresql:// URL"))
	}
	if c.KEK != "" {
		if _, err := crypto.ParseKEK(c.KEK); err != nil {
			errs = append(errs, fmt.Errorf("backend: kek: %v", err))
		}
	}
	for i, k := range c.PreviousKEKs {
		if _, err := crypto.ParseKEK(stripLabel(k)); err != nil {
			errs = append(errs, fmt.Errorf("backend: previous_keks[%d]: %v", i, err))
		}
	}
	if c.MaxPerProvider < 0 {
		errs = append(errs, errors.New("backend: max_per_provider: must be >= 0 (0 means the default 50)"))
	}
	if c.Identity.Secret != nil && c.Identity.PublicKey != nil {
		errs = append(errs, errors.New("backend: identity: set exactly one of secret or public_key"))
	}
	if c.Identity.Secret != nil && len(c.Identity.Secret) < 32 {
		errs = append(errs, errors.New("backend: identity.secret: must be at least 32 bytes"))
	}
	if c.Identity.PublicKey != nil && len(c.Identity.PublicKey) != ed25519.PublicKeySize {
		errs = append(errs, fmt.Errorf("backend: identity.public_key: must be %d bytes", ed25519.PublicKeySize))
	}
	if c.Identity.Audience == "" {
		errs = append(errs, errors.New("backend: identity.audience: required"))
	}
	if c.TestConnTimeout < 0 || c.TestConnTimeout > time.Minute {
		errs = append(errs, errors.New("backend: test_conn_timeout: must be between 0 and 1m"))
	}
	return errors.Join(errs...)
}

func (c *Config) openStore(ctx context.Context, logger *slog.Logger) (*store.Store, error) {
	if c.DatabaseURL != "" {
		return store.OpenPostgres(ctx, c.DatabaseURL, logger)
	}
	return store.Open(ctx, c.dbPath(), logger)
}

func (c *Config) dbPath() string {
	if c.DBPath != "" {
		return c.DBPath
	}
	return c.DataDir + "/backend.db"
}
