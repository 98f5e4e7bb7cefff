package approvals

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policies/principal"
)

// testTarget is where the tests' approved calls go (surface, method, path, upstream).
const testTarget = "mcp POST /mcp mcp"

func TestCanonicalHash(t *testing.T) {
	base := principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Session: "s-1", Roles: []string{"agent"}}
	const tool, rev = "create_integration", "rev-1"
	args := `{"name":"prod openai","config":{"b":1,"a":[1,2,{"y":true,"x":null}]},"n":10}`
	ref, err := CanonicalHash(base, tool, testTarget, []byte(args), rev)
	if err != nil {
		t.Fatal(err)
	}
	if len(ref) != 64 {
		t.Fatalf("hash %q is not 64 hex chars", ref)
	}

	same := []struct {
		name string
		args string
	}{
		{"keys reordered at every level", `{"n":10,"config":{"a":[1,2,{"x":null,"y":true}],"b":1},"name":"prod openai"}`},
		{"whitespace", "{ \"name\" : \"prod openai\",\n\t\"config\":{\"b\":1,\"a\":[1, 2, {\"y\":true,\"x\":null}]}, \"n\":10 }"},
		{"escaped characters that decode the same", `{"name":"prod \u006fpenai","config":{"b":1,"a":[1,2,{"y":true,"x":null}]},"n":10}`},
	}
	for _, tc := range same {
		t.Run("same/"+tc.name, func(t *testing.T) {
			got, err := CanonicalHash(base, tool, testTarget, []byte(tc.args), rev)
			if err != nil || got != ref {
				t.Fatalf("got %s, %v; want the reference hash", got, err)
			}
		})
	}

	// Roles and claims are not part of the request identity: a token refresh that adds a
	// role must not invalidate the approval.
	withRoles := base
	withRoles.Roles = []string{"agent", "extra"}
	withRoles.Claims = map[string]any{"iat": 1}
	if got, _ := CanonicalHash(withRoles, tool, testTarget, []byte(args), rev); got != ref {
		t.Fatal("roles or claims changed the hash")
	}

	different := []struct {
		name   string
		caller principal.Caller
		tool   string
		args   string
		rev    string
	}{
		{"string value", base, tool, strings.Replace(args, "prod openai", "prod openaI", 1), rev},
		{"number value", base, tool, strings.Replace(args, `"n":10`, `"n":11`, 1), rev},
		{"number literal kept as written", base, tool, strings.Replace(args, `"n":10`, `"n":10.0`, 1), rev},
		{"number vs string", base, tool, strings.Replace(args, `"n":10`, `"n":"10"`, 1), rev},
		{"array order", base, tool, strings.Replace(args, "[1,2,", "[2,1,", 1), rev},
		{"extra key", base, tool, strings.Replace(args, `"n":10`, `"n":10,"o":null`, 1), rev},
		{"nested null to false", base, tool, strings.Replace(args, `"x":null`, `"x":false`, 1), rev},
		{"tool", base, "delete_integration", args, rev},
		{"revision", base, tool, args, "rev-2"},
		{"sub", principal.Caller{Sub: "agent-8", Org: "acme", Workspace: "ws-1", Session: "s-1"}, tool, args, rev},
		{"org", principal.Caller{Sub: "agent-7", Org: "acme2", Workspace: "ws-1", Session: "s-1"}, tool, args, rev},
		{"workspace", principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-2", Session: "s-1"}, tool, args, rev},
		{"session", principal.Caller{Sub: "agent-7", Org: "acme", Workspace: "ws-1", Session: "s-2"}, tool, args, rev},
		{"field boundary moved between sub and org", principal.Caller{Sub: "agent-7a", Org: "cme", Workspace: "ws-1", Session: "s-1"}, tool, args, rev},
	}
	// The same tool and arguments sent elsewhere (REST instead of MCP, another upstream)
	// is another request.
	for _, target := range []string{"rest DELETE /v1/integrations/prod rest", "mcp POST /mcp other-upstream", ""} {
		if got, _ := CanonicalHash(base, tool, target, []byte(args), rev); got == ref {
			t.Fatalf("target %q hashes like %q", target, testTarget)
		}
	}
	for _, tc := range different {
		t.Run("different/"+tc.name, func(t *testing.T) {
			got, err := CanonicalHash(tc.caller, tc.tool, testTarget, []byte(tc.args), tc.rev)
			if err != nil {
				t.Fatal(err)
			}
			if got == ref {
				t.Fatal("hash did not change")
			}
		})
	}

	t.Run("empty arguments mean {}", func(t *testing.T) {
		a, _ := CanonicalHash(base, tool, testTarget, nil, rev)
		b, _ := CanonicalHash(base, tool, testTarget, []byte(" {} "), rev)
		if a != b {
			t.Fatal("nil and {} hash differently")
		}
	})

	bad := []struct{ name, args, want string }{
		{"duplicate key", `{"a":1,"a":2}`, "duplicate key"},
		{"nested duplicate key", `{"o":{"k":1,"k":1}}`, "duplicate key"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"trailing data", `{"a":1} {"b":2}`, "trailing"},
		{"not JSON", `{"a":}`, "arguments"},
		{"too deep", strings.Repeat("[", 70) + strings.Repeat("]", 70), "deeper"},
	}
	for _, tc := range bad {
		t.Run("error/"+tc.name, func(t *testing.T) {
			_, err := CanonicalHash(base, tool, testTarget, []byte(tc.args), rev)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzCanonicalJSON checks that canonicalisation keeps the value (same JSON value as
// the input, numbers as written), is idempotent, and so hashes any re-encoding of the
// same arguments alike.
func FuzzCanonicalJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"b":1,"a":[true,null,"x"]}`, `{"n":1.50e3,"s":"\u00e9\n"}`, `[{"z":{"y":{}}}]`, `"str"`, `12`, `{"a":1,"a":2}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		canon, err := canonicalJSON(raw)
		if err != nil {
			return
		}
		again, err := canonicalJSON(canon)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("not idempotent: %s -> %s -> %s (%v)", raw, canon, again, err)
		}
		var v1, v2 any
		d1 := json.NewDecoder(bytes.NewReader(raw))
		d1.UseNumber()
		d2 := json.NewDecoder(bytes.NewReader(canon))
		d2.UseNumber()
		if len(bytes.TrimSpace(raw)) == 0 {
			return
		}
		if err := d1.Decode(&v1); err != nil {
			t.Fatalf("accepted input the standard decoder refuses: %q", raw)
		}
		if err := d2.Decode(&v2); err != nil {
			t.Fatalf("canonical form %q is not JSON", canon)
		}
		if !reflect.DeepEqual(v1, v2) {
			t.Fatalf("canonical form changed the value: %s -> %s", raw, canon)
		}
		// Re-encoding the decoded value (Go sorts keys, compacts) hashes the same.
		re, _ := json.Marshal(v1)
		h1, err1 := CanonicalHash(agent, "t", testTarget, raw, "r")
		h2, err2 := CanonicalHash(agent, "t", testTarget, re, "r")
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("re-encoded %s hashes differently from %s", re, raw)
		}
	})
}
