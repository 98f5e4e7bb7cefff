package store

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
)

//go:embed schema_postgres.sql
var schemaPostgres string

type migration struct {
	version int
	sql     string
}

// migrations splits an embedded schema at its "-- migration N" markers.
func migrations(src string) []migration {
	locs := migrationRe.FindAllStringSubmatchIndex(src, -1)
	out := make([]migration, 0, len(locs))
	for i, loc := range locs {
		v, _ := strconv.Atoi(src[loc[2]:loc[3]])
		end := len(src)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		out = append(out, migration{version: v, sql: src[loc[1]:end]})
	}
	return out
}

// rebind turns ? placeholders into PostgreSQL's $1, $2... Our queries hold no '?'
// inside string literals, so a plain scan is enough.
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dbx and txx run queries written with ? placeholders on either database.
type dbx struct {
	db *sql.DB
	pg bool
}

func (d dbx) q(s string) string {
	if d.pg {
		return rebind(s)
	}
	return s
}

func (d dbx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.db.ExecContext(ctx, d.q(q), args...)
}

func (d dbx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.db.QueryContext(ctx, d.q(q), args...)
}

func (d dbx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return d.db.QueryRowContext(ctx, d.q(q), args...)
}

type txx struct {
	tx *sql.Tx
	d  dbx
}

func (t *txx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.q(q), args...)
}

func (t *txx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.d.q(q), args...)
}

func (t *txx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.q(q), args...)
}

func (t *txx) Commit() error   { return t.tx.Commit() }
func (t *txx) Rollback() error { return t.tx.Rollback() }

func (s *Store) begin(ctx context.Context) (*txx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &txx{tx: tx, d: s.x}, nil
}

// lockOrg serialises writers of one org on PostgreSQL, so the per-provider count and
// the uniqueness checks hold under concurrency (SQLite's immediate transactions
// already serialise all writers).
func (s *Store) lockOrg(ctx context.Context, tx *txx, org string) error {
	if !s.pg {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis-backend:' || ?))`, org); err != nil {
		return fmt.Errorf("store: locking org: %w", err)
	}
	return nil
}

// OpenPostgres connects to a PostgreSQL database (pgx) and migrates it. Put the
// tables in their own schema with search_path in the URL if the database is shared.
func OpenPostgres(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("store: opening postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: connecting to postgres: %w", err)
	}
	s := &Store{db: db, x: dbx{db: db, pg: true}, pg: true, logger: logger}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migratePostgres(ctx context.Context) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: migrating: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Replicas starting together migrate one at a time.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis-backend:migrate'))`); err != nil {
		return fmt.Errorf("store: migrating: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS backend_schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrating: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM backend_schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: reading schema version: %w", err)
	}
	for _, m := range migrations(schemaPostgres) {
		if m.version <= have {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("store: migration %d: %w", m.version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO backend_schema_migrations (version, applied_at) VALUES (?, now()::text)`, m.version); err != nil {
			return fmt.Errorf("store: migration %d: %w", m.version, err)
		}
		s.logger.Info("backend store migrated", "version", m.version, "driver", "postgres")
	}
	return tx.Commit()
}
