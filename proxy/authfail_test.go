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

	"github.com/portcullis/portcullis/proxy"
)

// authFailureRow is an auth_failure row as the export writes it.
type authFailureRow struct {
	RequestID string `json:"request_id"`
	Caller    struct {
		ClientAddr string `json:"client_addr"`
	} `json:"caller"`
	Reason    string `json:"reason"`
	Arguments struct {
		Count   int64     `json:"count"`
		FirstAt time.Time `json:"first_at"`
		LastAt  time.Time `json:"last_at"`
	} `json:"arguments"`
}

// authFailureRows reads the trail's auth_failure rows until they account for want
// failures (or two seconds pass).
func (g *gateway) authFailureRows(want int64) ([]authFailureRow, int64) {
	g.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var rows []authFailureRow
		var total int64
		for _, line := range strings.Split(strings.TrimSpace(g.auditRows()), "\n") {
			if !strings.Contains(line, `"kind":"auth_failure"`) {
				continue
			}
			var r authFailureRow
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				g.t.Fatalf("%v: %s", err, line)
			}
			rows = append(rows, r)
			total += r.Arguments.Count
		}
		if total >= want || time.Now().After(deadline) {
			return rows, total
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	if rows[0].RequestID != first || rows[0].Arguments.Count != 1 || rows[0].Caller.ClientAddr != "127.0.0.1" {
		t.Fatalf("the first failure's row: %+v, want request %s, count 1", rows[0], first)
	}
	agg := rows[1]
	if agg.Arguments.Count != n-1 || agg.RequestID == "" || agg.RequestID == first || agg.Caller.ClientAddr != "127.0.0.1" ||
		agg.Reason != rows[0].Reason || agg.Arguments.FirstAt.After(agg.Arguments.LastAt) || agg.Arguments.FirstAt.IsZero() {
		t.Fatalf("the aggregated row: %+v", agg)
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
			if r.Arguments.Count < n/2 {
				t.Errorf("the overflow row counts %d failures; the %d addresses past the cap sent most of %d", r.Arguments.Count, addrs-maxKeys, n)
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
	if rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 1); len(rows) != 1 || !strings.Contains(rows[0], `"count":1`) {
		t.Fatalf("a lone failure: %d rows %v", len(rows), rows)
	}
	time.Sleep(350 * time.Millisecond) // two ticks: the address is forgotten
	resp, _ = g.mcp("not-a-token", toolCall("echo", `{}`))
	if rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 1); len(rows) != 1 || !strings.Contains(rows[0], `"count":1`) {
		t.Fatalf("a failure after a quiet interval: %d rows %v", len(rows), rows)
	}
}
