package audit

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
)

// chainWalk checks one log's rows, in seq order, against the chain and the log's
// checkpoints. The local verifier (a SQLite database) and the central one (one log id
// in PostgreSQL) differ in how they find their checkpoints and where the chain starts;
// from there on they walk the rows with this one type.
type chainWalk struct {
	rep   *Report
	cps   []checkpoint // ordered by seq
	valid []bool       // cps[i] is signed by the right key for this log
	next  int          // the first checkpoint not yet matched against a row
	hs    *hasher

	expect      int64  // the seq the next row must have
	prev        []byte // the hash that row must link to
	lastCovered int64  // the newest row a valid checkpoint signs
	broken      bool   // a row fault was found; later rows are only counted
	// prunedThrough is the seq of the prune anchor the chain starts after (0: none):
	// a row at or below it should have been deleted with the rows it covers.
	prunedThrough int64
	// where names the chain in a fault ("chain", "central chain").
	where string
	// seen, if set, is called with every row that links correctly.
	seen func(r *row)
}

// newChainWalk starts a walk at seq expect, linking to prev, and skips the
// checkpoints below expect (they cover pruned rows: only their signatures count).
func newChainWalk(rep *Report, cps []checkpoint, valid []bool, expect int64, prev []byte, where string) *chainWalk {
	w := &chainWalk{rep: rep, cps: cps, valid: valid, hs: newHasher(), expect: expect, prev: prev, where: where}
	for w.next < len(cps) && cps[w.next].Seq < expect {
		w.next++
	}
	return w
}

// rows walks every row that rs yields (its columns are rowColumns, ordered by seq).
func (w *chainWalk) rows(rs *sql.Rows, errPrefix string) error {
	defer rs.Close()
	var r row
	for rs.Next() {
		if err := rs.Scan(r.scanDest()...); err != nil {
			return fmt.Errorf("%s: reading rows: %w", errPrefix, err)
		}
		w.row(&r)
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("%s: reading rows: %w", errPrefix, err)
	}
	return nil
}

func (w *chainWalk) row(r *row) {
	rep := w.rep
	rep.Rows++
	if rep.FirstSeq == 0 {
		rep.FirstSeq = r.Seq
	}
	rep.LastSeq = r.Seq
	if w.broken {
		return // keep counting; the first fault is the one to report
	}
	if w.prunedThrough > 0 && r.Seq <= w.prunedThrough {
		rep.rowFault(r.Seq, fmt.Sprintf("present although pruned (anchor at seq %d)", w.prunedThrough))
		w.broken = true
		return
	}
	if why := checkRow(w.hs, r, w.expect, w.prev); why != "" {
		rep.rowFault(w.expect, why)
		w.broken = true
		return
	}
	for w.next < len(w.cps) && w.cps[w.next].Seq <= r.Seq {
		c := &w.cps[w.next]
		if c.Seq == r.Seq && w.valid[w.next] {
			if !bytes.Equal(c.Head, r.Hash) {
				rep.checkpointFault(c, "head hash does not match the row at its seq (chain rewritten)")
				rep.rowFault(r.Seq, "hash differs from the signed checkpoint")
			} else {
				w.lastCovered = r.Seq
			}
		}
		w.next++
	}
	if w.seen != nil {
		w.seen(r)
	}
	w.prev, w.expect = r.Hash, r.Seq+1
}

// finish reports what only the end of the rows shows: checkpoints past the last row
// (rows removed), and rows no checkpoint signs. noCheckpointHint is added to the
// fault for rows no checkpoint covers at all.
func (w *chainWalk) finish(noCheckpointHint string) {
	rep := w.rep
	if !w.broken {
		for ; w.next < len(w.cps); w.next++ {
			if w.valid[w.next] {
				rep.checkpointFault(&w.cps[w.next], fmt.Sprintf("covers seq %d but the %s ends at seq %d (rows removed)", w.cps[w.next].Seq, w.where, w.expect-1))
			}
		}
		switch {
		case rep.Rows > 0 && w.lastCovered == 0:
			rep.Problems = append(rep.Problems, fmt.Sprintf(
				"no signed checkpoint covers rows %d-%d: they cannot be told from a rewritten chain%s",
				rep.FirstSeq, rep.LastSeq, noCheckpointHint))
		case rep.LastSeq > w.lastCovered:
			rep.UnsignedTail = rep.LastSeq - w.lastCovered
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"%d rows after the newest checkpoint (seq %d) are chained but not yet signed",
				rep.UnsignedTail, w.lastCovered))
		}
	}
	rep.OK = len(rep.Problems) == 0
}

// walk runs w over the rows query q returns, then finishes it.
func (w *chainWalk) walk(ctx context.Context, q querier, errPrefix, noCheckpointHint, query string, args ...any) error {
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: reading rows: %w", errPrefix, err)
	}
	if err := w.rows(rs, errPrefix); err != nil {
		return err
	}
	w.finish(noCheckpointHint)
	return nil
}

// duplicateCheckpoint reports a checkpoint that appears twice under different ids (the
// signature covers the head, not the id, so a copy under another id verifies alone): a
// copy is not a checkpoint the log wrote.
func duplicateCheckpoint(cps []checkpoint) string {
	seen := make(map[string]int64, len(cps))
	for i := range cps {
		k := string(cps[i].Signature)
		if id, ok := seen[k]; ok {
			return fmt.Sprintf("checkpoint id %d is a copy of checkpoint id %d (same signature under another id)", cps[i].ID, id)
		}
		seen[k] = cps[i].ID
	}
	return ""
}
