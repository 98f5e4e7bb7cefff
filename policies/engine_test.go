package policies

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/portcullis/portcullis/policies/principal"
)

func engineFor(t testing.TB, src string, mutate ...func(*Options)) *Engine {
	t.Helper()
	opts := Options{Modules: map[string]string{"policy.rego": src}, Timeout: time.Second}
	for _, m := range mutate {
		m(&opts)
	}
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func sampleInput() *Input {
	return &Input{
		Surface:   "mcp",
		Tool:      "create_integration",
		Arguments: map[string]any{"name": "prod openai", "ai_provider_id": "openai", "key": "<redacted>"},
		HTTP:      HTTPInfo{Method: "POST", Path: "/mcp"},
		Caller:    principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Roles: []string{"agent"}, Session: "s-1"},
		ToolInfo:  ToolInfo{Category: "write", Risk: "medium"},
		Upstream:  "integrations",
		Mode:      "call",
	}
}

var revisionRE = regexp.MustCompile(`^sha256:[0-9a-f]{16}$`)

// Policy fails closed: every way a policy can fail to produce a well-formed decision is a
// deny marked as a policy error, with the cause kept for the audit row.
func TestDecideFailsClosed(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		timeout time.Duration
		wantErr string
	}{
		{
			name:    "undefined decision",
			policy:  `decision := {"action": "allow"} if input.tool == "never"`,
			wantErr: "is undefined",
		},
		{
			name: "conflicting outputs",
			policy: `decision := {"action": "allow"} if input.tool != ""
decision := {"action": "deny"} if input.tool != ""`,
			wantErr: "conflicting values",
		},
		{
			name:    "division by zero",
			policy:  `decision := {"action": "allow", "n": 1 / count(input.caller.claims)}`,
			wantErr: "divide by zero",
		},
		{
			name: "built-in error is not silently undefined",
			policy: `default decision := {"action": "allow"}
decision := {"action": "deny"} if to_number(input.caller.sub) > 0`,
			wantErr: "to_number",
		},
		{
			name:    "past the deadline",
			policy:  `decision := {"action": "allow"} if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0`,
			timeout: 3 * time.Millisecond,
			wantErr: "deadline",
		},
		{
			name:    "not an object",
			policy:  `decision := "allow"`,
			wantErr: "decision is string, want an object",
		},
		{
			name:    "set of decisions",
			policy:  `decision contains {"action": "allow"}`,
			wantErr: "want an object",
		},
		{
			name:    "missing action",
			policy:  `decision := {"reason": "forgot the action"}`,
			wantErr: "action: missing",
		},
		{
			name:    "unknown action",
			policy:  `decision := {"action": "permit"}`,
			wantErr: `unknown action "permit"`,
		},
		{
			name:    "action not a string",
			policy:  `decision := {"action": true}`,
			wantErr: "action: is boolean",
		},
		{
			name:    "rate_limit without block",
			policy:  `decision := {"action": "rate_limit"}`,
			wantErr: "rate_limit: missing",
		},
		{
			name:    "rate_limit negative max",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": -1, "window": "60s"}}`,
			wantErr: "max: -1 is not a positive integer",
		},
		{
			name:    "rate_limit zero max",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 0, "window": "60s"}}`,
			wantErr: "max: 0",
		},
		{
			name:    "rate_limit fractional max",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 2.5, "window": "60s"}}`,
			wantErr: "max: 2.5",
		},
		{
			name:    "rate_limit max as string",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": "10", "window": "60s"}}`,
			wantErr: "max: is string",
		},
		{
			name:    "rate_limit missing window",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10}}`,
			wantErr: "window: want a duration",
		},
		{
			name:    "rate_limit given with allow",
			policy:  `decision := {"action": "allow", "rate_limit": {"max": 1, "window": "60s"}}`,
			wantErr: `rate_limit: given with action "allow"`,
		},
		{
			name:    "approval given with deny",
			policy:  `decision := {"action": "deny", "approval": {"approvers": ["role:x"], "ttl": "15m"}}`,
			wantErr: `approval: given with action "deny"`,
		},
		{
			name:    "misspelt rate_limit field",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": "60s", "maxx": 99}}`,
			wantErr: `"maxx": unknown field`,
		},
		{
			name:    "misspelt approval field",
			policy:  `decision := {"action": "require_approval", "approval": {"approvers": ["role:x"], "ttl": "15m", "approver": "bob"}}`,
			wantErr: `"approver": unknown field`,
		},
		{
			name:    "rate_limit window under a second",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": "1ns"}}`,
			wantErr: "from 1s up to",
		},
		{
			name:    "approval ttl under a second",
			policy:  `decision := {"action": "require_approval", "approval": {"approvers": ["role:security"], "ttl": "500ms"}}`,
			wantErr: "ttl: want a duration",
		},
		{
			name:    "rate_limit zero window",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": "0s"}}`,
			wantErr: "window:",
		},
		{
			name:    "rate_limit unparsable window",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": "a minute"}}`,
			wantErr: `got "a minute"`,
		},
		{
			name:    "rate_limit absurd window",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": "100000h"}}`,
			wantErr: "window:",
		},
		{
			name:    "refund_on_error not a bool",
			policy:  `decision := {"action": "rate_limit", "rate_limit": {"max": 10, "window": 60, "refund_on_error": "yes"}}`,
			wantErr: "refund_on_error: is string",
		},
		{
			name:    "approval without block",
			policy:  `decision := {"action": "require_approval"}`,
			wantErr: "approval: missing",
		},
		{
			name:    "approval without approvers",
			policy:  `decision := {"action": "require_approval", "approval": {"approvers": [], "ttl": "15m"}}`,
			wantErr: "nobody could approve",
		},
		{
			name:    "approval with empty approver",
			policy:  `decision := {"action": "require_approval", "approval": {"approvers": ["role:security", ""], "ttl": "15m"}}`,
			wantErr: "approvers[1]",
		},
		{
			name:    "approval negative ttl",
			policy:  `decision := {"action": "require_approval", "approval": {"approvers": ["role:security"], "ttl": -5}}`,
			wantErr: "ttl:",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := engineFor(t, "package portcullis\n\n"+tc.policy+"\n", func(o *Options) {
				if tc.timeout > 0 {
					o.Timeout = tc.timeout
				}
			})
			start := time.Now()
			d := e.Decide(context.Background(), sampleInput())
			if d.Action != ActionDeny || !d.PolicyError || d.Reason != policyErrorReason {
				t.Fatalf("decision = %+v, want deny with PolicyError and reason %q", d, policyErrorReason)
			}
			if !strings.Contains(d.Error, tc.wantErr) {
				t.Errorf("Error = %q, want it to contain %q", d.Error, tc.wantErr)
			}
			if d.Revision != e.Revision() || !revisionRE.MatchString(d.Revision) {
				t.Errorf("Revision = %q, want %q", d.Revision, e.Revision())
			}
			if d.RateLimit != nil || d.Approval != nil {
				t.Errorf("failed decision carries blocks: %+v %+v", d.RateLimit, d.Approval)
			}
			if tc.timeout > 0 && time.Since(start) > 500*time.Millisecond {
				t.Errorf("evaluation took %s; the %s deadline did not stop it", time.Since(start), tc.timeout)
			}
		})
	}
}

func TestDecideCancelledContextDenies(t *testing.T) {
	e := engineFor(t, `package portcullis
decision := {"action": "allow"} if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0`)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(5*time.Millisecond, cancel)
	d := e.Decide(ctx, sampleInput())
	if d.Action != ActionDeny || !d.PolicyError || !strings.Contains(d.Error, "cancel") {
		t.Fatalf("decision = %+v, want a cancelled policy error", d)
	}
}

func TestDecideNilInputDenies(t *testing.T) {
	e := engineFor(t, "package portcullis\ndecision := {\"action\": \"allow\"}")
	if d := e.Decide(context.Background(), nil); d.Action != ActionDeny || !d.PolicyError {
		t.Fatalf("decision = %+v, want deny", d)
	}
}

func TestDecideUnconvertibleInputDenies(t *testing.T) {
	e := engineFor(t, "package portcullis\ndecision := {\"action\": \"allow\"} if input.arguments")
	in := sampleInput()
	in.Arguments = map[string]any{"ch": make(chan int)}
	d := e.Decide(context.Background(), in)
	if d.Action != ActionDeny || !d.PolicyError || !strings.Contains(d.Error, "arguments: ch") {
		t.Fatalf("decision = %+v, want deny naming arguments.ch", d)
	}
}

// A panic inside evaluation (here a custom built-in, registered only in tests) is
// contained: the caller gets a deny and the process goes on.
func TestDecidePanicIsDeny(t *testing.T) {
	boom := &tester.Builtin{
		Decl: &ast.Builtin{Name: "test.boom", Decl: types.NewFunction(types.Args(types.S), types.B)},
		Func: rego.Function1(&rego.Function{Name: "test.boom", Decl: types.NewFunction(types.Args(types.S), types.B)},
			func(_ rego.BuiltinContext, a *ast.Term) (*ast.Term, error) {
				if a.Value.Compare(ast.String("panic")) == 0 {
					panic("boom from a built-in")
				}
				return ast.BooleanTerm(true), nil
			}),
	}
	e := engineFor(t, `package portcullis
decision := {"action": "allow"} if test.boom(input.caller.sub)`, func(o *Options) { o.builtins = []*tester.Builtin{boom} })

	in := sampleInput()
	if d := e.Decide(context.Background(), in); d.Action != ActionAllow {
		t.Fatalf("control decision = %+v, want allow", d)
	}
	in.Caller.Sub = "panic"
	d := e.Decide(context.Background(), in)
	if d.Action != ActionDeny || !d.PolicyError || !strings.Contains(d.Error, "panic") {
		t.Fatalf("decision = %+v, want deny with a panic error", d)
	}
	in.Caller.Sub = "again"
	if d := e.Decide(context.Background(), in); d.Action != ActionAllow {
		t.Fatalf("engine unusable after a panic: %+v", d)
	}
}

func TestDecideParsesDecisions(t *testing.T) {
	tests := []struct {
		name     string
		decision string
		want     Decision
	}{
		{"allow", `{"action": "allow", "reason": "fine"}`, Decision{Action: ActionAllow, Reason: "fine"}},
		{"deny without reason names the tool", `{"action": "deny"}`,
			Decision{Action: ActionDeny, Reason: "policy denies tool create_integration"}},
		{"rate limit with duration string", `{"action": "rate_limit", "rate_limit": {"max": 10, "window": "60s"}}`,
			Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: 10, Window: time.Minute, WindowAsWritten: "60s"}}},
		{"rate limit with seconds", `{"action": "rate_limit", "rate_limit": {"max": 3, "window": 90}}`,
			Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: 3, Window: 90 * time.Second, WindowAsWritten: "90"}}},
		{"rate limit with fractional seconds", `{"action": "rate_limit", "rate_limit": {"max": 3, "window": 1.5}}`,
			Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: 3, Window: 1500 * time.Millisecond, WindowAsWritten: "1.5"}}},
		{"rate limit key and refund", `{"action": "rate_limit", "rate_limit": {"max": 1000000000, "window": "1h30m", "key": "org:acme", "refund_on_error": true}}`,
			Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: 1000000000, Window: 90 * time.Minute, WindowAsWritten: "1h30m", Key: "org:acme", RefundOnError: true}}},
		{"approval with ttl string", `{"action": "require_approval", "reason": "risky", "approval": {"approvers": ["role:security", "user:ciso"], "ttl": "15m"}}`,
			Decision{Action: ActionRequireApproval, Reason: "risky", Approval: &Approval{Approvers: []string{"role:security", "user:ciso"}, TTL: 15 * time.Minute, TTLAsWritten: "15m"}}},
		{"approval with ttl seconds and approver set", `{"action": "require_approval", "approval": {"approvers": {"role:security", "role:admin"}, "ttl": 900}}`,
			Decision{Action: ActionRequireApproval, Reason: "tool create_integration requires approval",
				Approval: &Approval{Approvers: []string{"role:admin", "role:security"}, TTL: 15 * time.Minute, TTLAsWritten: "900"}}},
		// A policy's own extra fields are its business; a limit or approval block on
		// another action is refused instead (see TestDecideFailsClosed): an allow with a
		// rate_limit block is a policy that meant to limit.
		{"extra top-level fields ignored", `{"action": "allow", "labels": ["x"]}`, Decision{Action: ActionAllow}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := engineFor(t, "package portcullis\ndecision := "+tc.decision)
			got := e.Decide(context.Background(), sampleInput())
			tc.want.Revision = e.Revision()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decision\n got  %+v rl=%+v ap=%+v\n want %+v rl=%+v ap=%+v", got, got.RateLimit, got.Approval, tc.want, tc.want.RateLimit, tc.want.Approval)
			}
		})
	}
}

// The policy sees the Input exactly as its JSON form would show it: the direct AST
// conversion must agree with the generic one.
func TestInputValueMatchesJSON(t *testing.T) {
	in := sampleInput()
	in.Arguments = map[string]any{
		"name":      "prod",
		"count":     float64(3),
		"ratio":     0.25,
		"big":       float64(1 << 60),
		"flag":      true,
		"none":      nil,
		"tags":      []any{"a", float64(2), map[string]any{"deep": []any{false}}},
		"nested":    map[string]any{"workspace_id": "ws-1", "empty": map[string]any{}},
		"jsonNum":   json.Number("12.50"),
		"typedList": []string{"x", "y"},
	}
	in.Caller.Claims = map[string]any{"iss": "https://idp", "exp": float64(1700000000), "groups": []any{"g1"}}
	in.ToolInfo.Annotations = map[string]any{"destructiveHint": false}
	in.Mode = ""

	got, err := inputValue(in, allInput)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	generic["mode"] = "call" // the engine's default for an unset mode
	want, err := ast.InterfaceToValue(generic)
	if err != nil {
		t.Fatal(err)
	}
	if got.Compare(want) != 0 {
		t.Fatalf("inputValue differs from the JSON form\n got  %v\n want %v", got, want)
	}

	empty, err := inputValue(&Input{Tool: "t"}, allInput)
	if err != nil {
		t.Fatal(err)
	}
	args, err := empty.Find(ast.MustParseRef("x.arguments")[1:])
	if err != nil || args.Compare(ast.NewObject()) != 0 {
		t.Fatalf("nil arguments = %v (%v), want {}", args, err)
	}
}

func TestNewRefusesBadPolicies(t *testing.T) {
	tests := []struct {
		name    string
		modules map[string]string
		want    []string
	}{
		{"syntax error with file and line", map[string]string{"policy.rego": "package portcullis\n\ndecision := {\"action\" \"allow\"}\n"}, []string{"policy.rego:3", "rego_parse_error"}},
		{"undefined reference", map[string]string{"policy.rego": "package portcullis\ndecision := x if { y == 1; x := 2 }\n"}, []string{"policy.rego:2", "var y is unsafe"}},
		{"no decision rule", map[string]string{"policy.rego": "package authz\nallow := true\n"}, []string{"no module declares", "data.portcullis.decision"}},
		{"bad data file", map[string]string{"policy.rego": "package portcullis\ndecision := {\"action\": \"allow\"}\n", "data.json": "{not json"}, []string{"data file data.json"}},
		{"data file not an object", map[string]string{"policy.rego": "package portcullis\ndecision := {\"action\": \"allow\"}\n", "data.json": "[1]"}, []string{"top level must be an object"}},
		{"unknown file kind", map[string]string{"policy.txt": "x"}, []string{`module "policy.txt"`}},
		{"nothing", map[string]string{}, []string{"no policy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{Modules: tc.modules, Timeout: time.Second})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

const networkPolicy = `package portcullis

decision := {"action": "allow"} if {
	resp := http.send({"method": "GET", "url": data.url, "timeout": "1s"})
	resp.body.ok == true
}

default decision := {"action": "deny", "reason": "lookup failed"}
`

func TestNetworkBuiltins(t *testing.T) {
	for _, tc := range []struct{ name, src, builtin string }{
		{"http.send", networkPolicy, "http.send"},
		{"net.lookup_ip_addr", "package portcullis\n\ndecision := {\"action\": \"allow\", \"ips\": net.lookup_ip_addr(\"example.com\")}\n", "net.lookup_ip_addr"},
	} {
		t.Run(tc.name+" refused by default", func(t *testing.T) {
			_, err := New(context.Background(), Options{Modules: map[string]string{"net.rego": tc.src}, Timeout: time.Second})
			if err == nil {
				t.Fatal("policy using a network built-in compiled with AllowNetwork off")
			}
			for _, w := range []string{"net.rego:", tc.builtin, "reaches the network", "allow_network"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			_, _, err = RunTests(context.Background(), Options{Modules: map[string]string{"net.rego": tc.src}}, &strings.Builder{}, false)
			if err == nil || !strings.Contains(err.Error(), tc.builtin) {
				t.Errorf("RunTests error = %v, want refusal naming %s", err, tc.builtin)
			}
		})
	}

	t.Run("http.send works when allowed", func(t *testing.T) {
		var hits int
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			hits++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok": true}`)
		}))
		defer srv.Close()
		e, err := New(context.Background(), Options{
			Modules:      map[string]string{"net.rego": networkPolicy, "data.json": fmt.Sprintf(`{"url": %q}`, srv.URL)},
			AllowNetwork: true, Timeout: 2 * time.Second,
		})
		if err != nil {
			t.Fatalf("New with AllowNetwork: %v", err)
		}
		if d := e.Decide(context.Background(), sampleInput()); d.Action != ActionAllow {
			t.Fatalf("decision = %+v, want allow from the HTTP answer", d)
		}
		mu.Lock()
		defer mu.Unlock()
		if hits != 1 {
			t.Fatalf("server hits = %d, want 1", hits)
		}
	})
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Replace by rename, as editors and config management do.
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const (
	allowPolicy = "package portcullis\n\ndecision := {\"action\": \"allow\", \"reason\": \"v1\"}\n"
	denyPolicy  = "package portcullis\n\ndecision := {\"action\": \"deny\", \"reason\": \"v2\"}\n"
	brokenRego  = "package portcullis\n\ndecision := {\"action\" \"allow\"}\n"
)

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.rego")
	writeFile(t, path, allowPolicy)
	e, err := New(context.Background(), Options{Path: path, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rev1 := e.Revision()
	if !revisionRE.MatchString(rev1) {
		t.Fatalf("revision %q does not look like sha256:<16 hex>", rev1)
	}

	writeFile(t, path, brokenRego)
	err = e.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "policy.rego:3") {
		t.Fatalf("Reload of a broken policy = %v, want a compile error naming policy.rego:3", err)
	}
	if e.Revision() != rev1 {
		t.Fatalf("revision changed to %s after a refused reload", e.Revision())
	}
	if d := e.Decide(context.Background(), sampleInput()); d.Action != ActionAllow || d.Reason != "v1" || d.Revision != rev1 {
		t.Fatalf("after refused reload decision = %+v, want the last good allow", d)
	}

	writeFile(t, path, denyPolicy)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	rev2 := e.Revision()
	if rev2 == rev1 {
		t.Fatal("revision did not change with the policy")
	}
	if d := e.Decide(context.Background(), sampleInput()); d.Action != ActionDeny || d.Reason != "v2" || d.Revision != rev2 || d.PolicyError {
		t.Fatalf("after reload decision = %+v, want the new deny", d)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if e.Revision() != rev2 {
		t.Fatal("a missing file replaced the live policy")
	}
}

// A directory holds modules in several files, data files mounted by directory, and
// tests that do not affect the revision.
func TestDirectoryWithData(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.rego"), `package portcullis

decision := {"action": "rate_limit", "rate_limit": {"max": data.limits[input.tool], "window": data.team.window}}
`)
	writeFile(t, filepath.Join(dir, "data.json"), `{"limits": {"create_integration": 7}}`)
	writeFile(t, filepath.Join(dir, "team", "data.yaml"), "window: 45s\n")
	writeFile(t, filepath.Join(dir, "main_test.rego"), "package portcullis_test\n\ntest_ok if true\n")
	writeFile(t, filepath.Join(dir, ".git", "ignored.rego"), "this is not rego")

	e, err := New(context.Background(), Options{Path: dir, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Decide(context.Background(), sampleInput())
	if d.Action != ActionRateLimit || d.RateLimit.Max != 7 || d.RateLimit.Window != 45*time.Second {
		t.Fatalf("decision = %+v (rl %+v), want rate_limit 7 per 45s from data", d, d.RateLimit)
	}
	rev := e.Revision()

	writeFile(t, filepath.Join(dir, "main_test.rego"), "package portcullis_test\n\ntest_ok if 1 == 1\n")
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.Revision() != rev {
		t.Fatal("editing a test file changed the policy revision")
	}

	writeFile(t, filepath.Join(dir, "data.json"), `{"limits": {"create_integration": 8}}`)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.Revision() == rev {
		t.Fatal("editing data did not change the revision")
	}
	if d := e.Decide(context.Background(), sampleInput()); d.RateLimit == nil || d.RateLimit.Max != 8 {
		t.Fatalf("decision after data edit = %+v", d)
	}

	// Bad data with good Rego is refused as a whole; no half-loaded state.
	writeFile(t, filepath.Join(dir, "data.json"), `{"limits": `)
	if err := e.Reload(context.Background()); err == nil {
		t.Fatal("reload with broken data succeeded")
	}
	if d := e.Decide(context.Background(), sampleInput()); d.RateLimit == nil || d.RateLimit.Max != 8 {
		t.Fatalf("decision after refused data edit = %+v", d)
	}
}

func TestWatchPicksUpEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.rego")
	writeFile(t, path, allowPolicy)
	e, err := New(context.Background(), Options{Path: path, debounce: 20 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	rev1 := e.Revision()
	// The watcher starts asynchronously; keep rewriting until it notices.
	waitFor("the edit to be applied", func() bool {
		writeFile(t, path, denyPolicy)
		time.Sleep(30 * time.Millisecond)
		return e.Revision() != rev1
	})
	if d := e.Decide(context.Background(), sampleInput()); d.Reason != "v2" {
		t.Fatalf("decision after watch reload = %+v", d)
	}
	rev2 := e.Revision()

	// An unrelated file in the same directory does not trigger anything harmful, and a
	// broken edit is refused.
	writeFile(t, filepath.Join(dir, "notes.txt"), "hello")
	writeFile(t, path, brokenRego)
	time.Sleep(150 * time.Millisecond)
	if e.Revision() != rev2 {
		t.Fatal("a broken edit replaced the live policy")
	}
	writeFile(t, path, allowPolicy)
	waitFor("the fixed policy to be applied", func() bool { return e.Revision() == rev1 })
}

func TestWatchWithoutPath(t *testing.T) {
	e := engineFor(t, allowPolicy)
	if err := e.Watch(context.Background()); err == nil {
		t.Fatal("Watch on embedded modules returned nil, want an error")
	}
}

// Decide keeps answering, never with a torn state, while reloads swap the policy.
func TestConcurrentDecideAndReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.rego")
	writeFile(t, path, allowPolicy)
	// A generous deadline: this test is about torn state, and 2 shared cores can starve
	// an evaluation past 25ms while a reload compiles.
	e, err := New(context.Background(), Options{Path: path, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Decide(context.Background(), sampleInput())
				if d.PolicyError || (d.Reason != "v1" && d.Reason != "v2") {
					errs <- fmt.Sprintf("bad decision during reload: %+v", d)
					return
				}
			}
		})
	}
	for i := range 20 {
		body := allowPolicy
		if i%2 == 0 {
			body = denyPolicy
		}
		writeFile(t, path, body)
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func TestRunTests(t *testing.T) {
	policy := "package portcullis\n\ndecision := {\"action\": \"allow\"} if input.ok\n"
	t.Run("counts passes and failures", func(t *testing.T) {
		var out strings.Builder
		passed, failed, err := RunTests(context.Background(), Options{Modules: map[string]string{
			"p.rego": policy,
			"p_test.rego": `package portcullis_test
import data.portcullis
test_allows if portcullis.decision.action == "allow" with input as {"ok": true}
test_wrong if portcullis.decision.action == "deny" with input as {"ok": true}
test_errors if to_number("x") == 1
`,
		}}, &out, true)
		if err != nil {
			t.Fatal(err)
		}
		if passed != 1 || failed != 2 {
			t.Fatalf("passed=%d failed=%d, want 1 and 2\n%s", passed, failed, out.String())
		}
		for _, w := range []string{"test_allows: PASS", "test_wrong: FAIL", "test_errors: FAIL", "eval_builtin_error"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("report lacks %q:\n%s", w, out.String())
			}
		}
	})
	t.Run("file path picks up sibling test file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "p.rego"), policy)
		writeFile(t, filepath.Join(dir, "p_test.rego"), "package portcullis_test\nimport data.portcullis\ntest_a if portcullis.decision with input as {\"ok\": true}\n")
		passed, failed, err := RunTests(context.Background(), Options{Path: filepath.Join(dir, "p.rego")}, &strings.Builder{}, false)
		if err != nil || passed != 1 || failed != 0 {
			t.Fatalf("passed=%d failed=%d err=%v, want 1 0 nil", passed, failed, err)
		}
	})
	t.Run("no tests is an error", func(t *testing.T) {
		_, _, err := RunTests(context.Background(), Options{Modules: map[string]string{"p.rego": policy}}, &strings.Builder{}, false)
		if err == nil || !strings.Contains(err.Error(), "no tests") {
			t.Fatalf("err = %v, want no tests found", err)
		}
	})
	t.Run("compile error in a test file", func(t *testing.T) {
		_, _, err := RunTests(context.Background(), Options{Modules: map[string]string{"p.rego": policy, "p_test.rego": "package x\ntest_a if y\n"}}, &strings.Builder{}, false)
		if err == nil || !strings.Contains(err.Error(), "p_test.rego:2") {
			t.Fatalf("err = %v, want a compile error at p_test.rego:2", err)
		}
	})
}

func TestAnalyzeInputUse(t *testing.T) {
	tests := []struct {
		name string
		body string
		want inputUse
	}{
		{"none", `decision := {"action": "allow"} if input.caller.org != ""`, inputUse{}},
		{"arguments", `decision := {"action": "allow"} if input.arguments.workspace_id == "x"`, inputUse{arguments: true}},
		{"claims by path", `decision := {"action": "allow"} if input.caller.claims.iss == "x"`, inputUse{claims: true}},
		{"caller as a whole", `decision := {"action": "allow"} if { c := input.caller; c.claims.iss == "x" }`, inputUse{claims: true}},
		{"dynamic caller field", `decision := {"action": "allow"} if { some k; input.caller[k] == "x" }`, inputUse{claims: true}},
		{"annotations", `decision := {"action": "allow"} if input.tool_info.annotations.destructiveHint`, inputUse{annotations: true}},
		{"resource", `decision := {"action": "allow"} if input.resource.workspace_id == "ws-1"`, inputUse{resource: true}},
		{"bare input", `decision := {"action": "allow"} if count(input) > 0`, allInput},
		{"dynamic top level", `decision := {"action": "allow"} if { some k; input[k] == "x" }`, allInput},
		{"through an import alias", "import input.caller as who\ndecision := {\"action\": \"allow\"} if who.claims.iss == \"x\"", inputUse{claims: true}},
		{"through a function argument", "f(c) := c.claims.iss\ndecision := {\"action\": \"allow\"} if f(input.caller) == \"x\"", inputUse{claims: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := engineFor(t, "package portcullis\n\n"+tc.body+"\n")
			if got := e.state.Load().use; got != tc.want {
				t.Fatalf("use = %+v, want %+v", got, tc.want)
			}
		})
	}

	// End to end: a policy that reads claims sees them.
	e := engineFor(t, `package portcullis
decision := {"action": "allow"} if input.caller.claims.iss == "https://idp"
default decision := {"action": "deny", "reason": "wrong issuer"}`)
	in := sampleInput()
	in.Caller.Claims = map[string]any{"iss": "https://idp"}
	if d := e.Decide(context.Background(), in); d.Action != ActionAllow {
		t.Fatalf("decision = %+v, want allow from the claim", d)
	}
}

// input.resource is absent when the call was not resolved and, when resolved, reaches the
// policy exactly as the proxy built it (null owner included), so "not resolved",
// "not found" and "org-level" are three different inputs.
func TestResourceReachesPolicyOnlyWhenResolved(t *testing.T) {
	e := engineFor(t, `package portcullis

import rego.v1

default decision := {"action": "deny", "reason": "no resource"}

decision := {"action": "allow", "reason": "org-level"} if input.resource.workspace_id == null

decision := {"action": "allow", "reason": "not found"} if input.resource.found == false

decision := {"action": "allow", "reason": sprintf("owned by %s, grants %v", [input.resource.workspace_id, input.resource.workspaces])} if {
	is_string(input.resource.workspace_id)
}
`)
	ctx := context.Background()
	for _, tc := range []struct {
		res  map[string]any
		want string
	}{
		{nil, "no resource"},
		{map[string]any{"type": "integration", "found": false}, "not found"},
		{map[string]any{"type": "integration", "found": true, "workspace_id": nil}, "org-level"},
		{map[string]any{"type": "integration", "found": true, "workspace_id": "ws-1", "workspaces": []any{"ws-1", "ws-2"}},
			`owned by ws-1, grants ["ws-1", "ws-2"]`},
	} {
		in := sampleInput()
		in.Resource = tc.res
		if d := e.Decide(ctx, in); d.Reason != tc.want {
			t.Errorf("resource %v: decision %+v, want reason %q", tc.res, d, tc.want)
		}
	}
	v, err := inputValue(sampleInput(), allInput)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := v.Find(ast.MustParseRef("x.resource")[1:]); r != nil {
		t.Fatalf("an unresolved call has input.resource = %v; want it absent", r)
	}
}

// The revision names content, not how the operator spelled the path.
func TestRevisionIsContentHash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.rego")
	writeFile(t, path, allowPolicy)
	byPath, err := New(context.Background(), Options{Path: path, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	byDotPath, err := New(context.Background(), Options{Path: filepath.Join(dir, ".", "policy.rego"), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	embedded := engineFor(t, allowPolicy)
	if byPath.Revision() != byDotPath.Revision() || byPath.Revision() != embedded.Revision() {
		t.Fatalf("revisions differ for the same content: %s %s %s", byPath.Revision(), byDotPath.Revision(), embedded.Revision())
	}
	if other := engineFor(t, allowPolicy+"\n# a comment is a change too\n"); other.Revision() == embedded.Revision() {
		t.Fatal("different content, same revision")
	}
}

func TestWatchDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.rego"), "package portcullis\n\ndecision := {\"action\": \"deny\", \"reason\": data.team.msg}\n")
	writeFile(t, filepath.Join(dir, "team", "data.json"), `{"msg": "one"}`)
	e := watching(t, dir)
	eventually(t, e, "two", "data edit in a subdirectory was not picked up", func() {
		writeFile(t, filepath.Join(dir, "team", "data.json"), `{"msg": "two"}`)
	})
}

// watching starts an engine on path with its watch running until the test ends.
func watching(t *testing.T, path string) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Path: path, debounce: 20 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = e.Watch(ctx) }()
	return e
}

// eventually repeats edit until e decides with reason want; after 5 s it fails with what.
func eventually(t *testing.T, e *Engine, want, what string, edit func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Decide(context.Background(), sampleInput()).Reason != want {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		edit()
		time.Sleep(40 * time.Millisecond)
	}
}

func TestShadow(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.rego")
	cand := filepath.Join(dir, "candidate.rego")
	writeFile(t, live, allowPolicy)
	writeFile(t, cand, denyPolicy)

	plain := engineFor(t, allowPolicy)
	if _, ok := plain.DecideShadow(context.Background(), sampleInput()); ok || plain.ShadowRevision() != "" {
		t.Fatal("DecideShadow reported a shadow on an engine without one")
	}

	e, err := New(context.Background(), Options{Path: live, ShadowPath: cand, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := e.Decide(context.Background(), sampleInput())
	s, ok := e.DecideShadow(context.Background(), sampleInput())
	if !ok || d.Action != ActionAllow || s.Action != ActionDeny || s.Revision != e.ShadowRevision() || s.Revision == d.Revision {
		t.Fatalf("live %+v shadow %+v ok=%v", d, s, ok)
	}
	if !ShadowDiffers(d, s) {
		t.Fatal("ShadowDiffers(allow, deny) = false")
	}

	// A broken candidate does not block a live reload, and the old candidate stays.
	shadowRev := e.ShadowRevision()
	writeFile(t, cand, brokenRego)
	writeFile(t, live, denyPolicy)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatalf("live reload failed because of the shadow: %v", err)
	}
	if e.Decide(context.Background(), sampleInput()).Reason != "v2" || e.ShadowRevision() != shadowRev {
		t.Fatal("live not reloaded or shadow replaced by a broken candidate")
	}

	if _, err := New(context.Background(), Options{Path: live, ShadowPath: cand, Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "shadow policy") {
		t.Fatalf("New with a broken shadow = %v, want an error naming the shadow policy", err)
	}
}

func TestShadowDiffers(t *testing.T) {
	rl := func(max int, w time.Duration) Decision {
		return Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: max, Window: w}}
	}
	ap := func(ttl time.Duration, who ...string) Decision {
		return Decision{Action: ActionRequireApproval, Approval: &Approval{Approvers: who, TTL: ttl}}
	}
	tests := []struct {
		name         string
		live, shadow Decision
		want         bool
	}{
		{"same allow, different reason", Decision{Action: ActionAllow, Reason: "a", Revision: "r1"}, Decision{Action: ActionAllow, Reason: "b", Revision: "r2"}, false},
		{"allow vs deny", Decision{Action: ActionAllow}, Decision{Action: ActionDeny}, true},
		{"deny vs policy error deny", Decision{Action: ActionDeny}, Decision{Action: ActionDeny, PolicyError: true}, true},
		{"same limit", rl(10, time.Minute), rl(10, time.Minute), false},
		{"different max", rl(10, time.Minute), rl(20, time.Minute), true},
		{"different window", rl(10, time.Minute), rl(10, time.Hour), true},
		{"same window written two ways", rl(10, time.Minute), Decision{Action: ActionRateLimit, RateLimit: &RateLimit{Max: 10, Window: time.Minute, WindowAsWritten: "60s"}}, false},
		{"same approval", ap(time.Minute, "role:security"), ap(time.Minute, "role:security"), false},
		{"different approvers", ap(time.Minute, "role:security"), ap(time.Minute, "role:admin"), true},
		{"different ttl", ap(time.Minute, "role:security"), ap(time.Hour, "role:security"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ShadowDiffers(tc.live, tc.shadow); got != tc.want {
				t.Fatalf("ShadowDiffers = %v, want %v", got, tc.want)
			}
		})
	}
}

// Kubernetes mounts a ConfigMap as name -> ..data/name with ..data a symlink swapped
// atomically on update; the policy file itself never sees an event.
func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
	writeFile(t, filepath.Join(v1, "policy.rego"), allowPolicy)
	writeFile(t, filepath.Join(v2, "policy.rego"), denyPolicy)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.rego"), filepath.Join(dir, "policy.rego")); err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{Path: filepath.Join(dir, "policy.rego"), debounce: 20 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Watch(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for e.Decide(context.Background(), sampleInput()).Reason != "v2" {
		if time.Now().After(deadline) {
			t.Fatal("the ..data swap was not picked up")
		}
		// Swap as kubelet does: new symlink, renamed over ..data.
		tmp := filepath.Join(dir, "..data_tmp")
		_ = os.Remove(tmp)
		if err := os.Symlink("..v2", tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// Refused reloads are counted (for /metrics), the live policy's and the shadow's apart;
// a good reload counts nothing.
func TestReloadFailuresAreCounted(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.rego")
	cand := filepath.Join(dir, "candidate.rego")
	writeFile(t, live, allowPolicy)
	writeFile(t, cand, denyPolicy)
	e, err := New(context.Background(), Options{Path: live, ShadowPath: cand, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	count := func(wantLive, wantShadow uint64) {
		t.Helper()
		if l, s := e.ReloadFailures(); l != wantLive || s != wantShadow {
			t.Fatalf("ReloadFailures() = %d, %d, want %d, %d", l, s, wantLive, wantShadow)
		}
	}
	count(0, 0)
	writeFile(t, live, brokenRego)
	if e.Reload(context.Background()) == nil {
		t.Fatal("Reload of a broken policy succeeded")
	}
	count(1, 0)
	writeFile(t, live, denyPolicy)
	writeFile(t, cand, brokenRego)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	count(1, 1)
	writeFile(t, cand, allowPolicy)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	count(1, 1)
}

// A policy error is returned in the decision and not logged by the engine: the caller
// logs it once, with its request id.
func TestDecideDoesNotLogPolicyErrors(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := engineFor(t, "package portcullis\n\ndecision := {\"action\": \"allow\"} if input.tool\ndecision := {\"action\": \"deny\"} if input.tool\n",
		func(o *Options) { o.Logger = log })
	d := e.Decide(context.Background(), sampleInput())
	if !d.PolicyError || d.Error == "" {
		t.Fatalf("decision = %+v, want a policy error", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if buf.Len() != 0 {
		t.Fatalf("the engine logged a policy error the caller logs: %s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A policy file that is a symlink is reloaded when the file it points to is edited, not
// only when the link changes.
func TestWatchSymlinkTargetEdit(t *testing.T) {
	real, links := t.TempDir(), t.TempDir()
	target := filepath.Join(real, "policy.rego")
	writeFile(t, target, allowPolicy)
	link := filepath.Join(links, "policy.rego")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	e := watching(t, link)
	eventually(t, e, "v2", "an edit of the symlink's target was not picked up", func() { writeFile(t, target, denyPolicy) })
}

// A policy directory replaced by a new one (mv pd pd.old; mkdir pd) is watched anew.
func TestWatchReplacedDirectory(t *testing.T) {
	parent := t.TempDir()
	pd := filepath.Join(parent, "pd")
	writeFile(t, filepath.Join(pd, "main.rego"), allowPolicy)
	e := watching(t, pd)
	time.Sleep(50 * time.Millisecond) // the watch is set up
	if err := os.Rename(pd, filepath.Join(parent, "pd.old")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(pd, "main.rego"), allowPolicy)
	eventually(t, e, "v2", "an edit in the replacing directory was not picked up", func() {
		writeFile(t, filepath.Join(pd, "main.rego"), denyPolicy)
	})
}

// While the live policy is broken, an edit of the shadow policy still reloads it.
func TestShadowReloadsWhileLiveIsBroken(t *testing.T) {
	dir := t.TempDir()
	live, cand := filepath.Join(dir, "live.rego"), filepath.Join(dir, "candidate.rego")
	writeFile(t, live, allowPolicy)
	writeFile(t, cand, allowPolicy)
	e, err := New(context.Background(), Options{Path: live, ShadowPath: cand, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	before := e.ShadowRevision()
	writeFile(t, live, brokenRego)
	writeFile(t, cand, denyPolicy)
	if e.Reload(context.Background()) == nil {
		t.Fatal("Reload with a broken live policy reported success")
	}
	if e.ShadowRevision() == before {
		t.Fatal("the shadow policy was not reloaded while the live one is broken")
	}
	if d := e.Decide(context.Background(), sampleInput()); d.Reason != "v1" {
		t.Fatalf("live decision %+v, want the last good policy's", d)
	}
}
