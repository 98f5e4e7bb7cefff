package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" driver

	"github.com/portcullis/portcullis/audit/sqldb"
)

// The central store (audit.central_url) is a PostgreSQL copy of every replica's
// chain: each replica keeps its own journal, SQLite database and chain under its own
// log id, and a Shipper copies the rows and signed checkpoints, in order and exactly
// once, into the tables below, keyed by (log_id, seq) and (log_id, id). Rows keep
// their stored bytes (hash, prev_hash, roles and argument text), so the central copy
// verifies with the same code as the local one. The tables are append-only (triggers
// refuse UPDATE and DELETE); an edit by someone who drops the triggers is what Verify
// finds.
//
// centralMigrations are the central tables' numbered schema files, applied by sqldb
// under the component "audit_central" (an advisory lock serialises replicas starting
// together).
//
//go:embed central_migrations/*.sql
var centralMigrations embed.FS

// centralRowColumns are rowColumns in the central tables, which add the log id.
const centralRowColumns = "log_id, " + rowColumns

const centralCheckpointColumns = "id, kind, seq, head_hash, ts, key_id, signature, signed_log_id"

// Central is the PostgreSQL audit store every replica ships to. It is safe for
// concurrent use.
type Central struct {
	db *sql.DB

	mu       sync.Mutex // guards migrated
	migrated bool
}

// OpenCentral connects to the PostgreSQL database at url and creates the central
// tables if needed (replicas starting together take turns under an advisory lock).
// Errors never include the URL, which may hold a password.
func OpenCentral(ctx context.Context, url string) (*Central, error) {
	c, err := NewCentral(url)
	if err != nil {
		return nil, err
	}
	if err := c.ensure(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// NewCentral is OpenCentral without connecting: the tables are created on first
// use. serve uses it so that a replica starts (and serves, its rows safe in its own
// database) while PostgreSQL is down.
func NewCentral(url string) (*Central, error) {
	if url == "" {
		return nil, errors.New("audit: central store: audit.central_url is empty")
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("audit: central store: audit.central_url: %w", redactURLError(err, url))
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Central{db: db}, nil
}

// ensure creates the tables once.
func (c *Central) ensure(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.migrated {
		return nil
	}
	if err := c.migrate(ctx); err != nil {
		return err
	}
	c.migrated = true
	return nil
}

// redactURLError keeps a URL (and its password) out of an error message.
func redactURLError(err error, url string) error {
	if url != "" && strings.Contains(err.Error(), url) {
		return errors.New(strings.ReplaceAll(err.Error(), url, "<audit.central_url>"))
	}
	return err
}

func (c *Central) migrate(ctx context.Context) error {
	files, err := fs.Sub(centralMigrations, "central_migrations")
	if err != nil {
		return err
	}
	if _, err := (sqldb.Migrations{Component: "audit_central", FS: files, Dialect: sqldb.PostgresDialect}).Run(ctx, c.db); err != nil {
		return fmt.Errorf("audit: central store: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (c *Central) Close() error { return c.db.Close() }

// Ping checks that PostgreSQL answers.
func (c *Central) Ping(ctx context.Context) error { return c.db.PingContext(ctx) }

// CentralHead is how far the central store holds one log.
type CentralHead struct {
	Seq           int64  // newest row (0: none)
	Hash          []byte // its hash
	CheckpointID  int64  // newest checkpoint's local id (0: none)
	CheckpointSig []byte // and its signature
}

// Head returns how far the central store holds log logID.
func (c *Central) Head(ctx context.Context, logID string) (CentralHead, error) {
	var h CentralHead
	if err := c.ensure(ctx); err != nil {
		return h, err
	}
	err := c.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_central_events WHERE log_id = $1 ORDER BY seq DESC LIMIT 1`, logID).
		Scan(&h.Seq, &h.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("audit: central store: reading log %s: %w", logID, err)
	}
	err = c.db.QueryRowContext(ctx, `SELECT id, signature FROM audit_central_checkpoints WHERE log_id = $1 ORDER BY id DESC LIMIT 1`, logID).
		Scan(&h.CheckpointID, &h.CheckpointSig)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("audit: central store: reading log %s: %w", logID, err)
	}
	return h, nil
}

// Logs returns the ids of every log the central store holds, sorted.
func (c *Central) Logs(ctx context.Context) ([]string, error) {
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	// Every log id with rows or checkpoints, registered or not: rows inserted under an
	// id no shipper registered are still served by Query and Export, so they must be
	// verified (they have no signed checkpoint, and fail). The rows' ids are read by a
	// walk of the primary key, one probe per log, not a scan.
	rows, err := c.db.QueryContext(ctx, `WITH RECURSIVE ev(log_id) AS (
			(SELECT log_id FROM audit_central_events ORDER BY log_id LIMIT 1)
			UNION ALL
			SELECT (SELECT e.log_id FROM audit_central_events e WHERE e.log_id > ev.log_id ORDER BY e.log_id LIMIT 1)
			FROM ev WHERE ev.log_id IS NOT NULL)
		SELECT log_id FROM ev WHERE log_id IS NOT NULL
		UNION SELECT log_id FROM audit_central_logs
		UNION SELECT DISTINCT log_id FROM audit_central_checkpoints ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("audit: central store: listing logs: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("audit: central store: listing logs: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// ErrCentralFault marks a disagreement between a replica and the central store
// (a row or checkpoint already there with other contents, or a local row that does
// not continue what was shipped). The shipper stops for that log and reports it;
// nothing central is ever overwritten.
var ErrCentralFault = errors.New("audit: central store disagrees with the local log")

// store copies rows (in seq order, continuing the central chain) and checkpoints
// (in id order) of log logID in one transaction. Rows or checkpoints already
// present must be byte-identical, else the whole batch is refused with
// ErrCentralFault.
//
// New rows go in with COPY (binary): against a multi-row INSERT it costs PostgreSQL
// and the replica about half the CPU per row, which on a busy replica is most of
// what shipping costs. COPY has no ON CONFLICT, so an advisory lock on the log id is
// taken first: with it held, the central head cannot move, the rows up to it are
// compared, and only those after it are copied. Shipping needs only SELECT and INSERT
// on the central tables.
func (c *Central) store(ctx context.Context, logID string, rows []row, cps []checkpoint) error {
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("audit: central store: unexpected driver connection %T", dc)
		}
		tx, err := sc.Conn().Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, `INSERT INTO audit_central_logs (log_id) VALUES ($1) ON CONFLICT DO NOTHING`, logID); err != nil {
			return err
		}
		// One shipper of this log at a time (a lock needing no privilege on the tables).
		// Waited for briefly: the session of a shipper that just died may hold it until
		// PostgreSQL notices; a holder past that is someone else (any login can take an
		// advisory lock), and the pass fails, saying so, rather than stall.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+shipLockWait+`'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('portcullis:ship:' || $1))`, logID); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
				return fmt.Errorf("log %s: another database session has held its shipping lock for over %s (advisory lock on hashtext('portcullis:ship:%s'))", logID, shipLockWait, logID)
			}
			return err
		}
		var head int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_central_events WHERE log_id = $1`, logID).Scan(&head); err != nil {
			return err
		}
		// Rows up to the head are there already (a pass cut short after its commit, or
		// another process shipping the same log): they must be the same rows.
		fresh := sort.Search(len(rows), func(i int) bool { return rows[i].Seq > head })
		if fresh > 0 {
			if err := sameRows(ctx, tx, logID, rows[:fresh]); err != nil {
				return err
			}
		}
		if rest := rows[fresh:]; len(rest) > 0 {
			vals := make([]any, 0, 27)
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_central_events"}, centralRowColumnList,
				pgx.CopyFromFunc(func() ([]any, error) {
					if len(rest) == 0 {
						return nil, nil
					}
					vals = rest[0].insertArgs(append(vals[:0], logID))
					rest = rest[1:]
					return vals, nil
				}))
			if err != nil {
				return fmt.Errorf("copying rows %d-%d: %w", rows[fresh].Seq, rows[len(rows)-1].Seq, err)
			}
			if want := int64(len(rows) - fresh); n != want {
				return fmt.Errorf("copying rows %d-%d: %d of %d stored", rows[fresh].Seq, rows[len(rows)-1].Seq, n, want)
			}
		}
		for i := range cps {
			cp := &cps[i]
			tag, err := tx.Exec(ctx, `INSERT INTO audit_central_checkpoints (log_id, `+centralCheckpointColumns+`)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT DO NOTHING`,
				logID, cp.ID, cp.Kind, cp.Seq, cp.Head, cp.TS, cp.KeyID, cp.Signature, cp.LogID)
			if err != nil {
				return fmt.Errorf("inserting checkpoint id %d: %w", cp.ID, err)
			}
			if tag.RowsAffected() == 0 {
				var sig []byte
				if err := tx.QueryRow(ctx, `SELECT signature FROM audit_central_checkpoints WHERE log_id = $1 AND id = $2`,
					logID, cp.ID).Scan(&sig); err != nil {
					return fmt.Errorf("reading checkpoint id %d: %w", cp.ID, err)
				}
				if !bytes.Equal(sig, cp.Signature) {
					return fmt.Errorf("%w: log %s checkpoint id %d: the central copy has another signature", ErrCentralFault, logID, cp.ID)
				}
			}
		}
		return tx.Commit(ctx)
	})
}

// shipLockWait is how long a pass waits for its log's shipping lock.
const shipLockWait = "3s"

// centralRowColumnList is centralRowColumns as COPY takes them.
var centralRowColumnList = func() []string {
	cols := strings.Split(centralRowColumns, ",")
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	return cols
}()

// sameRows checks that the central copies of rows are byte-identical (by hash).
func sameRows(ctx context.Context, tx pgx.Tx, logID string, rows []row) error {
	q, err := tx.Query(ctx, `SELECT seq, hash FROM audit_central_events WHERE log_id = $1 AND seq BETWEEN $2 AND $3`,
		logID, rows[0].Seq, rows[len(rows)-1].Seq)
	if err != nil {
		return err
	}
	defer q.Close()
	have := make(map[int64][]byte, len(rows))
	for q.Next() {
		var seq int64
		var h []byte
		if err := q.Scan(&seq, &h); err != nil {
			return err
		}
		have[seq] = h
	}
	if err := q.Err(); err != nil {
		return err
	}
	for i := range rows {
		if h, ok := have[rows[i].Seq]; ok && !bytes.Equal(h, rows[i].Hash) {
			return fmt.Errorf("%w: log %s row seq %d: the central copy has another hash", ErrCentralFault, logID, rows[i].Seq)
		}
	}
	return nil
}

// centralWhere is Filter.where for the central tables, with $n placeholders from
// $1; it returns the next placeholder number.
func (f *Filter) centralWhere() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	if !f.Since.IsZero() {
		add("ts >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("ts < ?", f.Until.UnixNano())
	}
	for _, c := range []struct{ col, val string }{
		{"caller_org", f.Org}, {"tool", f.Tool}, {"decision", f.Decision}, {"kind", f.Kind},
		{"approval_id", f.ApprovalID}, {"approver", f.Approver}, {"caller_sub", f.Sub}, {"request_id", f.RequestID},
	} {
		if c.val != "" {
			add(c.col+" = ?", c.val)
		}
	}
	if len(conds) == 0 {
		return "TRUE", nil
	}
	return strings.Join(conds, " AND "), args
}

// A central cursor continues below (ts, log_id, seq): rows of several logs are
// ordered by time, then log, then seq.
type centralCursor struct {
	ts    int64
	logID string
	seq   int64
}

func encodeCentralCursor(c centralCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c" + strconv.FormatInt(c.ts, 10) + "." + c.logID + "." + strconv.FormatInt(c.seq, 10)))
}

func decodeCentralCursor(s string) (centralCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != 'c' {
		return centralCursor{}, errors.New("malformed cursor")
	}
	parts := strings.Split(string(b[1:]), ".")
	if len(parts) != 3 {
		return centralCursor{}, errors.New("malformed cursor")
	}
	ts, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || seq < 1 {
		return centralCursor{}, errors.New("malformed cursor")
	}
	return centralCursor{ts: ts, logID: parts[1], seq: seq}, nil
}

// Query returns one page of rows of every log matching f, newest first (by time,
// then log id, then seq); each Event names its LogID.
func (c *Central) Query(ctx context.Context, f Filter) (Page, error) {
	if err := c.ensure(ctx); err != nil {
		return Page{}, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	cond, args := f.centralWhere()
	if f.Cursor != "" {
		cur, err := decodeCentralCursor(f.Cursor)
		if err != nil {
			return Page{}, fmt.Errorf("audit: cursor: %w", err)
		}
		n := len(args)
		cond += fmt.Sprintf(" AND (ts, log_id, seq) < ($%d, $%d, $%d)", n+1, n+2, n+3)
		args = append(args, cur.ts, cur.logID, cur.seq)
	}
	args = append(args, limit+1)
	rows, err := c.db.QueryContext(ctx, `SELECT `+centralRowColumns+` FROM audit_central_events WHERE `+cond+
		fmt.Sprintf(` ORDER BY ts DESC, log_id DESC, seq DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return Page{}, fmt.Errorf("audit: central query: %w", err)
	}
	defer rows.Close()
	page := Page{Events: make([]Event, 0, min(limit, 64))}
	var rw row
	var logID string
	dest := append([]any{&logID}, rw.scanDest()...)
	var last centralCursor
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return Page{}, fmt.Errorf("audit: central query: %w", err)
		}
		if len(page.Events) == limit {
			page.NextCursor = encodeCentralCursor(last)
			break
		}
		ev := rw.event()
		ev.LogID = logID
		page.Events = append(page.Events, ev)
		last = centralCursor{ts: rw.TS, logID: logID, seq: rw.Seq}
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("audit: central query: %w", err)
	}
	return page, nil
}

// Export streams every row of every log matching f, log by log (in log id order),
// each oldest first, as "jsonl" (each Event names its log_id) or "csv" (a log_id
// column first). Rows are read in chunks: memory does not grow with the store.
func (c *Central) Export(ctx context.Context, w io.Writer, format string, f Filter) error {
	if err := c.ensure(ctx); err != nil {
		return err
	}
	out, err := newEncoder(w, format, true)
	if err != nil {
		return err
	}
	cond, args := f.centralWhere()
	n := len(args)
	q := `SELECT ` + centralRowColumns + ` FROM audit_central_events WHERE ` + cond +
		fmt.Sprintf(` AND (log_id, seq) > ($%d, $%d) ORDER BY log_id, seq LIMIT $%d`, n+1, n+2, n+3)
	afterLog, afterSeq := "", int64(0)
	for {
		rows, err := c.db.QueryContext(ctx, q, append(args, afterLog, afterSeq, exportChunk)...)
		if err != nil {
			return fmt.Errorf("audit: central export: %w", err)
		}
		got := 0
		var rw row
		dest := append([]any{&out.logID}, rw.scanDest()...)
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return fmt.Errorf("audit: central export: %w", err)
			}
			if err := out.write(&rw); err != nil {
				rows.Close()
				return err
			}
			afterLog, afterSeq = out.logID, rw.Seq
			got++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("audit: central export: %w", err)
		}
		if got < exportChunk {
			return out.flush()
		}
	}
}

// CentralReport is the result of Central.Verify: one Report per log.
type CentralReport struct {
	OK       bool     `json:"ok"`
	Logs     []Report `json:"logs"`
	Problems []string `json:"problems,omitempty"` // each names its log id
}

func (r *CentralReport) String() string {
	if r.OK {
		var rows int64
		for _, l := range r.Logs {
			rows += l.Rows
		}
		return fmt.Sprintf("OK: %d logs, %d rows verified in the central store", len(r.Logs), rows)
	}
	return "FAILED: " + strings.Join(r.Problems, "; ")
}

// Verify checks every log in the central store: each row's seq, link and hash, and
// each checkpoint's signature (by one of keys, matched by key id), log id and head
// hash, as Verify does for one local database. Faults name the log id and the seq
// (or checkpoint id). Each log is read in one REPEATABLE READ snapshot, so it may
// run while replicas ship.
func (c *Central) Verify(ctx context.Context, keys []ed25519.PublicKey) (CentralReport, error) {
	rep := CentralReport{}
	ids, err := c.Logs(ctx)
	if err != nil {
		return rep, err
	}
	for _, id := range ids {
		lr, err := c.verifyLog(ctx, id, keys)
		if err != nil {
			return rep, err
		}
		for _, p := range lr.Problems {
			rep.Problems = append(rep.Problems, "log "+id+": "+p)
		}
		rep.Logs = append(rep.Logs, lr)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// centralAppendOnlyBody is the body of audit_central_append_only() as created.
const centralAppendOnlyBody = "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END"

// centralTriggers are the triggers that keep the central tables append-only.
var centralTriggers = []string{"audit_central_events_append_only", "audit_central_checkpoints_append_only",
	"audit_central_events_no_truncate", "audit_central_checkpoints_no_truncate",
	"audit_central_logs_append_only", "audit_central_logs_no_truncate"}

// VerifyLog is Verify for one log: its chain and checkpoints in the central store,
// checked against keys. A log the store does not hold verifies as no rows.
func (c *Central) VerifyLog(ctx context.Context, logID string, keys []ed25519.PublicKey) (Report, error) {
	if err := c.ensure(ctx); err != nil {
		return Report{LogID: logID}, err
	}
	return c.verifyLog(ctx, logID, keys)
}

func keyFor(keys []ed25519.PublicKey, keyID string) ed25519.PublicKey {
	for _, k := range keys {
		if KeyID(k) == keyID {
			return k
		}
	}
	if len(keys) > 0 {
		return keys[0] // verifySig then names the mismatch
	}
	return nil
}

func (c *Central) loadCheckpoints(ctx context.Context, q querier, logID string) ([]checkpoint, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+centralCheckpointColumns+` FROM audit_central_checkpoints
		WHERE log_id = $1 ORDER BY seq, id`, logID)
	if err != nil {
		return nil, fmt.Errorf("audit: central store: reading checkpoints of log %s: %w", logID, err)
	}
	defer rows.Close()
	var cps []checkpoint
	for rows.Next() {
		var cp checkpoint
		if err := rows.Scan(cp.scanDest()...); err != nil {
			return nil, fmt.Errorf("audit: central store: reading checkpoints of log %s: %w", logID, err)
		}
		cps = append(cps, cp)
	}
	return cps, rows.Err()
}

func (c *Central) verifyLog(ctx context.Context, logID string, keys []ed25519.PublicKey) (Report, error) {
	rep := Report{LogID: logID}
	tx, err := c.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return rep, fmt.Errorf("audit: central verify: %w", err)
	}
	defer tx.Rollback()
	// The tables' guards, as far as the database can show them: triggers enabled ALWAYS
	// (so session_replication_role = replica does not skip them), their function as
	// created, no row-level security (which could hide rows from this reader). Whoever
	// owns the tables can still lift them and put them back unseen; the signed
	// checkpoints, and each replica's shipping mark, are what that cannot forge.
	var triggers int
	var body string
	var rls bool
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'A' AND tgname = ANY($1)
			AND tgrelid IN ('audit_central_events'::regclass, 'audit_central_checkpoints'::regclass, 'audit_central_logs'::regclass)),
		COALESCE((SELECT prosrc FROM pg_proc WHERE oid = 'audit_central_append_only'::regproc), ''),
		(SELECT bool_or(relrowsecurity OR relforcerowsecurity) FROM pg_class
			WHERE oid IN ('audit_central_events'::regclass, 'audit_central_checkpoints'::regclass, 'audit_central_logs'::regclass))`,
		centralTriggers).Scan(&triggers, &body, &rls); err != nil {
		return rep, fmt.Errorf("audit: central verify: %w", err)
	}
	if triggers != len(centralTriggers) {
		rep.Warnings = append(rep.Warnings, "the central tables' append-only triggers are missing, disabled or not ENABLE ALWAYS (someone may have edited, deleted or truncated rows)")
	}
	if strings.TrimSpace(body) != centralAppendOnlyBody {
		rep.Warnings = append(rep.Warnings, "the central tables' append-only trigger function was replaced (someone may have edited, deleted or truncated rows)")
	}
	if rls {
		rep.Warnings = append(rep.Warnings, "row-level security is on for the central tables (rows may be hidden from this check)")
	}
	var registered bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM audit_central_logs WHERE log_id = $1)`, logID).Scan(&registered); err != nil {
		return rep, fmt.Errorf("audit: central verify: %w", err)
	}
	if !registered {
		rep.Problems = append(rep.Problems, "no shipper registered this log id (its rows or checkpoints were inserted directly)")
	}
	cps, err := c.loadCheckpoints(ctx, tx, logID)
	if err != nil {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	valid := checkCheckpoints(&rep, cps, logID, func(cp *checkpoint) ed25519.PublicKey { return keyFor(keys, cp.KeyID) })
	anchors := map[int64][]byte{} // prune anchors by seq
	for i := range cps {
		if cp := &cps[i]; valid[i] && cp.Kind == CheckpointPrune {
			anchors[cp.Seq] = cp.Head
		}
	}
	var first int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MIN(seq), 0) FROM audit_central_events WHERE log_id = $1`, logID).Scan(&first); err != nil {
		return rep, fmt.Errorf("audit: central verify: %w", err)
	}
	expect, prev := int64(1), make([]byte, 32)
	if first > 1 {
		// The replica had pruned rows before they were shipped: the chain must start
		// right after a signed prune anchor.
		if h, ok := anchors[first-1]; ok {
			expect, prev = first, h
			rep.PrunedThrough = first - 1
		}
	}
	w := newChainWalk(&rep, cps, valid, expect, prev, "central chain")
	if err := w.walk(ctx, tx, "audit: central verify", "",
		`SELECT `+rowColumns+` FROM audit_central_events WHERE log_id = $1 ORDER BY seq`, logID); err != nil {
		return rep, err
	}
	return rep, nil
}

// centralTail returns the central (seq, hash) of log logID's rows after seq from,
// and its checkpoints, for VerifyAgainstCentral.
func (c *Central) centralTail(ctx context.Context, logID string, from int64) (map[int64][]byte, []checkpoint, error) {
	cps, err := c.loadCheckpoints(ctx, c.db, logID)
	if err != nil {
		return nil, nil, err
	}
	rows, err := c.db.QueryContext(ctx, `SELECT seq, hash FROM audit_central_events WHERE log_id = $1 AND seq > $2`, logID, from)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: central store: reading log %s: %w", logID, err)
	}
	defer rows.Close()
	tail := map[int64][]byte{}
	for rows.Next() {
		var seq int64
		var h []byte
		if err := rows.Scan(&seq, &h); err != nil {
			return nil, nil, fmt.Errorf("audit: central store: reading log %s: %w", logID, err)
		}
		tail[seq] = h
	}
	return tail, cps, rows.Err()
}

// VerifyAgainstCentral is Verify of the local database at dbPath, with the central
// store as its witness: every central checkpoint of this log must verify and the
// local chain must still hold the row it signed, and every row shipped after the
// newest central checkpoint (the tail no checkpoint signs) must still be in the
// local chain, unchanged. Rows shipped and then erased locally, with or without
// their checkpoints, are faults naming the seq.
func VerifyAgainstCentral(ctx context.Context, dbPath string, pub ed25519.PublicKey, c *Central) (Report, error) {
	if err := c.ensure(ctx); err != nil {
		return Report{}, err
	}
	rd, err := OpenReader(ctx, dbPath)
	if err != nil {
		return Report{}, err
	}
	logID, err := readLogID(ctx, rd.db)
	rd.Close()
	if err != nil {
		return Report{}, err
	}
	if logID == "" {
		return Report{}, fmt.Errorf("audit: %s has no log id (no server of this version has opened it)", dbPath)
	}
	var newestCP int64
	cpsSeq, err := c.loadCheckpoints(ctx, c.db, logID)
	if err != nil {
		return Report{}, err
	}
	for _, cp := range cpsSeq {
		newestCP = max(newestCP, cp.Seq)
	}
	tail, cps, err := c.centralTail(ctx, logID, newestCP)
	if err != nil {
		return Report{}, err
	}
	witness := make([]Witnessed, len(cps))
	for i := range cps {
		witness[i] = Witnessed{checkpoint: cps[i]} // Line 0: from the central store
	}
	seqs := make([]int64, 0, len(tail))
	for s := range tail {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	rep, err := verifyLocal(ctx, dbPath, pub, witness, seqs)
	if err != nil {
		return rep, err
	}
	differs := false // the first differing row is reported
	for _, s := range seqs {
		switch h := rep.witnessed[s]; {
		case s > rep.LastSeq, s <= rep.PrunedThrough:
		case h == nil:
			rep.Problems = append(rep.Problems, fmt.Sprintf("row seq %d (shipped to the central store) could not be checked (the chain is broken before it)", s))
		case !bytes.Equal(h, tail[s]) && !differs:
			differs = true
			rep.Problems = append(rep.Problems, fmt.Sprintf("row seq %d: differs from the copy shipped to the central store (row rewritten after shipping)", s))
			if rep.BadSeq == 0 || s < rep.BadSeq {
				rep.BadSeq = s
			}
		}
	}
	var centralMax int64
	if err := c.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_central_events WHERE log_id = $1`, logID).Scan(&centralMax); err != nil {
		return rep, fmt.Errorf("audit: central store: reading log %s: %w", logID, err)
	}
	if centralMax > rep.LastSeq {
		rep.Problems = append(rep.Problems, fmt.Sprintf("rows seq %d-%d of log %s were shipped to the central store but are missing here (erased after shipping)",
			rep.LastSeq+1, centralMax, logID))
		if rep.BadSeq == 0 {
			rep.BadSeq = rep.LastSeq + 1
		}
	}
	// The other way round: the central store must still hold what it acknowledged.
	var centralCP int64
	for _, cp := range cpsSeq {
		centralCP = max(centralCP, cp.ID)
	}
	if seq, cp := newShipMark(dbPath, logID).load(); centralMax < seq || centralCP < cp {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the central store holds rows of log %s to seq %d and checkpoints to id %d, but had acknowledged rows to seq %d and checkpoints to id %d (removed centrally; %s)",
			logID, centralMax, centralCP, seq, cp, dbPath+ShipMarkSuffix))
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}
