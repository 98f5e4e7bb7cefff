package proxy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

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
	var rows string
	eventually(2*time.Second, func() bool { rows = g.auditRows(); return strings.Count(rows, `"admin:read_`) >= 2 })
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
