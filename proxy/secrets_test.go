package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/portcullis/portcullis/proxy"
)

// blobServer is a third-party MCP upstream (the official SDK, stateless) whose tool
// marks its argument "blob" writeOnly: a name no rule of ours reads as secret.
func blobServer(t *testing.T) http.Handler {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "blobs", Version: "1"}, nil)
	in := &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{
		"blob":  {Type: "string", WriteOnly: true},
		"label": {Type: "string"},
	}}
	srv.AddTool(&mcp.Tool{Name: "store_blob", InputSchema: in}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "stored"}}}, nil
	})
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
}

func serveBlobs(t *testing.T, g *gateway) {
	h := blobServer(t)
	g.up.setHandler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

func callBlob(t *testing.T, g *gateway, tok, blob string) {
	t.Helper()
	resp, body := g.mcp(tok, toolCall("store_blob", `{"blob":"`+blob+`","label":"plain-label"}`), "Accept", "application/json, text/event-stream")
	if resp.StatusCode != 200 || !strings.Contains(body, "stored") {
		t.Fatalf("store_blob: %d %s", resp.StatusCode, body)
	}
}

// An upstream's tools/list declares its secrets (writeOnly / format: password): once the
// list has passed through the proxy, those arguments are redacted from policy input and
// the audit trail for every caller, whatever the fields are called.
func TestToolsListMarksRedactAnyUpstream(t *testing.T) {
	g := newGateway(t, gwOptions{policy: allowAll})
	serveBlobs(t, g)
	tok := token(t, "agent-1", "acme", "agent")

	callBlob(t, g, tok, "opaque-before-list-1234")
	if !strings.Contains(g.auditRows(), "opaque-before-list-1234") {
		t.Fatal("precondition: without the schema's marks the name rule alone should not catch blob")
	}
	resp, body := g.mcp(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "Accept", "application/json, text/event-stream")
	if resp.StatusCode != 200 || !strings.Contains(body, "store_blob") {
		t.Fatalf("tools/list: %d %s", resp.StatusCode, body)
	}
	callBlob(t, g, tok, "opaque-after-list-5678")
	rows := g.auditRows()
	if strings.Contains(rows, "opaque-after-list-5678") {
		t.Fatalf("a writeOnly argument reached the audit trail: %s", rows)
	}
	if !strings.Contains(rows, "plain-label") {
		t.Fatalf("the unmarked argument was redacted too: %s", rows)
	}
}

// DiscoverTools (serve runs it at start) learns the marks before any client lists the
// tools.
func TestDiscoveredMarksApplyBeforeAnyClientLists(t *testing.T) {
	g := newGateway(t, gwOptions{policy: allowAll})
	serveBlobs(t, g)
	n, err := g.srv.DiscoverTools(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("discover: %d %v", n, err)
	}
	callBlob(t, g, token(t, "agent-1", "acme", "agent"), "opaque-discovered-9012")
	if rows := g.auditRows(); strings.Contains(rows, "opaque-discovered-9012") || !strings.Contains(rows, "plain-label") {
		t.Fatalf("discovered marks not applied: %s", rows)
	}
}

// A route's schema marks its body's secrets on the REST surface, for any upstream.
func TestRouteSchemaMarksRedactRESTBodies(t *testing.T) {
	g := newGateway(t, gwOptions{policy: allowAll, cfg: func(c *proxy.Config) {
		c.REST.Prefixes = []string{"/v2/"}
		c.REST.Routes = []proxy.Route{{Method: "POST", Path: "/v2/things", Tool: "make_thing", Category: "write", Risk: "low",
			Schema: `{"type":"object","properties":{"opaque":{"type":"string","format":"password"},"items":{"type":"array","items":{"type":"object","additionalProperties":{"writeOnly":true}}}}}`}}
	}})
	resp, body := g.do("POST", "/v2/things", token(t, "agent-1", "acme", "agent"), "application/json",
		`{"opaque":"route-marked-1111","items":[{"anything":"route-marked-2222"}],"label":"plain-label"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	rows := g.auditRows()
	if strings.Contains(rows, "route-marked-1111") || strings.Contains(rows, "route-marked-2222") || !strings.Contains(rows, "plain-label") {
		t.Fatalf("route schema marks not applied: %s", rows)
	}
	if _, b := g.up.last(); !strings.Contains(string(b), "route-marked-1111") {
		t.Fatalf("the upstream must still receive the bytes as sent: %s", b)
	}
}
