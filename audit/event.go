package audit

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

// Kind is what a row records: a decision, an outcome, an approval, an auth failure or
// a shadow policy's difference.
type Kind string

// Event kinds.
const (
	KindDecision    Kind = "decision"
	KindOutcome     Kind = "outcome"
	KindApproval    Kind = "approval"
	KindAuthFailure Kind = "auth_failure"
	KindShadow      Kind = "shadow"
)

// Kinds are the values of a row's kind column; filters accept only these.
var Kinds = []string{string(KindDecision), string(KindOutcome), string(KindApproval), string(KindAuthFailure), string(KindShadow)}

// Decision is the value of a row's decision column: what the gateway did with the call.
type Decision string

// The decisions the gateway writes (proxy: decisionLabel and the refusal codes settle
// records, recordOutcome, the auth failure and approver rows, and ShadowDecision).
const (
	DecisionAllow                  Decision = "allow"
	DecisionDeny                   Decision = "deny"
	DecisionRateLimited            Decision = "rate_limited"
	DecisionPolicyError            Decision = "policy_error"
	DecisionResourceError          Decision = "resource_error"
	DecisionApprovalRequired       Decision = "approval_required"
	DecisionApprovalRequested      Decision = "approval_requested"
	DecisionApprovalGranted        Decision = "approval_granted"
	DecisionApprovalDenied         Decision = "approval_denied"
	DecisionApprovalExpired        Decision = "approval_expired"
	DecisionApprovalUsed           Decision = "approval_used"
	DecisionApprovalsUnavailable   Decision = "approvals_unavailable"
	DecisionRateLimiterUnavailable Decision = "rate_limiter_unavailable"
	DecisionInvalidArguments       Decision = "invalid_arguments"
	DecisionBatchRefused           Decision = "batch_refused"
	DecisionRejected               Decision = "rejected"
	DecisionPass                   Decision = "pass"
	DecisionOutcome                Decision = "outcome"
	DecisionAuthFailed             Decision = "auth_failed"
)

// ShadowDecision is the decision of a shadow row: the candidate policy's action.
func ShadowDecision(action string) Decision { return Decision("shadow_" + action) }

// Decisions are every value of the decision column. Filters accept only these, so a
// misspelt filter is an error rather than an empty answer.
var Decisions = func() []string {
	out := []string{}
	for _, d := range []Decision{DecisionAllow, DecisionDeny, DecisionRateLimited, DecisionPolicyError, DecisionResourceError,
		DecisionApprovalRequired, DecisionApprovalRequested, DecisionApprovalGranted, DecisionApprovalDenied, DecisionApprovalExpired,
		DecisionApprovalUsed, DecisionApprovalsUnavailable, DecisionRateLimiterUnavailable, DecisionInvalidArguments,
		DecisionBatchRefused, DecisionRejected, DecisionPass, DecisionOutcome, DecisionAuthFailed,
		ShadowDecision("allow"), ShadowDecision("deny"), ShadowDecision("rate_limit"), ShadowDecision("require_approval")} {
		out = append(out, string(d))
	}
	return out
}()

// Caller is who made the request, as far as it is known (an auth failure may know
// only the client address): the principal and the address it called from. The
// principal's claims are not stored.
type Caller struct {
	principal.Caller
	ClientAddr string `json:"client_addr"`
}

// Event is one audit row. Seq, PrevHash and Hash are assigned by the log; callers
// fill the rest. Arguments must already be redacted (Redactor.Value) and valid JSON.
type Event struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       Kind      `json:"kind"`
	RequestID  string    `json:"request_id"`
	DecisionID string    `json:"decision_id"`
	Caller     Caller    `json:"caller"`

	Surface string `json:"surface"`
	Tool    string `json:"tool"`
	Method  string `json:"method"`
	Path    string `json:"path"`

	Arguments json.RawMessage `json:"arguments,omitempty"`

	Decision       Decision `json:"decision"`
	Reason         string   `json:"reason"`
	PolicyRevision string   `json:"policy_revision"`
	ApprovalID     string   `json:"approval_id,omitempty"`
	Approver       string   `json:"approver,omitempty"`

	Status        int    `json:"status,omitempty"`
	ErrorClass    string `json:"error_class,omitempty"`
	LatencyMicros int64  `json:"latency_us,omitempty"`

	// PrevHash and Hash (hex) are filled when rows are read back.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
	// LogID names the replica's log a row belongs to; filled by the central store
	// (audit.central_url), where rows of several logs meet. Not hashed: the chain and
	// its checkpoints already belong to one log.
	LogID string `json:"log_id,omitempty"`
}

// row is an event exactly as stored: the hash covers these bytes, so roles and
// arguments are kept as their stored text rather than re-encoded.
type row struct {
	Seq            int64  `json:"seq"`
	TS             int64  `json:"ts"`
	Kind           string `json:"kind"`
	RequestID      string `json:"request_id"`
	DecisionID     string `json:"decision_id"`
	Sub            string `json:"caller_sub"`
	Org            string `json:"caller_org"`
	Workspace      string `json:"caller_workspace"`
	Roles          string `json:"caller_roles"`
	Session        string `json:"caller_session"`
	ClientAddr     string `json:"client_addr"`
	Surface        string `json:"surface"`
	Tool           string `json:"tool"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	Args           string `json:"args"`
	Decision       string `json:"decision"`
	Reason         string `json:"reason"`
	PolicyRevision string `json:"policy_revision"`
	ApprovalID     string `json:"approval_id"`
	Approver       string `json:"approver"`
	Status         int64  `json:"status"`
	ErrorClass     string `json:"error_class"`
	LatencyMicros  int64  `json:"latency_us"`
	PrevHash       []byte `json:"prev_hash"`
	Hash           []byte `json:"hash"`
}

// rowColumns lists the stored columns in canonical order; SELECTs and the INSERT
// use it so that scan order and hash order cannot drift apart.
const rowColumns = "seq, ts, kind, request_id, decision_id, caller_sub, caller_org, " +
	"caller_workspace, caller_roles, caller_session, client_addr, surface, tool, method, " +
	"path, args, decision, reason, policy_revision, approval_id, approver, status, " +
	"error_class, latency_us, prev_hash, hash"

func (r *row) scanDest() []any {
	return []any{&r.Seq, &r.TS, &r.Kind, &r.RequestID, &r.DecisionID, &r.Sub, &r.Org,
		&r.Workspace, &r.Roles, &r.Session, &r.ClientAddr, &r.Surface, &r.Tool, &r.Method,
		&r.Path, &r.Args, &r.Decision, &r.Reason, &r.PolicyRevision, &r.ApprovalID,
		&r.Approver, &r.Status, &r.ErrorClass, &r.LatencyMicros, &r.PrevHash, &r.Hash}
}

func (r *row) insertArgs(dst []any) []any {
	return append(dst, r.Seq, r.TS, r.Kind, r.RequestID, r.DecisionID, r.Sub, r.Org,
		r.Workspace, r.Roles, r.Session, r.ClientAddr, r.Surface, r.Tool, r.Method,
		r.Path, r.Args, r.Decision, r.Reason, r.PolicyRevision, r.ApprovalID,
		r.Approver, r.Status, r.ErrorClass, r.LatencyMicros, r.PrevHash, r.Hash)
}

// fromEvent fills r from ev (without seq and hashes).
func (r *row) fromEvent(ev *Event) {
	r.TS = ev.Time.UnixNano()
	r.Kind = string(ev.Kind)
	r.RequestID = ev.RequestID
	r.DecisionID = ev.DecisionID
	r.Sub = ev.Caller.Sub
	r.Org = ev.Caller.Org
	r.Workspace = ev.Caller.Workspace
	r.Roles = encodeRoles(ev.Caller.Roles)
	r.Session = ev.Caller.Session
	r.ClientAddr = ev.Caller.ClientAddr
	r.Surface = ev.Surface
	r.Tool = ev.Tool
	r.Method = ev.Method
	r.Path = ev.Path
	r.Args = string(ev.Arguments)
	r.Decision = string(ev.Decision)
	r.Reason = ev.Reason
	r.PolicyRevision = ev.PolicyRevision
	r.ApprovalID = ev.ApprovalID
	r.Approver = ev.Approver
	r.Status = int64(ev.Status)
	r.ErrorClass = ev.ErrorClass
	r.LatencyMicros = ev.LatencyMicros
}

// event converts a stored row back into an Event.
func (r *row) event() Event {
	ev := Event{
		Seq: r.Seq, Time: time.Unix(0, r.TS).UTC(), Kind: Kind(r.Kind),
		RequestID: r.RequestID, DecisionID: r.DecisionID,
		Caller: Caller{Caller: principal.Caller{Sub: r.Sub, Org: r.Org, Workspace: r.Workspace, Session: r.Session},
			ClientAddr: r.ClientAddr},
		Surface: r.Surface, Tool: r.Tool, Method: r.Method, Path: r.Path,
		Decision: Decision(r.Decision), Reason: r.Reason, PolicyRevision: r.PolicyRevision,
		ApprovalID: r.ApprovalID, Approver: r.Approver, Status: int(r.Status),
		ErrorClass: r.ErrorClass, LatencyMicros: r.LatencyMicros,
		PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash),
	}
	if r.Roles != "" {
		// Stored by encodeRoles; a tampered value is Verify's business, not ours.
		_ = json.Unmarshal([]byte(r.Roles), &ev.Caller.Roles)
	}
	if r.Args != "" && json.Valid([]byte(r.Args)) {
		ev.Arguments = json.RawMessage(r.Args)
	}
	return ev
}

func encodeRoles(roles []string) string {
	if len(roles) == 0 {
		return "[]"
	}
	b, err := json.Marshal(roles)
	if err != nil { // cannot happen for []string
		return "[]"
	}
	return string(b)
}
