package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// journalAfterCrash leaves the state a server killed between a journal write and the
// database commit leaves: n rows in the database (signed), then m rows only in the
// journal, continuing the chain.
func journalAfterCrash(t *testing.T, cfg Config, n, m int) {
	t.Helper()
	l := openTest(t, cfg)
	appendN(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := openDB(cfg.Path, false, "NORMAL", 0)
	if err != nil {
		t.Fatal(err)
	}
	seq, head, err := loadHead(context.Background(), db)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	j, err := openJournal(cfg.Path+JournalSuffix, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	appendChained(t, j, seq, head, m)
}

// appendChained writes m rows (sampleEvent(seq), ...) to j, continuing the chain
// after seq and head.
func appendChained(t *testing.T, j *journal, seq int64, head []byte, m int) {
	t.Helper()
	hs := newHasher()
	for i := 0; i < m; i++ {
		var r row
		ev := sampleEvent(int(seq))
		ev.Time = time.Now()
		r.fromEvent(ev)
		seq++
		r.Seq, r.PrevHash = seq, head
		r.Hash = hs.rowHash(&r)
		j.appendRecord(hs.buf)
		head = r.Hash
	}
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}
}

// verifyClean checks that the log verifies with rows rows and no unsigned tail.
func verifyClean(t *testing.T, cfg Config, rows int64) {
	t.Helper()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != rows || rep.UnsignedTail != 0 {
		t.Fatalf("verify, want %d rows all signed: %+v %v", rows, rep, err)
	}
}

func journalSize(t *testing.T, cfg Config) int64 {
	t.Helper()
	fi, err := os.Stat(cfg.Path + JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Rows acknowledged from the journal alone verify (as rows not yet in the database),
// and the next Open stores them, signs them and empties the journal.
func TestJournalStoredAtOpen(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 10, 5)
	pub := pubKey(t, cfg)
	rep, err := Verify(context.Background(), cfg.Path, pub)
	if err != nil || !rep.OK || rep.Rows != 15 || rep.LastSeq != 15 || rep.UnsignedTail != 5 || rep.Journaled != 5 ||
		!strings.Contains(strings.Join(rep.Warnings, ";"), "5 rows (seq 11-15) are in the journal") {
		t.Fatalf("verify before restart: %+v %v", rep, err)
	}
	l := openTest(t, cfg)
	if journalSize(t, cfg) != 0 {
		t.Fatal("journal not emptied once its rows were stored")
	}
	ev := sampleEvent(99)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 16 {
		t.Fatalf("append after replay: seq %d %v", ev.Seq, err)
	}
	p, err := l.Query(context.Background(), Filter{RequestID: "req-12"})
	if err != nil || len(p.Events) != 1 || p.Events[0].Seq != 13 {
		t.Fatalf("a replayed row is not queryable: %+v %v", p, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(context.Background(), cfg.Path, pub)
	if err != nil || !rep.OK || rep.Rows != 16 || rep.UnsignedTail != 0 || rep.Journaled != 0 {
		t.Fatalf("verify after restart: %+v %v", rep, err)
	}
}

// A record cut short by a crash was never acknowledged: it is dropped, the rows
// before it are kept, and the next row takes its place.
func TestJournalTornTailDropped(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 3, 4)
	f, err := os.OpenFile(cfg.Path+JournalSuffix, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var torn []byte
	torn = binary.BigEndian.AppendUint32(torn, 400)
	torn = binary.BigEndian.AppendUint32(torn, 12345)
	torn = append(torn, rowDomain...)
	f.Write(torn)
	f.Close()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.LastSeq != 7 {
		t.Fatalf("verify with a torn tail: %+v %v", rep, err)
	}
	l := openTest(t, cfg)
	ev := sampleEvent(50)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 8 {
		t.Fatalf("append after a torn tail: seq %d %v", ev.Seq, err)
	}
	l.Close()
	verifyClean(t, cfg, 8)
}

// A damaged record with more records after it is not a crash: Open refuses, verify
// names it, and nothing is stored from the journal.
func TestJournalDamageRefused(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 3, 4)
	b, err := os.ReadFile(cfg.Path + JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte of every position inside the first two records in turn.
	second := journalHeader + int(binary.BigEndian.Uint32(b))
	end := second + journalHeader + int(binary.BigEndian.Uint32(b[second:]))
	for i := 0; i < end; i += 7 {
		bad := bytes.Clone(b)
		bad[i] ^= 0x20
		if err := os.WriteFile(cfg.Path+JournalSuffix, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := Open(context.Background(), cfg, nil); err == nil {
			l.Close()
			t.Fatalf("byte %d flipped: Open accepted the journal", i)
		}
		rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
		if err != nil || rep.OK {
			t.Fatalf("byte %d flipped: verify %+v %v", i, rep, err)
		}
	}
}

// A row rewritten in the journal with a fresh checksum breaks the chain at the next
// row: Open refuses and verify names the row.
func TestJournalForgedRowRefused(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 3, 4)
	scan, err := readJournal(cfg.Path + JournalSuffix)
	if err != nil || len(scan.rows) != 4 {
		t.Fatalf("%d rows %v", len(scan.rows), err)
	}
	j, err := openJournal(cfg.Path+JournalSuffix, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.reset(); err != nil {
		t.Fatal(err)
	}
	hs := newHasher()
	for i := range scan.rows {
		r := scan.rows[i]
		if r.Seq == 5 {
			r.Decision = "allow" // the forger's edit; the checksum is recomputed below
		}
		hs.rowHash(&r)
		j.appendRecord(hs.buf)
	}
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}
	j.close()
	if _, err := Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "seq 6") {
		t.Fatalf("want Open to refuse at seq 6, got %v", err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || rep.OK || rep.BadSeq != 6 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// A journal that does not start where the database ends (from another log, or rows
// deleted from the database) is refused.
func TestJournalMustContinueTheDatabase(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 3, 2)
	other := testConfig(t)
	journalAfterCrash(t, other, 3, 2)
	b, err := os.ReadFile(other.Path + JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path+JournalSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "does not continue the chain at seq 4") {
		t.Fatalf("want Open to refuse the other log's journal, got %v", err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || rep.OK || rep.BadSeq != 4 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// When the database is full, the rows already acknowledged stay in the journal (none
// is lost), later calls are refused, and once there is room the next Open stores them.
func TestStoreFullKeepsJournaledRows(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxSizeBytes = 256 * 1024
	l := openTest(t, cfg)
	ctx := context.Background()
	acked := 0
	for i := 0; i < 5000; i++ {
		ev := sampleEvent(i)
		ev.Reason = strings.Repeat("r", 500)
		if err := l.Append(ctx, ev); err != nil {
			break
		}
		acked++
	}
	if acked == 5000 {
		t.Fatal("store never filled")
	}
	if err := l.Healthy(); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Healthy with a full database: %v", err)
	}
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "only in the journal") {
		t.Fatalf("Close must say rows remain in the journal, got %v", err)
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy after Close")
	}
	cfg.MaxSizeBytes = 64 << 20
	l = openTest(t, cfg)
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy once there is room: %v", err)
	}
	if journalSize(t, cfg) != 0 {
		t.Fatal("journal not emptied after its rows were stored")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.LastSeq != int64(acked) || rep.UnsignedTail != 0 {
		t.Fatalf("after making room: %+v %v (acked %d)", rep, err, acked)
	}
}

func TestDecodeRowRoundTrip(t *testing.T) {
	hs := newHasher()
	var r row
	r.fromEvent(sampleEvent(3))
	r.Seq, r.PrevHash = 42, bytes.Repeat([]byte{7}, 32)
	r.Hash = hs.rowHash(&r)
	got, err := decodeRow(hs.buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 42 || got.Args != r.Args || got.Roles != r.Roles || !bytes.Equal(got.Hash, r.Hash) || !bytes.Equal(got.PrevHash, r.PrevHash) {
		t.Fatalf("round trip: %+v", got)
	}
	for _, cut := range []int{0, 5, len(hs.buf) / 2, len(hs.buf) - 1} {
		if _, err := decodeRow(hs.buf[:cut]); err == nil {
			t.Errorf("a payload cut at %d decoded", cut)
		}
	}
	if _, err := decodeRow(append(bytes.Clone(hs.buf), 0)); err == nil {
		t.Error("a payload with trailing bytes decoded")
	}
}

// Under load the journal is rotated, not emptied; the rotated file goes once SQLite
// holds its rows, and nothing is lost or repeated across rotations.
func TestJournalRotates(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	l.rotateAt = 16 << 10
	var wg sync.WaitGroup
	sawOld := atomic.Bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				if err := l.Append(context.Background(), sampleEvent(i)); err != nil {
					t.Error(err)
					return
				}
				if _, err := os.Stat(cfg.Path + JournalSuffix + oldSuffix); err == nil {
					sawOld.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if !sawOld.Load() {
		t.Error("the journal was never rotated")
	}
	if fi, err := os.Stat(cfg.Path + JournalSuffix); err != nil || fi.Size() > 64<<10 {
		t.Fatalf("journal not kept small: %v %v", fi, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Path + JournalSuffix + oldSuffix); !os.IsNotExist(err) {
		t.Fatalf("rotated journal left after a clean close: %v", err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 2000 || rep.UnsignedTail != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// A crash leaves a rotated journal and a journal: Open stores both, in order.
func TestJournalReplaysRotatedFile(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 2, 3)
	// Rows 3-5 become the rotated file; rows 6-7 (and 4-5 again, as when a reader
	// overlaps a rotation) the journal.
	if err := os.Rename(cfg.Path+JournalSuffix, cfg.Path+JournalSuffix+oldSuffix); err != nil {
		t.Fatal(err)
	}
	scan, err := readJournal(cfg.Path + JournalSuffix)
	if err != nil || len(scan.rows) != 3 {
		t.Fatalf("%d rows %v", len(scan.rows), err)
	}
	j, err := openJournal(cfg.Path+JournalSuffix, false)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHasher()
	for _, r := range scan.rows[1:] {
		hs.rowHash(&r)
		j.appendRecord(hs.buf)
	}
	appendChained(t, j, 5, scan.rows[2].Hash, 2)
	j.close()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.LastSeq != 7 || rep.UnsignedTail != 5 {
		t.Fatalf("verify before restart: %+v %v", rep, err)
	}
	l := openTest(t, cfg)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Path + JournalSuffix + oldSuffix); !os.IsNotExist(err) {
		t.Fatalf("rotated journal left after its rows were stored: %v", err)
	}
	verifyClean(t, cfg, 7)
}

// Rows removed from the journal are a fault for verify as they are for Open, even at
// the journal's start.
func TestVerifyJournalGap(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 3, 4)
	b, err := os.ReadFile(cfg.Path + JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	first := journalHeader + int(binary.BigEndian.Uint32(b))
	if err := os.WriteFile(cfg.Path+JournalSuffix, b[first:], 0o600); err != nil { // drop seq 4
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || rep.OK || rep.BadSeq != 4 {
		t.Fatalf("verify with seq 4 removed from the journal: %+v %v", rep, err)
	}
	if _, err := Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "seq 4") {
		t.Fatalf("Open with seq 4 removed: %v", err)
	}
}

// Power lost while an unacknowledged batch was written can leave zeros or a partial
// record at the end: that tail is dropped, and the rows before it are kept.
func TestJournalDamagedTailIsTorn(t *testing.T) {
	for name, tail := range map[string][]byte{
		"zeros":        make([]byte, 4096),
		"bad checksum": append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 64), 1), bytes.Repeat([]byte("x"), 64)...),
		"bad length":   {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			journalAfterCrash(t, cfg, 3, 4)
			f, err := os.OpenFile(cfg.Path+JournalSuffix, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()
			rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
			if err != nil || !rep.OK || rep.LastSeq != 7 {
				t.Fatalf("verify: %+v %v", rep, err)
			}
			l := openTest(t, cfg)
			ev := sampleEvent(9)
			if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 8 {
				t.Fatalf("append after a torn tail: seq %d %v", ev.Seq, err)
			}
		})
	}
}

// One writer per audit log: a second Open of the same path is refused while the
// first is open, and allowed once it is closed.
func TestOneWriterPerLog(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 3)
	if l2, err := Open(context.Background(), cfg, nil); err == nil {
		l2.Close()
		t.Fatal("a second writer was allowed")
	} else if !strings.Contains(err.Error(), "another writer") {
		t.Fatalf("second Open: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openTest(t, cfg)
	ev := sampleEvent(4)
	if err := l2.Append(context.Background(), ev); err != nil || ev.Seq != 4 {
		t.Fatalf("append after reopening: seq %d %v", ev.Seq, err)
	}
}

// An export includes the rows that are only in the journal (acknowledged, not yet in
// the database), in seq order after the database's, with the same filters.
func TestExportIncludesJournal(t *testing.T) {
	cfg := testConfig(t)
	journalAfterCrash(t, cfg, 4, 5)
	rd, err := OpenReader(context.Background(), cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var all, del bytes.Buffer
	if err := rd.Export(context.Background(), &all, "jsonl", Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(all.String()), "\n")
	if len(lines) != 9 || !strings.Contains(lines[0], `"seq":1,`) || !strings.Contains(lines[8], `"seq":9,`) {
		t.Fatalf("export of 4 stored + 5 journaled rows: %d lines\n%s", len(lines), all.String())
	}
	// sampleEvent(i) is a delete for i%3 == 2: seqs 3 (stored), 6 and 9 (journaled).
	if err := rd.Export(context.Background(), &del, "jsonl", Filter{Tool: "delete_integration"}); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(del.String()), "\n")
	if len(got) != 3 || !strings.Contains(got[0], `"seq":3,`) || !strings.Contains(got[1], `"seq":6,`) || !strings.Contains(got[2], `"seq":9,`) {
		t.Fatalf("filtered export: %s", del.String())
	}
}

// Rows pruned from the database while a server runs are still in its journal until it
// is emptied; an export must not bring them back.
func TestExportSkipsPrunedJournalRows(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 20)
	l.waitStored(context.Background())
	if journalSize(t, cfg) == 0 {
		t.Fatal("setup: the journal should still hold the stored rows")
	}
	key, err := LoadSigningKey(cfg.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Prune(context.Background(), cfg.Path, key, time.Now().Add(time.Hour), t.TempDir()+"/archive.jsonl", nil)
	if err != nil || res.ThroughSeq != 20 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	ev := sampleEvent(21)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 21 {
		t.Fatalf("append after prune: %d %v", ev.Seq, err)
	}
	rd, err := OpenReader(context.Background(), cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out bytes.Buffer
	if err := rd.Export(context.Background(), &out, "jsonl", Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"seq":21,`) {
		t.Fatalf("export after pruning through seq 20: %q", out.String())
	}
}

// After the database refused rows, the ingester retries on its own (every second):
// once there is room, the log is healthy again and the journaled rows are stored,
// without waiting for a call or a restart.
func TestStoreRecoversWhenRoomIsMade(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxSizeBytes = 256 * 1024
	l := openTest(t, cfg)
	ctx := context.Background()
	acked := int64(0)
	for i := 0; i < 5000; i++ {
		ev := sampleEvent(i)
		ev.Reason = strings.Repeat("r", 500)
		if err := l.Append(ctx, ev); err != nil {
			break
		}
		acked = ev.Seq
	}
	if l.Healthy() == nil {
		t.Fatal("setup: the database never filled")
	}
	// Let the ingester settle: no kick is left pending, and its 200 ms lookup ticker
	// has fired, so only its own retry can store the rows now.
	time.Sleep(500 * time.Millisecond)
	if _, err := l.wdb.Exec(`PRAGMA max_page_count = 1000000`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Healthy() != nil || l.ingested.Load() < acked {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 5 s: healthy=%v, stored through %d of %d", l.Healthy(), l.ingested.Load(), acked)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.Append(ctx, sampleEvent(1)); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
}

// A database row that the journal still holds must match the journal's copy: an
// edit of the database's unsigned tail, rehashed and relinked, is caught this way.
func TestVerifyComparesRowsTheJournalStillHolds(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 1000
	l := openTest(t, cfg)
	appendN(t, l, 10)
	l.waitStored(context.Background())
	// Kill the server: its journal still holds rows 1-10, all also in the database.
	b, err := os.ReadFile(cfg.Path + JournalSuffix)
	if err != nil || len(b) == 0 {
		t.Fatalf("journal: %d bytes %v", len(b), err)
	}
	l.Close()
	if err := os.WriteFile(cfg.Path+JournalSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 10 {
		t.Fatalf("verify before the edit: %+v %v", rep, err)
	}
	// Rewrite the last database row (past every checkpoint but the close one, which
	// the forger also drops) with a consistent hash.
	db, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	var r row
	if err := db.QueryRow(`SELECT ` + rowColumns + ` FROM audit_events WHERE seq = 10`).Scan(r.scanDest()...); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r.Decision = "deny"
	h := newHasher().rowHash(&r)
	tamper(t, cfg.Path,
		`DELETE FROM audit_checkpoints WHERE seq = 10`,
		fmt.Sprintf(`UPDATE audit_events SET decision = 'deny', hash = X'%x' WHERE seq = 10`, h))
	rep, err = Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || rep.OK || rep.BadSeq != 10 {
		t.Fatalf("verify after rewriting row 10: %+v %v", rep, err)
	}
}
