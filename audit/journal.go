package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The journal is where a row becomes durable. The writer appends each group commit
// to it with one write (and, with synchronous=FULL, one fsync) and acknowledges the
// batch; a second goroutine then stores the rows in SQLite in large transactions,
// where every query, export and verify reads them. Once SQLite holds every row in
// the journal, the journal is emptied. A SQLite commit costs about eleven system
// calls (locks and page writes) whatever its size; a journal append costs one.
//
// A record is: length (uint32, big endian) | CRC-32C of the payload (uint32) | payload,
// where the payload is the row's canonical encoding (see rowHash), so a row's hash
// is the SHA-256 of its payload.

// JournalSuffix names the journal next to the database: audit.db -> audit.db.journal.
// A full journal whose rows are not all in SQLite yet is renamed with oldSuffix
// (audit.db.journal.old) and a new one started; the old one is removed once SQLite
// holds its rows, so the writer never waits for the ingester to catch up.
const JournalSuffix = ".journal"

const oldSuffix = ".old"

const journalHeader = 8

// maxJournalRecord bounds one record; a larger length is corruption, not a row.
const maxJournalRecord = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type journal struct {
	path string
	f    *os.File
	off  int64
	sync bool
	buf  []byte
	// oldLast is the newest seq in the rotated file (path + oldSuffix), 0 when there
	// is none.
	oldLast int64
	// broken is set when a failed write could not be undone: nothing more is written.
	broken error
}

// appendRecord adds one row's canonical encoding to the pending write.
func (j *journal) appendRecord(payload []byte) {
	j.buf = binary.BigEndian.AppendUint32(j.buf, uint32(len(payload)))
	j.buf = binary.BigEndian.AppendUint32(j.buf, crc32.Checksum(payload, castagnoli))
	j.buf = append(j.buf, payload...)
}

// flush writes the pending records at the end of the journal; they are durable
// (as synchronous says) when it returns nil. On error nothing is acknowledged and
// whatever part of the records reached the file is cut off again.
func (j *journal) flush() error {
	if len(j.buf) == 0 {
		return nil
	}
	defer func() { j.buf = j.buf[:0] }()
	if j.broken != nil {
		return j.broken
	}
	_, err := j.f.WriteAt(j.buf, j.off)
	if err != nil {
		err = fmt.Errorf("audit: writing journal: %w", err)
	} else if j.sync {
		if serr := j.f.Sync(); serr != nil {
			err = fmt.Errorf("audit: syncing journal: %w", serr)
		}
	}
	if err != nil {
		// Cut off whatever part of the batch reached the file: left there, a later
		// shorter batch would overwrite only some of it, and the rest would read
		// back as rows that were never acknowledged.
		if terr := j.f.Truncate(j.off); terr != nil {
			j.broken = fmt.Errorf("audit: journal unusable after a failed write (%v; truncating: %v); restart to recover", err, terr)
		}
		return err
	}
	j.off += int64(len(j.buf))
	return nil
}

// reset empties the journal once SQLite holds every row in it. It puts a new, empty
// file in its place rather than truncating: a file only ever grows, so a reader
// (verify, export) never reads across a truncation and a rewrite.
func (j *journal) reset() error {
	tmp := j.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit: emptying journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		return fmt.Errorf("audit: emptying journal: %w", err)
	}
	return j.switchTo(f)
}

// switchTo makes f, a new empty file now at j.path, the journal. With sync its
// directory entry is made durable first; if that fails nothing more is written,
// since acknowledged rows could vanish with the entry.
func (j *journal) switchTo(f *os.File) error {
	j.f.Close()
	j.f, j.off = f, 0
	if j.sync {
		if err := syncDir(filepath.Dir(j.path)); err != nil {
			j.broken = fmt.Errorf("audit: journal unusable: syncing its directory: %w; restart to recover", err)
			return j.broken
		}
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }

// rotate renames the journal aside (its newest row is last) and starts a new one.
// There must be no rotated file already.
func (j *journal) rotate(last int64) error {
	if err := os.Rename(j.path, j.path+oldSuffix); err != nil {
		return fmt.Errorf("audit: rotating journal: %w", err)
	}
	j.oldLast = last
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		// The rotated file keeps every acknowledged row (Open reads it); with no
		// journal to write, nothing more is acknowledged.
		j.broken = fmt.Errorf("audit: starting a new journal: %w; restart to recover", err)
		return j.broken
	}
	return j.switchTo(f)
}

// dropOld removes the rotated file once SQLite holds its rows.
func (j *journal) dropOld() error {
	if err := os.Remove(j.path + oldSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: removing rotated journal: %w", err)
	}
	j.oldLast = 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// journalScan is what reading a journal found.
type journalScan struct {
	rows []row
	// torn counts the bytes after the whole records: an incomplete last record (a
	// write cut short, or one still being written).
	torn int64
}

// readJournal decodes the rotated journal's rows, if there is one, followed by the
// journal's. The journal is read first: a server
// may rotate it meanwhile, and read in this order the rows can repeat (readers skip
// seqs they have seen) but never skip a seq in the middle.
func readJournal(path string) (journalScan, error) {
	cur, err := readJournalFile(path)
	if err != nil {
		return cur, err
	}
	old, err := readJournalFile(path + oldSuffix)
	if err != nil {
		return cur, err
	}
	cur.rows = append(old.rows, cur.rows...)
	cur.torn += old.torn
	return cur, nil
}

// maxJournalFile bounds the journal Open and verify read into memory; the writer
// keeps it near journalRotateBytes.
const maxJournalFile = 1 << 30

// readJournalFile decodes every whole record of one journal file (a missing file is
// an empty journal). Damage after which no valid record follows is a write cut
// short (a crash, or power lost while an unacknowledged batch was being written)
// and is reported as torn; damage with a valid record after it is not a crash but
// a journal altered or corrupted, and is an error.
func readJournalFile(path string) (journalScan, error) {
	var s journalScan
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err == nil && fi.Size() > maxJournalFile {
		return s, fmt.Errorf("audit: journal %s is %d bytes, more than a journal ever holds", path, fi.Size())
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("audit: reading journal %s: %w", path, err)
	}
	off := 0
	for off < len(b) {
		payload, ok := recordAt(b, off)
		if !ok {
			if validRecordAfter(b, off+1) {
				return s, fmt.Errorf("audit: journal %s: damaged record at byte %d, with records after it", path, off)
			}
			break // torn
		}
		r, err := decodeRow(payload)
		if err != nil {
			return s, fmt.Errorf("audit: journal %s: record at byte %d: %w", path, off, err)
		}
		s.rows = append(s.rows, r)
		off += journalHeader + len(payload)
	}
	s.torn = int64(len(b) - off)
	return s, nil
}

// recordAt returns the payload of a whole record, with a plausible length and a
// matching checksum, starting at b[off].
func recordAt(b []byte, off int) ([]byte, bool) {
	if len(b)-off < journalHeader {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(b[off:]))
	if n > maxJournalRecord || n < len(rowDomain) || len(b)-off-journalHeader < n {
		return nil, false
	}
	payload := b[off+journalHeader : off+journalHeader+n]
	if string(payload[:len(rowDomain)]) != rowDomain ||
		crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[off+4:]) {
		return nil, false
	}
	return payload, true
}

// validRecordAfter reports whether a whole record starts anywhere in b from off on.
// Checksums are computed only where a record could start (a plausible length and
// the row prefix), and only up to a budget; past it the answer is yes, the safe
// side (Open refuses rather than drop rows).
func validRecordAfter(b []byte, off int) bool {
	budget := 256 << 20
	for pos := off + journalHeader; pos < len(b); {
		k := bytes.Index(b[pos:], []byte(rowDomain)) // every payload starts with it
		if k < 0 {
			return false
		}
		i := pos + k - journalHeader
		pos += k + 1
		n := int(binary.BigEndian.Uint32(b[i:]))
		if n > maxJournalRecord || n < len(rowDomain) || len(b)-i-journalHeader < n {
			continue
		}
		if budget -= n; budget < 0 {
			return true
		}
		if _, ok := recordAt(b, i); ok {
			return true
		}
	}
	return false
}

// decodeRow is the inverse of the canonical encoding; the row's hash is the
// SHA-256 of the payload.
func decodeRow(p []byte) (row, error) {
	var r row
	d := decoder{b: p}
	if string(d.take(len(rowDomain))) != rowDomain {
		return r, errors.New("not a row encoding")
	}
	r.Seq = int64(d.u64())
	r.TS = int64(d.u64())
	for _, s := range r.hashedStrings() {
		*s = d.str()
	}
	r.Status = int64(d.u64())
	r.ErrorClass = d.str()
	r.LatencyMicros = int64(d.u64())
	r.PrevHash = append([]byte(nil), d.take(int(d.u32()))...)
	if d.bad || len(d.b) != 0 {
		return r, errors.New("malformed row encoding")
	}
	sum := sha256.Sum256(p)
	r.Hash = sum[:]
	return r, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) str() string { return string(d.take(int(d.u32()))) }

// openJournal opens (creating, mode 0600) the journal, to write from its start: Open
// has stored its rows and empties it (reset) before any write.
func openJournal(path string, sync bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: opening journal: %w", err)
	}
	if sync {
		// The file may have just been created: its directory entry must last too.
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: syncing the journal's directory: %w", err)
		}
	}
	return &journal{path: path, f: f, sync: sync}, nil
}
