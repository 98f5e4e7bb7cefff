package approvals

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/audit/sqldb"
)

// notifyChannel is the PostgreSQL channel on which every change out of pending is
// announced, with the approval id as payload.
const notifyChannel = "portcullis_approvals"

// pgStore is the Store on PostgreSQL, shared by replicas: conditional updates keep
// each step atomic across them, Create takes a per-hash advisory lock, and every
// change out of pending is announced with NOTIFY (sent at commit) to the replicas'
// Watch.
type pgStore struct {
	sqlStore
	url string
}

var _ Broadcaster = (*pgStore)(nil)

// OpenPostgres connects to PostgreSQL (pgx) and migrates the approvals schema. Put
// the tables in their own schema with search_path in the URL if the database is
// shared. Errors never include the URL.
func OpenPostgres(ctx context.Context, url string, logger *slog.Logger) (Store, error) {
	db, err := sqldb.OpenPostgres(ctx, url, 16)
	if err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	if _, err := migrations(sqldb.PostgresDialect, logger).Run(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("approvals: %w", err)
	}
	s := &pgStore{sqlStore: sqlStore{db: db, pg: true, newest: "created_at DESC, seq DESC"}, url: url}
	s.changed = announce
	return s, nil
}

// FleetKeyRedaction names the audit redaction key in approvals_fleet_keys.
const FleetKeyRedaction = "audit_hmac"

// FleetKeyMismatchError is checkFleetKey's error when another replica recorded
// another key id under Name.
type FleetKeyMismatchError struct {
	Name string // FleetKeyRedaction...
	ID   string // this replica's
	Have string // the one recorded
}

func (e *FleetKeyMismatchError) Error() string {
	if e.Name == FleetKeyRedaction {
		return fmt.Sprintf("audit HMAC key differs from the one the other replicas use (key id %s vs %s): "+
			"give every replica the same PORTCULLIS_AUDIT_HMAC_KEY or audit-hmac.key (to rotate it, see docs/audit.md)", e.ID, e.Have)
	}
	return fmt.Sprintf("the %s key differs from the one the other replicas use (key id %s vs %s)", e.Name, e.ID, e.Have)
}

// checkFleetKey records id as the key the replicas use under name unless one is
// recorded already, and fails with a *FleetKeyMismatchError if that one is not id.
func (s *pgStore) checkFleetKey(ctx context.Context, name, id string, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO approvals_fleet_keys (name, key_id, registered_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING`, name, id, now.UnixMilli()); err != nil {
		return fmt.Errorf("approvals: recording the %s key id: %w", name, err)
	}
	var have string
	if err := s.db.QueryRowContext(ctx, `SELECT key_id FROM approvals_fleet_keys WHERE name = $1`, name).Scan(&have); err != nil {
		return fmt.Errorf("approvals: reading the %s key id: %w", name, err)
	}
	if have == id {
		return nil
	}
	return &FleetKeyMismatchError{Name: name, ID: id, Have: have}
}

// announce queues one notification per id; PostgreSQL delivers them when the
// transaction commits, and drops them if it rolls back.
func announce(ctx context.Context, tx *sql.Tx, ids []string) error {
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, id); err != nil {
			return fmt.Errorf("approvals: announcing a change: %w", err)
		}
	}
	return nil
}

// Watch holds one connection listening on the channel and calls wake for each
// notification until ctx ends (nil) or the connection fails (its error).
func (s *pgStore) Watch(ctx context.Context, wake func(id string)) error {
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return fmt.Errorf("approvals: connecting to listen: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sqldb.CloseTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("approvals: listening: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("approvals: waiting for notifications: %w", err)
		}
		wake(n.Payload)
	}
}
