package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis"
	"github.com/portcullis/portcullis/policies"
	"github.com/portcullis/portcullis/proxy/strictjson"
)

var policyUsage = groupUsage("policy", [][2]string{
	{"test [PATH]", "run the Rego unit tests (test_* rules)"},
	{"check [PATH]", "compile only; print the revision"},
	{"eval --input FILE|-", "print the decision for one input"},
	{"replay --policy PATH", "replay the audit trail through a candidate policy"},
}, policyPathNote+"\n\n"+policyExit)

const policyPathNote = `PATH is a .rego file (tests: its NAME_test.rego sibling too) or a directory of .rego and
data.json/data.yaml files. Without PATH: ./policy.example.rego if it exists, else the
example policy built into this binary. docs/policy.md explains input and decision.`

const policyExit = `Exit status: 0 success; 1 test failures, compile errors, or a policy error in eval;
2 usage errors.`

var policyAbout = map[string][2]string{
	"replay": {"--policy PATH [flags]", replayAbout},
	"test":   {"[flags] [PATH]", "Run the policy's Rego unit tests (rules named test_*).\n\n" + policyPathNote + "\n\n" + policyExit},
	"check":  {"[flags] [PATH]", "Compile the policy and print its revision (the content hash audit rows carry),\nor the compiler's error.\n\n" + policyPathNote + "\n\n" + policyExit},
	"eval": {"--input FILE|- [flags]", `Evaluate data.portcullis.decision for one input document (the JSON the proxy builds:
docs/policy.md) and print the decision, durations as the policy wrote them. print()
output goes to stderr. The input is read as the proxy reads a body: a key given twice,
or in two cases, is an error, and so is an unknown field.

` + policyExit},
}

// policyExampleFile is the conventional policy file looked for in the working directory.
const policyExampleFile = "policy.example.rego"

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "-help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	case "test":
		return policyTestCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return policyCheckCmd(ctx, args[1:], stdout, stderr)
	case "eval":
		return policyEvalCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		return policyReplayCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis policy: unknown subcommand %q\n\n%s", args[0], policyUsage)
		return 2
	}
}

func policyFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	return commandFlags("policy "+name, policyAbout[name][0], policyAbout[name][1], stderr)
}

// policySource picks the policy: an explicit path, ./policy.example.rego, or the
// embedded example (with its tests when withTests).
func policySource(path string, withTests bool) (policies.Options, string) {
	if path == "" {
		if st, err := os.Stat(policyExampleFile); err == nil && !st.IsDir() {
			path = policyExampleFile
		}
	}
	if path != "" {
		return policies.Options{Path: path}, path
	}
	mods := map[string]string{"policy.example.rego": portcullis.ExamplePolicy}
	if withTests {
		mods["policy.example_test.rego"] = portcullis.ExamplePolicyTests
	}
	return policies.Options{Modules: mods}, "embedded policy.example.rego"
}

// policyOptionalPath reads at most one positional argument.
func policyOptionalPath(fs *flag.FlagSet, stderr io.Writer) (string, bool) {
	switch fs.NArg() {
	case 0:
		return "", true
	case 1:
		return fs.Arg(0), true
	default:
		fmt.Fprintf(stderr, "portcullis policy %s: want at most one PATH, got %d arguments\n", strings.TrimPrefix(fs.Name(), "portcullis policy "), fs.NArg())
		return "", false
	}
}

func policyTestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := policyFlagSet("test", stderr)
	verbose := fs.Bool("v", false, "print every test, not only failures")
	allowNet := fs.Bool("allow-network", false, "permit http.send and net.lookup_ip_addr")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path, ok := policyOptionalPath(fs, stderr)
	if !ok {
		return 2
	}
	opts, name := policySource(path, true)
	opts.AllowNetwork = *allowNet
	passed, failed, err := policies.RunTests(ctx, opts, stdout, *verbose)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy test: %s: %v\n", name, err)
		return 1
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "portcullis policy test: %s: %d of %d tests failed\n", name, failed, passed+failed)
		return 1
	}
	return 0
}

func policyCheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := policyFlagSet("check", stderr)
	allowNet := fs.Bool("allow-network", false, "permit http.send and net.lookup_ip_addr")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path, ok := policyOptionalPath(fs, stderr)
	if !ok {
		return 2
	}
	opts, name := policySource(path, false)
	opts.AllowNetwork = *allowNet
	eng, err := policies.New(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy check: %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "ok %s revision %s\n", name, eng.Revision())
	return 0
}

// policyDecisionView is the Decision as the CLI prints it: durations as the policy wrote
// them ("60s" stays "60s", 60 seconds stays 60), not re-spelt ("1m0s") or in nanoseconds.
type policyDecisionView struct {
	Action    string `json:"action"`
	Reason    string `json:"reason"`
	RateLimit *struct {
		Max           int             `json:"max"`
		Window        json.RawMessage `json:"window"`
		Key           string          `json:"key,omitempty"`
		RefundOnError bool            `json:"refund_on_error,omitempty"`
	} `json:"rate_limit,omitempty"`
	Approval *struct {
		Approvers []string        `json:"approvers"`
		TTL       json.RawMessage `json:"ttl"`
	} `json:"approval,omitempty"`
	Revision    string `json:"revision"`
	PolicyError bool   `json:"policy_error,omitempty"`
	Error       string `json:"error,omitempty"`
}

func policyView(d policies.Decision) policyDecisionView {
	v := policyDecisionView{Action: string(d.Action), Reason: d.Reason, Revision: d.Revision, PolicyError: d.PolicyError, Error: d.Error}
	if d.RateLimit != nil {
		v.RateLimit = &struct {
			Max           int             `json:"max"`
			Window        json.RawMessage `json:"window"`
			Key           string          `json:"key,omitempty"`
			RefundOnError bool            `json:"refund_on_error,omitempty"`
		}{d.RateLimit.Max, durationAsWritten(d.RateLimit.WindowAsWritten, d.RateLimit.Window), d.RateLimit.Key, d.RateLimit.RefundOnError}
	}
	if d.Approval != nil {
		v.Approval = &struct {
			Approvers []string        `json:"approvers"`
			TTL       json.RawMessage `json:"ttl"`
		}{d.Approval.Approvers, durationAsWritten(d.Approval.TTLAsWritten, d.Approval.TTL)}
	}
	return v
}

// durationAsWritten is the JSON of a duration as the policy wrote it: a number of seconds
// stays a number, a string stays that string. Without the text, Go's spelling.
func durationAsWritten(text string, d time.Duration) json.RawMessage {
	if text == "" {
		text = d.String()
	}
	var n json.Number
	if err := json.Unmarshal([]byte(text), &n); err == nil {
		return json.RawMessage(text)
	}
	b, _ := json.Marshal(text)
	return b
}

// maxPolicyInput bounds the input document read by eval.
const maxPolicyInput = 4 << 20

func policyEvalCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := policyFlagSet("eval", stderr)
	path := fs.String("policy", "", "policy file or directory `PATH` (default ./policy.example.rego, else the embedded example)")
	inputPath := fs.String("input", "", "input document as JSON: a `FILE`, or - for stdin (required)")
	allowNet := fs.Bool("allow-network", false, "permit http.send and net.lookup_ip_addr")
	timeout := fs.Duration("timeout", policies.DefaultTimeout, "evaluation deadline, as serve's policy.timeout")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portcullis policy eval: unexpected argument %q (use --policy PATH)\n", fs.Arg(0))
		return 2
	}
	if *inputPath == "" {
		fmt.Fprintln(stderr, "portcullis policy eval: --input is required (a JSON file, or - for stdin)")
		return 2
	}
	in, err := readPolicyInput(*inputPath)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy eval: %v\n", err)
		return 1
	}
	opts, name := policySource(*path, false)
	opts.AllowNetwork = *allowNet
	opts.Timeout = *timeout
	// print() output goes to the debug log: here, to stderr, where an author debugging
	// a policy looks.
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng, err := policies.New(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy eval: %s: %v\n", name, err)
		return 1
	}
	d := eng.Decide(ctx, in)
	out, err := json.MarshalIndent(policyView(d), "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "portcullis policy eval: encoding decision: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(out))
	if d.PolicyError {
		return 1
	}
	return 0
}

// readPolicyInput decodes an Input strictly: an unknown field is usually a typo
// ("caller.role") that would otherwise silently evaluate as absent.
func readPolicyInput(path string) (*policies.Input, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading input: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPolicyInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading input %s: %w", path, err)
	}
	if len(b) > maxPolicyInput {
		return nil, fmt.Errorf("input %s: larger than %d bytes", path, maxPolicyInput)
	}
	// One reading, as the proxy's: no key given twice or in two cases ("tool" and
	// "TOOL", which Go's decoder would both map onto Tool).
	if _, err := strictjson.Parse(b, strictjson.DefaultMaxDepth); err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var in policies.Input
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("input %s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("input %s: more than one JSON document", path)
	}
	if in.Tool == "" {
		return nil, errors.New("input: tool: missing (the tool name the policy decides on)")
	}
	return &in, nil
}
