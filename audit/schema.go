package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb"
)

const schemaVersion = "1"

// migrations are the audit database's numbered schema files (sqldb.Migrations).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// schemaSQL is the first migration: every statement is IF NOT EXISTS, so running it
// again restores what it creates (the legacy adoption does; so do tests that put
// the append-only triggers back after tampering).
var schemaSQL = mustReadMigration("0001_init.sql")

func mustReadMigration(name string) string {
	b, err := migrationFiles.ReadFile("migrations/" + name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func auditMigrations(logger *slog.Logger) sqldb.Migrations {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sqldb.Migrations{Component: "audit", FS: sub, Legacy: legacyVersion, Logger: logger}
}

// legacyVersion adopts a database created before schema_migrations, when the schema
// was CREATE IF NOT EXISTS plus a column added on sight. It brings the database to
// the shape of migration 0001 (an old one may lack the lookup table, or still carry
// the two indexes the lookup table replaced) and reports 2 when the checkpoints
// already name their log, 1 when migration 0002 is still to run, 0 for a new file.
func legacyVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'`).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, schemaSQL+`
DROP INDEX IF EXISTS audit_events_request;
DROP INDEX IF EXISTS audit_events_sub;`); err != nil {
		return 0, err
	}
	has, err := hasLogIDColumn(ctx, tx)
	if err != nil {
		return 0, err
	}
	if has {
		return 2, nil
	}
	return 1, nil
}

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

// openDB opens the audit database through sqldb. Every read-write connection gets
// WAL, a busy timeout, immediate transactions and, when capped, max_page_count (a
// per-connection setting).
func openDB(path string, readOnly bool, synchronous string, maxPages int64) (*sql.DB, error) {
	o := sqldb.SQLite{Path: path, Synchronous: synchronous}
	if readOnly {
		o.Access = sqldb.ReadOnly
	} else {
		o.Pragmas = []string{
			// page_size only takes on a new file and must precede WAL mode, which
			// sqldb applies after these.
			"page_size(" + strconv.Itoa(pageSize) + ")",
			// Statement journals of multi-row INSERTs stay in memory, not temp files.
			"temp_store(MEMORY)",
			// Checkpoint the WAL every 10,000 pages (about 40 MiB) rather than 1,000:
			// rows reach SQLite in bulk, off the request path, and fewer checkpoints
			// (each with its fsyncs) cut the cost per row by about a sixth.
			"wal_autocheckpoint(10000)",
		}
		if maxPages > 0 {
			o.Pragmas = append(o.Pragmas, "max_page_count("+strconv.FormatInt(maxPages, 10)+")")
		}
	}
	db, err := sqldb.OpenSQLite(context.Background(), o)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return db, nil
}

// migrate runs the audit migrations and writes the log's meta rows (its id among
// them) if they are missing.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := auditMigrations(nil).Run(ctx, db); err != nil {
		return fmt.Errorf("audit: %w", err)
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
