package proxy_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy"
)

// Regression tests for the request-path review: each input here was once read one way
// by policy and another by the upstream, or crashed or leaked.

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

func TestAuditorWithoutOrgIsRefused(t *testing.T) {
	g := newGateway(t, gwOptions{})
	g.mcp(token(t, "agent-7", "acme", "agent"), toolCall("echo", `{}`))
	g.auditRows()
	if resp, out := g.do("GET", "/admin/v1/audit", token(t, "aud", "", "auditor"), "", ""); resp.StatusCode != 403 {
		t.Fatalf("auditor with no org: %d %.300s", resp.StatusCode, out)
	}
	resp, out := g.do("GET", "/admin/v1/audit", token(t, "aud", "acme", "auditor"), "", "")
	if resp.StatusCode != 200 || !strings.Contains(out, `"agent-7"`) {
		t.Fatalf("acme's auditor: %d %.300s", resp.StatusCode, out)
	}
	if resp, out := g.do("GET", "/admin/v1/audit", token(t, "aud", "other", "auditor"), "", ""); resp.StatusCode != 200 || strings.Contains(out, `"agent-7"`) {
		t.Fatalf("another org's auditor sees acme's rows: %d %.300s", resp.StatusCode, out)
	}
	// Asking for another org's rows is refused, not answered with one's own.
	if resp, out := g.do("GET", "/admin/v1/audit?org=acme", token(t, "aud", "other", "auditor"), "", ""); resp.StatusCode != 403 ||
		!strings.Contains(out, `parameter \"org\"`) || strings.Contains(out, `"agent-7"`) {
		t.Fatalf("another org's auditor asking for acme: %d %.300s", resp.StatusCode, out)
	}
	if resp, out := g.do("GET", "/admin/v1/audit?org=acme", token(t, "aud", "acme", "auditor"), "", ""); resp.StatusCode != 200 || !strings.Contains(out, `"agent-7"`) {
		t.Fatalf("acme's auditor naming its own org: %d %.300s", resp.StatusCode, out)
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

// Fiber routes on the path as sent; the proxy decides and forwards the normalised path,
// which must still be under a proxied prefix.
func TestNormalisedPathStaysUnderPrefix(t *testing.T) {
	g := newGateway(t, gwOptions{policy: allowAllPolicy})
	tok := token(t, "a", "acme", "agent")
	for _, p := range []string{"/v1/../mcp", "/v1/%2e%2e/admin/v1/audit", "/v1/./../integrations"} {
		if resp, out := g.do("GET", p, tok, "", ""); resp.StatusCode != 400 || !strings.Contains(out, "invalid_path") {
			t.Errorf("%s: %d %s, want 400 invalid_path", p, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
	if resp, _ := g.do("GET", "/v1/integrations/a%2Fmodels", tok, "", ""); resp.StatusCode != 200 {
		t.Fatalf("an encoded slash inside the prefix: %d", resp.StatusCode)
	}
}

func TestMCPStreamMethodsTakeNoBody(t *testing.T) {
	g := newGateway(t, gwOptions{})
	if resp, out := g.do("DELETE", "/mcp", token(t, "a", "acme", "agent"), "application/json", toolCall("forbidden", `{}`)); resp.StatusCode != 400 || g.up.hits.Load() != 0 {
		t.Fatalf("DELETE /mcp with a body: %d %s (hits %d)", resp.StatusCode, out, g.up.hits.Load())
	}
}

// Second review (adversarial): a body the proxy reads as JSON must be one the upstream
// reads as JSON, a query "body" cannot hide behind a non-object body, a route's renamed
// argument reaches policy under its one name, and a query token is refused in any case.

func TestSecondReviewFindings(t *testing.T) {
	g := newGateway(t, gwOptions{policy: echoArgsPolicy})
	tok := token(t, "agent-7", "acme", "agent")

	for _, ct := range []string{"text/plain", "application/jsonp", "multipart/form-data", ""} {
		resp, out := g.do("POST", "/mcp", tok, ct, toolCall("echo", `{}`), "Accept", "application/json")
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(out, "unsupported_media_type") {
			t.Errorf("MCP with Content-Type %q: %d %s, want 415", ct, resp.StatusCode, out)
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

	if resp, out := g.do("POST", "/v1/integrations?body=x", tok, "application/json", `["a"]`); resp.StatusCode != 400 || !strings.Contains(out, "ambiguous_argument") {
		t.Fatalf("query body plus a non-object body: %d %s, want 400 ambiguous_argument", resp.StatusCode, out)
	}

	// /ai/llm spells the workspace workspaceId: policy reads workspace_id on every route.
	if _, out := g.do("POST", "/ai/llm", tok, "application/json", `{"name":"a","workspaceId":"ws-victim"}`); !strings.Contains(out, `\"workspace_id\": \"ws-victim\"`) || strings.Contains(out, "workspaceId") {
		t.Fatalf("/ai/llm: policy did not see workspace_id: %s", out)
	}
	if resp, out := g.do("POST", "/ai/llm", tok, "application/json", `{"name":"a","workspaceId":"ws-1","workspace_id":"ws-2"}`); resp.StatusCode != 400 || !strings.Contains(out, "ambiguous_argument") {
		t.Fatalf("both spellings: %d %s, want 400 ambiguous_argument", resp.StatusCode, out)
	}

	for _, q := range []string{"ACCESS_TOKEN=x", "Token=x", "JWT=x"} {
		if resp, out := g.do("GET", "/v1/integrations?"+q, tok, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("query %s: %d %s, want 401", q, resp.StatusCode, out)
		}
	}
	if g.up.hits.Load() != 1 {
		t.Fatalf("upstream hits %d, want 1 (the one allowed echo)", g.up.hits.Load())
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

// Reading the audit trail or the approvals is itself recorded: who read, where, with
// which filters (redacted); a refused read keeps its rejected row only.
func TestAdminReadsAreAudited(t *testing.T) {
	g := newGateway(t, gwOptions{})
	aud := token(t, "aud-1", "acme", "auditor")
	if resp, out := g.do("GET", "/admin/v1/audit?tool=echo&decision=allow", aud, "", ""); resp.StatusCode != 200 {
		t.Fatalf("audit query: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.do("GET", "/admin/v1/approvals?status=all", token(t, "sec-1", "acme", "approver"), "", ""); resp.StatusCode != 200 {
		t.Fatalf("approvals list: %d %s", resp.StatusCode, out)
	}
	if resp, _ := g.do("GET", "/admin/v1/audit", token(t, "agent-7", "acme", "agent"), "", ""); resp.StatusCode != 403 {
		t.Fatalf("agent on the audit API: %d", resp.StatusCode)
	}
	rows := g.auditRows()
	for i := 0; i < 50 && strings.Count(rows, `"admin:read_`) < 2; i++ {
		rows = g.auditRows()
	}
	var reads []struct {
		Tool, Decision, Path string
		Caller               struct{ Sub string }
		Arguments            map[string]string
	}
	for _, line := range strings.Split(strings.TrimSpace(rows), "\n") {
		if !strings.Contains(line, `"admin:read_`) {
			continue
		}
		var r struct {
			Tool, Decision, Path string
			Caller               struct{ Sub string }
			Arguments            map[string]string
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, r)
	}
	if len(reads) != 2 || reads[0].Tool != "admin:read_audit" || reads[0].Caller.Sub != "aud-1" || reads[0].Arguments["tool"] != "echo" ||
		reads[0].Decision != "allow" || reads[1].Tool != "admin:read_approvals" || reads[1].Caller.Sub != "sec-1" {
		t.Fatalf("admin read rows: %+v\n%s", reads, rows)
	}
}

// A secret in an unmapped REST path reaches neither policy, the log nor the audit row
// (the upstream still gets the path as sent); MCP bodies must be application/json itself.
func TestPathSecretsAndMCPMediaType(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-7", "acme", "agent")
	secret := "sk-proj-abcdefghijklmnop1234"
	if resp, out := g.do("GET", "/v1/nosuch/"+secret, tok, "", ""); resp.StatusCode != 403 || strings.Contains(out, secret) {
		t.Fatalf("unmapped route with a secret in its path: %d %s", resp.StatusCode, out)
	}
	rows := g.auditRows()
	if logs := g.logText(); strings.Contains(logs, secret) || strings.Contains(rows, secret) {
		t.Fatalf("the path's secret reached the log or the audit trail:\n%s\n%s", logs, rows)
	}
	// Scrubbed a segment at a time: the rest of the path stays visible to policy and audit.
	g.do("GET", "/v1/x/Bearer%20abcdefghijklmn/admin/delete", tok, "", "")
	if rows = g.auditRows(); !strings.Contains(rows, `/v1/x/Bearer hmac-sha256:`) || !strings.Contains(rows, `/admin/delete`) ||
		strings.Contains(rows, "abcdefghijklmn") {
		t.Fatalf("path scrubbing lost the path or kept the token:\n%s", rows)
	}
	if resp, out := g.do("POST", "/mcp", tok, "application/vnd.api+json", toolCall("echo", `{}`), "Accept", "application/json"); resp.StatusCode != 415 {
		t.Fatalf("MCP with a +json type: %d %s, want 415", resp.StatusCode, out)
	}
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
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
	rows := g.auditRows()
	for i := 0; i < 100 && strings.Count(rows, `"decision":"outcome"`) < 2; i++ {
		time.Sleep(10 * time.Millisecond) // outcome rows are written without waiting
		rows = g.auditRows()
	}
	if n := strings.Count(rows, `"decision":"outcome"`); n != 2 || strings.Count(rows, `"error_class":"refused"`) != 2 || strings.Contains(rows, `"status":200`) {
		t.Fatalf("outcome rows (%d) do not both record the refused forward:\n%s", n, rows)
	}
}
