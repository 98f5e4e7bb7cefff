package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPolicyCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runPolicy(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyCmd(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.rego", "package portcullis\n\ndecision := {\"action\": \"allow\", \"reason\": \"ok\"} if input.caller.org == \"acme\"\n\ndefault decision := {\"action\": \"deny\", \"reason\": \"no org\"}\n")
	write("good_test.rego", "package portcullis_test\nimport data.portcullis\ntest_allow if portcullis.decision.action == \"allow\" with input as {\"caller\": {\"org\": \"acme\"}}\n")
	failing := write("failing.rego", "package portcullis\n\ndecision := {\"action\": \"deny\"}\n")
	write("failing_test.rego", "package portcullis_test\nimport data.portcullis\ntest_allow if portcullis.decision.action == \"allow\"\n")
	broken := write("broken.rego", "package portcullis\n\ndecision := {\"action\" \"allow\"}\n")
	input := write("input.json", `{"surface": "rest", "tool": "get_integration", "caller": {"sub": "a", "org": "acme", "roles": []}}`)
	typo := write("typo.json", `{"tool": "get_integration", "caler": {"org": "acme"}}`)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		stdout   []string
		stderr   []string
	}{
		{"test embedded example", []string{"test"}, 0, []string{"PASS: "}, nil},
		{"test embedded example verbose", []string{"test", "-v"}, 0, []string{"test_delete_agent_denied: PASS"}, nil},
		{"test file with sibling tests", []string{"test", good}, 0, []string{"PASS: 1/1"}, nil},
		{"test failure exits 1", []string{"test", failing}, 1, []string{"test_allow: FAIL"}, []string{"1 of 1 tests failed"}},
		{"test compile error", []string{"test", broken}, 1, nil, []string{"broken.rego:3"}},
		{"check good", []string{"check", good}, 0, []string{"ok ", "revision sha256:"}, nil},
		{"check broken", []string{"check", broken}, 1, nil, []string{"broken.rego:3", "rego_parse_error"}},
		{"check embedded", []string{"check"}, 0, []string{"embedded policy.example.rego"}, nil},
		{"eval", []string{"eval", "-policy", good, "-input", input}, 0, []string{`"action": "allow"`, `"reason": "ok"`}, nil},
		{"eval embedded example", []string{"eval", "-input", input}, 0, []string{`"action": "allow"`}, nil},
		{"eval unknown input field", []string{"eval", "-policy", good, "-input", typo}, 1, nil, []string{`unknown field "caler"`}},
		{"eval without input", []string{"eval", "-policy", good}, 2, nil, []string{"-input is required"}},
		{"eval missing input file", []string{"eval", "-input", filepath.Join(dir, "nope.json")}, 1, nil, []string{"nope.json"}},
		{"unknown subcommand", []string{"frobnicate"}, 2, nil, []string{`unknown subcommand "frobnicate"`}},
		{"no subcommand", nil, 2, nil, []string{"Usage:"}},
		{"two paths", []string{"check", good, broken}, 2, nil, []string{"at most one PATH"}},
		{"bad flag", []string{"test", "-nope"}, 2, nil, []string{"flag provided but not defined"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runPolicyCmd(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestPolicyEvalPrintsDurationsAsPolicyWritesThem(t *testing.T) {
	in := filepath.Join(t.TempDir(), "in.json")
	body := `{"surface": "mcp", "tool": "create_integration", "arguments": {"name": "x", "ai_provider_id": "openai", "workspace_id": "ws-1"},
		"caller": {"sub": "agent-7", "org": "acme", "workspace": "ws-1", "roles": ["agent"], "session": "s"}, "mode": "call"}`
	if err := os.WriteFile(in, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runPolicyCmd(t, "eval", "-input", in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Action    string `json:"action"`
		RateLimit struct {
			Max    int    `json:"max"`
			Window string `json:"window"`
		} `json:"rate_limit"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	// policy.example.rego writes "window": "60s"; eval must not re-spell it "1m0s".
	if got.Action != "rate_limit" || got.RateLimit.Max != 10 || got.RateLimit.Window != "60s" {
		t.Fatalf("decision = %+v, want rate_limit 10 per 60s", got)
	}

	// A number of seconds stays a number; a ttl string stays as written.
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.rego")
	if err := os.WriteFile(pol, []byte(`package portcullis

import rego.v1

decision := {"action": "rate_limit", "reason": "r", "rate_limit": {"max": 2, "window": 90}} if input.tool == "a"

decision := {"action": "require_approval", "reason": "r", "approval": {"approvers": ["role:security"], "ttl": "900s"}} if input.tool == "b"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for tool, want := range map[string]string{"a": `"window": 90`, "b": `"ttl": "900s"`} {
		in := filepath.Join(dir, tool+".json")
		if err := os.WriteFile(in, []byte(`{"tool":"`+tool+`","caller":{"sub":"s","org":"acme"}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runPolicyCmd(t, "eval", "--policy", pol, "--input", in)
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("tool %s: exit %d, want %s in:\n%s%s", tool, code, want, stdout, stderr)
		}
	}
}

// A policy's print() output reaches the author running policy eval (stderr).
func TestPolicyEvalShowsPrint(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.rego")
	if err := os.WriteFile(pol, []byte("package portcullis\n\nimport rego.v1\n\ndecision := {\"action\": \"allow\", \"reason\": \"ok\"} if {\n\tprint(\"tool is\", input.tool)\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.json")
	if err := os.WriteFile(in, []byte(`{"tool":"get_integration","caller":{"sub":"a","org":"acme"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runPolicyCmd(t, "eval", "-policy", pol, "-input", in)
	if code != 0 || !strings.Contains(stdout, `"allow"`) || !strings.Contains(stderr, "tool is get_integration") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// policy eval reads its input as the proxy reads a body: a key given in two cases is an
// error, not whichever one Go's decoder keeps.
func TestPolicyEvalInputHasOneReading(t *testing.T) {
	in := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(in, []byte(`{"tool":"get_integration","TOOL":"delete_integration","caller":{"sub":"a","org":"acme"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPolicyCmd(t, "eval", "-input", in)
	if code != 1 || !strings.Contains(stderr, "differ only in case") {
		t.Fatalf("exit %d, stderr %s; want 1 naming the clashing keys", code, stderr)
	}
}
