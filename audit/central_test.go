package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit/sqldb/sqldbtest"
)

// centralURL is a fresh PostgreSQL schema per test (sqldbtest.PostgresURL); it skips
// the test when PORTCULLIS_TEST_POSTGRES is unset.
func centralURL(t testing.TB) string { return sqldbtest.PostgresURL(t) }

func openCentralTest(t testing.TB, u string) *Central {
	t.Helper()
	c, err := OpenCentral(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenCentral: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newShipperTest(t testing.TB, c *Central, path string, batch int) *Shipper {
	t.Helper()
	s, err := NewShipper(context.Background(), c, ShipperConfig{Path: path, Batch: batch, Interval: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("NewShipper: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// centralExec runs statements on the central schema with the append-only triggers
// disabled, as someone with write access to PostgreSQL would.
func centralExec(t testing.TB, c *Central, stmts ...string) {
	t.Helper()
	all := append([]string{
		`ALTER TABLE audit_central_events DISABLE TRIGGER audit_central_events_append_only`,
		`ALTER TABLE audit_central_checkpoints DISABLE TRIGGER audit_central_checkpoints_append_only`,
	}, stmts...)
	all = append(all,
		`ALTER TABLE audit_central_events ENABLE ALWAYS TRIGGER audit_central_events_append_only`,
		`ALTER TABLE audit_central_checkpoints ENABLE ALWAYS TRIGGER audit_central_checkpoints_append_only`)
	for _, s := range all {
		if _, err := c.db.Exec(s); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
}

func centralCount(t testing.TB, c *Central, logID string) (n, maxSeq int64) {
	t.Helper()
	if err := c.db.QueryRow(`SELECT count(*), COALESCE(max(seq), 0) FROM audit_central_events WHERE log_id = $1`, logID).
		Scan(&n, &maxSeq); err != nil {
		t.Fatal(err)
	}
	return n, maxSeq
}

// twoReplicas writes n rows into each of two logs (two data dirs, two signing keys),
// closes them and returns their configs.
func twoReplicas(t *testing.T, n int) (a, b Config) {
	t.Helper()
	for _, cfg := range []*Config{&a, &b} {
		*cfg = testConfig(t)
		cfg.CheckpointEvery = 100
		l := openTest(t, *cfg)
		appendN(t, l, n)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func logIDOf(t testing.TB, path string) string {
	t.Helper()
	rd, err := OpenReader(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	id, err := readLogID(context.Background(), rd.db)
	if err != nil || id == "" {
		t.Fatalf("log id of %s: %q %v", path, id, err)
	}
	return id
}

func TestTwoReplicasShipIntoOneCentralStoreThatVerifies(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	a, b := twoReplicas(t, 250)
	ctx := context.Background()
	for _, cfg := range []Config{a, b} {
		s := newShipperTest(t, c, cfg.Path, 64)
		if n, err := s.Ship(ctx); err != nil || n != 250 {
			t.Fatalf("ship %s: %d rows, %v; want 250", cfg.Path, n, err)
		}
		if rows, age := s.Lag(); rows != 0 || age != 0 {
			t.Fatalf("lag after a full pass: %d rows, %s", rows, age)
		}
	}
	keys := []ed25519.PublicKey{pubKey(t, a), pubKey(t, b)}
	rep, err := c.Verify(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Logs) != 2 {
		t.Fatalf("central verify: %+v", rep)
	}
	for _, lr := range rep.Logs {
		// Close signed the last row, and every checkpoint was shipped with its rows.
		if lr.Rows != 250 || lr.FirstSeq != 1 || lr.LastSeq != 250 || lr.UnsignedTail != 0 || lr.Checkpoints < 3 {
			t.Fatalf("log %s: %+v", lr.LogID, lr)
		}
	}
	// Only one key: the other log's checkpoints are named as signed by another key.
	rep, err = c.Verify(ctx, keys[:1])
	if err != nil {
		t.Fatal(err)
	}
	idB := logIDOf(t, b.Path)
	if rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "log "+idB+": checkpoint id") {
		t.Fatalf("a log signed by a key not given verified: %+v", rep.Problems)
	}

	// The API reads both logs, newest first, and names each row's log.
	seen := map[string]int{}
	f := Filter{Limit: 37, Org: "acme"}
	pages := 0
	var lastTS int64 = 1<<63 - 1
	for {
		page, err := c.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Events {
			seen[ev.LogID+"/"+strconv.FormatInt(ev.Seq, 10)]++
			if ts := ev.Time.UnixNano(); ts > lastTS {
				t.Fatalf("page %d not newest first: %d after %d", pages, ts, lastTS)
			} else {
				lastTS = ts
			}
		}
		pages++
		if page.NextCursor == "" {
			break
		}
		// The cursor passes the admin API's filter parsing.
		pf, err := ParseFilter(url.Values{"cursor": {page.NextCursor}})
		if err != nil {
			t.Fatalf("central cursor refused by ParseFilter: %v", err)
		}
		f.Cursor = pf.Cursor
	}
	if len(seen) != 500 {
		t.Fatalf("paged through %d distinct rows of both logs, want 500", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("row %s returned %d times", k, n)
		}
	}
	page, err := c.Query(ctx, Filter{RequestID: "req-7"})
	if err != nil || len(page.Events) != 2 || page.Events[0].LogID == page.Events[1].LogID {
		t.Fatalf("request req-7 is in both logs: %+v %v", page.Events, err)
	}

	var buf bytes.Buffer
	if err := c.Export(ctx, &buf, "jsonl", Filter{Tool: "delete_integration"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2*83 {
		t.Fatalf("exported %d delete_integration rows, want %d", len(lines), 2*83)
	}
	var ev Event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.LogID == "" || ev.Tool != "delete_integration" {
		t.Fatalf("export line: %s %v", lines[0], err)
	}
	buf.Reset()
	if err := c.Export(ctx, &buf, "csv", Filter{RequestID: "req-1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "log_id,seq,time,") || strings.Count(buf.String(), "\n") != 3 {
		t.Fatalf("csv export:\n%s", buf.String())
	}
}

func TestCentralVerifyNamesTheLogAndSeqOfATamperedRow(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	a, b := twoReplicas(t, 120)
	ctx := context.Background()
	for _, cfg := range []Config{a, b} {
		if _, err := newShipperTest(t, c, cfg.Path, 1000).Ship(ctx); err != nil {
			t.Fatal(err)
		}
	}
	idB := logIDOf(t, b.Path)
	centralExec(t, c, fmt.Sprintf(`UPDATE audit_central_events SET decision = 'allow', reason = 'nothing to see'
		WHERE log_id = '%s' AND seq = 57`, idB))
	rep, err := c.Verify(ctx, []ed25519.PublicKey{pubKey(t, a), pubKey(t, b)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatal("a row edited in PostgreSQL verified")
	}
	want := "log " + idB + ": row seq 57: hash does not match the row's contents"
	if !strings.Contains(strings.Join(rep.Problems, "\n"), want) {
		t.Fatalf("problems %q do not name %q", rep.Problems, want)
	}
	for _, lr := range rep.Logs {
		switch {
		case lr.LogID == idB && lr.BadSeq != 57:
			t.Fatalf("tampered log: BadSeq %d, want 57", lr.BadSeq)
		case lr.LogID != idB && !lr.OK:
			t.Fatalf("the untouched log is reported: %+v", lr.Problems)
		}
	}

	// Deleting a row (and re-linking nothing) is named too.
	centralExec(t, c, fmt.Sprintf(`DELETE FROM audit_central_events WHERE log_id = '%s' AND seq = 90`, logIDOf(t, a.Path)))
	rep, _ = c.Verify(ctx, []ed25519.PublicKey{pubKey(t, a), pubKey(t, b)})
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "log "+logIDOf(t, a.Path)+": row seq 90: expected seq 90, found 91 (rows missing)") {
		t.Fatalf("deleted central row not named: %q", rep.Problems)
	}
}

func TestShipperRestartedMidShippingResumesWithoutDuplicatesOrGaps(t *testing.T) {
	u := centralURL(t)
	c := openCentralTest(t, u)
	cfg := testConfig(t)
	cfg.CheckpointEvery = 50
	l := openTest(t, cfg)
	appendN(t, l, 300)
	waitStoredTest(t, l)
	ctx := context.Background()

	// The first shipper dies after two batches: its context ends mid-pass.
	s1 := newShipperTest(t, c, cfg.Path, 64)
	cctx, cancel := context.WithCancel(ctx)
	shipAfterCommit = func(seq int64) {
		if seq >= 128 {
			cancel()
		}
	}
	t.Cleanup(func() { shipAfterCommit = nil })
	if _, err := s1.Ship(cctx); err == nil {
		t.Fatal("a pass whose context ended mid-way reported success")
	}
	shipAfterCommit = nil
	id := logIDOf(t, cfg.Path)
	if n, maxSeq := centralCount(t, c, id); n != 128 || maxSeq != 128 {
		t.Fatalf("after the cut pass: %d rows, max seq %d; want 128 and 128", n, maxSeq)
	}
	// Rows keep arriving; a new process (new Central, new Shipper) resumes.
	appendN(t, l, 200)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := openCentralTest(t, u)
	s2 := newShipperTest(t, c2, cfg.Path, 64)
	if n, err := s2.Ship(ctx); err != nil || n != 500-128 {
		t.Fatalf("resumed pass: %d rows, %v; want %d", n, err, 500-128)
	}
	if n, maxSeq := centralCount(t, c2, id); n != 500 || maxSeq != 500 {
		t.Fatalf("after resuming: %d rows, max seq %d; want 500 and 500", n, maxSeq)
	}
	// Sending rows the store already holds (a pass that committed and died before
	// learning it) changes nothing.
	rows, err := s2.readRows(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.store(ctx, id, rows[:10], nil); err != nil {
		t.Fatalf("re-sending identical rows: %v", err)
	}
	if n, _ := centralCount(t, c2, id); n != 500 {
		t.Fatalf("re-sent rows were duplicated: %d rows", n)
	}
	var cps, localCPs int
	c2.db.QueryRow(`SELECT count(*) FROM audit_central_checkpoints WHERE log_id = $1`, id).Scan(&cps)
	s2.rd.db.QueryRow(`SELECT count(*) FROM audit_checkpoints`).Scan(&localCPs)
	if cps != localCPs || cps < 10 {
		t.Fatalf("central holds %d checkpoints, the log %d", cps, localCPs)
	}
	rep, err := c2.Verify(ctx, []ed25519.PublicKey{pubKey(t, cfg)})
	if err != nil || !rep.OK || rep.Logs[0].Rows != 500 {
		t.Fatalf("verify after resume: %+v %v", rep, err)
	}
}

func TestShipperNeverOverwritesACentralRowWithAnotherHash(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 40)
	waitStoredTest(t, l)
	ctx := context.Background()
	s := newShipperTest(t, c, cfg.Path, 1000)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	id := logIDOf(t, cfg.Path)
	forged := bytes.Repeat([]byte{0xab}, 32)
	centralExec(t, c, fmt.Sprintf(`UPDATE audit_central_events SET hash = '\x%x' WHERE log_id = '%s' AND seq = 40`, forged, id))
	appendN(t, l, 5)
	waitStoredTest(t, l)
	_, err := s.Ship(ctx)
	if !errors.Is(err, ErrCentralFault) || !strings.Contains(err.Error(), "log "+id+" row seq 40") {
		t.Fatalf("ship over a forged central head: %v", err)
	}
	if st := s.Status(); !strings.Contains(st.Fault, "row seq 40") || st.LagRows != 5 {
		t.Fatalf("status: %+v", st)
	}
	var h []byte
	c.db.QueryRow(`SELECT hash FROM audit_central_events WHERE log_id = $1 AND seq = 40`, id).Scan(&h)
	if !bytes.Equal(h, forged) {
		t.Fatal("the central row was overwritten")
	}
	if n, _ := centralCount(t, c, id); n != 40 {
		t.Fatalf("rows after a fault: %d, want 40 (shipping stops)", n)
	}
	// Another log's database under this log's id (a cloned data dir) is refused too.
	rows, _ := s.readRows(ctx, 0)
	rows[3].Hash = forged
	if err := c.store(ctx, id, rows[3:4], nil); !errors.Is(err, ErrCentralFault) || !strings.Contains(err.Error(), "row seq 4") {
		t.Fatalf("a different row at an existing seq: %v", err)
	}
}

func TestLocalVerifyWithCentralCatchesAnUnsignedTailErasedAfterShipping(t *testing.T) {
	c := openCentralTest(t, centralURL(t))
	cfg := testConfig(t) // checkpoints every 1000 rows or hour: rows 2-30 stay unsigned
	l := openTest(t, cfg)
	appendN(t, l, 5) // the first rows stored are signed at once
	waitStoredTest(t, l)
	appendN(t, l, 25)
	waitStoredTest(t, l)
	ctx := context.Background()
	s := newShipperTest(t, c, cfg.Path, 1000)
	if _, err := s.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	if err := l.Close(); err != nil { // signs a close checkpoint locally, never shipped
		t.Fatal(err)
	}
	// Someone with the data dir erases rows 21-30 and the checkpoints that covered them:
	// locally, what is left is a clean chain with an unsigned tail.
	tamper(t, cfg.Path, `DELETE FROM audit_events WHERE seq > 20`, `DELETE FROM audit_checkpoints WHERE seq > 20`,
		`DELETE FROM audit_lookup WHERE seq > 20`, `UPDATE audit_meta SET value = '20' WHERE key = 'lookup_through'`)
	pub := pubKey(t, cfg)
	local, err := Verify(ctx, cfg.Path, pub)
	if err != nil || !local.OK || local.LastSeq != 20 {
		t.Fatalf("the erasure should be invisible locally (that is the point): %+v %v", local, err)
	}
	rep, err := VerifyAgainstCentral(ctx, cfg.Path, pub, c)
	if err != nil {
		t.Fatal(err)
	}
	want := "rows seq 21-30 of log " + logIDOf(t, cfg.Path) + " were shipped to the central store but are missing here"
	if rep.OK || rep.BadSeq != 21 || !strings.Contains(strings.Join(rep.Problems, "\n"), want) {
		t.Fatalf("erased tail not caught: OK=%v BadSeq=%d %q", rep.OK, rep.BadSeq, rep.Problems)
	}

	// A row rewritten (chain recomputed) after shipping is caught by its central copy.
	cfg2 := testConfig(t)
	l2 := openTest(t, cfg2)
	appendN(t, l2, 3)
	waitStoredTest(t, l2)
	appendN(t, l2, 7)
	waitStoredTest(t, l2)
	s2 := newShipperTest(t, c, cfg2.Path, 1000)
	if _, err := s2.Ship(ctx); err != nil {
		t.Fatal(err)
	}
	s2.Close(ctx)
	l2.Close()
	// Rows 6-10 rewritten with a consistent chain, and the close checkpoint that would
	// betray them removed: locally, a clean chain with an unsigned tail again.
	recompute(t, cfg2.Path, 6, nil)
	tamper(t, cfg2.Path, `DELETE FROM audit_checkpoints WHERE seq > 3`)
	if local, err := Verify(ctx, cfg2.Path, pubKey(t, cfg2)); err != nil || !local.OK {
		t.Fatalf("the rewrite should be invisible locally: %+v %v", local.Problems, err)
	}
	if rep, err := VerifyAgainstCentral(ctx, cfg2.Path, pubKey(t, cfg2), c); err != nil || rep.OK ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "row seq 6: differs from the copy shipped to the central store") {
		t.Fatalf("rewritten shipped row not caught: %+v %v", rep.Problems, err)
	}
}

func waitStoredTest(t testing.TB, l *Log) {
	t.Helper()
	l.waitStored(context.Background())
	if l.StoredSeq() != l.journaled.Load() {
		t.Fatalf("rows not stored: %d of %d", l.StoredSeq(), l.journaled.Load())
	}
}

func TestShipperLagGrowsWhileCentralIsDownAndReadinessFailsOnlyPastTheBound(t *testing.T) {
	// No PostgreSQL needed: the central store is a closed port.
	db, err := sql.Open("pgx", "postgres://portcullis@127.0.0.1:1/none?connect_timeout=1&sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	c := &Central{db: db}
	defer c.Close()
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ctx := context.Background()
	for i := 0; i < 12; i++ {
		ev := sampleEvent(i)
		ev.Time = time.Now().Add(-10 * time.Minute)
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	waitStoredTest(t, l)
	s, err := NewShipper(ctx, c, ShipperConfig{Path: cfg.Path, MaxLag: time.Hour, Stored: l.StoredSeq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if _, err := s.Ship(ctx); err == nil {
		t.Fatal("shipping to a closed port succeeded")
	}
	rows, age := s.Lag()
	if rows != 12 || age < 9*time.Minute {
		t.Fatalf("lag while down: %d rows, %s; want 12 rows, about 10m", rows, age)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("10m behind with a 1h bound must stay ready (degraded): %v", err)
	}
	if st := s.Status(); st.LastError == "" || st.Fault != "" || !st.WithinBound || strings.Contains(st.LastError, "portcullis@") {
		t.Fatalf("status while down: %+v", st)
	}
	s.cfg.MaxLag = time.Minute
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "12 rows") {
		t.Fatalf("past the bound: %v", err)
	}
}

const shipChildEnv = "PORTCULLIS_AUDIT_SHIP_CHILD"

// TestKilledReplicaLosesNoAcknowledgedRowCentrally runs a replica (a re-executed test
// binary appending from 16 goroutines and shipping as it goes) beside a second
// replica in this process, SIGKILLs the child under load, restarts its log from the
// same data dir with a new shipper, and checks that every row the child saw
// acknowledged is in the central store under its log id, and both logs verify.
func TestKilledReplicaLosesNoAcknowledgedRowCentrally(t *testing.T) {
	if dir := os.Getenv(shipChildEnv); dir != "" {
		shipChild(dir, os.Getenv(shipChildEnv+"_URL"))
		return
	}
	u := centralURL(t)
	c := openCentralTest(t, u)
	ctx := context.Background()

	// Replica B runs here throughout, shipping continuously.
	bcfg := crashConfig(t.TempDir())
	lb := openTest(t, bcfg)
	sb, err := NewShipper(ctx, c, ShipperConfig{Path: bcfg.Path, Interval: 100 * time.Millisecond, Stored: lb.StoredSeq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go sb.Run()
	var wg sync.WaitGroup
	stopB := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopB:
				return
			default:
			}
			if err := lb.Append(ctx, sampleEvent(i)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond) // steady load beside the child's burst
		}
	}()

	dir := t.TempDir()
	acked := killAfterAcks(t, "^TestKilledReplicaLosesNoAcknowledgedRowCentrally$", 3000, 30*time.Second,
		shipChildEnv+"="+dir, shipChildEnv+"_URL="+u)
	acfg := crashConfig(dir)
	idA := logIDOf(t, acfg.Path)
	shippedBefore, _ := centralCount(t, c, idA)

	// Restart replica A: Open stores the journal's rows, the shipper resumes.
	la := openTest(t, acfg)
	sa, err := NewShipper(ctx, c, ShipperConfig{Path: acfg.Path, Interval: 100 * time.Millisecond, Stored: la.StoredSeq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go sa.Run()
	appendN(t, la, 10)
	if err := la.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sa.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(stopB)
	wg.Wait()
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(ctx); err != nil {
		t.Fatal(err)
	}

	missing := 0
	for req, seq := range acked {
		var got string
		if err := c.db.QueryRow(`SELECT request_id FROM audit_central_events WHERE log_id = $1 AND seq = $2`, idA, seq).Scan(&got); err != nil || got != req {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged rows of the killed replica are not in the central store", missing, len(acked))
	}
	for _, cfg := range []Config{acfg, bcfg} {
		id := logIDOf(t, cfg.Path)
		n, maxSeq := centralCount(t, c, id)
		local, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
		if err != nil || !local.OK {
			t.Fatalf("local verify of %s: %+v %v", id, local, err)
		}
		if n != maxSeq || maxSeq != local.LastSeq {
			t.Fatalf("log %s: central %d rows (max seq %d), local last seq %d: want no gaps, no duplicates, nothing missing", id, n, maxSeq, local.LastSeq)
		}
	}
	rep, err := c.Verify(ctx, []ed25519.PublicKey{pubKey(t, acfg), pubKey(t, bcfg)})
	if err != nil || !rep.OK || len(rep.Logs) != 2 {
		t.Fatalf("central verify: %+v %v", rep, err)
	}
	t.Logf("killed after %d acks (%d rows shipped before the kill); central holds %d and %d rows", len(acked), shippedBefore, rep.Logs[0].Rows, rep.Logs[1].Rows)
}

// shipChild is replica A: it appends from 16 goroutines, printing each acknowledged
// row, while a shipper copies its rows to the central store.
func shipChild(dir, u string) {
	ctx := context.Background()
	l, err := Open(ctx, crashConfig(dir), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	c, err := OpenCentral(ctx, u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child central:", err)
		os.Exit(2)
	}
	s, err := NewShipper(ctx, c, ShipperConfig{Path: l.cfg.Path, Interval: 50 * time.Millisecond, Stored: l.StoredSeq}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child shipper:", err)
		os.Exit(2)
	}
	go s.Run()
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ev := sampleEvent(i)
				ev.RequestID = fmt.Sprintf("g%d-%d", g, i)
				if err := l.Append(ctx, ev); err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s %d\n", ev.RequestID, ev.Seq)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// BenchmarkAppendNormalShipping is BenchmarkAppendNormal with a shipper copying the
// rows to PostgreSQL as they are stored: compare the two to see that Append does not
// wait on the central store.
func BenchmarkAppendNormalShipping(b *testing.B) {
	c := openCentralTest(b, centralURL(b))
	var s *Shipper
	benchAppendWith(b, "NORMAL", func(l *Log) {
		var err error
		s, err = NewShipper(context.Background(), c, ShipperConfig{Path: l.cfg.Path, Stored: l.StoredSeq}, nil)
		if err != nil {
			b.Fatal(err)
		}
		go s.Run()
		b.Cleanup(func() { s.Close(context.Background()) })
	})
	rows, age := s.Lag()
	b.ReportMetric(float64(rows), "lag-rows-at-end")
	_ = age
}

// BenchmarkShipRows measures shipping alone: rows per second from a closed log of
// b.N rows into PostgreSQL.
func BenchmarkShipRows(b *testing.B) {
	c := openCentralTest(b, centralURL(b))
	cfg := testConfig(b)
	cfg.CheckpointEvery = 10000
	l := openTest(b, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += 8 {
				if err := l.Append(ctx, sampleEvent(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	s, err := NewShipper(ctx, c, ShipperConfig{Path: cfg.Path}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	b.ResetTimer()
	start := time.Now()
	n, err := s.Ship(ctx)
	if err != nil || n != b.N {
		b.Fatalf("shipped %d of %d: %v", n, b.N, err)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "rows/s")
}

// CatchUp (migrate's pass) ships, in as many batches as it takes, every row and
// checkpoint the local database holds, and a second CatchUp copies nothing; the log
// then verifies on its own in the central store, and a log it does not hold is no rows.
func TestCatchUpShipsEveryRowAndCheckpointOnceAndTheLogVerifiesAlone(t *testing.T) {
	ctx := context.Background()
	c := openCentralTest(t, centralURL(t))
	a, b := twoReplicas(t, 250) // checkpoints every 100 rows, and one at close
	pubA := pubKey(t, a)
	local, err := Verify(ctx, a.Path, pubA)
	if err != nil || !local.OK {
		t.Fatalf("local: %+v %v", local, err)
	}
	s := newShipperTest(t, c, a.Path, 40) // 7 batches
	got, err := s.CatchUp(ctx)
	if err != nil || got.Rows != 250 || got.Checkpoints != local.Checkpoints {
		t.Fatalf("CatchUp: %+v %v; want 250 rows and %d checkpoints", got, err, local.Checkpoints)
	}
	got, err = s.CatchUp(ctx)
	if err != nil || got.Rows != 0 || got.Checkpoints != 0 {
		t.Fatalf("second CatchUp: %+v %v; want nothing copied", got, err)
	}
	if n, maxSeq := centralCount(t, c, s.LogID()); n != 250 || maxSeq != 250 {
		t.Fatalf("central holds %d rows to seq %d", n, maxSeq)
	}
	// Another log, shipped by nobody yet, is not in the way: VerifyLog reads one log.
	centralExec(t, c, `INSERT INTO audit_central_logs (log_id) VALUES ('`+logIDOf(t, b.Path)+`')`)
	rep, err := c.VerifyLog(ctx, s.LogID(), []ed25519.PublicKey{pubA})
	if err != nil || !rep.OK || rep.Rows != 250 || rep.LastSeq != 250 || rep.Checkpoints != local.Checkpoints || rep.LogID != s.LogID() {
		t.Fatalf("VerifyLog: %+v %v", rep, err)
	}
	if rep, err := c.VerifyLog(ctx, s.LogID(), []ed25519.PublicKey{pubKey(t, b)}); err != nil || rep.OK {
		t.Fatalf("VerifyLog with another log's key: %+v %v; want a fault", rep, err)
	}
	if rep, err := c.VerifyLog(ctx, logIDOf(t, b.Path), []ed25519.PublicKey{pubA}); err != nil || !rep.OK || rep.Rows != 0 {
		t.Fatalf("VerifyLog of a log with no rows shipped: %+v %v", rep, err)
	}
}
