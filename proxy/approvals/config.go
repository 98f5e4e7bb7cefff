package approvals

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultApproverRole   = "approver"
	DefaultTTL            = 15 * time.Minute
	DefaultMaxTTL         = 24 * time.Hour
	DefaultWaitBudget     = 30 * time.Second
	DefaultSweepInterval  = 30 * time.Second
	DefaultWebhookTimeout = 5 * time.Second
	DefaultPollInterval   = 2 * time.Second
	// DefaultFleetKeyInterval is how often a replica on a shared store re-checks that
	// the redaction key id recorded for the fleet is its own.
	DefaultFleetKeyInterval = 30 * time.Second
	minWebhookSecretBytes   = 16
	maxCommentBytes         = 2000
)

// Config configures the approval service.
type Config struct {
	// DBPath is the SQLite file holding approvals (created if missing, mode 0600).
	// Required unless DatabaseURL is set.
	DBPath string `yaml:"db_path"`
	// DatabaseURL (postgres://...) keeps approvals in PostgreSQL instead, shared by
	// every replica: an approval granted through one releases the call held on
	// another. Never logged or echoed in errors.
	DatabaseURL string `yaml:"database_url"`
	// PollInterval is how often, on a shared (PostgreSQL) store, the approvals that
	// held calls wait for are re-read (one query for all), in case the notification
	// of a decision was lost. Default 2s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ApproverRole is the caller role that may decide approvals whose policy names no
	// approvers, and list all approvals of its org. Default "approver".
	ApproverRole string `yaml:"approver_role"`
	// DefaultTTL is how long an approval lives when the policy sets no ttl. Default 15m.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL caps a policy's ttl. Default 24h.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// WaitBudget is how long a caller is held open waiting for a decision. Default 30s.
	// The proxy reads it; this package does not hold callers itself.
	WaitBudget time.Duration `yaml:"wait_budget"`
	// SweepInterval is how often overdue approvals are marked expired (reads also expire
	// them lazily). Default 30s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// WebhookURL, when set, receives a signed POST for each new pending approval.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret keys the HMAC-SHA256 in X-Portcullis-Signature (at least 16 bytes;
	// required with WebhookURL). Never logged.
	WebhookSecret string `yaml:"webhook_secret"`
	// WebhookTimeout bounds one delivery attempt (three attempts at most). Default 5s.
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
	// PublicURL is the gateway's external base URL, used for approval links.
	PublicURL string `yaml:"public_url"`
	// ConsoleURL is the console's base URL (".../console") when the console is on: approval
	// links (the webhook's url) then open the approval's page there. Set by serve.
	ConsoleURL string `yaml:"-"`
	// RedactionKeyID names the audit redaction key (audit.HMACKeyID) under which this
	// replica redacts, and so hashes, the arguments of the calls it holds. Set by serve.
	// On a shared (PostgreSQL) store the first replica records it, and one with another
	// refuses to start: it would give a call carrying a secret another hash. A running
	// replica re-checks every FleetKeyInterval and, while the recorded id is another,
	// refuses to create or consume approvals (ErrFleetKeyMismatch).
	RedactionKeyID string `yaml:"-"`
	// FleetKeyInterval is how often RedactionKeyID is re-checked on a shared store.
	// Default 30s (DefaultFleetKeyInterval).
	FleetKeyInterval time.Duration `yaml:"-"`
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.ApproverRole == "" {
		c.ApproverRole = DefaultApproverRole
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = DefaultTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = max(DefaultMaxTTL, c.DefaultTTL)
	}
	if c.WaitBudget == 0 {
		c.WaitBudget = DefaultWaitBudget
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FleetKeyInterval <= 0 {
		c.FleetKeyInterval = DefaultFleetKeyInterval
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("approvals: "+format, a...)) }
	if c.DatabaseURL != "" {
		// The URL may hold a password: it is never echoed back.
		u, err := url.Parse(c.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("database_url must be a postgres:// or postgresql:// URL")
		}
	} else if c.DBPath == "" {
		bad("db_path is required (or database_url)")
	}
	if c.PollInterval <= 0 || c.PollInterval > time.Minute {
		bad("poll_interval must be between 0 and 1m, got %s", c.PollInterval)
	}
	if strings.TrimSpace(c.ApproverRole) == "" {
		bad("approver_role must not be empty")
	}
	if c.DefaultTTL < time.Second {
		bad("default_ttl must be at least 1s, got %s", c.DefaultTTL)
	}
	if c.MaxTTL < c.DefaultTTL {
		bad("max_ttl (%s) must be at least default_ttl (%s)", c.MaxTTL, c.DefaultTTL)
	}
	if c.WaitBudget <= 0 || c.WaitBudget > 10*time.Minute {
		bad("wait_budget must be between 0 and 10m, got %s", c.WaitBudget)
	}
	if c.SweepInterval <= 0 {
		bad("sweep_interval must be positive, got %s", c.SweepInterval)
	}
	if c.WebhookTimeout <= 0 {
		bad("webhook_timeout must be positive, got %s", c.WebhookTimeout)
	}
	if c.WebhookURL != "" {
		// The URL may carry a token; it is never echoed back in errors.
		u, err := url.Parse(c.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("webhook_url must be an absolute http or https URL")
		}
		if len(c.WebhookSecret) < minWebhookSecretBytes {
			bad("webhook_secret must be at least %d bytes when webhook_url is set", minWebhookSecretBytes)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("public_url must be an absolute http or https URL (it is not echoed: it may hold a password)")
		}
	}
	return errors.Join(errs...)
}
