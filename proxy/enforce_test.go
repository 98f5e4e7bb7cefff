package proxy_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A secret in an unmapped REST path reaches neither policy, the log nor the audit row
// (the upstream still gets the path as sent).
func TestPathSecretsNeverReachPolicyLogOrAudit(t *testing.T) {
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
	if g.up.hits.Load() != 0 {
		t.Fatalf("upstream hit %d times", g.up.hits.Load())
	}
}

var retryInMessage = regexp.MustCompile(`retry after (\d+)s`)

// The rate-limit answer states one retry time, in whole seconds, everywhere: the message,
// Retry-After and retry_after_seconds (a JSON number), within the limiter's bound of one
// window plus one sub-window (60 s * 17/16).
func TestRateLimitRetryIsOneNumber(t *testing.T) {
	g := newGateway(t, gwOptions{policy: limitAllPolicy})
	tok := token(t, "agent-1", "acme", "agent")
	g.mcp(tok, toolCall("echo", `{}`))
	_, body := g.mcp(tok, toolCall("echo", `{}`))
	var out struct {
		Result struct {
			StructuredContent struct {
				Error struct {
					Message    string `json:"message"`
					RetryAfter any    `json:"retry_after_seconds"`
				} `json:"error"`
			} `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	e := out.Result.StructuredContent.Error
	n, isNumber := e.RetryAfter.(float64)
	m := retryInMessage.FindStringSubmatch(e.Message)
	if !isNumber || m == nil || m[1] != strconv.Itoa(int(n)) || n < 1 || n > 64 {
		t.Fatalf("retry_after_seconds %#v and message %q disagree or are out of range", e.RetryAfter, e.Message)
	}

	g.do("POST", "/v1/integrations", tok, "application/json", `{"name":"x"}`)
	resp, body := g.do("POST", "/v1/integrations", tok, "application/json", `{"name":"x"}`)
	m = retryInMessage.FindStringSubmatch(body)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	reset, _ := strconv.Atoi(resp.Header.Get("RateLimit-Reset"))
	if resp.StatusCode != 429 || m == nil || m[1] != resp.Header.Get("Retry-After") || ra < 1 || ra > 64 || reset < ra || reset > 64 {
		t.Fatalf("REST 429: Retry-After %q, RateLimit-Reset %q, body %s", resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit-Reset"), body)
	}
}

// One policy error, one log line: ERROR, with the request id.
func TestPolicyErrorIsLoggedOnce(t *testing.T) {
	g := newGateway(t, gwOptions{})
	resp, _ := g.mcp(token(t, "agent-1", "acme", "agent"), toolCall("conflict", `{}`))
	rid := resp.Header.Get("X-Request-Id")
	var lines []string
	for _, l := range strings.Split(g.logText(), "\n") {
		if strings.Contains(l, "policy error") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"ERROR"`) || !strings.Contains(lines[0], `"request_id":"`+rid+`"`) {
		t.Fatalf("policy error log lines (want one ERROR with request id %s):\n%s", rid, strings.Join(lines, "\n"))
	}
}
