package approvals

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb"
)

// sqlStore is the Store on SQLite or PostgreSQL: one set of queries, written with ?
// placeholders and rebound for PostgreSQL. Times are Unix milliseconds.
type sqlStore struct {
	db *sql.DB
	pg bool
	// newest orders approvals newest first: by creation, then by insertion (rowid
	// on SQLite, the seq identity column on PostgreSQL) for equal milliseconds.
	newest string
	// changed is run in the transaction of every change out of pending, with the
	// approval id (PostgreSQL notifies the other replicas); nil on SQLite.
	changed func(ctx context.Context, tx *sql.Tx, ids []string) error
}

func (s *sqlStore) q(query string) string {
	if s.pg {
		return sqldb.Rebind(query)
	}
	return query
}

const columns = `id, status, hash, caller_sub, caller_org, caller_workspace, caller_session, caller_roles,
	tool, surface, arguments, reason, policy_revision, approvers, created_at, expires_at,
	decided_by, comment, decided_at, used_at`

type scanner interface{ Scan(dest ...any) error }

func scanApproval(row scanner) (*Approval, error) {
	var (
		a                 Approval
		roles, approvers  string
		args              string
		created, expires  int64
		decidedAt, usedAt sql.NullInt64
		status            string
	)
	err := row.Scan(&a.ID, &status, &a.Hash, &a.Caller.Sub, &a.Caller.Org, &a.Caller.Workspace, &a.Caller.Session, &roles,
		&a.Tool, &a.Surface, &args, &a.Reason, &a.PolicyRevision, &approvers, &created, &expires,
		&a.DecidedBy, &a.Comment, &decidedAt, &usedAt)
	if err != nil {
		return nil, err
	}
	a.Status = Status(status)
	a.Arguments = json.RawMessage(args)
	if err := json.Unmarshal([]byte(roles), &a.Caller.Roles); err != nil {
		return nil, fmt.Errorf("approvals: approval %s: decoding caller_roles: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(approvers), &a.Approvers); err != nil {
		return nil, fmt.Errorf("approvals: approval %s: decoding approvers: %w", a.ID, err)
	}
	a.CreatedAt, a.ExpiresAt = fromMillis(created), fromMillis(expires)
	if decidedAt.Valid {
		t := fromMillis(decidedAt.Int64)
		a.DecidedAt = &t
	}
	if usedAt.Valid {
		t := fromMillis(usedAt.Int64)
		a.UsedAt = &t
	}
	return &a, nil
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func (s *sqlStore) Close() error { return s.db.Close() }

func (s *sqlStore) Get(ctx context.Context, id string) (*Approval, error) {
	a, err := scanApproval(s.db.QueryRowContext(ctx, s.q("SELECT "+columns+" FROM approvals WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("approvals: reading approval: %w", err)
	}
	return a, nil
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *sqlStore) Find(ctx context.Context, hash string, now time.Time) (*Approval, error) {
	return s.find(ctx, s.db, hash, now.UnixMilli())
}

func (s *sqlStore) find(ctx context.Context, q rowQuerier, hash string, nowMs int64) (*Approval, error) {
	a, err := scanApproval(q.QueryRowContext(ctx, s.q("SELECT "+columns+` FROM approvals
		WHERE hash = ? AND status IN ('pending', 'approved', 'denied') AND expires_at > ?
		ORDER BY `+s.newest+` LIMIT 1`), hash, nowMs))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("approvals: finding approval: %w", err)
	}
	return a, nil
}

func (s *sqlStore) Create(ctx context.Context, a *Approval, now time.Time) (*Approval, []string, error) {
	nowMs := now.UnixMilli()
	rolesJSON, err := json.Marshal(a.Caller.Roles)
	if err != nil {
		return nil, nil, fmt.Errorf("approvals: encoding caller roles: %w", err)
	}
	approversJSON, err := json.Marshal(a.Approvers)
	if err != nil {
		return nil, nil, fmt.Errorf("approvals: encoding approvers: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("approvals: beginning request: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if s.pg {
		// Replicas filing the same request one at a time: the second finds the first's.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis-approvals:' || $1))`, a.Hash); err != nil {
			return nil, nil, fmt.Errorf("approvals: locking request: %w", err)
		}
	}
	expired, err := s.expireWhere(ctx, tx, "hash = ? AND", a.Hash, nowMs)
	if err != nil {
		return nil, nil, err
	}
	existing, err := s.find(ctx, tx, a.Hash, nowMs)
	if err != nil {
		return nil, nil, err
	}
	if existing == nil {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO approvals (id, status, hash, caller_sub, caller_org, caller_workspace,
			caller_session, caller_roles, tool, surface, arguments, reason, policy_revision, approvers, created_at, expires_at)
			VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			a.ID, a.Hash, a.Caller.Sub, a.Caller.Org, a.Caller.Workspace, a.Caller.Session, string(rolesJSON),
			a.Tool, a.Surface, string(a.Arguments), a.Reason, a.PolicyRevision, string(approversJSON),
			a.CreatedAt.UnixMilli(), a.ExpiresAt.UnixMilli())
		if err != nil {
			return nil, nil, fmt.Errorf("approvals: storing approval: %w", err)
		}
	}
	if err := s.notifyChanged(ctx, tx, expired); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("approvals: committing request: %w", err)
	}
	return existing, expired, nil
}

func (s *sqlStore) notifyChanged(ctx context.Context, tx *sql.Tx, ids []string) error {
	if s.changed == nil || len(ids) == 0 {
		return nil
	}
	return s.changed(ctx, tx, ids)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// expireWhere marks overdue pending and approved approvals expired, optionally narrowed
// by cond (a SQL fragment ending in AND with one argument), and returns their ids.
func (s *sqlStore) expireWhere(ctx context.Context, q querier, cond string, arg any, nowMs int64) ([]string, error) {
	query := "UPDATE approvals SET status = 'expired' WHERE " + cond + " status IN ('pending', 'approved') AND expires_at <= ? RETURNING id"
	var args []any
	if cond != "" {
		args = append(args, arg)
	}
	args = append(args, nowMs)
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("approvals: expiring overdue approvals: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("approvals: expiring overdue approvals: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("approvals: expiring overdue approvals: %w", err)
	}
	return ids, nil
}

// inTx runs f in a transaction that commits only if f succeeds.
func (s *sqlStore) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqlStore) ExpireDue(ctx context.Context, now time.Time) ([]string, error) {
	var ids []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if ids, err = s.expireWhere(ctx, tx, "", nil, now.UnixMilli()); err != nil {
			return err
		}
		return s.notifyChanged(ctx, tx, ids)
	})
	if err != nil {
		return nil, fmt.Errorf("approvals: expiring overdue approvals: %w", err)
	}
	return ids, nil
}

// changeOne runs one conditional UPDATE of approval id and, when it changed the
// row and out of pending, tells the other processes.
func (s *sqlStore) changeOne(ctx context.Context, id string, fromPending bool, query string, args ...any) (bool, error) {
	var changed bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(query), args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		changed = n == 1
		if changed && fromPending {
			return s.notifyChanged(ctx, tx, []string{id})
		}
		return nil
	})
	return changed, err
}

func (s *sqlStore) Expire(ctx context.Context, id string, from Status) (bool, error) {
	ok, err := s.changeOne(ctx, id, from == StatusPending, "UPDATE approvals SET status = 'expired' WHERE id = ? AND status = ?", id, string(from))
	if err != nil {
		return false, fmt.Errorf("approvals: expiring approval: %w", err)
	}
	return ok, nil
}

func (s *sqlStore) Decide(ctx context.Context, id string, to Status, by, comment string, at time.Time) (bool, error) {
	ok, err := s.changeOne(ctx, id, true, `UPDATE approvals SET status = ?, decided_by = ?, comment = ?, decided_at = ?
		WHERE id = ? AND status = 'pending'`, string(to), by, comment, at.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("approvals: recording decision: %w", err)
	}
	return ok, nil
}

func (s *sqlStore) Consume(ctx context.Context, hash string, now time.Time) (*Approval, error) {
	nowMs := now.UnixMilli()
	// One statement: on PostgreSQL a concurrent consumer of the same row waits for
	// the first, then finds status no longer 'approved' and updates nothing.
	a, err := scanApproval(s.db.QueryRowContext(ctx, s.q(`UPDATE approvals SET status = 'used', used_at = ?
		WHERE id = (SELECT id FROM approvals WHERE hash = ? AND status = 'approved' AND expires_at > ?
		            ORDER BY `+s.newest+` LIMIT 1)
		  AND status = 'approved'
		RETURNING `+columns), nowMs, hash, nowMs))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("approvals: consuming approval: %w", err)
	}
	return a, nil
}

func (s *sqlStore) Release(ctx context.Context, id string, now time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE approvals SET status = 'approved', used_at = NULL
		WHERE id = ? AND status = 'used' AND expires_at > ?`), id, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("approvals: releasing approval: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *sqlStore) List(ctx context.Context, org string, status Status, limit int) ([]Approval, error) {
	query := "SELECT " + columns + " FROM approvals WHERE caller_org = ?"
	args := []any{org}
	if status != "" {
		query += " AND status = ?"
		args = append(args, string(status))
	}
	query += " ORDER BY " + s.newest + " LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("approvals: listing approvals: %w", err)
	}
	defer rows.Close()
	out := []Approval{}
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("approvals: listing approvals: %w", err)
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("approvals: listing approvals: %w", err)
	}
	return out, nil
}

// notPendingChunk is the most ids one NotPending query carries.
const notPendingChunk = 500

func (s *sqlStore) NotPending(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	args := make([]any, 0, min(len(ids), notPendingChunk))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), notPendingChunk)]
		ids = ids[len(chunk):]
		args = args[:0]
		for _, id := range chunk {
			args = append(args, id)
		}
		query := "SELECT id FROM approvals WHERE status <> 'pending' AND id IN (?" + strings.Repeat(",?", len(chunk)-1) + ")"
		rows, err := s.db.QueryContext(ctx, s.q(query), args...)
		if err != nil {
			return nil, fmt.Errorf("approvals: reading held approvals: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("approvals: reading held approvals: %w", err)
			}
			out = append(out, id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("approvals: reading held approvals: %w", err)
		}
	}
	return out, nil
}
