package audit

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// ingestLinger is how long the ingester waits for more rows before storing a few:
// SQLite's cost is mostly per transaction, so it stores them in bulk.
const ingestLinger = 2 * time.Millisecond

// ingestEager is the backlog at which the ingester stores at once.
const ingestEager = 256

// ingestLoop is the ingester goroutine: it moves journaled rows into SQLite, signs
// checkpoints over what SQLite holds and maintains the lookup index.
func (l *Log) ingestLoop() {
	defer close(l.istopped)
	ticker := time.NewTicker(l.cfg.CheckpointInterval)
	defer ticker.Stop()
	lookups := time.NewTicker(lookupInterval)
	defer lookups.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	retryArmed := false
	for {
		select {
		case <-l.ikick:
			if l.backlog() < ingestEager {
				linger.Reset(ingestLinger)
				select {
				case <-linger.C:
				case <-l.istop:
					linger.Stop()
				}
			}
			l.ingest()
		case <-retry.C:
			retryArmed = false
			l.ingest()
		case <-ticker.C:
			// Store what the journal holds first: the checkpoint then covers every row
			// acknowledged before the tick, so none stays unsigned longer than the interval.
			if l.backlog() > 0 && l.ifail.Load() == nil { // while storing fails, retry paces it
				l.ingest()
			}
			if l.iseq > l.lastCP {
				l.checkpointLogged(CheckpointPeriodic)
			}
			if err := l.wfile.syncIfDirty(); err != nil {
				l.witnessFailed(err)
			}
		case <-lookups.C:
			l.indexLookups()
		case <-l.istop:
			// The writer has stopped: store everything it journaled.
			l.ingest()
			if l.iseq > l.lastCP {
				l.checkpointLogged(CheckpointClose)
			}
			l.indexLookups()
			return
		}
		// Arm the retry once per failure, not on every pass: the tickers would
		// otherwise push it back for ever.
		if l.ifail.Load() != nil && !retryArmed {
			retry.Reset(time.Second)
			retryArmed = true
		}
	}
}

// maxIngestRows bounds one SQLite transaction of the ingester (about 20 ms of work:
// past a few hundred rows, larger transactions cost no less per row).
const maxIngestRows = 2048

// ingest stores the rows pending when it starts in SQLite, in order.
func (l *Log) ingest() {
	defer l.progressed()
	// Only what is pending now: under sustained load the loop must come back to the
	// select, for timed checkpoints and the lookup index.
	budget := l.backlog()
	for budget > 0 {
		l.imu.Lock()
		n := min(len(l.ipending), maxIngestRows, budget)
		if every := int64(l.cfg.CheckpointEvery); every > 0 {
			// End the transaction where a checkpoint is due, so checkpoints fall every
			// CheckpointEvery rows however the rows were batched.
			if room := l.lastCP + every - l.iseq; room > 0 && room < int64(n) {
				n = int(room)
			}
		}
		rows := l.ipending[:n:n]
		l.imu.Unlock()
		if n == 0 {
			return
		}
		budget -= n
		if err := l.storeRows(rows); err != nil {
			err = fmt.Errorf("audit: storing rows in the database: %w", err)
			l.ifail.Store(&err)
			if time.Since(l.failWarned) > time.Minute {
				l.failWarned = time.Now()
				l.logger.Error("audit: rows not stored; they stay in the journal and new calls are refused until this clears", "rows", l.backlog(), "err", err)
			}
			return
		}
		l.imu.Lock()
		l.ipending = l.ipending[n:]
		if len(l.ipending) == 0 {
			l.ipending = nil // let the backing array go
		}
		l.imu.Unlock()
		if l.ifail.Load() != nil {
			l.ifail.Store(nil)
			l.logger.Info("audit: rows are reaching the database again")
		}
		last := &rows[n-1]
		l.iseq, l.ihead = last.Seq, last.Hash
		// The first rows of a log are signed at once: a crash before any checkpoint would
		// leave rows that verify cannot tell from a rewritten chain. The checkpoint comes
		// before the rows are published as stored, so a reader that waited for them
		// (waitStored) finds them signed when a checkpoint was due.
		if (l.cfg.CheckpointEvery > 0 && l.iseq-l.lastCP >= int64(l.cfg.CheckpointEvery)) || l.lastCP == 0 {
			l.checkpointLogged(CheckpointPeriodic)
		}
		l.ingested.Store(l.iseq)
		if feed := l.stored.Load(); feed != nil {
			(*feed)(rows)
		}
		l.progressed()
	}
}

// progressed wakes a writer waiting for the backlog to shrink.
func (l *Log) progressed() {
	select {
	case l.iprog <- struct{}{}:
	default:
	}
}

// storeRows inserts rows (already chained) in one transaction.
func (l *Log) storeRows(rows []row) error {
	ctx := context.Background()
	// Prepare before BeginTx: the transaction holds the only connection.
	for _, n := range [2]int{min(insertChunk, len(rows)), len(rows) % insertChunk} {
		if n > 0 {
			if _, err := l.insertStmt(ctx, n); err != nil {
				return err
			}
		}
	}
	tx, err := l.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// Multi-row INSERTs: per-statement overhead dominates single-row inserts.
	for i := 0; i < len(rows); i += insertChunk {
		n := min(insertChunk, len(rows)-i)
		l.args = l.args[:0]
		for j := i; j < i+n; j++ {
			l.args = rows[j].insertArgs(l.args)
		}
		if _, err := tx.StmtContext(ctx, l.inserts[n]).ExecContext(ctx, l.args...); err != nil {
			tx.Rollback()
			return fmt.Errorf("inserting rows %d-%d: %w", rows[i].Seq, rows[i+n-1].Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		tx.Rollback()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// insertStmt returns the prepared INSERT for n rows.
func (l *Log) insertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := l.inserts[n]; st != nil {
		return st, nil
	}
	st, err := l.wdb.PrepareContext(ctx, insertRowsSQL(n))
	if err != nil {
		return nil, fmt.Errorf("audit: preparing insert: %w", err)
	}
	l.inserts[n] = st
	return st, nil
}
