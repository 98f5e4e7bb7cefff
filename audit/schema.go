package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

const schemaVersion = "1"

// Columns are NOT NULL with defaults so that a stored row has exactly one
// encoding: no NULL-versus-empty ambiguity under the hash.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS audit_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
  seq              INTEGER PRIMARY KEY,
  ts               INTEGER NOT NULL,
  kind             TEXT NOT NULL,
  request_id       TEXT NOT NULL DEFAULT '',
  decision_id      TEXT NOT NULL DEFAULT '',
  caller_sub       TEXT NOT NULL DEFAULT '',
  caller_org       TEXT NOT NULL DEFAULT '',
  caller_workspace TEXT NOT NULL DEFAULT '',
  caller_roles     TEXT NOT NULL DEFAULT '[]',
  caller_session   TEXT NOT NULL DEFAULT '',
  client_addr      TEXT NOT NULL DEFAULT '',
  surface          TEXT NOT NULL DEFAULT '',
  tool             TEXT NOT NULL DEFAULT '',
  method           TEXT NOT NULL DEFAULT '',
  path             TEXT NOT NULL DEFAULT '',
  args             TEXT NOT NULL DEFAULT '',
  decision         TEXT NOT NULL DEFAULT '',
  reason           TEXT NOT NULL DEFAULT '',
  policy_revision  TEXT NOT NULL DEFAULT '',
  approval_id      TEXT NOT NULL DEFAULT '',
  approver         TEXT NOT NULL DEFAULT '',
  status           INTEGER NOT NULL DEFAULT 0,
  error_class      TEXT NOT NULL DEFAULT '',
  latency_us       INTEGER NOT NULL DEFAULT 0,
  prev_hash        BLOB NOT NULL,
  hash             BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events(ts);
-- Lookups by request id ("r:<id>") and caller ("s:<sub>"). Derived data outside the
-- chain, filled in bulk by the writer between commits (see Log.indexLookups): two
-- secondary indexes on audit_events cost a third of every commit.
CREATE TABLE IF NOT EXISTS audit_lookup (
  k   TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (k, seq)
) WITHOUT ROWID;
DROP INDEX IF EXISTS audit_events_request;
DROP INDEX IF EXISTS audit_events_sub;
CREATE INDEX IF NOT EXISTS audit_events_approval ON audit_events(approval_id) WHERE approval_id <> '';
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  id        INTEGER PRIMARY KEY,
  kind      TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  head_hash BLOB NOT NULL,
  ts        INTEGER NOT NULL,
  key_id    TEXT NOT NULL,
  signature BLOB NOT NULL,
  log_id    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_checkpoints_seq ON audit_checkpoints(seq);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
`

// noDeleteTrigger is re-created by Prune after its guarded delete.
const noDeleteTrigger = `CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END`

// insertChunk is the most rows one INSERT statement carries (26 parameters each).
const insertChunk = 32

// pageSize is larger than SQLite's 4 KiB default: rows are appended in batches,
// and fewer, larger WAL frames mean fewer write system calls per commit.
const pageSize = 4096

func insertRowsSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO audit_events (" + rowColumns + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

const insertCheckpointSQL = "INSERT INTO audit_checkpoints (kind, seq, head_hash, ts, key_id, signature, log_id) VALUES (?,?,?,?,?,?,?)"

// checkpointColumns is what loadCheckpoints and latestAnchor select.
const checkpointColumns = "id, kind, seq, head_hash, ts, key_id, signature, log_id"

func (c *checkpoint) insertArgs() []any {
	return []any{c.Kind, c.Seq, c.Head, c.TS, c.KeyID, c.Signature, c.LogID}
}

func (c *checkpoint) scanDest() []any {
	return []any{&c.ID, &c.Kind, &c.Seq, &c.Head, &c.TS, &c.KeyID, &c.Signature, &c.LogID}
}

// Checkpoint kinds.
const (
	CheckpointPeriodic = "periodic"
	CheckpointOpen     = "open"
	CheckpointClose    = "close"
	CheckpointPrune    = "prune"
)

// dsn builds a modernc.org/sqlite DSN. Every connection gets WAL, a busy timeout
// and, when capped, max_page_count (a per-connection setting).
func dsn(path string, readOnly bool, synchronous string, maxPages int64) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	if readOnly {
		q.Add("mode", "ro")
	} else {
		// page_size only takes on a new file and must precede WAL mode, which the
		// driver applies after the _pragma list.
		q.Add("_pragma", "page_size("+strconv.Itoa(pageSize)+")")
		q.Add("_journal_mode", "WAL")
		q.Add("_synchronous", synchronous)
		q.Add("_txlock", "immediate")
		// Statement journals of multi-row INSERTs stay in memory, not temp files.
		q.Add("_pragma", "temp_store(MEMORY)")
		// Checkpoint the WAL every 10,000 pages (about 40 MiB) rather than 1,000: rows
		// reach SQLite in bulk, off the request path, and fewer checkpoints (each with
		// its fsyncs) cut the cost per row by about a sixth.
		q.Add("_pragma", "wal_autocheckpoint(10000)")
		if maxPages > 0 {
			q.Add("_pragma", "max_page_count("+strconv.FormatInt(maxPages, 10)+")")
		}
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func openDB(path string, readOnly bool, synchronous string, maxPages int64) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, readOnly, synchronous, maxPages))
	if err != nil {
		return nil, fmt.Errorf("audit: opening %s: %w", path, err)
	}
	return db, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("audit: creating schema: %w", err)
	}
	// Databases created before checkpoints named their log gain the column; their
	// old checkpoints keep an empty log id (see checkpoint.message).
	has, err := hasLogIDColumn(ctx, db)
	if err != nil {
		return err
	}
	if !has {
		if _, err := db.ExecContext(ctx, `ALTER TABLE audit_checkpoints ADD COLUMN log_id TEXT NOT NULL DEFAULT ''`); err != nil {
			return fmt.Errorf("audit: adding checkpoint log ids: %w", err)
		}
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("audit: generating the log id: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO audit_meta(key, value) VALUES
		('schema_version', ?), ('hash', 'sha256-length-prefixed-v1'), ('created_at', ?), ('lookup_through', '0'), ('log_id', ?)`,
		schemaVersion, time.Now().UTC().Format(time.RFC3339), hex.EncodeToString(id)); err != nil {
		return fmt.Errorf("audit: writing meta: %w", err)
	}
	return nil
}

func hasLogIDColumn(ctx context.Context, q queryRower) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('audit_checkpoints') WHERE name = 'log_id'`).Scan(&n); err != nil {
		return false, fmt.Errorf("audit: reading the checkpoint table: %w", err)
	}
	return n == 1, nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readLogID returns the log's id from audit_meta, or "" for a database no server
// of this version has opened yet.
func readLogID(ctx context.Context, q queryRower) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT value FROM audit_meta WHERE key = 'log_id'`).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("audit: reading the log id: %w", err)
	}
	return id, nil
}

// Checkpoint signing domains. v2 names the log (LogID), so that a checkpoint signed
// for one log is refused by another that shares the signing key; v1 checkpoints,
// written before logs had ids, still verify (see verifyTx).
const (
	checkpointDomainV1 = "portcullis-audit-checkpoint-v1"
	checkpointDomain   = "portcullis-audit-checkpoint-v2"
)

// checkpoint is one signed statement "the chain of log LogID up to seq has head
// hash Head".
type checkpoint struct {
	ID        int64
	Kind      string
	Seq       int64
	Head      []byte
	TS        int64
	KeyID     string
	Signature []byte
	LogID     string // "" only for checkpoints written before logs had ids
}

func (c *checkpoint) message() []byte {
	b := make([]byte, 0, 160)
	if c.LogID == "" {
		b = append(b, checkpointDomainV1...)
	} else {
		b = append(b, checkpointDomain...)
		b = appendStr(b, c.LogID)
	}
	b = appendStr(b, c.Kind)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Head)))
	b = append(b, c.Head...)
	return binary.BigEndian.AppendUint64(b, uint64(c.TS))
}

func signCheckpoint(key ed25519.PrivateKey, logID, kind string, seq int64, head []byte, now time.Time) checkpoint {
	c := checkpoint{Kind: kind, Seq: seq, Head: head, TS: now.UnixNano(), LogID: logID,
		KeyID: KeyID(key.Public().(ed25519.PublicKey))}
	c.Signature = ed25519.Sign(key, c.message())
	return c
}

// verifySig checks the checkpoint against pub; the reason is empty when it holds.
func (c *checkpoint) verifySig(pub ed25519.PublicKey) string {
	if c.KeyID != KeyID(pub) {
		return fmt.Sprintf("signed by key %s, not the given key %s", c.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, c.message(), c.Signature) {
		return "signature does not verify"
	}
	return ""
}
