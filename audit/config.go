package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Modes for Config.Mode.
const (
	ModeFailClosed = "fail_closed"
	ModeBestEffort = "best_effort"
)

// Config configures the audit log.
type Config struct {
	// Path is the SQLite database file. Default <data_dir>/audit.db. The journal,
	// where rows are durable before SQLite stores them, is Path + ".journal".
	// Synchronous applies to both: "NORMAL" (default; an acknowledged row survives
	// a process crash, an OS crash may lose the last ones) or "FULL" (the journal is
	// fsynced before a row is acknowledged, and SQLite runs synchronous=FULL: rows
	// also survive power loss, slower).
	Path        string `yaml:"path"`
	Synchronous string `yaml:"synchronous"`
	// Linger is the longest the writer waits for more rows before committing a
	// batch to the journal. It waits only until the batch is as large as the previous one, so a
	// lone call under light load does not wait, and rows that arrive while a batch
	// commits form the next batch anyway. Default 1ms.
	Linger time.Duration `yaml:"linger"`
	// MaxBatch caps rows per journal commit. Default 512.
	MaxBatch int `yaml:"max_batch"`
	// QueueSize is how many rows may wait for the writer. Default 8192.
	QueueSize int `yaml:"queue_size"`
	// Mode is "fail_closed" (default: a row that cannot be stored fails the call)
	// or "best_effort" (the call proceeds and Lost() counts the row).
	Mode string `yaml:"mode"`
	// SigningKeyPath is the Ed25519 checkpoint signing key (PKCS#8 PEM, mode 0600),
	// generated with a warning if absent. Keep it off the database's disk if you
	// can. PORTCULLIS_AUDIT_SIGNING_KEY (base64 32-byte seed) overrides the file.
	// Default <data_dir>/audit-signing.key.
	SigningKeyPath string `yaml:"signing_key_path"`
	// CheckpointEvery signs a checkpoint after this many rows. Default 1000.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint at least this often while rows arrive
	// (none while idle). Default 1s. Rows after the newest checkpoint are chained but
	// not yet signed: after a crash, someone who edits the files before the restart can
	// remove them undetected, so this is the window of rows a crash leaves exposed.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// WitnessPath is the file every checkpoint is also appended to, as a JSON line
	// (mode 0600, append-only, fsynced at least once per CheckpointInterval):
	// `audit verify --witness` checks the database against it. Copy it somewhere the
	// database's editors cannot reach. Rotated to WitnessPath + ".1" at 64 MiB.
	// Default <data_dir>/witness.log.
	WitnessPath string `yaml:"witness_path"`
	// HMACKeyPath is the redaction HMAC key (mode 0600, generated if absent).
	// PORTCULLIS_AUDIT_HMAC_KEY (base64, at least 32 bytes) overrides the file, which is
	// then neither read nor created. Replicas sharing approvals need the same key.
	// Default <data_dir>/audit-hmac.key.
	HMACKeyPath string `yaml:"hmac_key_path"`
	// MaxSizeBytes caps the database size (SQLite max_page_count); past it Append
	// fails (fail_closed: the call gets 503). 0 means no cap.
	MaxSizeBytes int64 `yaml:"max_size_bytes"`
	// CentralURL (postgres://...) ships this replica's rows and checkpoints to a
	// PostgreSQL store shared by every replica (see Shipper); the admin audit API then
	// reads it. Empty: no shipping (env PORTCULLIS_AUDIT_CENTRAL_URL).
	CentralURL string `yaml:"central_url"`
	// CentralMaxLag is the readiness bound: /readyz fails once the oldest row not yet
	// shipped is older than this. Below it a lagging or failing shipper leaves the
	// replica ready, reported as degraded. Default 5m.
	CentralMaxLag time.Duration `yaml:"central_max_lag"`
	// CentralInterval is the longest between two shipping passes; new rows are
	// shipped within about 20ms anyway. Default 1s.
	CentralInterval time.Duration `yaml:"central_interval"`
	// Witness, when set, receives the checkpoint lines (`audit verify --witness` reads
	// them) instead of the log's logger. serve gives it a handler that writes INFO
	// whatever log_level says, so a quieter log keeps its witness.
	Witness *slog.Logger `yaml:"-"`

	// checkpointSyncHook, when set (tests), is called just before a checkpoint's commit
	// with the connection's synchronous level (2 is FULL).
	checkpointSyncHook func(level int)
}

// SetDefaults fills unset fields; dataDir holds the database and key files.
func (c *Config) SetDefaults(dataDir string) {
	if dataDir == "" {
		dataDir = "data"
	}
	if c.Path == "" {
		c.Path = filepath.Join(dataDir, "audit.db")
	}
	if c.Synchronous == "" {
		c.Synchronous = "NORMAL"
	}
	c.Synchronous = strings.ToUpper(c.Synchronous)
	if c.Linger == 0 {
		c.Linger = time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8192
	}
	if c.Mode == "" {
		c.Mode = ModeFailClosed
	}
	if c.SigningKeyPath == "" {
		c.SigningKeyPath = filepath.Join(dataDir, "audit-signing.key")
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 1000
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.WitnessPath == "" {
		c.WitnessPath = filepath.Join(dataDir, "witness.log")
	}
	if c.HMACKeyPath == "" {
		c.HMACKeyPath = filepath.Join(dataDir, "audit-hmac.key")
	}
	if c.CentralMaxLag == 0 {
		c.CentralMaxLag = 5 * time.Minute
	}
	if c.CentralInterval == 0 {
		c.CentralInterval = time.Second
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("audit.%s: "+format, append([]any{field}, args...)...))
	}
	if c.Path == "" {
		bad("path", "%s", "is required")
	}
	switch strings.ToUpper(c.Synchronous) {
	case "NORMAL", "FULL":
	default:
		bad("synchronous", "must be NORMAL or FULL, got %q", c.Synchronous)
	}
	if c.Linger < 0 || c.Linger > time.Second {
		bad("linger", "must be between 0 and 1s, got %s", c.Linger)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		bad("max_batch", "must be between 1 and 10000, got %d", c.MaxBatch)
	}
	if c.QueueSize < 1 {
		bad("queue_size", "must be at least 1, got %d", c.QueueSize)
	}
	switch c.Mode {
	case ModeFailClosed, ModeBestEffort:
	default:
		bad("mode", "must be %q or %q, got %q", ModeFailClosed, ModeBestEffort, c.Mode)
	}
	if c.SigningKeyPath == "" {
		bad("signing_key_path", "%s", "is required")
	}
	if c.HMACKeyPath == "" {
		bad("hmac_key_path", "%s", "is required")
	}
	if c.CheckpointEvery < 1 {
		bad("checkpoint_every", "must be at least 1, got %d", c.CheckpointEvery)
	}
	if c.CheckpointInterval < time.Millisecond {
		bad("checkpoint_interval", "must be at least 1ms, got %s", c.CheckpointInterval)
	}
	if c.WitnessPath == "" {
		bad("witness_path", "%s", "is required")
	} else if c.Path != "" && filepath.Clean(c.WitnessPath) == filepath.Clean(c.Path) {
		bad("witness_path", "must not be the audit database itself (%s)", c.Path)
	}
	if c.MaxSizeBytes < 0 || (c.MaxSizeBytes > 0 && c.MaxSizeBytes < 256*1024) {
		bad("max_size_bytes", "must be 0 (no cap) or at least 262144 (256 KiB), got %d", c.MaxSizeBytes)
	}
	if c.CentralURL != "" {
		if u, err := url.Parse(c.CentralURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			// Never echo the URL: it may hold a password.
			bad("central_url", "%s", "must be a postgres:// URL with a host (postgres://user@host:5432/db)")
		}
	}
	if c.CentralMaxLag < time.Second {
		bad("central_max_lag", "must be at least 1s, got %s", c.CentralMaxLag)
	}
	if c.CentralInterval < 10*time.Millisecond || c.CentralInterval > time.Minute {
		bad("central_interval", "must be between 10ms and 1m, got %s", c.CentralInterval)
	}
	return errors.Join(errs...)
}
