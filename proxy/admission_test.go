package proxy_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy"
)

func TestArgumentsHaveOneReading(t *testing.T) {
	g := newGateway(t, gwOptions{policy: slugsPolicy})
	tok := token(t, "op", "acme", "operator")
	cases := []struct {
		note, path, ctype, body string
	}{
		{"repeated query key", "/v1/integrations/prod/models?slugs=gpt-4o&slugs=harmless", "", ""},
		{"body repeats a query key", "/v1/integrations/prod/models?slugs=gpt-4o", "application/json", `{"slugs":"harmless"}`},
		{"body contradicts the path", "/v1/integrations/prod/models?slugs=harmless", "application/json", `{"slug":"other"}`},
	}
	for _, tc := range cases {
		resp, out := g.do("DELETE", tc.path, tok, tc.ctype, tc.body)
		if resp.StatusCode != 400 || !strings.Contains(out, "ambiguous_argument") {
			t.Errorf("%s: %d %s, want 400 ambiguous_argument", tc.note, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	if resp, out := g.do("DELETE", "/v1/integrations/prod/models?slugs=harmless", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("the unambiguous call: %d %s", resp.StatusCode, out)
	}
}

func TestCaseFoldedKeysAreRefused(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-7", "acme", "agent")
	const canary = "CANARY-7f3a9c1e2b"
	for _, body := range []string{
		`{"name":"x","workspace_id":"ws-1","Workspace_ID":"ws-other"}`,
		"{\"name\":\"x\",\"ai_provider_id\":\"openai\",\"\u212aey\":\"" + canary + "\"}",
		`{"name":"x","ai_provider_id":"openai","\u212aey":"` + canary + `"}`,
	} {
		if resp, out := g.do("POST", "/v1/integrations", tok, "application/json", body); resp.StatusCode != 400 || !strings.Contains(out, "invalid_json") {
			t.Errorf("%s: %d %s, want 400", body, resp.StatusCode, out)
		}
	}
	if rows := g.auditRows(); strings.Contains(rows, canary) || strings.Contains(g.logText(), canary) {
		t.Fatal("a secret under a case-folded name reached the audit trail or the log")
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
}

func TestCompressedBodiesAreRefused(t *testing.T) {
	g := newGateway(t, gwOptions{})
	big := toolCall("echo", `{"pad":"`+strings.Repeat("A", 8<<20)+`"}`)
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestCompression)
	zw.Write([]byte(big))
	zw.Close()
	resp, out := g.do("POST", "/mcp", token(t, "agent-7", "acme", "agent"), "application/json", zb.String(),
		"Accept", "application/json", "Content-Encoding", "gzip")
	if resp.StatusCode != 415 || g.up.hits.Load() != 0 {
		t.Fatalf("gzip body (%d bytes inflating to %d): %d %s, hits %d", zb.Len(), len(big), resp.StatusCode, out, g.up.hits.Load())
	}
}

// A number policy cannot evaluate is refused before policy: a 400, not a policy error
// (which would log at ERROR and count in policy-error alerts for any caller's typo).
func TestOutOfRangeNumberIsA400(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-7", "acme", "agent")
	if resp, out := g.mcp(tok, toolCall("echo", `{"page_size":1e999999}`)); resp.StatusCode != 400 || !strings.Contains(out, `"code":-32600`) || !strings.Contains(out, "number out of range") {
		t.Fatalf("MCP: %d %s, want 400 -32600", resp.StatusCode, out)
	}
	if resp, out := g.do("POST", "/v1/integrations", tok, "application/json", `{"page_size":1e999999}`); resp.StatusCode != 400 || !strings.Contains(out, "number out of range") {
		t.Fatalf("REST: %d %s, want 400", resp.StatusCode, out)
	}
	if logs := g.logText(); strings.Contains(logs, "policy error") || strings.Contains(logs, "number too big") || g.up.hits.Load() != 0 {
		t.Fatalf("reached policy or the upstream (hits %d):\n%s", g.up.hits.Load(), logs)
	}
}

// A body the proxy reads as JSON must be one the upstream reads as JSON: MCP and REST
// bodies of any other media type are refused with 415 and never forwarded; a JSON type
// in any case, with parameters, is accepted.
func TestBodiesMustBeJSONMediaType(t *testing.T) {
	g := newGateway(t, gwOptions{policy: echoArgsPolicy})
	tok := token(t, "agent-7", "acme", "agent")
	for _, ct := range []string{"text/plain", "application/jsonp", "multipart/form-data", "", "application/vnd.api+json"} {
		resp, out := g.do("POST", "/mcp", tok, ct, toolCall("echo", `{}`), "Accept", "application/json")
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(out, "unsupported_media_type") {
			t.Errorf("MCP with Content-Type %q: %d %s, want 415", ct, resp.StatusCode, out)
		}
		if ct == "application/vnd.api+json" {
			continue
		}
		if resp, out := g.do("POST", "/v1/integrations", tok, ct, `{"name":"x"}`); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("REST with Content-Type %q: %d %s, want 415", ct, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("a body with a non-JSON media type was forwarded (%d hits)", g.up.hits.Load())
	}
	if resp, out := g.do("POST", "/mcp", tok, "Application/JSON; charset=utf-8", toolCall("echo", `{}`), "Accept", "application/json"); resp.StatusCode != 200 {
		t.Fatalf("MCP with Application/JSON; charset=utf-8: %d %s", resp.StatusCode, out)
	}
	if g.up.hits.Load() != 1 {
		t.Fatalf("upstream hits %d, want 1 (the one allowed echo)", g.up.hits.Load())
	}
}

// A token in the query string is refused whatever the parameter's case.
func TestQueryTokenIsRefusedInAnyCase(t *testing.T) {
	g := newGateway(t, gwOptions{policy: echoArgsPolicy})
	tok := token(t, "agent-7", "acme", "agent")
	for _, q := range []string{"ACCESS_TOKEN=x", "Token=x", "JWT=x"} {
		if resp, out := g.do("GET", "/v1/integrations?"+q, tok, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("query %s: %d %s, want 401", q, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("forwarded (%d hits)", g.up.hits.Load())
	}
}

// The per-address pre-authentication limit is spent on unverified tokens and failures
// only: a fleet behind one address using tokens already verified is not throttled at a
// rate that throttles unknown and bad tokens from the same address.
func TestCachedTokensDoNotSpendThePreAuthLimit(t *testing.T) {
	const rate = 5
	g := newGateway(t, gwOptions{cfg: func(c *proxy.Config) { c.PreAuthRate = rate }})
	fleet := []string{token(t, "agent-1", "acme", "agent"), token(t, "agent-2", "acme", "agent")}
	for _, tok := range fleet { // first use: verified, spends one unit each
		if resp, out := g.mcp(tok, toolCall("echo", `{}`)); resp.StatusCode != 200 {
			t.Fatalf("first call of a fleet token: %d %s", resp.StatusCode, out)
		}
	}
	// Ten times the rate, within a second or so, from the same address: all served.
	for i := range 10 * rate {
		if resp, out := g.mcp(fleet[i%2], toolCall("echo", `{}`)); resp.StatusCode != 200 {
			t.Fatalf("cached token, call %d: %d %s", i, resp.StatusCode, out)
		}
	}
	// Bad tokens from the same address spend the budget and are throttled within the rate.
	throttled := 0
	for range 2 * rate {
		resp, _ := g.mcp("not-a-token", toolCall("echo", `{}`))
		switch resp.StatusCode {
		case 429:
			throttled++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		case 401:
		default:
			t.Fatalf("bad token: status %d", resp.StatusCode)
		}
	}
	if throttled < rate {
		t.Fatalf("%d of %d bad tokens throttled at a rate of %d/s, want at least %d", throttled, 2*rate, rate, rate)
	}
	// New, valid but unverified tokens are throttled too while the budget is spent...
	if resp, _ := g.mcp(token(t, "agent-3", "acme", "agent"), toolCall("echo", `{}`)); resp.StatusCode != 429 {
		t.Fatalf("an unverified token with the budget spent: %d, want 429", resp.StatusCode)
	}
	// ...while the fleet's verified tokens still pass.
	if resp, out := g.mcp(fleet[0], toolCall("echo", `{}`)); resp.StatusCode != 200 {
		t.Fatalf("cached token with the address's budget spent: %d %s", resp.StatusCode, out)
	}
}
