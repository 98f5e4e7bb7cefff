package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// FuzzInputArguments: for any JSON object of arguments, the direct AST conversion equals
// OPA's own conversion of the decoded JSON, and the example policy answers with a
// well-formed decision (never a panic, never an empty action).
func FuzzInputArguments(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"workspace_id": "ws-2", "name": "x"}`,
		`{"workspace_id": 7, "tags": [1, 2.5, -3e-9, true, null, {"a": []}]}`,
		`{"nested": {"deeper": {"deepest": [[["x"]]]}}, "big": 123456789012345678901234567890}`,
		`{"unicode": "\u00e9\u2028\ud83d\ude00", "": ""}`,
		`{"deep": ` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	} {
		f.Add([]byte(seed))
	}
	e, err := New(context.Background(), Options{Modules: map[string]string{"policy.rego": examplePolicy(f)}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var args map[string]any
		if err := dec.Decode(&args); err != nil || args == nil {
			return
		}
		in := sampleInput()
		in.Arguments = args
		got, err := inputValue(in, allInput)
		want, wantErr := ast.InterfaceToValue(args)
		if err != nil {
			if wantErr == nil && !errors.Is(err, errTooDeep) {
				t.Fatalf("inputValue refused what OPA accepts: %v", err)
			}
			// Refused input is a policy-error deny, never a decision on half an input.
			if d := e.Decide(context.Background(), in); d.Action != ActionDeny || !d.PolicyError {
				t.Fatalf("refused input decided %+v", d)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("inputValue accepted what OPA refuses (%v)", wantErr)
		}
		gotArgs, err := got.Find(ast.Ref{ast.StringTerm("arguments")})
		if err != nil || gotArgs.Compare(want) != 0 {
			t.Fatalf("arguments differ\n got  %v\n want %v", gotArgs, want)
		}
		d := e.Decide(context.Background(), in)
		switch d.Action {
		case ActionAllow, ActionDeny, ActionRateLimit, ActionRequireApproval:
		default:
			t.Fatalf("action %q", d.Action)
		}
		if d.Revision == "" {
			t.Fatal("no revision")
		}
	})
}
