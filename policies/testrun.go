package policies

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// testTimeout bounds each Rego test. It is far above the request deadline: tests may
// build large fixtures, and a hung test should still end.
const testTimeout = 10 * time.Second

// RunTests runs the policy's Rego unit tests (rules named test_*) with OPA's tester, over
// the policy modules plus their *_test.rego files (for a file path NAME.rego, its sibling
// NAME_test.rego). Tests compile against the same built-ins as the engine, so a test
// cannot pass using a built-in production would refuse. Results are written to w in
// OPA's format (every test with verbose, otherwise failures and a summary). A policy with
// no tests is an error: a green run must mean something was checked.
func RunTests(ctx context.Context, opts Options, w io.Writer, verbose bool) (passed, failed int, err error) {
	opts.setDefaults()
	set, err := readSources(&opts, true)
	if err != nil {
		return 0, 0, err
	}
	mods, err := parseModules(set.modules, set.tests)
	if err != nil {
		return 0, 0, err
	}
	data, err := loadData(set.data)
	if err != nil {
		return 0, 0, err
	}
	caps := capabilities(opts.AllowNetwork, opts.builtins)
	if !opts.AllowNetwork {
		if err := checkNetworkUse(mods); err != nil {
			return 0, 0, fmt.Errorf("policies: compiling: %w", err)
		}
	}
	compiler := ast.NewCompiler().
		WithCapabilities(caps).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true)
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(storeFor(data)).
		SetModules(mods).
		SetDefaultRegoVersion(ast.RegoV1).
		SetTimeout(testTimeout).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true).
		AddCustomBuiltins(opts.builtins)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("policies: compiling tests: %w", err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	// Results arrive in completion order; sort so output is stable between runs.
	sort.Slice(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.Location != nil && b.Location != nil && a.Location.File != b.Location.File {
			return a.Location.File < b.Location.File
		}
		if a.Location != nil && b.Location != nil && a.Location.Row != b.Location.Row {
			return a.Location.Row < b.Location.Row
		}
		return a.Package+"."+a.Name < b.Package+"."+b.Name
	})
	for _, r := range results {
		switch {
		case r.Skip:
		case r.Pass():
			passed++
		default:
			failed++
		}
	}
	replay := make(chan *tester.Result, len(results))
	for _, r := range results {
		replay <- r
	}
	close(replay)
	rep := tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}
	if err := rep.Report(replay); err != nil {
		return passed, failed, fmt.Errorf("policies: reporting tests: %w", err)
	}
	if len(results) == 0 {
		return 0, 0, errors.New("policies: no tests found (rules named test_* in *_test.rego files)")
	}
	return passed, failed, nil
}
