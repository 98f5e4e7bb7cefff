package audit

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// The lookup index lives outside the chain: an edit of it can neither attribute a row to
// another caller in a query (queries check the row's own column) nor hide a row without
// verify reporting it.
func TestLookupIndexEditsAreCaught(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	l := openTest(t, cfg)
	for i := 0; i < 14; i++ { // sampleEvent: sub agent-(i%7)
		if err := l.Append(ctx, sampleEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil { // indexes every row
		t.Fatal(err)
	}
	pub := pubKey(t, cfg)
	if rep, err := Verify(ctx, cfg.Path, pub); err != nil || !rep.OK {
		t.Fatalf("intact: %v %s", err, rep.String())
	}
	edit := func(qs ...string) {
		t.Helper()
		db, err := sql.Open("sqlite", cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range qs {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}

	// Misattribute row 1 (agent-1) to agent-2, and hide it from agent-1.
	edit(`DELETE FROM audit_lookup WHERE k = 's:agent-1' AND seq = 2`, `INSERT INTO audit_lookup (k, seq) VALUES ('s:agent-2', 2)`)
	r, err := OpenReader(ctx, cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	page, err := r.Query(ctx, Filter{Sub: "agent-2"})
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.Events {
		if ev.Caller.Sub != "agent-2" {
			t.Fatalf("a query by caller agent-2 returned a row of %s (seq %d)", ev.Caller.Sub, ev.Seq)
		}
	}
	rep, err := Verify(ctx, cfg.Path, pub)
	if err != nil || rep.OK || !strings.Contains(rep.String(), "1 rows it covers have no entry") ||
		!strings.Contains(rep.String(), "1 entries name no row, or a row with another caller") {
		t.Fatalf("edited index: %v %s", err, rep.String())
	}

	// Claim rows that do not exist, so new rows would never be indexed.
	edit(`INSERT INTO audit_lookup (k, seq) VALUES ('s:agent-1', 2)`, `DELETE FROM audit_lookup WHERE k = 's:agent-2' AND seq = 2`,
		`UPDATE audit_meta SET value = '999999' WHERE key = 'lookup_through'`)
	if rep, _ := Verify(ctx, cfg.Path, pub); rep.OK || !strings.Contains(rep.String(), "claims to cover seq 999999, past the last row 14") {
		t.Fatalf("lookup_through past the rows: %s", rep.String())
	}
	// The next start indexes from the last row again, so new rows are found.
	l2 := openTest(t, cfg)
	ev := sampleEvent(100)
	ev.Caller.Sub, ev.RequestID = "newcomer", "req-new"
	if err := l2.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ = OpenReader(ctx, cfg.Path)
	page, err = r.Query(ctx, Filter{Sub: "newcomer"})
	r.Close()
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("a row written after the edit is not found by caller: %v %+v", err, page)
	}
	if rep, err := Verify(ctx, cfg.Path, pub); err != nil || !rep.OK {
		t.Fatalf("after the next start: %v %s", err, rep.String())
	}
}
