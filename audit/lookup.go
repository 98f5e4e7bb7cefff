package audit

import (
	"context"
	"database/sql"
	"strconv"
	"time"
)

// lookupInterval is how often the writer adds new rows to audit_lookup.
const lookupInterval = 200 * time.Millisecond

// indexLookups adds the rows committed since the last call to audit_lookup, in one
// transaction: B-tree work in bulk instead of two index updates in every commit.
// Queries match the rows it has not reached yet on the columns themselves.
func (l *Log) indexLookups() {
	if l.iseq <= l.lookupThrough {
		return
	}
	if err := l.addLookups(l.lookupThrough, l.iseq); err != nil {
		if time.Since(l.lookupWarned) > time.Minute {
			l.lookupWarned = time.Now()
			l.logger.Warn("audit: lookup index behind; queries by caller or request id scan the rows it has not reached", "through", l.lookupThrough, "err", err)
		}
		return
	}
	l.lookupThrough = l.iseq
}

func (l *Log) addLookups(from, to int64) error {
	ctx := context.Background()
	tx, err := l.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, q := range []string{
		`INSERT OR IGNORE INTO audit_lookup (k, seq) SELECT 'r:' || request_id, seq FROM audit_events WHERE seq > ? AND seq <= ? AND request_id <> ''`,
		`INSERT OR IGNORE INTO audit_lookup (k, seq) SELECT 's:' || caller_sub, seq FROM audit_events WHERE seq > ? AND seq <= ? AND caller_sub <> ''`,
	} {
		if _, err := tx.ExecContext(ctx, q, from, to); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := setLookupThrough(ctx, tx, to); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// setLookupThrough records the last seq the lookup index covers.
func setLookupThrough(ctx context.Context, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, seq int64) error {
	_, err := db.ExecContext(ctx, `UPDATE audit_meta SET value = ? WHERE key = 'lookup_through'`, strconv.FormatInt(seq, 10))
	return err
}
