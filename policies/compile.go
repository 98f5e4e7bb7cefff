package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// decisionQuery is the one query the engine answers.
const decisionQuery = "data.portcullis.decision"

// networkBuiltins reach outside the process. They are removed from the capabilities unless
// Options.AllowNetwork is set, so a policy cannot exfiltrate its input or stall on a
// remote host in the request path.
var networkBuiltins = []string{"http.send", "net.lookup_ip_addr"}

// capabilities is the built-in set policies compile against.
func capabilities(allowNet bool, extra []*tester.Builtin) *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	if !allowNet {
		caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
			return slices.Contains(networkBuiltins, b.Name)
		})
		caps.AllowNet = []string{} // empty, not nil: no host is reachable even if one slipped through
	}
	for _, b := range extra {
		caps.Builtins = append(caps.Builtins, b.Decl)
	}
	return caps
}

// checkNetworkUse names every call to a disabled network built-in, with file:line, so the
// author reads why instead of the compiler's bare "undefined function".
func checkNetworkUse(mods map[string]*ast.Module) error {
	var errs []error
	report := func(op ast.Ref, loc *ast.Location) {
		name := op.String()
		if !slices.Contains(networkBuiltins, name) {
			return
		}
		where := "?"
		if loc != nil {
			where = fmt.Sprintf("%s:%d", loc.File, loc.Row)
		}
		errs = append(errs, fmt.Errorf("%s: built-in %s reaches the network and is disabled (set policy allow_network: true to permit it)", where, name))
	}
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ast.WalkExprs(mods[n], func(e *ast.Expr) bool {
			if e.IsCall() {
				report(e.Operator(), e.Location)
			}
			return false
		})
		ast.WalkTerms(mods[n], func(t *ast.Term) bool {
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				if r, ok := c[0].Value.(ast.Ref); ok {
					report(r, t.Location)
				}
			}
			return false
		})
	}
	return errors.Join(errs...)
}

// compileModules parses and compiles a module set against caps. The returned error carries
// the compiler's messages, each with file:line.
func compileModules(mods map[string]*ast.Module, caps *ast.Capabilities, allowNet bool) (*ast.Compiler, error) {
	if !allowNet {
		if err := checkNetworkUse(mods); err != nil {
			return nil, fmt.Errorf("policies: compiling: %w", err)
		}
	}
	c := ast.NewCompiler().
		WithCapabilities(caps).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true)
	if c.Compile(mods); c.Failed() {
		return nil, fmt.Errorf("policies: compiling: %w", c.Errors)
	}
	return c, nil
}

// state is one loaded policy set: compiled, prepared, and named by its revision. It is
// immutable once built and swapped whole, so Decide never sees half of a reload.
type state struct {
	query    rego.PreparedEvalQuery
	revision string
	files    []string
	use      inputUse       // which open-ended input parts the policy reads
	cache    *decisionCache // nil when the policy is not deterministic or caching is off
	loadedAt time.Time      // when this revision was compiled and published
}

// load reads, compiles and prepares the policy named by opts.
func load(ctx context.Context, opts *Options) (*state, error) {
	set, err := readSources(opts, false)
	if err != nil {
		return nil, err
	}
	mods, err := parseModules(set.modules)
	if err != nil {
		return nil, err
	}
	if !definesDecision(mods) {
		return nil, fmt.Errorf("policies: no module declares package portcullis with a decision rule (query %s would always be undefined)", decisionQuery)
	}
	data, err := loadData(set.data)
	if err != nil {
		return nil, err
	}
	caps := capabilities(opts.AllowNetwork, opts.builtins)
	c, err := compileModules(mods, caps, opts.AllowNetwork)
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true), inmem.OptRoundTripOnWrite(false))

	ro := []func(*rego.Rego){
		rego.Query(decisionQuery),
		rego.Compiler(c),
		rego.Store(store),
		rego.Capabilities(caps),
		// A built-in error (bad number, bad regex) fails the evaluation instead of making
		// one rule undefined, which could otherwise let a later rule allow.
		rego.StrictBuiltinErrors(true),
		rego.PrintHook(printHook{opts.Logger}),
		// Results stay as AST terms: the decision is read straight from the term without
		// a round trip through Go maps.
		rego.GenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }),
	}
	for _, b := range opts.builtins {
		ro = append(ro, b.Func)
	}
	pq, err := rego.New(ro...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: preparing %s: %w", decisionQuery, err)
	}
	files := make([]string, 0, len(set.modules)+len(set.data))
	for _, l := range [][]source{set.modules, set.data} {
		for _, s := range l {
			files = append(files, s.name)
		}
	}
	st := &state{query: pq, revision: set.revision(), files: files, use: analyzeInputUse(c.Modules), loadedAt: time.Now().UTC()}
	if opts.CacheSize > 0 && deterministic(c.Modules) {
		st.cache = newDecisionCache(opts.CacheSize)
	}
	return st, nil
}

// definesDecision reports whether some rule can produce data.portcullis.decision,
// catching a policy written for another package before it denies every request.
func definesDecision(mods map[string]*ast.Module) bool {
	want := ast.MustParseRef(decisionQuery)
	for _, m := range mods {
		for _, r := range m.Rules {
			full := r.Ref().GroundPrefix() // already absolute: data.<package>.<rule>
			if full.HasPrefix(want) || want.HasPrefix(full) {
				return true
			}
		}
	}
	return false
}

// storeFor is the data store for a test run.
func storeFor(data map[string]any) storage.Store {
	return inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false))
}
