package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/portcullis/portcullis/audit/sqldb"
)

// rebind turns ? placeholders into PostgreSQL's $1, $2... Our queries hold no '?'
// inside string literals, so a plain scan is enough.
func rebind(q string) string { return sqldb.Rebind(q) }

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
	db, err := sqldb.OpenPostgres(ctx, url, 16)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db, x: dbx{db: db, pg: true}, pg: true, logger: logger}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}
