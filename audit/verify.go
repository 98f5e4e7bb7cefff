package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Report is the result of Verify. OK is true only when no row or checkpoint is at
// fault; Warnings never make it false.
type Report struct {
	OK            bool   `json:"ok"`
	LogID         string `json:"log_id,omitempty"` // audit_meta log_id: the log its checkpoints must name
	Rows          int64  `json:"rows"`
	FirstSeq      int64  `json:"first_seq"`
	LastSeq       int64  `json:"last_seq"`
	Checkpoints   int    `json:"checkpoints"`
	PrunedThrough int64  `json:"pruned_through,omitempty"`
	UnsignedTail  int64  `json:"unsigned_tail"` // rows after the newest checkpoint
	// Journaled counts the rows only the journal holds (acknowledged, not yet in the
	// database: serve was killed, or is storing them); Rows includes them.
	Journaled     int64    `json:"journaled,omitempty"`
	BadSeq        int64    `json:"bad_seq,omitempty"`
	BadCheckpoint int64    `json:"bad_checkpoint_id,omitempty"`
	Problems      []string `json:"problems,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`

	// Where the database's chain ended, for the journal's rows to continue it.
	next    int64
	head    []byte
	broken  bool
	overlap map[int64][]byte // hashes of database rows the journal also holds
	// Hashes of the rows at the seqs of witnessed checkpoints (keys set beforehand).
	witnessed map[int64][]byte
}

func (r *Report) String() string {
	if r.OK {
		s := fmt.Sprintf("OK: %d rows (seq %d-%d), %d checkpoints verified", r.Rows, r.FirstSeq, r.LastSeq, r.Checkpoints)
		if r.PrunedThrough > 0 {
			s += fmt.Sprintf(", pruned through seq %d", r.PrunedThrough)
		}
		if r.LogID != "" {
			s += ", log " + r.LogID
		}
		return s
	}
	return "FAILED: " + strings.Join(r.Problems, "; ")
}

func (r *Report) rowFault(seq int64, why string) {
	if r.BadSeq == 0 {
		r.BadSeq = seq
		r.Problems = append(r.Problems, fmt.Sprintf("row seq %d: %s", seq, why))
	}
}

func (r *Report) checkpointFault(c *checkpoint, why string) {
	if r.BadCheckpoint == 0 {
		r.BadCheckpoint = c.ID
		r.Problems = append(r.Problems, fmt.Sprintf("checkpoint id %d (%s, seq %d): %s", c.ID, c.Kind, c.Seq, why))
	}
}

// Verify checks the audit database at dbPath against the checkpoint public key:
// every row's sequence, link and hash from the newest prune anchor on, and every
// checkpoint's signature and head hash. It reads one consistent snapshot, so it
// may run while a server appends. The error is for failures to read; faults in
// the data are in the Report.
func Verify(ctx context.Context, dbPath string, pub ed25519.PublicKey) (Report, error) {
	return VerifyWitnessed(ctx, dbPath, pub, nil)
}

// VerifyWitnessed is Verify that also checks the chain against checkpoints copied
// outside the database (see ReadWitness): each must verify, and the chain must
// still hold the row it signed, unchanged. The database alone cannot show that
// rows after its newest surviving checkpoint were cut off together with the
// checkpoints covering them; a witness can.
func VerifyWitnessed(ctx context.Context, dbPath string, pub ed25519.PublicKey, witness []Witnessed) (Report, error) {
	return verifyLocal(ctx, dbPath, pub, witness, nil)
}

// verifyLocal is VerifyWitnessed that also records, in Report.witnessed, the hashes
// of the rows at seqs also (VerifyAgainstCentral compares them with the central copy).
func verifyLocal(ctx context.Context, dbPath string, pub ed25519.PublicKey, witness []Witnessed, also []int64) (Report, error) {
	// The journal is read before the database's snapshot is taken: a row leaves the
	// journal only once the database holds it, so every row this read misses is in
	// the snapshot, and a gap between the two is a fault, never a race with a server.
	scan, jerr := readJournal(dbPath + JournalSuffix)
	rd, err := OpenReader(ctx, dbPath)
	if err != nil {
		return Report{}, err
	}
	defer rd.Close()
	tx, err := rd.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer tx.Rollback()
	from := int64(math.MaxInt64)
	if jerr == nil && len(scan.rows) > 0 {
		from = scan.rows[0].Seq
	}
	want := map[int64][]byte{}
	for _, w := range witness {
		want[w.Seq] = nil
	}
	for _, s := range also {
		want[s] = nil
	}
	rep, err := verifyTx(ctx, tx, pub, from, want)
	if err != nil {
		return rep, err
	}
	verifyJournal(&rep, scan, jerr)
	if len(witness) > 0 {
		stored, err := loadCheckpoints(ctx, tx)
		if err != nil {
			return rep, err
		}
		checkWitness(&rep, pub, witness, stored)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// Witnessed is a checkpoint as a server wrote it to its log, and where.
type Witnessed struct {
	checkpoint
	Line int
}

// ReadWitness reads the checkpoints a server wrote to its witness file
// (<data_dir>/witness.log) or to its JSON log ("audit checkpoint" entries; other
// lines are skipped). An entry that names a checkpoint but cannot be read is an
// error: a witness is evidence, not a best effort. The one exception is a last line
// with no newline that is not JSON: a write cut short by a crash.
func ReadWitness(r io.Reader) ([]Witnessed, error) {
	var out []Witnessed
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br, 4<<20)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("audit: reading witness: %w", err)
		}
		if len(b) == 0 && errors.Is(err, io.EOF) {
			break
		}
		torn := errors.Is(err, io.EOF) // the last line, with no newline
		if !bytes.Contains(b, []byte(`"audit checkpoint"`)) || (torn && !json.Valid(b)) {
			if torn {
				break
			}
			continue
		}
		var e struct {
			Msg       string `json:"msg"`
			Kind      string `json:"kind"`
			Seq       int64  `json:"seq"`
			HeadHash  string `json:"head_hash"`
			TS        int64  `json:"ts"`
			KeyID     string `json:"key_id"`
			Signature string `json:"signature"`
			LogID     string `json:"log_id"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("audit: witness line %d: mentions an audit checkpoint but is not a JSON log entry: %v", line, err)
		}
		if e.Msg != "audit checkpoint" {
			continue // some other entry that mentions it
		}
		head, herr := hex.DecodeString(e.HeadHash)
		sig, serr := base64.StdEncoding.DecodeString(e.Signature)
		if herr != nil || serr != nil || len(head) != 32 || e.Seq <= 0 || e.Kind == "" {
			return nil, fmt.Errorf("audit: witness line %d: not a whole checkpoint entry (kind, seq, head_hash, ts, key_id, signature)", line)
		}
		out = append(out, Witnessed{Line: line, checkpoint: checkpoint{
			Kind: e.Kind, Seq: e.Seq, Head: head, TS: e.TS, KeyID: e.KeyID, Signature: sig, LogID: e.LogID}})
		if torn {
			break
		}
	}
	return out, nil
}

// readLine returns the next line without its newline; io.EOF comes with the last
// line when it has no newline (or with nothing at the end).
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(b) > limit {
				return nil, fmt.Errorf("a line is longer than %d bytes", limit)
			}
			long = append(long, b...)
			continue
		}
		if long != nil {
			b = append(long, b...)
		}
		if err != nil {
			return b, err
		}
		return b[:len(b)-1], nil
	}
}

// checkWitness compares the chain with the witnessed checkpoints. Those at or
// below the prune anchor cover archived rows and are only checked for signature.
func checkWitness(rep *Report, pub ed25519.PublicKey, witness []Witnessed, stored []checkpoint) {
	for i := range witness {
		w := &witness[i]
		at := fmt.Sprintf("checkpoint (%s, seq %d) witnessed at line %d", w.Kind, w.Seq, w.Line)
		if w.Line == 0 {
			at = fmt.Sprintf("checkpoint id %d (%s, seq %d) in the central store", w.ID, w.Kind, w.Seq)
		}
		if why := w.verifySig(pub); why != "" {
			rep.Problems = append(rep.Problems, at+": "+why)
			continue
		}
		if w.LogID != rep.LogID && w.LogID != "" {
			// Not this database's log: another log sharing the signing key, or this
			// log's database replaced by another's.
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: signed for log %s, but this database is log %q (another log's database)",
				at, w.LogID, rep.LogID))
			continue
		}
		if w.Seq <= rep.PrunedThrough {
			continue
		}
		h := rep.witnessed[w.Seq]
		switch {
		case w.Seq > rep.LastSeq:
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the chain ends at seq %d (rows removed)", at, rep.LastSeq))
		case h == nil:
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: row seq %d could not be checked (the chain is broken before it)", at, w.Seq))
		case !bytes.Equal(h, w.Head):
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: row seq %d differs from the row it signed (chain rewritten)", at, w.Seq))
		case !slices.ContainsFunc(stored, func(c checkpoint) bool { return bytes.Equal(c.Signature, w.Signature) }):
			rep.Problems = append(rep.Problems, at+": missing from the database (checkpoints removed)")
		}
	}
}

// verifyJournal continues the chain check into the journal: rows a server has
// acknowledged and not yet stored in the database (or could not: it was killed, or
// the database is full).
func verifyJournal(rep *Report, scan journalScan, err error) {
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return
	}
	if rep.broken {
		return
	}
	hs := newHasher()
	var n int64
	for i := range scan.rows {
		r := &scan.rows[i]
		if r.Seq < rep.next {
			// Also in the database (the journal was not emptied yet): the two copies
			// must be the same row.
			if h, ok := rep.overlap[r.Seq]; ok && !bytes.Equal(h, r.Hash) {
				rep.rowFault(r.Seq, "differs from the journal's copy of the row (the database row or the journal was altered)")
				return
			}
			continue
		}
		if why := checkRow(hs, r, rep.next, rep.head); why != "" {
			rep.rowFault(rep.next, "in the journal: "+why)
			return
		}
		if _, ok := rep.witnessed[r.Seq]; ok {
			rep.witnessed[r.Seq] = r.Hash
		}
		n++
		rep.Rows++
		if rep.FirstSeq == 0 {
			rep.FirstSeq = r.Seq
		}
		rep.LastSeq = r.Seq
		rep.next, rep.head = r.Seq+1, r.Hash
	}
	if n > 0 {
		rep.Journaled = n
		rep.UnsignedTail += n
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d rows (seq %d-%d) are in the journal, not yet in the database; "+
			"the server stores them shortly, or when it next starts", n, rep.LastSeq-n+1, rep.LastSeq))
	}
}

// verifyTx checks the database; it keeps the hashes of the rows from seq from on,
// which the journal also holds, for verifyJournal to compare.
func verifyTx(ctx context.Context, tx *sql.Tx, pub ed25519.PublicKey, from int64, want map[int64][]byte) (Report, error) {
	rep := Report{witnessed: want}
	var tables int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table'
		AND name IN ('audit_events', 'audit_checkpoints')`).Scan(&tables); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	if tables != 2 {
		return rep, fmt.Errorf("audit: verify: not an audit database (tables missing)")
	}
	var triggers int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
		AND name IN ('audit_events_no_update', 'audit_events_no_delete', 'audit_checkpoints_no_update',
		'audit_checkpoints_no_delete')`).Scan(&triggers); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	if triggers != 4 {
		// Only an edit of the database file drops them (prune restores its own).
		rep.Problems = append(rep.Problems, "append-only triggers are missing (someone dropped them to edit or delete rows)")
	}

	logID, err := readLogID(ctx, tx)
	if err != nil {
		return rep, err
	}
	rep.LogID = logID
	if why, err := checkLookups(ctx, tx); err != nil {
		return rep, err
	} else if why != "" {
		rep.Problems = append(rep.Problems, why)
	}
	cps, err := loadCheckpoints(ctx, tx)
	if err != nil {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	valid := checkCheckpoints(&rep, cps, rep.LogID, func(*checkpoint) ed25519.PublicKey { return pub })
	var anchor *checkpoint
	for i := range cps {
		if c := &cps[i]; valid[i] && c.Kind == CheckpointPrune && (anchor == nil || c.Seq >= anchor.Seq) {
			anchor = c
		}
	}
	expect, prev := int64(1), make([]byte, 32)
	if anchor != nil {
		expect, prev = anchor.Seq+1, anchor.Head
		rep.PrunedThrough = anchor.Seq
	}
	// Checkpoints at or below the anchor cover pruned rows: only their signatures
	// (and the anchor's own head for one at the same seq) can be checked.
	for i := 0; anchor != nil && i < len(cps) && cps[i].Seq < expect; i++ {
		if c := &cps[i]; valid[i] && c.Seq == anchor.Seq && !bytes.Equal(c.Head, anchor.Head) {
			rep.checkpointFault(c, "head hash differs from the prune anchor at the same seq")
		}
	}
	w := newChainWalk(&rep, cps, valid, expect, prev, "chain")
	if anchor != nil {
		w.prunedThrough = anchor.Seq
	}
	w.seen = func(r *row) {
		if _, ok := want[r.Seq]; ok {
			want[r.Seq] = r.Hash
		}
		if r.Seq >= from {
			if rep.overlap == nil {
				rep.overlap = map[int64][]byte{}
			}
			rep.overlap[r.Seq] = r.Hash
		}
	}
	if err := w.walk(ctx, tx, "audit: verify", " (if the server crashed before its first checkpoint, opening the log once signs them)",
		`SELECT `+rowColumns+` FROM audit_events ORDER BY seq`); err != nil {
		return rep, err
	}
	rep.next, rep.head, rep.broken = w.expect, w.prev, w.broken
	return rep, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	_ querier = (*sql.DB)(nil)
	_ querier = (*sql.Tx)(nil)
)

func loadCheckpoints(ctx context.Context, q interface {
	querier
	queryRower
}) ([]checkpoint, error) {
	cols := checkpointColumns
	// A database no server of this version has opened yet has no log_id column.
	if has, err := hasLogIDColumn(ctx, q); err != nil {
		return nil, err
	} else if !has {
		cols = strings.Replace(cols, "log_id", "'' AS log_id", 1)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+cols+` FROM audit_checkpoints ORDER BY seq, id`)
	if err != nil {
		return nil, fmt.Errorf("audit: reading checkpoints: %w", err)
	}
	defer rows.Close()
	var cps []checkpoint
	for rows.Next() {
		var c checkpoint
		if err := rows.Scan(c.scanDest()...); err != nil {
			return nil, fmt.Errorf("audit: reading checkpoints: %w", err)
		}
		cps = append(cps, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: reading checkpoints: %w", err)
	}
	return cps, nil
}

// checkLookups compares the lookup index (audit_lookup, outside the chain) with the rows
// it claims to cover: queries by caller or request id use it to find rows, so a missing
// entry would hide a row from them. Entries naming no row or the wrong one cannot change
// an answer (queries check the row's own column) but are reported as the edit they are.
func checkLookups(ctx context.Context, tx *sql.Tx) (string, error) {
	var through, last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(CAST(value AS INTEGER), 0) FROM audit_meta WHERE key = 'lookup_through'`).Scan(&through); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return "", fmt.Errorf("audit: verify: reading lookup state: %w", err)
	}
	// The chain's last seq: its last row, or a prune anchor when every row was pruned.
	if err := tx.QueryRowContext(ctx, `SELECT MAX(COALESCE((SELECT MAX(seq) FROM audit_events), 0),
		COALESCE((SELECT MAX(seq) FROM audit_checkpoints WHERE kind = 'prune'), 0))`).Scan(&last); err != nil {
		return "", fmt.Errorf("audit: verify: %w", err)
	}
	var missing, wrong int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events e WHERE e.seq <= ? AND (
		(e.caller_sub <> '' AND NOT EXISTS (SELECT 1 FROM audit_lookup l WHERE l.k = 's:' || e.caller_sub AND l.seq = e.seq)) OR
		(e.request_id <> '' AND NOT EXISTS (SELECT 1 FROM audit_lookup l WHERE l.k = 'r:' || e.request_id AND l.seq = e.seq)))`, through).Scan(&missing); err != nil {
		return "", fmt.Errorf("audit: verify: checking the lookup index: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_lookup l WHERE NOT EXISTS (
		SELECT 1 FROM audit_events e WHERE e.seq = l.seq AND (l.k = 's:' || e.caller_sub OR l.k = 'r:' || e.request_id))`).Scan(&wrong); err != nil {
		return "", fmt.Errorf("audit: verify: checking the lookup index: %w", err)
	}
	var faults []string
	if through > last {
		faults = append(faults, fmt.Sprintf("claims to cover seq %d, past the last row %d", through, last))
	}
	if missing > 0 {
		faults = append(faults, fmt.Sprintf("%d rows it covers have no entry (queries by caller or request id would miss them)", missing))
	}
	if wrong > 0 {
		faults = append(faults, fmt.Sprintf("%d entries name no row, or a row with another caller or request id", wrong))
	}
	if len(faults) == 0 {
		return "", nil
	}
	return "lookup index (audit_lookup, outside the chain) was edited: " + strings.Join(faults, "; "), nil
}
