package audit

import (
	"context"
	"testing"
	"time"
)

// Queries by caller and by request id find every row, both before the writer has added
// the newest rows to audit_lookup and after, and the lookup table catches up on its own.
func TestLookupsBeforeAndAfterIndexing(t *testing.T) {
	l := openTest(t, testConfig(t))
	ctx := context.Background()
	appendN(t, l, 30) // agent-0 .. agent-6 in turn; req-0 .. req-29
	count := func(f Filter) int {
		t.Helper()
		f.Limit = 1000
		p, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Events)
	}
	check := func(when string) {
		t.Helper()
		if n := count(Filter{Sub: "agent-3"}); n != 4 { // 3, 10, 17, 24
			t.Fatalf("%s: %d rows for agent-3, want 4", when, n)
		}
		if n := count(Filter{RequestID: "req-17"}); n != 1 {
			t.Fatalf("%s: %d rows for req-17, want 1", when, n)
		}
		if n := count(Filter{Sub: "agent-3", RequestID: "req-17"}); n != 1 {
			t.Fatalf("%s: %d rows for agent-3 and req-17, want 1", when, n)
		}
		if n := count(Filter{Sub: "nobody"}); n != 0 {
			t.Fatalf("%s: %d rows for an unknown caller", when, n)
		}
	}
	check("before indexing")
	deadline := time.Now().Add(3 * time.Second)
	for {
		var through int64
		if err := l.wdb.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM audit_meta WHERE key = 'lookup_through'`).Scan(&through); err != nil {
			t.Fatal(err)
		}
		if through == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookup index stuck at %d of 30", through)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var n int
	if err := l.wdb.QueryRowContext(ctx, `SELECT count(*) FROM audit_lookup`).Scan(&n); err != nil || n != 60 {
		t.Fatalf("audit_lookup holds %d entries (%v), want 60", n, err)
	}
	check("after indexing")
}
