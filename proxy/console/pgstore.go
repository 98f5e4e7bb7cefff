package console

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb"
)

//go:embed migrations
var migrationFiles embed.FS

const (
	// maxTouchInterval: a session's last use is written at most this often (or a tenth
	// of the idle timeout, if shorter), not on every request, so the idle timeout may
	// end a session up to that much early.
	maxTouchInterval = 5 * time.Second
	// sweepInterval and sweepBatch bound the periodic removal of expired rows.
	sweepInterval = time.Minute
	sweepBatch    = 1000
	sweepRounds   = 10
)

// pgStore is the store on PostgreSQL, shared by replicas. Expiry is decided with the
// console's clock, so replicas must keep time; sign-ins take a lock so the session
// bound holds across them.
type pgStore struct {
	db         *sql.DB
	idle       time.Duration
	lim        storeLimits
	now        func() time.Time
	touchEvery time.Duration
	log        *slog.Logger
	stop       context.CancelFunc
	done       chan struct{}
}

// openPostgres connects to PostgreSQL, migrates the console's tables (component
// "console" in schema_migrations) and starts the periodic sweep. Errors never include
// the URL, which may hold a password.
func openPostgres(ctx context.Context, url string, lim storeLimits, now func() time.Time, logger *slog.Logger) (*pgStore, error) {
	db, err := sqldb.OpenPostgres(ctx, url, 8)
	if err != nil {
		return nil, fmt.Errorf("console: session store: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations/postgres")
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	m := sqldb.Migrations{Component: "console", FS: sub, Dialect: sqldb.PostgresDialect, Logger: logger}
	if _, err := m.Run(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("console: session store: %w", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := &pgStore{db: db, idle: lim.idle, lim: lim, now: now, touchEvery: min(maxTouchInterval, lim.idle/10),
		log: logger, stop: stop, done: make(chan struct{})}
	go s.sweepLoop(sctx)
	return s, nil
}

func (s *pgStore) close() error {
	s.stop()
	<-s.done
	return s.db.Close()
}

// deadCond is a session past its absolute expiry or idle too long; args: now, now - idle.
const deadCond = `(expires_at <= $1 OR last_seen <= $2)`

func (s *pgStore) cutoffs() (nowMs, idleMs int64) {
	now := s.now()
	return now.UnixMilli(), now.Add(-s.idle).UnixMilli()
}

func (s *pgStore) createSession(ctx context.Context, key [32]byte, se *session) error {
	roles, err := json.Marshal(se.caller.Roles)
	if err != nil {
		return fmt.Errorf("console: encoding roles: %w", err)
	}
	nowMs, idleMs := s.cutoffs()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("console: starting a session: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Sign-ins one at a time across replicas: the count below stays true until commit.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis:console:sessions'))`); err != nil {
		return fmt.Errorf("console: starting a session: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE key IN
		(SELECT key FROM console_sessions WHERE `+deadCond+` LIMIT `+fmt.Sprint(sweepBatch)+` FOR UPDATE SKIP LOCKED)`, nowMs, idleMs); err != nil {
		return fmt.Errorf("console: sweeping sessions: %w", err)
	}
	c := se.caller
	if s.lim.maxPerSubject > 0 {
		// The subject's own: all but its maxPerSubject-1 most recently used live
		// sessions end, so this one fits. Nobody else's.
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE key IN
			(SELECT key FROM console_sessions WHERE caller_org = $3 AND caller_sub = $4 AND method = $6 AND NOT `+deadCond+`
			ORDER BY last_seen DESC, key OFFSET $5)`, nowMs, idleMs, c.Org, c.Sub, s.lim.maxPerSubject-1, se.method); err != nil {
			return fmt.Errorf("console: ending the subject's least recently used session: %w", err)
		}
	}
	var live int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM console_sessions WHERE NOT `+deadCond, nowMs, idleMs).Scan(&live); err != nil {
		return fmt.Errorf("console: counting sessions: %w", err)
	}
	if live >= s.lim.maxSessions {
		return errSessionsFull // the rollback keeps the subject's sessions too
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (key, csrf, caller_sub, caller_org, caller_workspace,
		caller_roles, caller_session, method, created_at, last_seen, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		key[:], se.csrf, c.Sub, c.Org, c.Workspace, string(roles), c.Session, se.method,
		se.created.UnixMilli(), se.lastSeen.UnixMilli(), se.expires.UnixMilli()); err != nil {
		return fmt.Errorf("console: storing the session: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("console: storing the session: %w", err)
	}
	return nil
}

func (s *pgStore) getSession(ctx context.Context, key [32]byte, touch bool) (*session, error) {
	var (
		se                       session
		roles                    string
		created, seen, expiresAt int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT csrf, caller_sub, caller_org, caller_workspace, caller_roles, caller_session,
		method, created_at, last_seen, expires_at FROM console_sessions WHERE key = $1`, key[:]).Scan(
		&se.csrf, &se.caller.Sub, &se.caller.Org, &se.caller.Workspace, &roles, &se.caller.Session,
		&se.method, &created, &seen, &expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("console: reading the session: %w", err)
	}
	if err := json.Unmarshal([]byte(roles), &se.caller.Roles); err != nil {
		return nil, fmt.Errorf("console: decoding the session's roles: %w", err)
	}
	se.created, se.lastSeen, se.expires = time.UnixMilli(created), time.UnixMilli(seen), time.UnixMilli(expiresAt)
	now := s.now()
	if sessionDead(&se, now, s.idle) {
		// Conditional: another replica may have just seen it used.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE key = $3 AND `+deadCond,
			now.UnixMilli(), now.Add(-s.idle).UnixMilli(), key[:]); err != nil {
			return nil, fmt.Errorf("console: ending an expired session: %w", err)
		}
		return nil, nil
	}
	if touch && now.Sub(se.lastSeen) >= s.touchEvery {
		if _, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET last_seen = GREATEST(last_seen, $2) WHERE key = $1`,
			key[:], now.UnixMilli()); err != nil {
			return nil, fmt.Errorf("console: marking the session used: %w", err)
		}
		se.lastSeen = now
	}
	return &se, nil
}

func (s *pgStore) deleteSession(ctx context.Context, key [32]byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE key = $1`, key[:]); err != nil {
		return fmt.Errorf("console: ending the session: %w", err)
	}
	return nil
}

// putLogin counts and inserts under an advisory lock of its own, in one transaction:
// the caps hold exactly across replicas, and no statement here deletes rows (expired
// ones are not counted; the sweep removes them), so concurrent sign-ins queue on the
// lock and never deadlock on each other's rows.
func (s *pgStore) putLogin(ctx context.Context, key [32]byte, p *pendingLogin) error {
	nowMs := s.now().UnixMilli()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("console: starting a sign-in: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis:console:logins'))`); err != nil {
		return fmt.Errorf("console: starting a sign-in: %w", err)
	}
	var all, fromAddr, fromNet int
	if err := tx.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE addr = $2), count(*) FILTER (WHERE network = $3)
		FROM console_logins WHERE expires_at >= $1`, nowMs, p.addr, p.network).Scan(&all, &fromAddr, &fromNet); err != nil {
		return fmt.Errorf("console: counting sign-ins: %w", err)
	}
	if s.lim.maxLoginsPerAddr > 0 && fromAddr >= s.lim.maxLoginsPerAddr {
		return errAddressLoginsFull
	}
	if s.lim.maxLoginsPerNet > 0 && fromNet >= s.lim.maxLoginsPerNet {
		return errNetworkLoginsFull
	}
	if all >= s.lim.maxLogins {
		return errLoginsFull
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO console_logins (key, verifier, nonce, binding, return_to, addr, network, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, key[:], p.verifier, p.nonce, p.binding[:], p.returnTo, p.addr, p.network, p.expires.UnixMilli()); err != nil {
		return fmt.Errorf("console: storing the sign-in: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("console: storing the sign-in: %w", err)
	}
	return nil
}

func (s *pgStore) takeLogin(ctx context.Context, key [32]byte) (*pendingLogin, error) {
	var (
		p         pendingLogin
		binding   []byte
		expiresAt int64
	)
	// One statement: of concurrent takers, the first deletes the row and the others
	// (waiting on its lock) find nothing left to delete.
	err := s.db.QueryRowContext(ctx, `DELETE FROM console_logins WHERE key = $1
		RETURNING verifier, nonce, binding, return_to, addr, network, expires_at`, key[:]).Scan(&p.verifier, &p.nonce, &binding, &p.returnTo, &p.addr, &p.network, &expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("console: taking the sign-in: %w", err)
	}
	p.expires = time.UnixMilli(expiresAt)
	if copy(p.binding[:], binding) != len(p.binding) || s.now().After(p.expires) {
		return nil, nil
	}
	return &p, nil
}

// sweep deletes expired sessions and sign-ins, at most sweepRounds batches of each, and
// returns how many rows went. Every batch delete (here, on other replicas, in a
// sign-in) skips rows another holds locked: they never wait on each other, so never
// deadlock.
func (s *pgStore) sweep(ctx context.Context) (int64, error) {
	var total int64
	for _, q := range []struct {
		query string
		args  func() []any
	}{
		{`DELETE FROM console_sessions WHERE key IN (SELECT key FROM console_sessions WHERE ` + deadCond + ` LIMIT ` + fmt.Sprint(sweepBatch) + ` FOR UPDATE SKIP LOCKED)`,
			func() []any { n, i := s.cutoffs(); return []any{n, i} }},
		{`DELETE FROM console_logins WHERE key IN (SELECT key FROM console_logins WHERE expires_at < $1 LIMIT ` + fmt.Sprint(sweepBatch) + ` FOR UPDATE SKIP LOCKED)`,
			func() []any { return []any{s.now().UnixMilli()} }},
	} {
		for range sweepRounds {
			res, err := s.db.ExecContext(ctx, q.query, q.args()...)
			if err != nil {
				return total, fmt.Errorf("console: sweeping expired sessions: %w", err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < sweepBatch {
				break
			}
		}
	}
	return total, nil
}

func (s *pgStore) sweepLoop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		if _, err := s.sweep(sctx); err != nil && ctx.Err() == nil {
			s.log.Warn("console: sweeping expired sessions failed; they are refused anyway and swept later", "err", err)
		}
		cancel()
	}
}
