package policies

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Limits on what a decision may ask for. They reject nonsense (a window of a thousand
// years, a limit that overflows a counter) rather than clamp it silently.
const (
	// minDuration: a window or approval ttl shorter than a second cannot be enforced as
	// written (the limiter counts in sixteenths of a window; a human cannot approve in
	// less), so it is refused rather than quietly meaning nothing.
	minDuration  = time.Second
	maxDuration  = 366 * 24 * time.Hour
	maxRateLimit = 1 << 53
)

// Reason given to callers whenever the decision is a deny caused by a policy failure.
// The detail stays in Decision.Error, which is logged and audited but never shown.
const policyErrorReason = "policy error"

var (
	fAction        = ast.StringTerm("action")
	fReason        = ast.StringTerm("reason")
	fRateLimit     = ast.StringTerm("rate_limit")
	fApproval      = ast.StringTerm("approval")
	fMax           = ast.StringTerm("max")
	fWindow        = ast.StringTerm("window")
	fKey           = ast.StringTerm("key")
	fRefundOnError = ast.StringTerm("refund_on_error")
	fApprovers     = ast.StringTerm("approvers")
	fTTL           = ast.StringTerm("ttl")
)

// parseDecision turns the policy's decision object into a Decision. Anything malformed is
// an error, which the caller turns into a deny: a policy that meant "rate_limit" but
// wrote no limit must not become an unlimited allow.
func parseDecision(v ast.Value, tool string) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("decision is %s, want an object", ast.ValueName(v))
	}
	var d Decision
	actionText, err := optString(obj, fAction)
	if err != nil {
		return Decision{}, err
	}
	action := Action(actionText)
	// A limit or approval terms on another action would be ignored: a policy that meant
	// "rate_limit" but wrote "allow" must not become an unlimited allow.
	if obj.Get(fRateLimit) != nil && action != ActionRateLimit {
		return Decision{}, fmt.Errorf("rate_limit: given with action %q; only a rate_limit decision takes one", action)
	}
	if obj.Get(fApproval) != nil && action != ActionRequireApproval {
		return Decision{}, fmt.Errorf("approval: given with action %q; only a require_approval decision takes one", action)
	}
	if d.Reason, err = optString(obj, fReason); err != nil {
		return Decision{}, err
	}
	switch action {
	case ActionAllow:
		d.Action = ActionAllow
	case ActionDeny:
		d.Action = ActionDeny
		if d.Reason == "" {
			d.Reason = fmt.Sprintf("policy denies tool %s", tool)
		}
	case ActionRateLimit:
		d.Action = ActionRateLimit
		rl, err := parseRateLimit(obj.Get(fRateLimit))
		if err != nil {
			return Decision{}, fmt.Errorf("rate_limit: %w", err)
		}
		d.RateLimit = rl
	case ActionRequireApproval:
		d.Action = ActionRequireApproval
		ap, err := parseApproval(obj.Get(fApproval))
		if err != nil {
			return Decision{}, fmt.Errorf("approval: %w", err)
		}
		d.Approval = ap
		if d.Reason == "" {
			d.Reason = fmt.Sprintf("tool %s requires approval", tool)
		}
	case "":
		return Decision{}, errors.New("action: missing")
	default:
		return Decision{}, fmt.Errorf("action: unknown action %q (want allow, deny, rate_limit or require_approval)", action)
	}
	return d, nil
}

func parseRateLimit(t *ast.Term) (*RateLimit, error) {
	if t == nil {
		return nil, errors.New("missing (a rate_limit decision needs max and window)")
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("is %s, want an object", ast.ValueName(t.Value))
	}
	if k := unknownKey(obj, fMax, fWindow, fKey, fRefundOnError); k != "" {
		return nil, fmt.Errorf("%s: unknown field (want max, window, key, refund_on_error)", k)
	}
	rl := &RateLimit{}
	mt := obj.Get(fMax)
	if mt == nil {
		return nil, errors.New("max: missing")
	}
	n, ok := mt.Value.(ast.Number)
	if !ok {
		return nil, fmt.Errorf("max: is %s, want a positive integer", ast.ValueName(mt.Value))
	}
	i, ok := n.Int64()
	if !ok || i <= 0 || i > maxRateLimit {
		return nil, fmt.Errorf("max: %s is not a positive integer up to %d", n, int64(maxRateLimit))
	}
	rl.Max = int(i)
	if rl.Window, ok = durationField(obj, fWindow); !ok {
		return nil, fmt.Errorf("window: want a duration (\"60s\", \"15m\" or seconds) from %s up to %s, got %s", minDuration, maxDuration, describe(obj.Get(fWindow)))
	}
	rl.WindowAsWritten = asWritten(obj.Get(fWindow))
	var err error
	if rl.Key, err = optString(obj, fKey); err != nil {
		return nil, err
	}
	if bt := obj.Get(fRefundOnError); bt != nil {
		b, ok := bt.Value.(ast.Boolean)
		if !ok {
			return nil, fmt.Errorf("refund_on_error: is %s, want a boolean", ast.ValueName(bt.Value))
		}
		rl.RefundOnError = bool(b)
	}
	return rl, nil
}

func parseApproval(t *ast.Term) (*Approval, error) {
	if t == nil {
		return nil, errors.New("missing (a require_approval decision needs approvers and ttl)")
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("is %s, want an object", ast.ValueName(t.Value))
	}
	if k := unknownKey(obj, fApprovers, fTTL); k != "" {
		return nil, fmt.Errorf("%s: unknown field (want approvers, ttl)", k)
	}
	ap := &Approval{}
	at := obj.Get(fApprovers)
	if at == nil {
		return nil, errors.New("approvers: missing")
	}
	var items []*ast.Term
	switch x := at.Value.(type) {
	case *ast.Array:
		x.Foreach(func(e *ast.Term) { items = append(items, e) })
	case ast.Set:
		items = x.Slice() // sets are kept sorted: a stable order in audit rows
	default:
		return nil, fmt.Errorf("approvers: is %s, want an array of strings", ast.ValueName(at.Value))
	}
	for i, e := range items {
		s, ok := e.Value.(ast.String)
		if !ok || s == "" {
			return nil, fmt.Errorf("approvers[%d]: want a non-empty string", i)
		}
		ap.Approvers = append(ap.Approvers, string(s))
	}
	if len(ap.Approvers) == 0 {
		return nil, errors.New("approvers: empty (nobody could approve)")
	}
	if ap.TTL, ok = durationField(obj, fTTL); !ok {
		return nil, fmt.Errorf("ttl: want a duration (\"15m\" or seconds) from %s up to %s, got %s", minDuration, maxDuration, describe(obj.Get(fTTL)))
	}
	ap.TTLAsWritten = asWritten(obj.Get(fTTL))
	return ap, nil
}

// durationField reads a duration given as a Go duration string ("60s", "15m") or a number
// of seconds. It must be positive and at most maxDuration.
// unknownKey returns the first key of obj (in sorted order) that is not one of allowed,
// or "": a misspelt field ("windw") is an error, not silently ignored.
func unknownKey(obj ast.Object, allowed ...*ast.Term) string {
	var bad string
	obj.Foreach(func(k, _ *ast.Term) {
		for _, a := range allowed {
			if k.Equal(a) {
				return
			}
		}
		if name := k.String(); bad == "" || name < bad {
			bad = name
		}
	})
	return bad
}

func durationField(obj ast.Object, key *ast.Term) (time.Duration, bool) {
	t := obj.Get(key)
	if t == nil {
		return 0, false
	}
	d, ok := parseDurationValue(t.Value)
	if !ok || d < minDuration || d > maxDuration {
		return 0, false
	}
	return d, true
}

// asWritten is a duration term's text as the policy wrote it: the string, or the
// number's digits. It does not allocate (both are strings underneath).
func asWritten(t *ast.Term) string {
	switch x := t.Value.(type) {
	case ast.String:
		return string(x)
	case ast.Number:
		return string(x)
	}
	return ""
}

func parseDurationValue(v ast.Value) (time.Duration, bool) {
	switch x := v.(type) {
	case ast.String:
		d, err := time.ParseDuration(string(x))
		return d, err == nil
	case ast.Number:
		f, ok := x.Float64()
		if !ok || math.IsNaN(f) || f <= 0 || f > maxDuration.Seconds() {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	return 0, false
}

func describe(t *ast.Term) string {
	if t == nil {
		return "nothing"
	}
	s := t.String()
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}

func optString(obj ast.Object, key *ast.Term) (string, error) {
	t := obj.Get(key)
	if t == nil {
		return "", nil
	}
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("%s: is %s, want a string", string(key.Value.(ast.String)), ast.ValueName(t.Value))
	}
	return string(s), nil
}

// failure is the fail-closed decision.
func failure(revision, detail string) Decision {
	return Decision{Action: ActionDeny, Reason: policyErrorReason, Revision: revision, PolicyError: true, Error: detail}
}
