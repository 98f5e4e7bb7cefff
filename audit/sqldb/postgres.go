package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// OpenPostgres opens a PostgreSQL pool (pgx) on url and checks that it answers.
// Errors never include the URL, which may hold a password.
func OpenPostgres(ctx context.Context, url string, maxOpenConns int) (*sql.DB, error) {
	if url == "" {
		return nil, errors.New("sqldb: the PostgreSQL URL is empty")
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("sqldb: opening postgres: %w", err)
	}
	if maxOpenConns > 0 {
		db.SetMaxOpenConns(maxOpenConns)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqldb: connecting to postgres: %w", err)
	}
	return db, nil
}

// CloseTimeout bounds closing a connection whose context has ended.
const CloseTimeout = 5 * time.Second
