package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A known caller's request refused before any decision (malformed or smuggling-shaped
// input, no such route, a refusal of the audit or approvals API) leaves a "rejected" row with the reason, and nothing reaches
// the upstream; decided calls and unauthenticated ones keep their own single row.
func TestRejectedRequestsAreAudited(t *testing.T) {
	g := newGateway(t, gwOptions{})
	tok := token(t, "agent-7", "acme", "agent")
	secret := "sk-rejectcanary0123456789abcdef"

	if resp, out := g.mcp(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"forbidden","arguments":{}}}`); resp.StatusCode != 400 ||
		!strings.Contains(out, `"code":-32600`) || !strings.Contains(out, `duplicate object key \"name\"`) {
		t.Fatalf("duplicate key: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.mcp(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"key":"`+secret+`"`); resp.StatusCode != 400 || !strings.Contains(out, `"code":-32700`) {
		t.Fatalf("truncated: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.do("GET", "/admin/v1/audit", tok, "", ""); resp.StatusCode != 403 {
		t.Fatalf("agent on the audit API: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.do("POST", "/admin/v1/approvals/no-such-approval/approve", tok, "application/json", `{"comment":"`+secret+`"}`); resp.StatusCode != 404 {
		t.Fatalf("approving an unknown approval: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.mcp("not-a-token", toolCall("echo", `{}`)); resp.StatusCode != 401 {
		t.Fatalf("bad token: %d %s", resp.StatusCode, out)
	}
	if resp, out := g.mcp(tok, toolCall("forbidden", `{}`)); resp.StatusCode != 200 || !strings.Contains(out, `"isError":true`) {
		t.Fatalf("denied call: %d %s", resp.StatusCode, out)
	}
	if n := g.up.hits.Load(); n != 0 {
		t.Fatalf("upstream called %d times", n)
	}

	var rows string
	eventually(2*time.Second, func() bool { rows = g.auditRows(); return strings.Count(rows, `"decision":"rejected"`) >= 4 })
	if strings.Contains(rows, secret) {
		t.Fatal("a secret from a rejected body reached the audit trail")
	}
	var rejected, denied, authFailed int
	for _, line := range strings.Split(strings.TrimSpace(rows), "\n") {
		var ev struct {
			Decision, Reason, Surface, Path string
			Caller                          struct{ Sub, Org string }
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		switch ev.Decision {
		case "rejected":
			rejected++
			if ev.Caller.Sub != "agent-7" || ev.Caller.Org != "acme" || ev.Reason == "" {
				t.Errorf("rejected row without its caller or reason: %s", line)
			}
		case "deny":
			denied++
		case "auth_failed":
			authFailed++
		}
	}
	if rejected != 4 || denied != 1 || authFailed != 1 {
		t.Fatalf("rows: %d rejected (want 4), %d deny (want 1), %d auth_failed (want 1)\n%s", rejected, denied, authFailed, rows)
	}
	if !strings.Contains(rows, `"reason":"jsonrpc_-32700`) || !strings.Contains(rows, `"reason":"jsonrpc_-32600`) || !strings.Contains(rows, `"reason":"forbidden: `) ||
		!strings.Contains(rows, `"reason":"not_found: no such approval"`) {
		t.Fatalf("reasons not recorded:\n%s", rows)
	}
}
