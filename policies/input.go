package policies

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Key terms of the input document, built once. Terms are immutable once built, so every
// evaluation can share them.
var (
	kSurface     = ast.StringTerm("surface")
	kTool        = ast.StringTerm("tool")
	kArguments   = ast.StringTerm("arguments")
	kHTTP        = ast.StringTerm("http")
	kMethod      = ast.StringTerm("method")
	kPath        = ast.StringTerm("path")
	kCaller      = ast.StringTerm("caller")
	kSub         = ast.StringTerm("sub")
	kOrg         = ast.StringTerm("org")
	kWorkspace   = ast.StringTerm("workspace")
	kRoles       = ast.StringTerm("roles")
	kSession     = ast.StringTerm("session")
	kClaims      = ast.StringTerm("claims")
	kToolInfo    = ast.StringTerm("tool_info")
	kCategory    = ast.StringTerm("category")
	kRisk        = ast.StringTerm("risk")
	kAnnotations = ast.StringTerm("annotations")
	kUpstream    = ast.StringTerm("upstream")
	kMode        = ast.StringTerm("mode")
	kResource    = ast.StringTerm("resource")

	emptyObject = ast.NewTerm(ast.NewObject())
)

// maxInputDepth bounds recursion over argument and claim values. The proxy already
// rejects JSON deeper than 32; this guards direct callers of Decide.
const maxInputDepth = 64

var errTooDeep = fmt.Errorf("nesting deeper than %d", maxInputDepth)

// inputUse says which of the open-ended parts of the input a compiled policy can read.
// Converting a dozen JWT claims nobody reads is a measurable share of a decision, so
// parts that no reference in the policy can reach are left out of the document.
type inputUse struct {
	arguments, claims, annotations, resource bool
}

var allInput = inputUse{arguments: true, claims: true, annotations: true, resource: true}

// analyzeInputUse walks every reference in the compiled modules. Anything that could
// reach a part dynamically (bare input, input[x], input.caller as a whole) counts as
// reading it, so the analysis errs toward including.
func analyzeInputUse(mods map[string]*ast.Module) inputUse {
	var u inputUse
	str := func(r ast.Ref, i int) (string, bool) {
		if len(r) <= i {
			return "", false
		}
		s, ok := r[i].Value.(ast.String)
		return string(s), ok
	}
	for _, m := range mods {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r.HasPrefix(ast.InputRootRef) {
				return false
			}
			top, ok := str(r, 1)
			if !ok {
				u = allInput
				return false
			}
			switch top {
			case "arguments":
				u.arguments = true
			case "resource":
				u.resource = true
			case "caller":
				if f, ok := str(r, 2); !ok || f == "claims" {
					u.claims = true
				}
			case "tool_info":
				if f, ok := str(r, 2); !ok || f == "annotations" {
					u.annotations = true
				}
			}
			return false
		})
	}
	return u
}

// termAlloc hands out string terms from chunks, one allocation per chunk instead of one
// per term. Terms keep their chunk alive, and nothing mutates an input term.
type termAlloc struct{ buf []ast.Term }

func (a *termAlloc) str(s string) *ast.Term {
	if len(a.buf) == cap(a.buf) {
		a.buf = make([]ast.Term, 0, 24)
	}
	a.buf = append(a.buf, ast.Term{Value: ast.String(s)})
	return &a.buf[len(a.buf)-1]
}

// inputValue builds the input document directly as an AST value. This skips the
// Go-map -> JSON -> AST round trip (or ast.InterfaceToValue's reflection) that would
// otherwise dominate the cost of a decision.
func inputValue(in *Input, use inputUse) (ast.Value, error) {
	a := &termAlloc{}
	args, claims, annotations := emptyObject, emptyObject, emptyObject
	var err error
	if use.arguments {
		if args, err = a.object(in.Arguments, 0); err != nil {
			return nil, fmt.Errorf("arguments: %w", err)
		}
	}
	if use.claims {
		if claims, err = a.object(in.Caller.Claims, 0); err != nil {
			return nil, fmt.Errorf("caller.claims: %w", err)
		}
	}
	if use.annotations {
		if annotations, err = a.object(in.ToolInfo.Annotations, 0); err != nil {
			return nil, fmt.Errorf("tool_info.annotations: %w", err)
		}
	}
	roles := make([]*ast.Term, len(in.Caller.Roles))
	for i, r := range in.Caller.Roles {
		roles[i] = a.str(r)
	}
	mode := in.Mode
	if mode == "" {
		mode = "call"
	}
	obj := ast.NewObject(
		[2]*ast.Term{kSurface, a.str(in.Surface)},
		[2]*ast.Term{kTool, a.str(in.Tool)},
		[2]*ast.Term{kArguments, args},
		[2]*ast.Term{kHTTP, ast.ObjectTerm(
			[2]*ast.Term{kMethod, a.str(in.HTTP.Method)},
			[2]*ast.Term{kPath, a.str(in.HTTP.Path)},
		)},
		[2]*ast.Term{kCaller, ast.ObjectTerm(
			[2]*ast.Term{kSub, a.str(in.Caller.Sub)},
			[2]*ast.Term{kOrg, a.str(in.Caller.Org)},
			[2]*ast.Term{kWorkspace, a.str(in.Caller.Workspace)},
			[2]*ast.Term{kRoles, ast.ArrayTerm(roles...)},
			[2]*ast.Term{kSession, a.str(in.Caller.Session)},
			[2]*ast.Term{kClaims, claims},
		)},
		[2]*ast.Term{kToolInfo, ast.ObjectTerm(
			[2]*ast.Term{kCategory, a.str(in.ToolInfo.Category)},
			[2]*ast.Term{kRisk, a.str(in.ToolInfo.Risk)},
			[2]*ast.Term{kAnnotations, annotations},
		)},
		[2]*ast.Term{kUpstream, a.str(in.Upstream)},
		[2]*ast.Term{kMode, a.str(mode)},
	)
	// Absent, not empty, when the call was not resolved: a policy tells "not resolved"
	// (no input.resource) from "resolved, not found" (input.resource.found == false).
	if use.resource && in.Resource != nil {
		res, err := a.object(in.Resource, 0)
		if err != nil {
			return nil, fmt.Errorf("resource: %w", err)
		}
		obj.Insert(kResource, res)
	}
	return obj, nil
}

// object converts a JSON-shaped map. A nil or empty map is the shared empty object, so
// policies can always write input.arguments.x without a presence check on arguments.
func (a *termAlloc) object(m map[string]any, depth int) (*ast.Term, error) {
	if len(m) == 0 {
		return emptyObject, nil
	}
	if depth > maxInputDepth {
		return nil, errTooDeep
	}
	kvs := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		t, err := a.value(v, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		kvs = append(kvs, [2]*ast.Term{a.str(k), t})
	}
	return ast.ObjectTerm(kvs...), nil
}

// value converts the values decoded JSON (and claim sets) hold. Anything else is an
// error rather than a guess: the policy must see exactly what the request carried.
func (a *termAlloc) value(v any, depth int) (*ast.Term, error) {
	if depth > maxInputDepth {
		return nil, errTooDeep
	}
	switch x := v.(type) {
	case nil:
		return ast.InternedNullTerm, nil
	case string:
		return a.str(x), nil
	case bool:
		return ast.InternedTerm(x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("number %v is not JSON", x)
		}
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return ast.InternedTerm(int(x)), nil
		}
		return ast.NumberTerm(json.Number(strconv.FormatFloat(x, 'g', -1, 64))), nil
	case json.Number:
		// Checked as OPA's own decoder does: a huge exponent ("1E70000") would make later
		// number formatting cost grow non-linearly inside the request path.
		n, err := ast.NumberChecked(string(x))
		if err != nil {
			return nil, fmt.Errorf("number %.32s: %w", string(x), err)
		}
		return ast.NewTerm(n), nil
	case int:
		return ast.InternedTerm(x), nil
	case int64:
		return ast.InternedTerm(x), nil
	case int32:
		return ast.InternedTerm(x), nil
	case uint64:
		return ast.NumberTerm(json.Number(strconv.FormatUint(x, 10))), nil
	case float32:
		return a.value(float64(x), depth)
	case map[string]any:
		return a.object(x, depth)
	case []any:
		terms := make([]*ast.Term, len(x))
		for i, e := range x {
			t, err := a.value(e, depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			terms[i] = t
		}
		return ast.ArrayTerm(terms...), nil
	case []string:
		terms := make([]*ast.Term, len(x))
		for i, e := range x {
			terms[i] = a.str(e)
		}
		return ast.ArrayTerm(terms...), nil
	default:
		// Rare shapes (typed structs in claims): fall back to OPA's reflective conversion.
		val, err := ast.InterfaceToValue(x)
		if err != nil {
			return nil, fmt.Errorf("value of type %T: %w", v, err)
		}
		return ast.NewTerm(val), nil
	}
}
