package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy"
)

func TestToolsListIsFiltered(t *testing.T) {
	g := newGateway(t, gwOptions{})
	for _, accept := range []string{"json", "sse"} {
		t.Run(accept, func(t *testing.T) {
			if accept == "sse" {
				g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
					w.Header().Set("Content-Type", "text/event-stream")
					fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"visible\"},{\"name\":\"hidden\"}]}}\n\n")
				})
			}
			resp, body := g.mcp(token(t, "a", "acme", "agent"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if !strings.Contains(body, `"visible"`) || strings.Contains(body, `"hidden"`) || strings.Contains(body, `"forbidden"`) {
				t.Fatalf("tools/list not filtered: %s", body)
			}
		})
	}
}

// A batch with one refused call forwards nothing, so a refused call cannot ride along.
func TestBatchWithRefusedCallForwardsNothing(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "a", "acme", "agent")
	batch := `[` + toolCall("echo", `{}`) + `,{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"forbidden","arguments":{}}},{"jsonrpc":"2.0","method":"notifications/initialized"}]`
	resp, body := g.mcp(tok, batch)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out) != 2 {
		t.Fatalf("want two results, got %s (%v)", body, err)
	}
	if !strings.Contains(body, "forbidden: ask a human operator") || !strings.Contains(body, "another call in this batch was refused") {
		t.Fatalf("batch results do not explain: %s", body)
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	resp, _ = g.mcp(tok, `[`+toolCall("echo", `{}`)+`,`+toolCall("visible", `{}`)+`]`)
	if resp.StatusCode != 200 || g.up.hits.Load() != 1 {
		t.Fatalf("an allowed batch: status %d, hits %d", resp.StatusCode, g.up.hits.Load())
	}
}

// Server-sent events stream through event by event: the first event reaches the caller
// before the upstream has written the second.
func TestSSEStreamsEventByEvent(t *testing.T) {
	g := newGateway(t, gwOptions{})
	second := make(chan struct{})
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n")
		w.(http.Flusher).Flush()
		<-second
		fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n")
	})
	req, _ := http.NewRequest("POST", g.url+"/mcp", strings.NewReader(toolCall("echo", `{}`)))
	req.Header.Set("Authorization", "Bearer "+token(t, "a", "acme", "agent"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		var sb strings.Builder
		for {
			line, err := rd.ReadString('\n')
			sb.WriteString(line)
			if err != nil || line == "\n" {
				got <- sb.String()
				return
			}
		}
	}()
	select {
	case ev := <-got:
		if !strings.Contains(ev, "notifications/progress") {
			t.Fatalf("first event = %q", ev)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("first event did not arrive before the upstream sent the second: the stream is buffered")
	}
	close(second)
}

func TestRESTRoutesMapToTools(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	resp, body := g.do("POST", "/v1/integrations?dry=1", tok, "application/json", `{"name":"prod","ai_provider_id":"openai","key":"sk-canary-0123456789abcdef"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	h, got := g.up.last()
	if string(got) != `{"name":"prod","ai_provider_id":"openai","key":"sk-canary-0123456789abcdef"}` || h.Get("Authorization") != "" {
		t.Fatalf("upstream got %q / auth %q", got, h.Get("Authorization"))
	}
	rows := g.auditRows()
	if !strings.Contains(rows, `"create_integration"`) {
		t.Fatalf("REST create not audited as create_integration: %s", rows)
	}
	if strings.Contains(rows, "sk-canary-0123456789abcdef") || strings.Contains(g.logText(), "sk-canary-0123456789abcdef") {
		t.Fatal("the secret reached the audit trail or the log")
	}
	if resp, _ := g.do("GET", "/v1/integrations/prod", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("get: %d", resp.StatusCode)
	}
	if resp, body := g.do("POST", "/v1/integrations", tok, "text/plain", "name=x"); resp.StatusCode != 415 {
		t.Fatalf("non-JSON body: %d %s", resp.StatusCode, body)
	}
}

func TestRateLimit(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	for i := 0; i < 2; i++ {
		if resp, body := g.mcp(tok, toolCall("limited", `{}`)); resp.StatusCode != 200 || strings.Contains(body, "isError") {
			t.Fatalf("call %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	start := time.Now()
	resp, body := g.mcp(tok, toolCall("limited", `{}`), "X-Forwarded-For", "203.0.113.9")
	if time.Since(start) > time.Second {
		t.Fatal("a rate-limited call was held instead of refused")
	}
	if !strings.Contains(body, `"isError":true`) || !strings.Contains(body, "rate_limited") || !strings.Contains(body, "retry") {
		t.Fatalf("third call: %d %s", resp.StatusCode, body)
	}
	if g.up.hits.Load() != 2 {
		t.Fatalf("upstream hits %d, want 2", g.up.hits.Load())
	}
	// Another caller has its own budget.
	if _, body := g.mcp(token(t, "agent-2", "acme", "agent"), toolCall("limited", `{}`)); strings.Contains(body, "isError") {
		t.Fatalf("agent-2 limited by agent-1's calls: %s", body)
	}
	if rows := g.auditRows(); !strings.Contains(rows, `"rate_limited"`) {
		t.Fatalf("no rate_limited audit row: %s", rows)
	}
}

// The default limit key is org + sub + tool: a new session (a fresh token) is not a
// fresh quota, and the same sub in another org (subs are often unique per tenant only)
// has its own.
func TestDefaultRateLimitKeyIsPerOrgAndSubNotPerSession(t *testing.T) {
	g := newGateway(t, gwOptions{})
	for i, sid := range []string{"sess-a", "sess-b"} {
		if _, body := g.mcp(tokenInSession(t, "agent-1", "acme", sid, "agent"), toolCall("limited", `{}`)); strings.Contains(body, "isError") {
			t.Fatalf("call %d: %s", i+1, body)
		}
	}
	if _, body := g.mcp(tokenInSession(t, "agent-1", "acme", "sess-c", "agent"), toolCall("limited", `{}`)); !strings.Contains(body, "rate_limited") {
		t.Fatalf("a third session got a fresh quota: %s", body)
	}
	if _, body := g.mcp(tokenInSession(t, "agent-1", "other-org", "sess-a", "agent"), toolCall("limited", `{}`)); strings.Contains(body, "isError") {
		t.Fatalf("the same sub in another org is limited by acme's calls: %s", body)
	}
}

func TestApprovalHeldAndReleased(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 5 * time.Second})
	agent := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security", "approver")
	done := make(chan struct{})
	var status int
	var body string
	go func() {
		defer close(done)
		var resp *http.Response
		resp, body = g.do("DELETE", "/v1/integrations/prod", agent, "", "")
		status = resp.StatusCode
	}()
	id := waitPending(t, g, security)
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", agent, "application/json", `{}`); resp.StatusCode != 403 {
		t.Fatalf("the requester approved its own call: %d %s", resp.StatusCode, b)
	}
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", security, "application/json", `{"comment":"ok"}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	<-done
	if status != 200 || g.up.hits.Load() != 1 {
		t.Fatalf("held call: %d %s, upstream hits %d", status, body, g.up.hits.Load())
	}
	// The approval was single-use: the same call again needs a new one.
	resp, b := g.do("DELETE", "/v1/integrations/prod", agent, "", "")
	if resp.StatusCode != 202 || resp.Header.Get("Location") == "" || g.up.hits.Load() != 1 {
		t.Fatalf("replay: %d %s hits %d", resp.StatusCode, b, g.up.hits.Load())
	}
}

// A stop does not wait on people: a call held for an approval answers at once as
// pending (202 with the approval id to retry with), and Shutdown returns well inside its
// deadline instead of running it out.
func TestShutdownAnswersHeldCallsAsPending(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 30 * time.Second})
	agent := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security", "approver")
	type result struct {
		status int
		body   string
	}
	held := make(chan result, 1)
	go func() {
		resp, body := g.do("DELETE", "/v1/integrations/prod", agent, "", "")
		held <- result{resp.StatusCode, body}
	}()
	waitPending(t, g, security)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a held call: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown waited %s on a held call", took)
	}
	select {
	case r := <-held:
		if r.status != 202 || !strings.Contains(r.body, "approval_id") || g.up.hits.Load() != 0 {
			t.Fatalf("the held call at shutdown: %d %s (upstream hits %d)", r.status, r.body, g.up.hits.Load())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held call got no answer at shutdown")
	}
}

func TestApprovalRetryForwardsExactlyOnce(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 100 * time.Millisecond})
	agent := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security")
	resp, body := g.mcp(agent, toolCall("sensitive", `{"slug":"prod"}`))
	if !strings.Contains(body, "approval_pending") || !strings.Contains(body, "approval_id") {
		t.Fatalf("first call: %d %s", resp.StatusCode, body)
	}
	id := waitPending(t, g, security)
	if !strings.Contains(body, "approve it with POST "+"http") || !strings.Contains(body, id+"/approve") {
		t.Fatalf("the pending message does not say how to approve: %s", body)
	}
	// Changed arguments are a different request: they do not use this approval.
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", security, "application/json", `{}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	if _, b := g.mcp(agent, toolCall("sensitive", `{"slug":"other"}`)); !strings.Contains(b, "approval_pending") {
		t.Fatalf("changed arguments used the approval: %s", b)
	}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, b := g.mcp(agent, toolCall("sensitive", `{"slug":"prod"}`))
			if strings.Contains(b, `"text":"done"`) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || g.up.hits.Load() != 1 {
		t.Fatalf("50 retries with one approval: %d succeeded, upstream hits %d; want exactly 1", ok.Load(), g.up.hits.Load())
	}
}

func TestApprovalDeniedCommentReachesAgent(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 5 * time.Second})
	agent := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security")
	got := make(chan string, 1)
	go func() {
		_, b := g.do("POST", "/mcp", agent, "application/json", toolCall("sensitive", `{"slug":"x"}`), "Accept", "application/json, text/event-stream")
		got <- b
	}()
	id := waitPending(t, g, security)
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/deny", security, "application/json", `{"comment":"not during the freeze"}`); resp.StatusCode != 200 {
		t.Fatalf("deny: %d %s", resp.StatusCode, b)
	}
	b := <-got
	if !strings.Contains(b, "not during the freeze") || !strings.Contains(b, `"isError":true`) || g.up.hits.Load() != 0 {
		t.Fatalf("agent saw %s (hits %d)", b, g.up.hits.Load())
	}
	// The same call again gets the denial at once, and is told how long it holds.
	_, again := g.mcp(agent, toolCall("sensitive", `{"slug":"x"}`))
	if !strings.Contains(again, "approval_denied") || !strings.Contains(again, "holds for this exact call until") || g.up.hits.Load() != 0 {
		t.Fatalf("repeat of a denied call: %s (hits %d)", again, g.up.hits.Load())
	}
}

func waitPending(t *testing.T, g *gateway, approver string) string {
	t.Helper()
	var id string
	if !eventually(3*time.Second, func() bool {
		resp, body := g.do("GET", "/admin/v1/approvals?status=pending", approver, "", "")
		if resp.StatusCode != 200 {
			t.Fatalf("list approvals: %d %s", resp.StatusCode, body)
		}
		var out struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("list approvals: %v: %s", err, body)
		}
		if len(out.Data) > 0 {
			id = out.Data[0].ID
		}
		return id != ""
	}) {
		t.Fatal("no pending approval appeared")
	}
	return id
}

// A shadow policy is evaluated beside the live one and only recorded: the live decision
// is what happens, and the audit trail says where the candidate differs.
func TestShadowPolicyIsRecordedNotEnforced(t *testing.T) {
	shadow := "package portcullis\n\nimport rego.v1\n\ndefault decision := {\"action\": \"deny\", \"reason\": \"candidate denies everything\"}\n"
	g := newGateway(t, gwOptions{shadow: shadow})
	resp, body := g.mcp(token(t, "a", "acme", "agent"), toolCall("echo", `{}`))
	if resp.StatusCode != 200 || strings.Contains(body, "isError") || g.up.hits.Load() != 1 {
		t.Fatalf("the shadow policy changed the outcome: %d %s (hits %d)", resp.StatusCode, body, g.up.hits.Load())
	}
	shadows := g.eventsWhere(1, func(ev *audit.Event) bool { return ev.Decision == "shadow_deny" })
	if len(shadows) != 1 || !strings.HasSuffix(shadows[0].Reason, ": candidate denies everything") || shadows[0].Kind != audit.KindShadow {
		t.Fatalf("want one shadow row with the candidate's reason, got %+v", shadows)
	}
}

// refund_on_error: a call the upstream turned away (503, 429) does not use up the
// caller's budget when the policy says so; without it, it does. A failure that may come
// after the upstream acted (500, 502) keeps the unit either way, so a call that acts and
// then fails cannot escape the limit.
func TestRateLimitRefundOnError(t *testing.T) {
	for _, tc := range []struct {
		upstream   int
		refund     bool
		wantRefund bool
	}{
		{503, true, true}, {503, false, false}, {429, true, true}, {502, true, false}, {500, true, false},
	} {
		t.Run(fmt.Sprintf("upstream=%d refund=%v", tc.upstream, tc.refund), func(t *testing.T) {
			g := newGateway(t, gwOptions{policy: refundPolicy})
			g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) { w.WriteHeader(tc.upstream) })
			tok := token(t, "agent-1", "acme", "agent")
			args := fmt.Sprintf(`{"refund":%v}`, tc.refund)
			if resp, _ := g.mcp(tok, toolCall("echo", args)); resp.StatusCode != tc.upstream {
				t.Fatalf("first call: %d, want the upstream's %d", resp.StatusCode, tc.upstream)
			}
			_, body := g.mcp(tok, toolCall("echo", args))
			if limited := strings.Contains(body, "rate_limited"); limited == tc.wantRefund {
				t.Fatalf("second call after a %d (refund_on_error=%v): %s", tc.upstream, tc.refund, body)
			}
		})
	}
}

// Two rules sharing a key (per org) with different windows count apart: a cheap call under
// one rule must not reset the other's window and restore its quota.
func TestSharedRateLimitKeyAcrossWindows(t *testing.T) {
	g := newGateway(t, gwOptions{policy: sharedKeyPolicy})
	tok := token(t, "agent-1", "acme", "agent")
	allowed := 0
	for i := 0; i < 4; i++ {
		if _, body := g.mcp(tok, toolCall("echo", `{}`)); !strings.Contains(body, "rate_limited") {
			allowed++
		}
		g.mcp(tok, toolCall("cheap", `{}`))
	}
	if allowed != 2 {
		t.Fatalf("%d echo calls admitted under a 2 per 60s per-org limit, want 2", allowed)
	}
}

// Upstream pacing refuses at once a call that would wait past its budget, instead of
// holding it.
func TestUpstreamPacing(t *testing.T) {
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) {
		c.MCP.Upstream.RatePerSecond = 2
		c.MCP.Upstream.MaxPaceWait = 10 * time.Millisecond
	}})
	tok := token(t, "agent-1", "acme", "agent")
	busy := 0
	start := time.Now()
	for i := 0; i < 5; i++ {
		resp, body := g.mcp(tok, toolCall("echo", `{}`))
		if resp.StatusCode == 503 && strings.Contains(body, "upstream_busy") && resp.Header.Get("Retry-After") != "" {
			busy++
		}
	}
	if busy == 0 || g.up.hits.Load()+int64(busy) != 5 {
		t.Fatalf("5 calls at 2/s with a 10ms budget: %d refused, %d forwarded", busy, g.up.hits.Load())
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("paced calls were held %v instead of refused", time.Since(start))
	}
}

func TestMetricsCountDecisionsAndOutcomes(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	g.mcp(tok, toolCall("echo", `{}`))
	g.mcp(tok, toolCall("forbidden", `{}`))
	_, body := g.do("GET", "/metrics", token(t, "prometheus", "ops", "metrics"), "", "")
	for _, want := range []string{
		`portcullis_decisions_total{action="allow",surface="mcp"} 1`,
		`portcullis_decisions_total{action="deny",surface="mcp"} 1`,
		`portcullis_upstream_responses_total{class="2xx",surface="mcp"} 1`,
		`portcullis_request_duration_seconds_count{surface="mcp"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// An MCP client that accepts server-sent events and sent a progressToken is held on an
// event stream with notifications/progress, then gets the tool's result once approved.
func TestHeldMCPCallStreamsProgress(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 5 * time.Second})
	agent := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security")
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sensitive","arguments":{"slug":"x"},"_meta":{"progressToken":"p-1"}}}`
	req, _ := http.NewRequest("POST", g.url+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+agent)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	readData := func() string {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			if strings.HasPrefix(line, "data: ") {
				return line
			}
		}
	}
	if ev := readData(); !strings.Contains(ev, "notifications/progress") || !strings.Contains(ev, `"progressToken":"p-1"`) {
		t.Fatalf("first event %q, want a progress notification", ev)
	}
	id := waitPending(t, g, security)
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", security, "application/json", `{}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	for {
		ev := readData()
		if strings.Contains(ev, "notifications/progress") {
			continue
		}
		if !strings.Contains(ev, `"text":"done"`) || g.up.hits.Load() != 1 {
			t.Fatalf("final event %q (hits %d)", ev, g.up.hits.Load())
		}
		return
	}
}

// An approval is bound to where the call goes: one given for a REST delete cannot be
// spent by the same tool with the same arguments over MCP.
func TestApprovalIsBoundToItsSurface(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 100 * time.Millisecond})
	op := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security", "approver")
	if resp, b := g.do("DELETE", "/v1/integrations/prod", op, "", ""); resp.StatusCode != 202 {
		t.Fatalf("REST delete: %d %s, want 202 pending", resp.StatusCode, b)
	}
	id := waitPending(t, g, security)
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", security, "application/json", `{}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	if _, b := g.mcp(op, toolCall("delete_integration", `{"slug":"prod"}`)); !strings.Contains(b, "approval_pending") || strings.Contains(b, id) {
		t.Fatalf("MCP delete spent the REST approval: %s", b)
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	if resp, b := g.do("DELETE", "/v1/integrations/prod", op, "", ""); resp.StatusCode != 200 || g.up.hits.Load() != 1 {
		t.Fatalf("the approved REST delete: %d %s (hits %d)", resp.StatusCode, b, g.up.hits.Load())
	}
}

// A REST approval is bound to where each argument was sent: one given for an argument in
// the body is not spent on the same argument in the query string.
func TestApprovalIsBoundToArgumentLocation(t *testing.T) {
	g := newGateway(t, gwOptions{approvalWait: 100 * time.Millisecond})
	op := token(t, "agent-1", "acme", "operator")
	security := token(t, "sec-1", "acme", "security", "approver")
	if resp, b := g.do("DELETE", "/v1/integrations/prod", op, "application/json", `{"cascade":"yes"}`); resp.StatusCode != 202 {
		t.Fatalf("delete with a body: %d %s", resp.StatusCode, b)
	}
	id := waitPending(t, g, security)
	if resp, b := g.do("POST", "/admin/v1/approvals/"+id+"/approve", security, "application/json", `{}`); resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, b)
	}
	if resp, b := g.do("DELETE", "/v1/integrations/prod?cascade=yes", op, "", ""); resp.StatusCode != 202 || strings.Contains(b, id) {
		t.Fatalf("the same argument in the query spent the approval: %d %s", resp.StatusCode, b)
	}
	if resp, b := g.do("DELETE", "/v1/integrations/prod", op, "application/json", `{"cascade":"yes"}`); resp.StatusCode != 200 || g.up.hits.Load() != 1 {
		t.Fatalf("the approved call: %d %s (hits %d)", resp.StatusCode, b, g.up.hits.Load())
	}
}
