package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Dialect is the SQL dialect of a database.
type Dialect int

const (
	SQLiteDialect Dialect = iota
	PostgresDialect
)

func (d Dialect) String() string {
	if d == PostgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string // the file name, 0001_init.sql
	SQL     string
}

// Migrations applies the numbered files of one store's migration folder.
type Migrations struct {
	// Component names the store in schema_migrations ("audit", "approvals",
	// "backend"): stores that share a database keep separate histories.
	Component string
	// FS holds the files NNNN_name.sql at its root, numbered from 0001 without gaps.
	FS      fs.FS
	Dialect Dialect
	// Legacy, if set, runs (inside the migration transaction) when
	// schema_migrations has no row for Component, and returns the version the
	// database had reached under the tracking it used before (0 for a new
	// database). It may also bring an old database's schema into the shape that
	// version's file creates. Versions 1 to the returned one are then recorded as
	// applied without running them.
	Legacy func(ctx context.Context, tx *sql.Tx) (int, error)
	Logger *slog.Logger
}

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// Load reads and orders the migration files.
func (m Migrations) Load() ([]Migration, error) {
	if m.FS == nil {
		return nil, errors.New("sqldb: no migration folder")
	}
	entries, err := fs.ReadDir(m.FS, ".")
	if err != nil {
		return nil, fmt.Errorf("sqldb: reading %s migrations: %w", m.Component, err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		match := migrationName.FindStringSubmatch(e.Name())
		if match == nil {
			return nil, fmt.Errorf("sqldb: %s migration %q: the name must be NNNN_name.sql", m.Component, e.Name())
		}
		v, _ := strconv.Atoi(match[1])
		b, err := fs.ReadFile(m.FS, e.Name())
		if err != nil {
			return nil, fmt.Errorf("sqldb: reading %s migration %s: %w", m.Component, e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, mg := range out {
		if mg.Version != i+1 {
			return nil, fmt.Errorf("sqldb: %s migration %s: expected version %04d (versions start at 1, without gaps or repeats)", m.Component, mg.Name, i+1)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sqldb: %s has no migrations", m.Component)
	}
	return out, nil
}

const createTrackingTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
  component  TEXT NOT NULL,
  version    INTEGER NOT NULL,
  applied_at TEXT NOT NULL,
  PRIMARY KEY (component, version)
)`

// Run brings db to the newest migration and returns the version it is at. On
// SQLite, db must have been opened ReadWrite (its transactions take the write lock
// at BEGIN, so two processes cannot both apply a version).
func (m Migrations) Run(ctx context.Context, db *sql.DB) (int, error) {
	all, err := m.Load()
	if err != nil {
		return 0, err
	}
	if m.Component == "" {
		return 0, errors.New("sqldb: migrations need a component name")
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	latest := all[len(all)-1].Version
	fail := func(what string, err error) (int, error) {
		return 0, fmt.Errorf("sqldb: migrating %s: %s: %w", m.Component, what, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fail("beginning", err)
	}
	defer func() { _ = tx.Rollback() }()
	if m.Dialect == PostgresDialect {
		// Replicas starting together migrate one at a time, and so do the stores
		// sharing a schema (approvals, the central audit trail, the backend): they
		// share schema_migrations, whose CREATE TABLE IF NOT EXISTS is not safe to run
		// concurrently. One lock per schema, not per store.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis:migrate:' || current_schema()))`); err != nil {
			return fail("locking", err)
		}
	}
	// A database already at the newest version needs no DDL, so a role that may only
	// read and insert (a replica's least-privilege role) opens it; CREATE TABLE IF NOT
	// EXISTS needs the right to create even when the table is there.
	exists := true
	if m.Dialect == PostgresDialect {
		if err := tx.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return fail("reading schema_migrations", err)
		}
	}
	if exists && m.Dialect == PostgresDialect {
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = $1`, m.Component).Scan(&have); err != nil {
			return fail("reading schema_migrations", err)
		}
		if have == latest {
			return latest, tx.Commit()
		}
	}
	if _, err := tx.ExecContext(ctx, createTrackingTable); err != nil {
		return fail("creating schema_migrations", err)
	}
	have, n := 0, 0
	if err := tx.QueryRowContext(ctx, m.bind(`SELECT coalesce(max(version), 0), count(*) FROM schema_migrations WHERE component = ?`),
		m.Component).Scan(&have, &n); err != nil {
		return fail("reading schema_migrations", err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	record := func(v int) error {
		_, err := tx.ExecContext(ctx, m.bind(`INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)`),
			m.Component, v, now)
		return err
	}
	if n == 0 && m.Legacy != nil {
		legacy, err := m.Legacy(ctx, tx)
		if err != nil {
			return fail("reading the version tracked before schema_migrations", err)
		}
		if legacy > latest {
			return 0, fmt.Errorf("sqldb: %s schema version %d is newer than this binary's %d", m.Component, legacy, latest)
		}
		for v := 1; v <= legacy; v++ {
			if err := record(v); err != nil {
				return fail("adopting the existing schema", err)
			}
		}
		if legacy > 0 {
			logger.Info("database schema adopted into schema_migrations", "component", m.Component, "version", legacy)
		}
		have = legacy
	}
	if have > latest {
		return 0, fmt.Errorf("sqldb: %s schema version %d is newer than this binary's %d", m.Component, have, latest)
	}
	for _, mg := range all[have:] {
		if _, err := tx.ExecContext(ctx, mg.SQL); err != nil {
			return fail(mg.Name, err)
		}
		if err := record(mg.Version); err != nil {
			return fail(mg.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail("committing", err)
	}
	for _, mg := range all[have:] {
		logger.Info("database migrated", "component", m.Component, "driver", m.Dialect.String(), "version", mg.Version, "migration", mg.Name)
	}
	return latest, nil
}

// bind rewrites ? placeholders for the dialect.
func (m Migrations) bind(q string) string {
	if m.Dialect != PostgresDialect {
		return q
	}
	return Rebind(q)
}

// Rebind turns ? placeholders into PostgreSQL's $1, $2... for queries that hold no
// '?' inside a string literal.
func Rebind(q string) string {
	b := make([]byte, 0, len(q)+8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(n), 10)
			continue
		}
		b = append(b, q[i])
	}
	return string(b)
}
