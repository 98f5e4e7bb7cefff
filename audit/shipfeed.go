package audit

import "sync"

// shipFeed hands a running Log's newly stored rows to its Shipper, so that the shipper
// need not read back from SQLite what the ingester has just written there: reading rows
// back was most of what shipping cost a busy replica. The feed is only a shortcut. The
// shipper takes rows from it only when they continue exactly what it shipped; otherwise
// (it fell behind and the feed overflowed, or it was started after the rows were
// stored) it reads SQLite, as without a feed. Rows are handed over after SQLite has
// committed them and their checkpoint, so the feed never holds a row SQLite lacks.
type shipFeed struct {
	mu    sync.Mutex
	rows  []row
	limit int // maxFeedRows; tests lower it

	taken, missed int // takes that returned rows, and that left the shipper to SQLite
}

// maxFeedRows bounds the feed (a few MB); past it the shipper is behind, the feed is
// emptied and the shipper reads SQLite until it catches up.
const maxFeedRows = 16384

// push appends rows the ingester stored (called on its goroutine: cheap, never blocks
// on the shipper).
func (f *shipFeed) push(rows []row) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rows)+len(rows) > f.limit {
		f.rows = nil
		return
	}
	f.rows = append(f.rows, rows...)
}

// take returns a copy of up to n rows continuing right after seq after, or nil when the
// feed cannot continue there. Rows up to after (shipped) are dropped; the rows returned
// stay until a later take shows them shipped, so a failed pass finds them again.
func (f *shipFeed) take(after int64, n int) []row {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := 0
	for i < len(f.rows) && f.rows[i].Seq <= after {
		i++
	}
	if f.rows = f.rows[i:]; len(f.rows) == 0 {
		f.rows = nil
		f.missed++
		return nil
	}
	if f.rows[0].Seq != after+1 {
		f.missed++
		return nil
	}
	f.taken++
	out := make([]row, min(n, len(f.rows)))
	copy(out, f.rows)
	return out
}
