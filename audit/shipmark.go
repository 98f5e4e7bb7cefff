package audit

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"sync"
)

// shipMark is what a replica's shipper knows the central store acknowledged for its
// log: the newest row seq and checkpoint id a committed pass left there. It lives
// beside the audit database (<audit.db>.shipped, 0600) so that it survives restarts:
// a central store that later holds less (rows or checkpoints removed there, which the
// append-only triggers should have refused) is a fault the next pass reports, instead
// of rows it copies again in silence. A missing or unreadable mark only weakens that
// check; it never stops shipping.
type shipMark struct {
	path  string
	logID string

	mu        sync.Mutex
	loaded    bool
	seq, cpID int64
}

type shipMarkFile struct {
	LogID        string `json:"log_id"`
	Seq          int64  `json:"seq"`
	CheckpointID int64  `json:"checkpoint_id"`
}

// ShipMarkSuffix names the shipping mark beside the audit database.
const ShipMarkSuffix = ".shipped"

func newShipMark(dbPath, logID string) *shipMark {
	return &shipMark{path: dbPath + ShipMarkSuffix, logID: logID}
}

// load returns the mark (0, 0 when there is none, or it is another log's).
func (m *shipMark) load() (seq, cpID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		m.loaded = true
		if b, err := os.ReadFile(m.path); err == nil {
			var f shipMarkFile
			if json.Unmarshal(b, &f) == nil && f.LogID == m.logID {
				m.seq, m.cpID = f.Seq, f.CheckpointID
			}
		}
	}
	return m.seq, m.cpID
}

// ensure writes the mark as it stands if there is none yet: a log being shipped has a
// mark from its shipper's start, so prune keeps its rows even before the central store
// first acknowledges one (or when it never could).
func (m *shipMark) ensure() {
	if _, err := os.Stat(m.path); errors.Is(err, fs.ErrNotExist) {
		seq, cp := m.load()
		m.write(seq, cp)
	}
}

// save records seq and cpID when they move the mark forward (write, then rename).
func (m *shipMark) save(seq, cpID int64) {
	cur, curCP := m.load()
	if seq <= cur && cpID <= curCP {
		return
	}
	m.write(seq, cpID)
}

func (m *shipMark) write(seq, cpID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq, m.cpID = max(seq, m.seq), max(cpID, m.cpID)
	b, _ := json.Marshal(shipMarkFile{LogID: m.logID, Seq: m.seq, CheckpointID: m.cpID})
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return
	}
	if err := os.Rename(tmp, m.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(tmp)
	}
}
