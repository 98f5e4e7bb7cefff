package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// loadHead returns the newest row's seq and hash, or the newest prune anchor's, or
// (0, 32 zero bytes) for an empty chain.
func loadHead(ctx context.Context, db *sql.DB) (int64, []byte, error) {
	var seq int64
	var h []byte
	err := db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &h)
	if err == nil {
		return seq, h, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("audit: reading chain head: %w", err)
	}
	a, err := latestAnchor(ctx, db)
	if err != nil {
		return 0, nil, err
	}
	if a != nil {
		return a.Seq, a.Head, nil
	}
	return 0, make([]byte, 32), nil
}

func latestAnchor(ctx context.Context, db *sql.DB) (*checkpoint, error) {
	c := &checkpoint{}
	err := db.QueryRowContext(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints WHERE kind = ? ORDER BY seq DESC, id DESC LIMIT 1`, CheckpointPrune).
		Scan(c.scanDest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: reading prune anchor: %w", err)
	}
	return c, nil
}

// checkTail re-verifies the rows after the newest checkpoint so the writer never
// extends (and signs) a chain whose tail was altered while it was down.
func (l *Log) checkTail(ctx context.Context) error {
	var cpSeq int64
	var cpHead []byte
	err := l.wdb.QueryRowContext(ctx, `SELECT seq, head_hash FROM audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1`).
		Scan(&cpSeq, &cpHead)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit: reading checkpoints: %w", err)
	}
	l.lastCP = cpSeq
	if cpSeq > l.seq {
		return fmt.Errorf("audit: chain ends at seq %d but a checkpoint covers seq %d (rows removed); run `portcullis audit verify`", l.seq, cpSeq)
	}
	if l.seq == 0 {
		return nil
	}
	from, prev := cpSeq+1, cpHead
	if cpSeq == 0 {
		prev = make([]byte, 32)
		if a, err := latestAnchor(ctx, l.wdb); err != nil {
			return err
		} else if a != nil {
			from, prev = a.Seq+1, a.Head
		}
	}
	if l.seq-from > tailVerifyLimit {
		from = l.seq - 1
		prev = nil // unknown: check only the last row's own hash and link
	}
	if cpSeq > 0 && from == cpSeq+1 {
		// Start at the checkpointed row: its contents must still hash to the
		// signed head.
		from, prev = cpSeq, nil
	}
	rows, err := l.wdb.QueryContext(ctx, `SELECT `+rowColumns+` FROM audit_events WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		return fmt.Errorf("audit: reading chain tail: %w", err)
	}
	defer rows.Close()
	hs := newHasher()
	expect := from
	var r row
	for rows.Next() {
		if err := rows.Scan(r.scanDest()...); err != nil {
			return fmt.Errorf("audit: reading chain tail: %w", err)
		}
		why := checkRow(hs, &r, expect, prev)
		if why == "" && r.Seq == cpSeq && !bytes.Equal(r.Hash, cpHead) {
			why = "hash differs from its signed checkpoint"
		}
		if why != "" {
			return fmt.Errorf("audit: chain broken at seq %d: %s; run `portcullis audit verify`", expect, why)
		}
		prev, expect = r.Hash, r.Seq+1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: reading chain tail: %w", err)
	}
	return nil
}

// checkRow returns why r is not the row expected at seq after prev ("" if it is).
// A nil prev skips the link check.
func checkRow(hs *hasher, r *row, seq int64, prev []byte) string {
	if r.Seq != seq {
		if r.Seq > seq {
			return fmt.Sprintf("expected seq %d, found %d (rows missing)", seq, r.Seq)
		}
		return fmt.Sprintf("expected seq %d, found %d", seq, r.Seq)
	}
	if prev != nil && !bytes.Equal(r.PrevHash, prev) {
		return "prev_hash does not match the previous row's hash (row deleted, reordered or altered)"
	}
	if !bytes.Equal(hs.rowHash(r), r.Hash) {
		return "hash does not match the row's contents (row altered)"
	}
	return ""
}

// replayJournal stores the rows a previous run acknowledged but did not get into
// SQLite (it was killed, or the database was full), after checking that they
// continue the chain, and opens the journal.
func (l *Log) replayJournal() error {
	path := l.cfg.Path + JournalSuffix
	scan, err := readJournal(path)
	if err != nil {
		return fmt.Errorf("%w; run `portcullis audit verify`", err)
	}
	if scan.torn > 0 {
		// Acknowledged rows are whole records: a batch is acknowledged after its write.
		l.logger.Warn("audit: the journal ends in an incomplete record (a write cut short, never acknowledged); dropping it", "bytes", scan.torn)
	}
	hs := newHasher()
	var rows []row
	for i := range scan.rows {
		r := &scan.rows[i]
		if r.Seq <= l.seq {
			continue // stored before the journal was emptied
		}
		if why := checkRow(hs, r, l.seq+1, l.head); why != "" {
			return fmt.Errorf("audit: the journal does not continue the chain at seq %d: %s; run `portcullis audit verify`", l.seq+1, why)
		}
		rows = append(rows, *r)
		l.seq, l.head = r.Seq, r.Hash
	}
	for i := 0; i < len(rows); i += maxIngestRows {
		if err := l.storeRows(rows[i:min(i+maxIngestRows, len(rows))]); err != nil {
			return fmt.Errorf("audit: storing %d rows from the journal: %w (free space with `portcullis audit prune` or raise audit.max_size)", len(rows)-i, err)
		}
	}
	if len(rows) > 0 {
		l.logger.Info("audit: stored rows from the journal", "rows", len(rows), "through_seq", l.seq)
	}
	j, err := openJournal(path, l.cfg.Synchronous == "FULL")
	if err != nil {
		return err
	}
	l.j = j
	return nil
}
