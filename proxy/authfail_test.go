package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy"
)

// authFailureCount is what an auth_failure row's arguments say.
type authFailureCount struct {
	Count   int64     `json:"count"`
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
}

func countOf(t testing.TB, ev *audit.Event) authFailureCount {
	t.Helper()
	var c authFailureCount
	if err := json.Unmarshal(ev.Arguments, &c); err != nil {
		t.Fatalf("auth_failure row %d arguments %s: %v", ev.Seq, ev.Arguments, err)
	}
	return c
}

// authFailureRows reads the trail's auth_failure rows once they account for want
// failures (or two seconds have passed), and the failures they count.
func (g *gateway) authFailureRows(want int64) ([]audit.Event, int64) {
	g.t.Helper()
	var rows []audit.Event
	var total int64
	eventually(2*time.Second, func() bool {
		rows, total = rows[:0], 0
		for _, ev := range g.auditEvents() {
			if ev.Kind == audit.KindAuthFailure {
				rows = append(rows, ev)
				total += countOf(g.t, &ev).Count
			}
		}
		return total >= want
	})
	return rows, total
}

// flood sends n requests with a bad token to /mcp, spread over the given loopback source
// addresses, from a few connections at once. It returns the request id of the first
// answer from the first address.
func (g *gateway) flood(n int, addrs []string) string {
	g.t.Helper()
	clients := make([]*http.Client, len(addrs))
	for i, a := range addrs {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(a)}}
		tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
	}
	send := func(c *http.Client) string {
		req, _ := http.NewRequest("POST", g.url+"/mcp", strings.NewReader(toolCall("echo", `{}`)))
		req.Header.Set("Authorization", "Bearer not-a-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			g.t.Errorf("flood: %v", err)
			return ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			g.t.Errorf("flood: status %d, want 401", resp.StatusCode)
		}
		return resp.Header.Get("X-Request-Id")
	}
	first := send(clients[0])
	var next atomic.Int64
	next.Store(1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				send(clients[int(i)%len(clients)])
			}
		}()
	}
	wg.Wait()
	return first
}

func loopbackAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	return out
}

// An anonymous flood of bad tokens from one address grows the trail by two rows, not one
// per request: the first failure's row at once, and at the end of the interval (or at
// shutdown) one row counting the rest, with its first request id. Every failure is
// counted, and the metrics say how many rows stood for how many failures.
func TestAnonymousFloodFromOneAddressWritesTwoRows(t *testing.T) {
	const n = 3000
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) {
		c.PreAuthRate = -1 // the limiter off, as in the review: the aggregation alone must hold
		c.AuthFailures.Interval = time.Hour
	}})
	first := g.flood(n, loopbackAddrs(1))
	if err := g.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, total := g.authFailureRows(n)
	if total != n {
		t.Fatalf("rows count %d failures, want %d", total, n)
	}
	if len(rows) != 2 {
		t.Fatalf("a flood of %d bad tokens from one address wrote %d rows, want 2: %+v", n, len(rows), rows)
	}
	if rows[0].RequestID != first || countOf(t, &rows[0]).Count != 1 || rows[0].Caller.ClientAddr != "127.0.0.1" {
		t.Fatalf("the first failure's row: %+v, want request %s, count 1", rows[0], first)
	}
	agg, c := rows[1], countOf(t, &rows[1])
	if c.Count != n-1 || agg.RequestID == "" || agg.RequestID == first || agg.Caller.ClientAddr != "127.0.0.1" ||
		agg.Reason != rows[0].Reason || agg.Decision != "auth_failed" || c.FirstAt.After(c.LastAt) || c.FirstAt.IsZero() {
		t.Fatalf("the aggregated row: %+v %s", agg, agg.Arguments)
	}
	m := g.metricsText()
	for _, want := range []string{"portcullis_auth_failures_total 3000", "portcullis_auth_failure_rows_total 2", "portcullis_auth_failures_aggregated_total 2999"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// From many addresses, the trail grows by one row per tracked address at once and one
// per tracked address per interval; addresses past auth_failures.max_keys share one
// overflow row (client_addr "*") per reason. No failure goes uncounted.
func TestAnonymousFloodFromManyAddressesIsBoundedByMaxKeys(t *testing.T) {
	const n, maxKeys, addrs = 3000, 4, 30
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) {
		c.PreAuthRate = -1
		c.AuthFailures.Interval = time.Hour
		c.AuthFailures.MaxKeys = maxKeys
	}})
	g.flood(n, loopbackAddrs(addrs))
	if err := g.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, total := g.authFailureRows(n)
	if total != n {
		t.Fatalf("rows count %d failures, want %d", total, n)
	}
	// maxKeys immediate rows, at most maxKeys rows counting their addresses' later
	// failures, one overflow row.
	if len(rows) > 2*maxKeys+1 {
		t.Fatalf("a flood from %d addresses wrote %d rows, want at most %d", addrs, len(rows), 2*maxKeys+1)
	}
	var overflow int
	for _, r := range rows {
		if r.Caller.ClientAddr == "*" {
			overflow++
			if c := countOf(t, &r).Count; c < n/2 {
				t.Errorf("the overflow row counts %d failures; the %d addresses past the cap sent most of %d", c, addrs-maxKeys, n)
			}
		}
	}
	if overflow != 1 {
		t.Fatalf("%d overflow rows, want 1: %+v", overflow, rows)
	}
}

// While a flood lasts, rows come once per interval, not once per request.
func TestAnonymousFloodGrowsAuditAtBoundedRate(t *testing.T) {
	const interval = 200 * time.Millisecond
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) {
		c.PreAuthRate = -1
		c.AuthFailures.Interval = interval
	}})
	start := time.Now()
	var sent int64
	for time.Since(start) < 5*interval {
		g.flood(200, loopbackAddrs(1))
		sent += 200
	}
	elapsed := time.Since(start)
	if err := g.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, total := g.authFailureRows(sent)
	if total != sent {
		t.Fatalf("rows count %d failures, want %d", total, sent)
	}
	// One row at once, one per tick while failures come, one at shutdown.
	if limit := 2 + int(elapsed/interval) + 1; len(rows) > limit {
		t.Fatalf("%d failures over %s wrote %d rows, want at most %d", sent, elapsed, len(rows), limit)
	}
	if len(rows) < 3 {
		t.Fatalf("%d rows over %s with an interval of %s: the interval did not flush", len(rows), elapsed, interval)
	}
}

// A single failure is recorded at once, without waiting for the interval, and an address
// quiet for a whole interval gets its next failure's row at once again.
func TestLoneAuthFailureIsAuditedAtOnce(t *testing.T) {
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.AuthFailures.Interval = 100 * time.Millisecond }})
	resp, _ := g.mcp("not-a-token", toolCall("echo", `{}`))
	if rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 1); len(rows) != 1 || countOf(t, &rows[0]).Count != 1 {
		t.Fatalf("a lone failure: %d rows %+v", len(rows), rows)
	}
	time.Sleep(350 * time.Millisecond) // two ticks: the address is forgotten
	resp, _ = g.mcp("not-a-token", toolCall("echo", `{}`))
	if rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 1); len(rows) != 1 || countOf(t, &rows[0]).Count != 1 {
		t.Fatalf("a failure after a quiet interval: %d rows %+v", len(rows), rows)
	}
}
