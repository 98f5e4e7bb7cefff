package audit

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/audit/sqldb"
)

// Filter selects audit rows. Empty fields match everything. Since is inclusive,
// Until exclusive.
type Filter struct {
	Since, Until time.Time
	Sub          string
	Org          string
	Tool         string
	Decision     string
	Kind         string
	ApprovalID   string
	Approver     string // who decided an approval (approval rows, and calls made with it)
	RequestID    string
	// Cursor continues a Query from a previous Page.NextCursor. Export ignores it.
	Cursor string
	// Limit is the page size for Query (1-1000, default 100). Export ignores it.
	Limit int
}

// Page is one page of Query results, newest first. NextCursor is empty on the
// last page.
type Page struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

const (
	defaultLimit = 100
	maxLimit     = 1000
	exportChunk  = 1000
)

// ParseFilter reads a Filter from query parameters: since, until (RFC 3339), sub,
// org, tool, decision, kind, approval_id, approver, request_id, cursor, limit (1-1000,
// default 100). Unknown parameters are refused. Every problem is reported, each
// naming its parameter.
func ParseFilter(v url.Values) (Filter, error) {
	f := Filter{Limit: defaultLimit}
	var errs []error
	for k, vals := range v {
		if len(vals) > 1 {
			errs = append(errs, fmt.Errorf("audit: parameter %q: given %d times, want once", k, len(vals)))
		}
		val := ""
		if len(vals) > 0 {
			val = vals[0]
		}
		switch k {
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				errs = append(errs, fmt.Errorf("audit: parameter %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", k))
				continue
			}
			if k == "since" {
				f.Since = t
			} else {
				f.Until = t
			}
		case "sub":
			f.Sub = val
		case "org":
			f.Org = val
		case "tool":
			f.Tool = val
		case "decision":
			if !slices.Contains(Decisions, val) {
				errs = append(errs, fmt.Errorf("audit: parameter %q: want one of %s, got %q", k, strings.Join(Decisions, ", "), val))
				continue
			}
			f.Decision = val
		case "kind":
			if !slices.Contains(Kinds, val) {
				errs = append(errs, fmt.Errorf("audit: parameter %q: want one of %s, got %q", k, strings.Join(Kinds, ", "), val))
				continue
			}
			f.Kind = val
		case "approval_id":
			f.ApprovalID = val
		case "approver":
			f.Approver = val
		case "request_id":
			f.RequestID = val
		case "cursor":
			if _, err := decodeCursor(val); err != nil {
				if _, cerr := decodeCentralCursor(val); cerr == nil {
					f.Cursor = val // a cursor of the central store's pages
					continue
				}
				errs = append(errs, fmt.Errorf("audit: parameter %q: %w", k, err))
				continue
			}
			f.Cursor = val
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxLimit {
				errs = append(errs, fmt.Errorf("audit: parameter %q: want an integer from 1 to %d", k, maxLimit))
				continue
			}
			f.Limit = n
		default:
			errs = append(errs, fmt.Errorf("audit: parameter %q: unknown", k))
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		errs = append(errs, errors.New(`audit: parameter "until": must be after "since"`))
	}
	if err := errors.Join(errs...); err != nil {
		return Filter{}, err
	}
	return f, nil
}

// The cursor is opaque to clients: the seq to continue below, base64url-encoded.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 's' {
		return 0, errors.New("malformed cursor")
	}
	n, err := strconv.ParseInt(string(b[1:]), 10, 64)
	if err != nil || n < 1 {
		return 0, errors.New("malformed cursor")
	}
	return n, nil
}

// where builds the WHERE clause (without seq bounds) and its arguments.
func (f *Filter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	if !f.Since.IsZero() {
		add("ts >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("ts < ?", f.Until.UnixNano())
	}
	for _, c := range []struct{ col, val string }{
		{"caller_org", f.Org}, {"tool", f.Tool}, {"decision", f.Decision},
		{"kind", f.Kind}, {"approval_id", f.ApprovalID}, {"approver", f.Approver},
	} {
		if c.val != "" {
			add(c.col+" = ?", c.val)
		}
	}
	// Caller and request id go through audit_lookup, which the writer fills shortly after
	// each commit; the rows past it are scanned. Either way the row's own column must
	// match: the side table (outside the chain) narrows the search, it never decides
	// which rows match, so an edit of it cannot attribute a row to another caller.
	for _, c := range []struct{ col, prefix, val string }{
		{"caller_sub", "s:", f.Sub}, {"request_id", "r:", f.RequestID},
	} {
		if c.val != "" {
			conds = append(conds, "(seq IN (SELECT seq FROM audit_lookup WHERE k = ?) OR seq > "+lookupThroughSQL+") AND "+c.col+" = ?")
			args = append(args, c.prefix+c.val, c.val)
		}
	}
	if len(conds) == 0 {
		return "1=1", nil
	}
	return strings.Join(conds, " AND "), args
}

// Reader reads an audit database without writing it; the CLI uses it while a
// server may be appending.
type Reader struct {
	db   *sql.DB
	path string
}

// OpenReader opens an existing audit database for reading.
func OpenReader(ctx context.Context, path string) (*Reader, error) {
	// query_only rather than mode=ro: a reader of a WAL database may need to create
	// its -shm index.
	db, err := sqldb.OpenSQLite(ctx, sqldb.SQLite{Path: path, Access: sqldb.QueryOnly, MaxOpenConns: 4})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Reader{db: db, path: path}, nil
}

// Close closes the read pool.
func (r *Reader) Close() error { return r.db.Close() }

// Query returns one page of rows matching f, newest first.
func (r *Reader) Query(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	if limit > maxLimit {
		limit = maxLimit
	}
	cond, args := f.where()
	if f.Cursor != "" {
		before, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, fmt.Errorf("audit: cursor: %w", err)
		}
		cond += " AND seq < ?"
		args = append(args, before)
	}
	args = append(args, limit+1)
	rows, err := r.db.QueryContext(ctx, `SELECT `+rowColumns+` FROM audit_events WHERE `+cond+
		` ORDER BY seq DESC LIMIT ?`, args...)
	if err != nil {
		return Page{}, fmt.Errorf("audit: query: %w", err)
	}
	defer rows.Close()
	page := Page{Events: make([]Event, 0, min(limit, 64))}
	var rw row
	for rows.Next() {
		if err := rows.Scan(rw.scanDest()...); err != nil {
			return Page{}, fmt.Errorf("audit: query: %w", err)
		}
		if len(page.Events) == limit {
			page.NextCursor = encodeCursor(page.Events[limit-1].Seq)
			break
		}
		page.Events = append(page.Events, rw.event())
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("audit: query: %w", err)
	}
	return page, nil
}

// scan calls fn for every row matching f with after < seq < before, oldest first,
// reading in chunks so no read transaction stays open for the whole export.
func (r *Reader) scan(ctx context.Context, f Filter, after, before int64, fn func(*row) error) (int64, error) {
	cond, args := f.where()
	q := `SELECT ` + rowColumns + ` FROM audit_events WHERE ` + cond + ` AND seq > ? AND seq < ? ORDER BY seq LIMIT ?`
	for {
		n := 0
		rows, err := r.db.QueryContext(ctx, q, append(args, after, before, exportChunk)...)
		if err != nil {
			return after, fmt.Errorf("audit: export: %w", err)
		}
		var rw row
		for rows.Next() {
			if err := rows.Scan(rw.scanDest()...); err != nil {
				rows.Close()
				return after, fmt.Errorf("audit: export: %w", err)
			}
			if err := fn(&rw); err != nil {
				rows.Close()
				return after, err
			}
			after = rw.Seq
			n++
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return after, fmt.Errorf("audit: export: %w", err)
		}
		if n < exportChunk {
			return after, nil
		}
	}
}

// Export streams every row matching f, oldest first, as "jsonl" (one Event per
// line) or "csv" (header row, then one row per event). Memory use does not grow
// with the number of rows in the database. Rows a server has acknowledged but not
// yet stored in the database (they are in its journal) are included: the journal
// is read first, every row before its first seq is in the database (rows leave the
// journal only once stored), and the journal's rows follow the database's.
func (r *Reader) Export(ctx context.Context, w io.Writer, format string, f Filter) error {
	out, err := newEncoder(w, format, false)
	if err != nil {
		return err
	}
	scan, err := readJournal(r.path + JournalSuffix)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	before := int64(math.MaxInt64)
	if len(scan.rows) > 0 {
		before = scan.rows[0].Seq
	}
	last, err := r.scan(ctx, f, 0, before, out.write)
	if err != nil {
		return err
	}
	// Rows pruned from the database may still be in the journal: they stay pruned.
	if a, err := latestAnchor(ctx, r.db); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	} else if a != nil {
		last = max(last, a.Seq)
	}
	for i := range scan.rows {
		jr := &scan.rows[i]
		if jr.Seq <= last || !f.matches(jr) {
			continue // a row read twice across a rotation, or filtered out
		}
		if err := out.write(jr); err != nil {
			return err
		}
		last = jr.Seq
	}
	return out.flush()
}

// matches is where() for a row in memory.
func (f *Filter) matches(r *row) bool {
	switch {
	case !f.Since.IsZero() && r.TS < f.Since.UnixNano(),
		!f.Until.IsZero() && r.TS >= f.Until.UnixNano():
		return false
	}
	for _, c := range []struct{ want, got string }{
		{f.Org, r.Org}, {f.Tool, r.Tool}, {f.Decision, r.Decision}, {f.Kind, r.Kind},
		{f.ApprovalID, r.ApprovalID}, {f.Approver, r.Approver}, {f.Sub, r.Sub}, {f.RequestID, r.RequestID},
	} {
		if c.want != "" && c.want != c.got {
			return false
		}
	}
	return true
}

// Tail writes the newest n rows (oldest of them first) as JSON lines; with follow
// it then polls every interval (bounded to 50ms-10s) for new rows until ctx ends.
func (r *Reader) Tail(ctx context.Context, w io.Writer, format string, n int, follow bool, interval time.Duration) error {
	out, err := newEncoder(w, format, false)
	if err != nil {
		return fmt.Errorf("audit: tail: %w", err)
	}
	var after int64
	if err := r.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_events`).Scan(&after); err != nil {
		return fmt.Errorf("audit: tail: %w", err)
	}
	after = max(after-int64(n), 0)
	interval = min(max(interval, 50*time.Millisecond), 10*time.Second)
	for {
		var err error
		if after, err = r.scan(ctx, Filter{}, after, math.MaxInt64, out.write); err != nil {
			return err
		}
		if err := out.flush(); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

var csvHeader = []string{"seq", "time", "kind", "request_id", "decision_id", "sub", "org",
	"workspace", "roles", "session", "client_addr", "surface", "tool", "method", "path",
	"arguments", "decision", "reason", "policy_revision", "approval_id", "approver",
	"status", "error_class", "latency_us", "prev_hash", "hash"}

type encoder struct {
	bw     *bufio.Writer
	json   *json.Encoder
	csv    *csv.Writer
	text   bool
	record []string
	// withLog adds the log id (logID, set before each write): the central store's
	// rows come from several logs.
	withLog bool
	logID   string
}

// Tail's human format: one row a line, in columns of these widths (a longer value pushes
// the rest of its line right rather than being cut), the reason last.
const (
	textTimeWidth     = 21 // 2006-01-02T15:04:05Z and a blank
	textCallerWidth   = 22
	textToolWidth     = 28
	textDecisionWidth = 20
)

// TextHeader is the first line of Tail's human format.
var TextHeader = textColumns("TIME", "CALLER", "TOOL", "DECISION", "REASON")

func textColumns(when, caller, tool, decision, reason string) string {
	var b strings.Builder
	pad := func(s string, w int) {
		b.WriteString(s)
		b.WriteString(strings.Repeat(" ", max(w-utf8.RuneCountInString(s), 1)))
	}
	pad(when, textTimeWidth)
	pad(caller, textCallerWidth)
	pad(tool, textToolWidth)
	pad(decision, textDecisionWidth)
	b.WriteString(reason)
	return strings.TrimRight(b.String(), " ")
}

// terminalSafe replaces control characters (escape sequences a caller could put in a
// tool name or reason, line breaks) so a row is one line and cannot drive the terminal.
func terminalSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, s)
}

// textLine is one row in Tail's human format: time, caller, tool, decision, reason. An
// outcome row's reason is its status, error class and latency.
func textLine(r *row) string {
	caller := r.Sub
	switch {
	case caller == "":
		caller = r.ClientAddr
	case r.Org != "":
		caller += "@" + r.Org
	}
	if caller == "" {
		caller = "-"
	}
	tool := r.Tool
	if tool == "" {
		tool = "-"
	}
	reason := r.Reason
	if r.Kind == string(KindOutcome) || (reason == "" && r.Status != 0) {
		reason = "status " + strconv.FormatInt(r.Status, 10)
		if r.ErrorClass != "" {
			reason += " " + r.ErrorClass
		}
		reason += " in " + (time.Duration(r.LatencyMicros) * time.Microsecond).String()
	}
	if r.ApprovalID != "" {
		reason += " (approval " + r.ApprovalID
		if r.Approver != "" {
			reason += " by " + r.Approver
		}
		reason += ")"
	}
	when := time.Unix(0, r.TS).UTC().Format("2006-01-02T15:04:05Z")
	return textColumns(when, terminalSafe(caller), terminalSafe(tool), terminalSafe(r.Decision), terminalSafe(reason))
}

// newEncoder writes rows as format; withLog names each row's log (a log_id member in
// JSON, a first log_id column in CSV).
func newEncoder(w io.Writer, format string, withLog bool) (*encoder, error) {
	e := &encoder{bw: bufio.NewWriterSize(w, 64*1024), withLog: withLog}
	switch format {
	case "jsonl":
		e.json = json.NewEncoder(e.bw)
		e.json.SetEscapeHTML(false)
	case "text":
		e.text = true
		if _, err := e.bw.WriteString(TextHeader + "\n"); err != nil {
			return nil, fmt.Errorf("audit: export: %w", err)
		}
	case "csv":
		e.csv = csv.NewWriter(e.bw)
		header := csvHeader
		if withLog {
			header = append([]string{"log_id"}, csvHeader...)
		}
		if err := e.csv.Write(header); err != nil {
			return nil, fmt.Errorf("audit: export: %w", err)
		}
		e.record = make([]string, len(csvHeader)+1)
	default:
		return nil, fmt.Errorf("audit: export format %q: want jsonl, csv or text", format)
	}
	return e, nil
}

func (e *encoder) write(r *row) error {
	if e.text {
		e.bw.WriteString(textLine(r))
		return e.bw.WriteByte('\n')
	}
	ev := r.event()
	if e.withLog {
		ev.LogID = e.logID
	}
	if e.json != nil {
		if err := e.json.Encode(&ev); err != nil {
			return fmt.Errorf("audit: export seq %d: %w", r.Seq, err)
		}
		return nil
	}
	rec := e.record[:0]
	if e.withLog {
		rec = append(rec, e.logID)
	}
	rec = append(rec, strconv.FormatInt(r.Seq, 10), ev.Time.Format(time.RFC3339Nano), r.Kind,
		r.RequestID, r.DecisionID, r.Sub, r.Org, r.Workspace, r.Roles, r.Session, r.ClientAddr,
		r.Surface, r.Tool, r.Method, r.Path, r.Args, r.Decision, r.Reason, r.PolicyRevision,
		r.ApprovalID, r.Approver, strconv.FormatInt(r.Status, 10), r.ErrorClass,
		strconv.FormatInt(r.LatencyMicros, 10), ev.PrevHash, ev.Hash)
	for i, s := range rec {
		rec[i] = csvSafe(s)
	}
	if err := e.csv.Write(rec); err != nil {
		return fmt.Errorf("audit: export seq %d: %w", r.Seq, err)
	}
	return nil
}

// csvSafe defuses spreadsheet formulas: a cell an attacker controls (a tool name,
// a reason) must not run when an auditor opens the export. Such cells get a
// leading apostrophe; JSON lines carry the exact values.
func csvSafe(s string) string {
	// Spreadsheets skip leading blanks and line breaks before reading a formula.
	t := strings.TrimLeft(s, " \t\r\n")
	if t != "" && strings.IndexByte("=+-@", t[0]) >= 0 || s != "" && strings.IndexByte("\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

func (e *encoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		if err := e.csv.Error(); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	if err := e.bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

const lookupThroughSQL = `(SELECT CAST(value AS INTEGER) FROM audit_meta WHERE key = 'lookup_through')`
