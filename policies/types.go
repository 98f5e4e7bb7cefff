package policies

import (
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

// Action is what a decision tells the proxy to do with the call.
type Action string

// Actions a policy may return.
const (
	ActionAllow           Action = "allow"
	ActionDeny            Action = "deny"
	ActionRateLimit       Action = "rate_limit"
	ActionRequireApproval Action = "require_approval"
)

// ToolInfo describes the tool being called (from the route table or tool catalog).
type ToolInfo struct {
	Category    string         `json:"category"` // read | write | destructive | other
	Risk        string         `json:"risk"`     // low | medium | high
	Annotations map[string]any `json:"annotations,omitempty"`
}

// HTTPInfo is the request line as the proxy received it.
type HTTPInfo struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Input is the policy input document (input.* in Rego). Arguments must already be
// redacted: secret values never reach policy.
type Input struct {
	Surface   string           `json:"surface"` // "mcp" | "rest"
	Tool      string           `json:"tool"`
	Arguments map[string]any   `json:"arguments"`
	HTTP      HTTPInfo         `json:"http"`
	Caller    principal.Caller `json:"caller"`
	ToolInfo  ToolInfo         `json:"tool_info"`
	Upstream  string           `json:"upstream"`
	// Mode is "call" for a real call and "list" when the proxy asks whether a tool should
	// be shown in tools/list (arguments are then empty). A policy that denies in list
	// mode hides the tool.
	Mode string `json:"mode"`
	// Resource is what the proxy read about the resource the call acts on (input.resource),
	// for tools configured to need it: {"type", "ref", "found", ...the upstream's fields}.
	// Nil (absent in policy) when the call was not resolved: the tool is not configured,
	// no reference was given, or in list mode.
	Resource map[string]any `json:"resource,omitempty"`
}

// RateLimit is the rate_limit block of a decision.
type RateLimit struct {
	Max    int           `json:"max"`
	Window time.Duration `json:"window"`
	// WindowAsWritten is the window as the policy wrote it: "60s", or "60" for a
	// number of seconds. Tools show it; enforcement uses Window.
	WindowAsWritten string `json:"-"`
	Key             string `json:"key,omitempty"` // empty: caller.org + caller.sub + tool
	RefundOnError   bool   `json:"refund_on_error,omitempty"`
}

// Approval is the approval block of a decision.
type Approval struct {
	Approvers []string      `json:"approvers"` // e.g. "role:security"
	TTL       time.Duration `json:"ttl"`
	// TTLAsWritten is the ttl as the policy wrote it ("15m", or "900" for seconds).
	TTLAsWritten string `json:"-"`
}

// Decision is what the engine returns for one input. Decisions may be served from the
// engine's cache and shared between calls: treat RateLimit and Approval as read-only.
// It is never nil-valued in meaning:
// on any failure Action is deny and PolicyError is set.
type Decision struct {
	Action    Action     `json:"action"`
	Reason    string     `json:"reason"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	Approval  *Approval  `json:"approval,omitempty"`
	// Revision is the content hash of the policy set that produced the decision.
	Revision string `json:"revision"`
	// PolicyError is set when the decision is a deny because evaluation failed
	// (undefined, error, timeout, panic, malformed result). Error holds the cause for logs
	// and audit; it is never shown to callers.
	PolicyError bool   `json:"policy_error,omitempty"`
	Error       string `json:"error,omitempty"`
}
