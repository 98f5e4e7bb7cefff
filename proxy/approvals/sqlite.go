package approvals

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/portcullis/portcullis/audit/sqldb"
)

// migrationFiles holds each driver's numbered schema files (sqldb.Migrations).
//
//go:embed migrations
var migrationFiles embed.FS

func migrations(dialect sqldb.Dialect, logger *slog.Logger) sqldb.Migrations {
	sub, err := fs.Sub(migrationFiles, "migrations/"+dialect.String())
	if err != nil {
		panic(err)
	}
	return sqldb.Migrations{Component: "approvals", FS: sub, Dialect: dialect, Logger: logger}
}

// OpenSQLite opens (creating, mode 0600) the approvals database at path and migrates it.
func OpenSQLite(ctx context.Context, path string, logger *slog.Logger) (Store, error) {
	db, err := sqldb.OpenSQLite(ctx, sqldb.SQLite{Path: path, MaxOpenConns: 4})
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	m := migrations(sqldb.SQLiteDialect, logger)
	// Before schema_migrations the schema was one file, tracked in user_version.
	m.Legacy = func(ctx context.Context, tx *sql.Tx) (int, error) {
		var v int
		err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
		return v, err
	}
	if _, err := m.Run(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("approvals: opening %s: %w", path, err)
	}
	return &sqlStore{db: db, newest: "created_at DESC, rowid DESC"}, nil
}
