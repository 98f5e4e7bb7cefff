package policies

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// DefaultTimeout is the per-evaluation deadline when Options.Timeout is zero.
const DefaultTimeout = 25 * time.Millisecond

// DefaultDebounce is how long Watch waits after the last file event before reloading, so
// an editor's write-rename-chmod burst becomes one reload.
const DefaultDebounce = 100 * time.Millisecond

// Options configure an Engine.
type Options struct {
	// Path is a .rego file or a directory of .rego files plus optional data.json /
	// data.yaml files (a data file in a/b is mounted at data.a.b). *_test.rego files are
	// ignored by the engine and run by RunTests. Empty means use Modules.
	Path string
	// Modules maps file names to Rego source (or data.json/data.yaml content); used when
	// Path is empty, e.g. for the embedded example policy.
	Modules map[string]string
	// Timeout is the deadline of one evaluation; past it the decision is a deny.
	// Default DefaultTimeout.
	Timeout time.Duration
	// AllowNetwork enables the built-ins that reach the network (http.send,
	// net.lookup_ip_addr). Off, a policy that calls them does not compile.
	AllowNetwork bool
	// Logger receives reload results, evaluation panics and policy print() output (debug).
	Logger *slog.Logger
	// ShadowPath is an optional candidate policy (file or directory, like Path) that
	// DecideShadow evaluates beside the live one, so a change can be watched on real
	// traffic before it decides anything. Reload and Watch cover it too.
	ShadowPath string
	// CacheSize bounds the decisions remembered per revision for a deterministic policy
	// (one that calls no time, random or network built-in). Default DefaultCacheSize;
	// negative disables the cache.
	CacheSize int

	// Test hooks: extra built-ins, and Watch's debounce.
	builtins []*tester.Builtin
	debounce time.Duration
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.debounce <= 0 {
		o.debounce = DefaultDebounce
	}
}

// Engine decides requests with a compiled Rego policy. It is safe for concurrent use;
// Decide takes no lock, and Reload swaps the compiled policy atomically.
type Engine struct {
	opts     Options
	log      *slog.Logger
	state    atomic.Pointer[state]
	shadow   atomic.Pointer[state] // nil without Options.ShadowPath
	reloadMu sync.Mutex            // serialises Reload so two reloads cannot publish out of order
	evals    atomic.Uint64         // evaluations run (not served from cache), for tests

	reloadFailures, shadowReloadFailures atomic.Uint64 // refused reloads, for metrics

	refusedMu                      sync.Mutex
	lastRefused, lastShadowRefused Refusal // the newest refused reloads, for the console
}

// Refusal is a reload the engine refused: when, and the compiler's message.
type Refusal struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
}

// Status is what the console shows about the policy: the live revision and when it was
// loaded, the shadow's, and the newest refused reload of each (zero when none).
type Status struct {
	Revision             string    `json:"revision"`
	LoadedAt             time.Time `json:"loaded_at"`
	ShadowRevision       string    `json:"shadow_revision,omitempty"`
	ShadowLoadedAt       time.Time `json:"shadow_loaded_at,omitzero"`
	LastRefused          *Refusal  `json:"last_refused,omitempty"`
	LastShadowRefused    *Refusal  `json:"last_shadow_refused,omitempty"`
	ReloadFailures       uint64    `json:"reload_failures"`
	ShadowReloadFailures uint64    `json:"shadow_reload_failures"`
}

// Status reports the live and shadow revisions, their load times and the last refusals.
func (e *Engine) Status() Status {
	st := e.state.Load()
	out := Status{Revision: st.revision, LoadedAt: st.loadedAt}
	if sh := e.shadow.Load(); sh != nil {
		out.ShadowRevision, out.ShadowLoadedAt = sh.revision, sh.loadedAt
	}
	out.ReloadFailures, out.ShadowReloadFailures = e.ReloadFailures()
	e.refusedMu.Lock()
	if r := e.lastRefused; !r.At.IsZero() {
		out.LastRefused = &r
	}
	if r := e.lastShadowRefused; !r.At.IsZero() {
		out.LastShadowRefused = &r
	}
	e.refusedMu.Unlock()
	return out
}

func (e *Engine) refused(shadow bool, err error) {
	r := Refusal{At: time.Now().UTC(), Error: err.Error()}
	e.refusedMu.Lock()
	if shadow {
		e.lastShadowRefused = r
	} else {
		e.lastRefused = r
	}
	e.refusedMu.Unlock()
}

// New loads and compiles the policy. A policy that does not parse or compile is an
// error carrying the compiler's messages (file:line), so a server refuses to start
// rather than run without a policy.
func New(ctx context.Context, opts Options) (*Engine, error) {
	opts.setDefaults()
	if opts.Path == "" && len(opts.Modules) == 0 {
		return nil, errors.New("policies: no policy: set Path or Modules")
	}
	st, err := load(ctx, &opts)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: opts.Logger}
	e.state.Store(st)
	if opts.ShadowPath != "" {
		sh, err := load(ctx, e.shadowOptions())
		if err != nil {
			return nil, fmt.Errorf("policies: shadow policy: %w", err)
		}
		e.shadow.Store(sh)
	}
	return e, nil
}

func (e *Engine) shadowOptions() *Options {
	o := e.opts
	o.Path, o.Modules = o.ShadowPath, nil
	return &o
}

// Revision is the content hash of the policy that currently decides.
func (e *Engine) Revision() string { return e.state.Load().revision }

// Reload re-reads Options.Path and, if it compiles, makes it the live policy. On any
// failure the last good policy stays live and the error says why.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	old := e.state.Load()
	st, err := load(ctx, &e.opts)
	if err != nil {
		e.reloadFailures.Add(1)
		e.refused(false, err)
		e.log.Warn("policy reload refused; the last good policy keeps deciding", "revision", old.revision, "err", err)
	} else {
		e.state.Store(st)
		if st.revision != old.revision {
			e.log.Info("policy reloaded", "revision", st.revision, "previous", old.revision, "files", len(st.files))
		} else {
			e.log.Debug("policy reloaded; content unchanged", "revision", st.revision)
		}
	}
	// The shadow reloads on its own: a broken live policy does not hold back a candidate
	// (often the fix being tried), and a broken candidate does not hold back the live one.
	if e.opts.ShadowPath != "" {
		// A broken candidate must not hold back the live policy; it is logged, not returned.
		if sh, err := load(ctx, e.shadowOptions()); err != nil {
			e.shadowReloadFailures.Add(1)
			e.refused(true, err)
			e.log.Warn("shadow policy reload refused; the previous candidate stays", "shadow_revision", e.shadow.Load().revision, "err", err)
		} else {
			e.shadow.Store(sh)
		}
	}
	return err
}

// ReloadFailures counts the reloads refused since New: of the live policy (the last good
// one kept deciding) and of the shadow policy (the previous candidate stayed).
func (e *Engine) ReloadFailures() (live, shadow uint64) {
	return e.reloadFailures.Load(), e.shadowReloadFailures.Load()
}

// Decide evaluates the policy for one input. It never panics and never returns an empty
// action: anything but a well-formed decision is a deny with PolicyError set and the
// cause in Error. Decide does not log policy errors (only panics, with their stack): the
// caller logs Error once, with what identifies the request.
func (e *Engine) Decide(ctx context.Context, in *Input) Decision {
	return e.evaluate(ctx, e.state.Load(), in)
}

// DecideShadow evaluates the shadow policy for the same input, with the same fail-closed
// rules; ok is false when no shadow policy is configured. Its decision must never be
// enforced: compare it with ShadowDiffers and record the difference.
func (e *Engine) DecideShadow(ctx context.Context, in *Input) (d Decision, ok bool) {
	st := e.shadow.Load()
	if st == nil {
		return Decision{}, false
	}
	return e.evaluate(ctx, st, in), true
}

// ShadowRevision is the revision of the shadow policy, or "" without one.
func (e *Engine) ShadowRevision() string {
	if st := e.shadow.Load(); st != nil {
		return st.revision
	}
	return ""
}

// ShadowDiffers reports whether two decisions would be enforced differently: action,
// limits or approval terms. Reasons and revisions are expected to differ and do not count.
func ShadowDiffers(live, shadow Decision) bool {
	if live.Action != shadow.Action || live.PolicyError != shadow.PolicyError {
		return true
	}
	switch live.Action {
	case ActionRateLimit:
		if live.RateLimit == nil || shadow.RateLimit == nil {
			return true
		}
		l, s := *live.RateLimit, *shadow.RateLimit
		l.WindowAsWritten, s.WindowAsWritten = "", "" // "60s" and "1m" are enforced alike
		return l != s
	case ActionRequireApproval:
		return live.Approval == nil || shadow.Approval == nil ||
			live.Approval.TTL != shadow.Approval.TTL || !slices.Equal(live.Approval.Approvers, shadow.Approval.Approvers)
	}
	return false
}

func (e *Engine) evaluate(ctx context.Context, st *state, in *Input) (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			d = failure(st.revision, fmt.Sprintf("panic during evaluation: %v", r))
			e.log.Error("policy evaluation panicked", "revision", st.revision, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if in == nil {
		return failure(st.revision, "nil input")
	}
	var key []byte
	if st.cache != nil {
		bp := keyBufs.Get().(*[]byte)
		defer keyBufs.Put(bp)
		var ok bool
		if key, ok = appendKey((*bp)[:0], in, st.use); ok {
			*bp = key
			if d, hit := st.cache.get(key); hit {
				return d
			}
		} else {
			key = nil
		}
	}
	e.evals.Add(1)
	d, err := e.decide(ctx, st, in)
	if err != nil {
		// Not logged here: the caller logs Decision.Error once, with its request id.
		return failure(st.revision, err.Error())
	}
	d.Revision = st.revision
	if key != nil {
		st.cache.put(key, d)
	}
	return d
}

func (e *Engine) decide(ctx context.Context, st *state, in *Input) (Decision, error) {
	v, err := inputValue(in, st.use)
	if err != nil {
		return Decision{}, fmt.Errorf("input: %w", err)
	}

	// The deadline is enforced through OPA's cancel flag and a timer rather than a
	// context: rego would otherwise start a goroutine per evaluation to watch ctx.
	cancel := topdown.NewCancel()
	timer := time.AfterFunc(e.opts.Timeout, cancel.Cancel)
	defer timer.Stop()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, cancel.Cancel)
		defer stop()
	}
	evalCtx := ctx
	if e.opts.AllowNetwork {
		// Network built-ins honour only the context, so give them the deadline too.
		var done context.CancelFunc
		evalCtx, done = context.WithTimeout(ctx, e.opts.Timeout)
		defer done()
	}

	rs, err := st.query.Eval(evalCtx,
		rego.EvalParsedInput(v),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()),
	)
	if err != nil {
		if cancel.Cancelled() {
			if ctx.Err() != nil {
				return Decision{}, fmt.Errorf("evaluation cancelled: %w", ctx.Err())
			}
			return Decision{}, fmt.Errorf("evaluation exceeded its %s deadline", e.opts.Timeout)
		}
		return Decision{}, fmt.Errorf("evaluation: %w", err)
	}
	switch {
	case len(rs) == 0:
		return Decision{}, fmt.Errorf("%s is undefined for tool %q (add a default decision)", decisionQuery, in.Tool)
	case len(rs) > 1 || len(rs[0].Expressions) != 1:
		return Decision{}, fmt.Errorf("%s produced %d results, want exactly one", decisionQuery, len(rs))
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Decision{}, fmt.Errorf("%s: unexpected result type %T", decisionQuery, rs[0].Expressions[0].Value)
	}
	d, err := parseDecision(t.Value, in.Tool)
	if err != nil {
		return Decision{}, fmt.Errorf("malformed decision: %w", err)
	}
	return d, nil
}

// printHook sends a policy's print() output to the debug log, where authors look while
// developing and where it costs nothing in production.
type printHook struct{ log *slog.Logger }

func (h printHook) Print(pctx print.Context, msg string) error {
	if h.log != nil {
		h.log.Debug("policy print", "location", pctx.Location.String(), "msg", msg)
	}
	return nil
}

var _ print.Hook = printHook{}
