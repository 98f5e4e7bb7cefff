package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"fmt"
	"math"
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

// checkCheckpoints checks each checkpoint of log logID on its own: its signature (key
// gives the key for it), that it is this log's, and that it is no copy of another
// under a second id. It records faults and warnings in rep and returns which are valid.
// Checkpoints that name no log were signed before logs had ids; one signed after this
// log's first named checkpoint cannot be its own: it was copied in from another log
// that shares the key.
func checkCheckpoints(rep *Report, cps []checkpoint, logID string, key func(*checkpoint) ed25519.PublicKey) []bool {
	if why := duplicateCheckpoint(cps); why != "" {
		rep.Problems = append(rep.Problems, why)
	}
	sigFault := make([]string, len(cps)) // each signature is checked once
	named := int64(math.MaxInt64)
	for i := range cps {
		sigFault[i] = cps[i].verifySig(key(&cps[i]))
		if cps[i].LogID != "" && sigFault[i] == "" {
			named = min(named, cps[i].TS)
		}
	}
	valid := make([]bool, len(cps))
	legacy := 0
	for i := range cps {
		c := &cps[i]
		if why := sigFault[i]; why != "" {
			rep.checkpointFault(c, why)
			continue
		}
		switch {
		case c.LogID != "" && c.LogID != logID:
			rep.checkpointFault(c, fmt.Sprintf("signed for log %s, not this log %q (copied from another log that shares the key)", c.LogID, logID))
			continue
		case c.LogID == "" && c.TS > named:
			rep.checkpointFault(c, "names no log but was signed after this log's checkpoints began naming it (copied from another log that shares the key)")
			continue
		case c.LogID == "":
			legacy++
		}
		valid[i] = true
	}
	if legacy > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d checkpoints predate per-log ids (written by an earlier version): "+
			"they prove the key signed them, not that this log wrote them", legacy))
	}
	return valid
}
