package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConfigValidateReportsEveryField(t *testing.T) {
	cfg := Config{Synchronous: "OFF", Linger: -1, MaxBatch: -1, QueueSize: -1, Mode: "yolo",
		CheckpointEvery: -1, CheckpointInterval: -1, MaxSizeBytes: 10}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want error")
	}
	for _, field := range []string{"audit.path", "audit.synchronous", "audit.linger", "audit.max_batch",
		"audit.queue_size", "audit.mode", "audit.signing_key_path", "audit.hmac_key_path",
		"audit.checkpoint_every", "audit.checkpoint_interval", "audit.max_size_bytes", "audit.witness_path"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	good := Config{}
	good.SetDefaults(t.TempDir())
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if good.Linger != time.Millisecond || good.MaxBatch != 512 || good.Mode != ModeFailClosed ||
		good.Synchronous != "NORMAL" || good.CheckpointEvery != 1000 || good.CheckpointInterval != time.Second ||
		good.WitnessPath != filepath.Join(filepath.Dir(good.Path), "witness.log") {
		t.Fatalf("unexpected defaults: %+v", good)
	}
}

func TestAppendAssignsChainAndQueryReadsBack(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ctx := context.Background()
	var evs []*Event
	for i := 0; i < 5; i++ {
		ev := sampleEvent(i)
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d got seq %d", i, ev.Seq)
		}
		if i > 0 && ev.PrevHash != evs[i-1].Hash {
			t.Fatalf("event %d prev_hash %s != previous hash %s", i, ev.PrevHash, evs[i-1].Hash)
		}
	}
	page, err := l.Query(ctx, Filter{RequestID: "req-3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 {
		t.Fatalf("got %d events", len(page.Events))
	}
	got := page.Events[0]
	want := *evs[3]
	if got.Seq != 4 || got.Tool != want.Tool || got.Caller.Sub != want.Caller.Sub ||
		strings.Join(got.Caller.Roles, ",") != "agent" || got.Hash != want.Hash ||
		string(got.Arguments) != string(want.Arguments) || !got.Time.Equal(want.Time) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
}

func TestAppendRejectsInvalidEvents(t *testing.T) {
	l := openTest(t, testConfig(t))
	for name, ev := range map[string]*Event{
		"nil":          nil,
		"no kind":      {RequestID: "r"},
		"invalid json": {Kind: KindDecision, Arguments: json.RawMessage(`{"a":`)},
	} {
		t.Run(name, func(t *testing.T) {
			if err := l.Append(context.Background(), ev); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("want ErrUnavailable, got %v", err)
			}
		})
	}
}

func TestQueryFiltersAndPaginates(t *testing.T) {
	l := openTest(t, testConfig(t))
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		ev := sampleEvent(i)
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		if i == 7 {
			ev.ApprovalID, ev.Approver, ev.Kind = "apr-1", "sec-1", KindApproval
		}
		if i%2 == 0 {
			ev.Caller.Org = "globex"
		}
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"time range", Filter{Since: base.Add(10 * time.Minute), Until: base.Add(13 * time.Minute)}, []int64{13, 12, 11}},
		{"tool and decision", Filter{Tool: "delete_integration", Decision: "rate_limited", Until: base.Add(9 * time.Minute)}, []int64{9, 6, 3}},
		{"sub", Filter{Sub: "agent-6", Since: base.Add(10 * time.Minute)}, []int64{28, 21, 14}},
		{"org", Filter{Org: "acme", Until: base.Add(6 * time.Minute)}, []int64{6, 4, 2}},
		{"approval", Filter{ApprovalID: "apr-1"}, []int64{8}},
		{"request", Filter{RequestID: "req-29"}, []int64{30}},
		{"no match", Filter{Tool: "nope"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.Query(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, e := range p.Events {
				got = append(got, e.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got seqs %v, want %v", got, tc.want)
			}
		})
	}
	// Pagination walks every row exactly once, newest first.
	seen := map[int64]bool{}
	f := Filter{Limit: 7}
	pages := 0
	last := int64(1 << 62)
	for {
		p, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range p.Events {
			if seen[e.Seq] || e.Seq >= last {
				t.Fatalf("seq %d repeated or out of order", e.Seq)
			}
			seen[e.Seq], last = true, e.Seq
		}
		if p.NextCursor == "" {
			break
		}
		f.Cursor = p.NextCursor
	}
	if len(seen) != 30 || pages != 5 {
		t.Fatalf("pagination saw %d rows in %d pages, want 30 in 5", len(seen), pages)
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		wantErr []string
		check   func(Filter) bool
	}{
		{"defaults", "", nil, func(f Filter) bool { return f.Limit == 100 }},
		{"all fields", "since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&sub=a&org=o&tool=t&decision=deny&approval_id=ap&request_id=r&limit=5",
			nil, func(f Filter) bool {
				return f.Limit == 5 && f.Sub == "a" && f.Org == "o" && f.Tool == "t" && f.Decision == "deny" &&
					f.ApprovalID == "ap" && f.RequestID == "r" && f.Since.Day() == 1 && f.Until.Day() == 2
			}},
		{"bad time and limit", "since=yesterday&limit=5000", []string{`"since"`, `"limit"`}, nil},
		{"limit zero", "limit=0", []string{`"limit"`}, nil},
		{"unknown", "password=x", []string{`"password": unknown`}, nil},
		{"bad cursor", "cursor=zzz", []string{`"cursor"`}, nil},
		{"until before since", "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", []string{`"until"`}, nil},
		{"repeated", "tool=a&tool=b", []string{`"tool": given 2 times`}, nil},
		{"unknown decision", "decision=maybe", []string{`"decision": want one of allow, deny`, `got "maybe"`}, nil},
		{"unknown kind", "kind=decisoin", []string{`"kind": want one of decision, outcome, approval, auth_failure, shadow`, `got "decisoin"`}, nil},
		{"kind", "kind=shadow", nil, func(f Filter) bool { return f.Kind == "shadow" }},
		{"approver", "approver=alice", nil, func(f Filter) bool { return f.Approver == "alice" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.query)
			f, err := ParseFilter(v)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("want error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				return
			}
			if err != nil || !tc.check(f) {
				t.Fatalf("f=%+v err=%v", f, err)
			}
		})
	}
}

func TestExportStreamsJSONLAndCSV(t *testing.T) {
	l := openTest(t, testConfig(t))
	appendN(t, l, 2500) // more than one export chunk
	ev := sampleEvent(9999)
	ev.Reason = "=HYPERLINK(\"http://evil\")"
	if err := l.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var jb bytes.Buffer
	if err := l.Export(context.Background(), &jb, "jsonl", Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(jb.String()), "\n")
	if len(lines) != 2501 {
		t.Fatalf("jsonl has %d lines, want 2501", len(lines))
	}
	for i, ln := range lines {
		var e Event
		if err := json.Unmarshal([]byte(ln), &e); err != nil || e.Seq != int64(i+1) {
			t.Fatalf("line %d: seq %d err %v", i, e.Seq, err)
		}
	}
	var cb bytes.Buffer
	if err := l.Export(context.Background(), &cb, "csv", Filter{Tool: "create_integration"}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+835 || recs[0][0] != "seq" || recs[0][12] != "tool" {
		t.Fatalf("csv: %d records, header %v", len(recs), recs[0])
	}
	last := recs[len(recs)-1]
	if last[17] != `'=HYPERLINK("http://evil")` {
		t.Fatalf("formula not defused: %q", last[17])
	}
	if err := l.Export(context.Background(), &cb, "xml", Filter{}); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("want format error, got %v", err)
	}
}

// Export memory must not grow with the row count.
func TestExportConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	l := openTest(t, testConfig(t))
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 600; i++ {
				if err := l.Append(ctx, sampleEvent(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	counting := &countWriter{}
	var before, after runtimeMem
	before.read()
	if err := l.Export(ctx, counting, "jsonl", Filter{}); err != nil {
		t.Fatal(err)
	}
	after.read()
	if counting.lines != 19200 {
		t.Fatalf("exported %d rows", counting.lines)
	}
	// 19200 rows are ~7 MB of JSON; the heap must not hold them.
	if grow := int64(after.heap) - int64(before.heap); grow > 4<<20 {
		t.Fatalf("heap grew by %d bytes during export", grow)
	}
}

type countWriter struct{ lines int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

func TestAppendOnlyTriggers(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	appendN(t, l, 3)
	l.Close() // signs a checkpoint, so the checkpoint statements have a row to hit
	db, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE audit_events SET reason = 'x' WHERE seq = 1`,
		`DELETE FROM audit_events WHERE seq = 1`,
		`UPDATE audit_checkpoints SET seq = 99`,
		`DELETE FROM audit_checkpoints`,
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: want append-only error, got %v", q, err)
		}
	}
}

func TestReopenResumesChain(t *testing.T) {
	cfg := testConfig(t)
	l, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), sampleEvent(1)); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append after close: %v", err)
	}
	l2 := openTest(t, cfg)
	ev := sampleEvent(11)
	if err := l2.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 11 {
		t.Fatalf("resumed at seq %d, want 11", ev.Seq)
	}
	l2.Close()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 11 || rep.UnsignedTail != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestOpenRefusesBrokenTail(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 5
	l, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 12)
	l.Close()
	tamper(t, cfg.Path, `UPDATE audit_events SET reason = 'edited' WHERE seq = 12`)
	_, err = Open(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "seq 12") {
		t.Fatalf("want Open to refuse at seq 12, got %v", err)
	}
}

func TestAppendAsyncIsStored(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	for i := 0; i < 100; i++ {
		ev := sampleEvent(i)
		ev.Kind, ev.Status, ev.LatencyMicros, ev.ErrorClass = KindOutcome, 502, 1234, "upstream_5xx"
		l.AppendAsync(ev)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(context.Background(), cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	p, err := rd.Query(context.Background(), Filter{Kind: string(KindOutcome), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 100 || p.Events[0].Status != 502 || p.Events[0].LatencyMicros != 1234 || l.Lost() != 0 {
		t.Fatalf("got %d outcome rows, lost %d", len(p.Events), l.Lost())
	}
}

// Rows appended with AppendAsync ride in the next commit someone waits on; alone,
// they are committed within asyncLinger, with no other traffic.
func TestAsyncRowsJoinTheNextCommit(t *testing.T) {
	l := openTest(t, testConfig(t))
	for i := 0; i < 3; i++ {
		l.AppendAsync(sampleEvent(i))
	}
	ev := sampleEvent(9)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 4 {
		t.Fatalf("append after three async rows: seq %d %v", ev.Seq, err)
	}
	if n := l.batches.Load(); n != 1 {
		t.Fatalf("%d commits for 4 rows, want 1", n)
	}
	l.AppendAsync(sampleEvent(10))
	deadline := time.Now().Add(2 * time.Second)
	for l.journaled.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("a lone AppendAsync row was not committed")
		}
		time.Sleep(time.Millisecond)
	}
	if n := l.batches.Load(); n != 2 {
		t.Fatalf("%d commits, want 2", n)
	}
}

func TestStoreFull(t *testing.T) {
	for _, mode := range []string{ModeFailClosed, ModeBestEffort} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Mode = mode
			cfg.MaxSizeBytes = 256 * 1024
			l := openTest(t, cfg)
			ctx := context.Background()
			var failedAt int
			for i := 0; i < 5000; i++ {
				ev := sampleEvent(i)
				ev.Reason = strings.Repeat("r", 500)
				err := l.Append(ctx, ev)
				if mode == ModeBestEffort {
					if err != nil {
						t.Fatalf("best_effort returned %v", err)
					}
					if l.Lost() > 0 {
						failedAt = i
						break
					}
					continue
				}
				if err != nil {
					if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "full") {
						t.Fatalf("want ErrUnavailable (database full), got %v", err)
					}
					failedAt = i
					break
				}
			}
			if failedAt == 0 {
				t.Fatal("store never filled")
			}
			// Async rows are counted, not silently dropped.
			lost := l.Lost()
			big := sampleEvent(1)
			big.Reason = strings.Repeat("r", 64*1024) // cannot fit in any leftover page
			l.AppendAsync(big)
			l.Close()
			if l.Lost() != lost+1 {
				t.Fatalf("async loss not counted: %d -> %d", lost, l.Lost())
			}
			// What was acknowledged is intact.
			rep, err := Verify(ctx, cfg.Path, pubKey(t, cfg))
			if err != nil || rep.LastSeq != int64(failedAt) || rep.BadSeq != 0 {
				t.Fatalf("after full: %+v %v (failed at %d)", rep, err, failedAt)
			}
		})
	}
}

func TestCanaryNeverStoredOrLogged(t *testing.T) {
	const canary = "CANARY-7f3a9c1e-never-store-me"
	cfg := testConfig(t)
	var logs bytes.Buffer
	l, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	inputs := []string{
		`{"name":"x","key":"` + canary + `"}`,
		`{"config":{"AWS_Secret-Access-Key":"` + canary + `"}}`,
		`{"a":[{"b":{"Client.Secret":{"deep":["` + canary + `"]}}}]}`,
		`{"headers":{"authorization":"Basic ` + canary + `"}}`,
		`{"note":"use sk-` + canary + ` please"}`,
		`{"url":"postgres://admin:` + canary + `@db.internal:5432/x"}`,
	}
	for i, in := range inputs {
		red, err := l.Redactor().JSON([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		ev := sampleEvent(i)
		ev.Arguments = red
		if err := l.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// Inspect the files while the log is open (WAL not yet checkpointed) and after.
	checkFiles := func(when string) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			b, err := os.ReadFile(cfg.Path + suffix)
			if err != nil {
				continue
			}
			if bytes.Contains(b, []byte(canary)) || bytes.Contains(b, []byte("7f3a9c1e")) {
				t.Errorf("%s: canary found in %s", when, cfg.Path+suffix)
			}
		}
	}
	checkFiles("open")
	l.Close()
	checkFiles("closed")
	if strings.Contains(logs.String(), "7f3a9c1e") {
		t.Error("canary in logs")
	}
}

func TestCollectors(t *testing.T) {
	l := openTest(t, testConfig(t))
	appendN(t, l, 3)
	if n := len(l.Collectors()); n != 9 {
		t.Fatalf("got %d collectors", n)
	}
	if l.appended.Load() != 3 || l.batches.Load() == 0 {
		t.Fatalf("appended %d batches %d", l.appended.Load(), l.batches.Load())
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	cfg := testConfig(t)
	cfg.CheckpointEvery = 250
	l := openTest(t, cfg)
	var wg sync.WaitGroup
	seqs := make([][]int64, 50)
	for g := range seqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				ev := sampleEvent(i)
				if err := l.Append(context.Background(), ev); err != nil {
					t.Error(err)
					return
				}
				seqs[g] = append(seqs[g], ev.Seq)
			}
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, s := range seqs {
		for _, q := range s {
			if seen[q] {
				t.Fatalf("seq %d given twice", q)
			}
			seen[q] = true
		}
	}
	if len(seen) != 2000 || l.batches.Load() >= 2000 {
		t.Fatalf("%d seqs in %d batches: no grouping", len(seen), l.batches.Load())
	}
	l.Close()
	rep, err := Verify(context.Background(), cfg.Path, pubKey(t, cfg))
	if err != nil || !rep.OK || rep.Rows != 2000 || rep.Checkpoints < 8 {
		t.Fatalf("%+v %v", rep, err)
	}
}

// A row one goroutine sent through the queue is chained before that goroutine's next
// row, even when the next one could be committed inline: the writer may hold the first
// off the queue while waiting for the committing lock.
func TestQueuedRowIsNotOvertakenInline(t *testing.T) {
	cfg := testConfig(t)
	l := openTest(t, cfg)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		l.wmu.Lock() // as an inline commit in progress would
		a := sampleEvent(2 * i)
		l.AppendAsync(a) // cannot defer inline: goes to the queue
		time.Sleep(50 * time.Microsecond)
		l.wmu.Unlock()
		b := sampleEvent(2*i + 1)
		if err := l.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(ctx, cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	p, err := rd.Query(ctx, Filter{Limit: 1000})
	if err != nil || len(p.Events) != 200 {
		t.Fatalf("%d rows %v", len(p.Events), err)
	}
	for i, ev := range p.Events { // newest first
		if want := fmt.Sprintf("req-%d", 199-i); ev.RequestID != want {
			t.Fatalf("row seq %d is %s, want %s (a queued row was overtaken)", ev.Seq, ev.RequestID, want)
		}
	}
}

// Spreadsheet formulas are defused in CSV cells, also behind leading blanks or a line
// break; ordinary values are left alone.
func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1": "'=1+1", "@SUM(A1)": "'@SUM(A1)", "\n=1+1": "'\n=1+1", "  +cmd": "'  +cmd", "\tx": "'\tx",
		"-5": "'-5", "create_integration": "create_integration", "a=b": "a=b", "": "", "  ": "  ",
	} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// Rows can be found by the approver who decided them, in a query and in an export.
func TestFilterByApprover(t *testing.T) {
	l := openTest(t, testConfig(t))
	ctx := context.Background()
	for i, who := range []string{"alice", "bob", "alice", ""} {
		ev := sampleEvent(i)
		ev.Approver = who
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	page, err := l.Query(ctx, Filter{Approver: "alice"})
	if err != nil || len(page.Events) != 2 || page.Events[0].Approver != "alice" || page.Events[1].Approver != "alice" {
		t.Fatalf("query by approver: %v %+v", err, page)
	}
	var buf bytes.Buffer
	if err := l.Export(ctx, &buf, "jsonl", Filter{Approver: "bob"}); err != nil || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("export by approver: %v %q", err, buf.String())
	}
}
