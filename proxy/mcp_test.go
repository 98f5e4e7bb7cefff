package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/proxy"
)

func TestNonObjectMCPBodyIsA400(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-7", "acme", "agent")
	for _, body := range []string{`"x"`, `1`, `null`, `true`} {
		if resp, out := g.mcp(tok, body); resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, `"error"`) {
			t.Errorf("body %s: status %d %s, want a 400 JSON-RPC error", body, resp.StatusCode, out)
		}
	}
	if strings.Contains(g.logText(), "panic in handler") || g.up.hits.Load() != 0 {
		t.Fatalf("handler panicked or forwarded (hits %d)", g.up.hits.Load())
	}
}

func TestBatchToolsListIsFiltered(t *testing.T) {
	g := newGateway(t, gwOptions{})
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"visible"},{"name":"hidden"}]}}]`))
	})
	_, out := g.mcp(token(t, "agent-7", "acme", "agent"), `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`)
	if strings.Contains(out, `"hidden"`) || !strings.Contains(out, `"visible"`) {
		t.Fatalf("batch tools/list not filtered: %s", out)
	}
}

func TestMCPStreamMethodsTakeNoBody(t *testing.T) {
	g := newGateway(t, gwOptions{})
	if resp, out := g.do("DELETE", "/mcp", token(t, "a", "acme", "agent"), "application/json", toolCall("forbidden", `{}`)); resp.StatusCode != 400 || g.up.hits.Load() != 0 {
		t.Fatalf("DELETE /mcp with a body: %d %s (hits %d)", resp.StatusCode, out, g.up.hits.Load())
	}
}

// A batch whose forward fails records the failure for every call in it, not a 200.
func TestBatchFailureOutcomeForEveryCall(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.MCP.Upstream.URL = "http://" + addr + "/mcp" }})
	tok := token(t, "agent-7", "acme", "agent")
	batch := `[` + strings.Replace(toolCall("echo", `{}`), `"id":7`, `"id":1`, 1) + `,` + strings.Replace(toolCall("echo", `{}`), `"id":7`, `"id":2`, 1) + `]`
	if resp, out := g.mcp(tok, batch); resp.StatusCode != 502 {
		t.Fatalf("batch to a refusing upstream: %d %s", resp.StatusCode, out)
	}
	// Outcome rows are written without waiting.
	outcomes := g.eventsWhere(2, func(ev *audit.Event) bool { return ev.Decision == "outcome" })
	if len(outcomes) != 2 {
		t.Fatalf("%d outcome rows, want one per call of the batch: %+v", len(outcomes), outcomes)
	}
	for _, ev := range outcomes {
		if ev.ErrorClass != "refused" || ev.Status == 200 {
			t.Fatalf("an outcome row does not record the refused forward: %+v", ev)
		}
	}
}

// sdkUpstream makes the gateway's upstream an MCP server built with the official Go SDK
// (stateless streamable HTTP, the bundled backend's setup): tools visible, hidden and
// forbidden, and one resource. Every response carries Cache-Control: public, as an
// upstream that thinks its lists are the same for everyone might send.
func sdkUpstream(t *testing.T, g *gateway) {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1"}, nil)
	for _, name := range []string{"visible", "hidden", "forbidden"} {
		mcp.AddTool(srv, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done by " + name}}}, nil, nil
		})
	}
	srv.AddResource(&mcp.Resource{URI: "file:///secret.txt", Name: "secret"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///secret.txt", Text: "secret"}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func sdkConnect(t *testing.T, g *gateway, tok string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "walkthrough", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: g.url + "/mcp",
		DisableStandaloneSSE: true, HTTPClient: &http.Client{Transport: bearerTransport{tok}}}, nil)
	if err != nil {
		t.Fatalf("SDK client through the gateway: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// The SDK client opens with server/discover (protocol 2026-07-28). The gateway passes it
// through like initialize: no policy decision, no deny row, and the client gets the
// upstream's discovery answer instead of falling back to initialize. The new protocol's
// Mcp-Method / Mcp-Name headers reach the upstream, which requires them.
func TestSDKClientDiscoversThroughGateway(t *testing.T) {
	g := newGateway(t, gwOptions{})
	sdkUpstream(t, g)
	cs := sdkConnect(t, g, token(t, "agent-1", "acme", "agent"))
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated protocol %q, want 2026-07-28 (discovery answered)", v)
	}
	ctx := context.Background()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if strings.Join(names, ",") != "visible" {
		t.Fatalf("tools/list = %v, want only visible", names)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "visible"})
	if err != nil || res.IsError {
		t.Fatalf("allowed call: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "forbidden"})
	if err != nil || !res.IsError {
		t.Fatalf("denied tools/call: %v %+v, want a tool result with isError", err, res)
	}
	rows := g.auditRows()
	denies, passes := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(rows), "\n") {
		var row struct{ Kind, Tool, Decision string }
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		if row.Kind == "decision" && row.Tool == "mcp:server/discover" {
			if row.Decision != "pass" {
				t.Fatalf("server/discover was decided as a tool: %s", line)
			}
			passes++ // recorded before it was forwarded, without a policy decision
		}
		if row.Decision == "deny" {
			denies++
		}
	}
	if denies != 1 || passes == 0 {
		t.Fatalf("%d deny rows, want 1 (the forbidden call), and %d pass rows for server/discover, want some:\n%s", denies, passes, rows)
	}

	// The discovery answer itself names no tool, so it cannot leak one the caller may not call.
	resp, body := g.mcp(token(t, "agent-1", "acme", "agent"),
		`{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`,
		"Accept", "application/json, text/event-stream", "Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "server/discover")
	if resp.StatusCode != 200 || !strings.Contains(body, `"supportedVersions"`) || strings.Contains(body, "isError") ||
		strings.Contains(body, "hidden") || strings.Contains(body, "forbidden") {
		t.Fatalf("server/discover: %d %s", resp.StatusCode, body)
	}
}

// A refused request that is not a tools/call is answered with a JSON-RPC error, which is
// what its client reads; the SDK client reports the gateway's reason.
func TestRefusedNonToolCallIsAJSONRPCError(t *testing.T) {
	g := newGateway(t, gwOptions{})
	sdkUpstream(t, g)
	tok := token(t, "agent-1", "acme", "agent")
	cs := sdkConnect(t, g, tok)
	hits := g.up.hits.Load()
	_, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "file:///secret.txt"})
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != -32010 || !strings.Contains(we.Message, "no rule allows this tool") {
		t.Fatalf("denied resources/read: %v, want JSON-RPC error -32010 with the policy's reason", err)
	}
	if g.up.hits.Load() != hits {
		t.Fatal("the denied resources/read reached the upstream")
	}

	resp, body := g.mcp(tok, `{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"p"}}`)
	var out struct {
		ID     json.Number `json:"id"`
		Result any         `json:"result"`
		Error  struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Code      string `json:"code"`
				RequestID string `json:"request_id"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || resp.StatusCode != 200 || out.Result != nil || out.ID != "4" ||
		out.Error.Code != -32010 || out.Error.Data.Code != "policy_denied" || out.Error.Data.RequestID == "" {
		t.Fatalf("denied prompts/get: %d %s", resp.StatusCode, body)
	}

	// In a refused batch, a ping that was not executed gets an error, not a tool result.
	_, body = g.mcp(tok, `[{"jsonrpc":"2.0","id":1,"method":"ping"},`+toolCall("forbidden", `{}`)+`]`)
	var batch []map[string]any
	if err := json.Unmarshal([]byte(body), &batch); err != nil || len(batch) != 2 {
		t.Fatalf("batch: %s", body)
	}
	if _, ok := batch[0]["error"]; !ok || batch[0]["result"] != nil {
		t.Fatalf("the ping of a refused batch: %v, want a JSON-RPC error", batch[0])
	}
	if r, _ := batch[1]["result"].(map[string]any); r["isError"] != true {
		t.Fatalf("the refused tools/call of a batch: %v, want a tool result with isError", batch[1])
	}
}

// Mcp-Method and Mcp-Name are forwarded, so they must say what the body says.
func TestMCPHeadersMatchTheBody(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	for _, tc := range []struct {
		note, body string
		hdr        []string
	}{
		{"method", toolCall("forbidden", `{}`), []string{"Mcp-Method", "tools/list"}},
		{"name", toolCall("forbidden", `{}`), []string{"Mcp-Method", "tools/call", "Mcp-Name", "visible"}},
		{"name without one", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, []string{"Mcp-Name", "visible"}},
		{"batch", `[` + toolCall("visible", `{}`) + `]`, []string{"Mcp-Method", "tools/call"}},
	} {
		resp, body := g.mcp(tok, tc.body, tc.hdr...)
		if resp.StatusCode != 400 || !strings.Contains(body, `"code":-32020`) || !strings.Contains(body, "header Mcp-") {
			t.Errorf("%s: %d %s, want 400 with error -32020 naming the header", tc.note, resp.StatusCode, body)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	if resp, body := g.mcp(tok, toolCall("visible", `{}`), "Mcp-Method", "tools/call", "Mcp-Name", "visible"); resp.StatusCode != 200 {
		t.Fatalf("matching headers: %d %s", resp.StatusCode, body)
	}
	if h, _ := g.up.last(); h.Get("Mcp-Method") != "tools/call" || h.Get("Mcp-Name") != "visible" {
		t.Fatalf("upstream saw Mcp-Method %q, Mcp-Name %q", h.Get("Mcp-Method"), h.Get("Mcp-Name"))
	}
}

// A tools/list the gateway filtered is this caller's: cacheScope private, and no HTTP
// header lets a shared cache keep it.
func TestFilteredToolsListIsPrivate(t *testing.T) {
	g := newGateway(t, gwOptions{})
	sdkUpstream(t, g)
	tok := token(t, "agent-1", "acme", "agent")
	resp, body := g.mcp(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "Accept", "application/json, text/event-stream")
	if resp.StatusCode != 200 || !strings.Contains(body, `"cacheScope":"private"`) || strings.Contains(body, `"public"`) || strings.Contains(body, "hidden") {
		t.Fatalf("tools/list: %d %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); strings.Contains(cc, "public") || !strings.Contains(cc, "private") {
		t.Fatalf("tools/list Cache-Control %q", cc)
	}
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "public")
		io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"visible\"},{\"name\":\"hidden\"}],\"ttlMs\":60000,\"cacheScope\":\"public\"}}\n\n")
	})
	resp, body = g.mcp(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if !strings.Contains(body, `"cacheScope":"private"`) || strings.Contains(body, `"public"`) || strings.Contains(resp.Header.Get("Cache-Control"), "public") {
		t.Fatalf("SSE tools/list: Cache-Control %q, %s", resp.Header.Get("Cache-Control"), body)
	}
}

func batchOf(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.Replace(toolCall("echo", `{}`), `"id":7`, `"id":`+strconv.Itoa(i+1), 1))
	}
	b.WriteByte(']')
	return b.String()
}

// A batch longer than proxy.mcp.max_batch_calls is refused whole with a JSON-RPC
// invalid request naming the limit: nothing is decided or forwarded, and the request
// leaves one audit row, not one per call. A batch at the limit is served as before.
func TestOverlongBatchIsRefusedWithOneAuditRow(t *testing.T) {
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.MCP.MaxBatchCalls = 5 }})
	tok := token(t, "agent-1", "acme", "agent")

	resp, out := g.mcp(tok, batchOf(6))
	if resp.StatusCode != 400 || !strings.Contains(out, `"code":-32600`) ||
		!strings.Contains(out, "limit of 5 per batch") || !strings.Contains(out, "max_batch_calls") {
		t.Fatalf("batch of 6 with a limit of 5: %d %s", resp.StatusCode, out)
	}
	if n := g.up.hits.Load(); n != 0 {
		t.Fatalf("an over-long batch reached the upstream (%d hits)", n)
	}
	rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 1)
	if len(rows) != 1 || rows[0].Decision != "rejected" || !strings.HasPrefix(rows[0].Reason, "jsonrpc_-32600: batch of 6 messages") {
		t.Fatalf("an over-long batch left %d rows, want one rejected row: %+v", len(rows), rows)
	}

	resp, out = g.mcp(tok, batchOf(5))
	if resp.StatusCode != 200 || g.up.hits.Load() != 1 {
		t.Fatalf("batch at the limit: %d %s (upstream hits %d)", resp.StatusCode, out, g.up.hits.Load())
	}
	// Each call of an admitted batch still has its decision and its outcome row.
	if rows := g.rowsOf(resp.Header.Get("X-Request-Id"), 10); len(rows) != 10 {
		t.Fatalf("batch of 5 left %d rows, want 5 decisions and 5 outcomes", len(rows))
	}
}

// The default cap is 64, and the configuration refuses a cap outside 1..1000.
func TestMaxBatchCallsDefaultsAndValidates(t *testing.T) {
	var c proxy.Config
	c.MCP.Upstream.URL, c.REST.Upstream.URL = "http://127.0.0.1:1/mcp", "http://127.0.0.1:1"
	c.SetDefaults(t.TempDir())
	if c.MCP.MaxBatchCalls != 64 {
		t.Fatalf("default max_batch_calls %d, want 64", c.MCP.MaxBatchCalls)
	}
	for _, v := range []int{-1, 1001} {
		c.MCP.MaxBatchCalls = v
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "proxy.mcp.max_batch_calls: must be between 1 and 1000, got "+strconv.Itoa(v)) {
			t.Fatalf("max_batch_calls %d: %v", v, err)
		}
	}
}
