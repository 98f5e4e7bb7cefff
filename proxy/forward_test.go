package proxy_test

import (
	"strings"
	"testing"
)

// A body that stops early says so, on both surfaces.
func TestTruncatedBodySaysItEnded(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-1", "acme", "agent")
	if resp, body := g.do("POST", "/v1/integrations", tok, "application/json", `{"name":"x",`); resp.StatusCode != 400 ||
		!strings.Contains(body, "unexpected end of JSON input at byte 12") || !strings.Contains(body, `"field":"body"`) {
		t.Fatalf("REST: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.mcp(tok, `{"jsonrpc":"2.0","id":1,`); resp.StatusCode != 400 || !strings.Contains(body, "unexpected end of JSON input at byte 24") {
		t.Fatalf("MCP: %d %s", resp.StatusCode, body)
	}
}
