package approvals

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policies/principal"
)

// Status is where an approval is in its life.
type Status string

// Statuses. pending -> approved -> used, pending -> denied, pending|approved -> expired.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired"
	StatusUsed     Status = "used"
)

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusUsed:
		return true
	}
	return false
}

// Errors of Approve and Deny. The admin API maps them to 403, 403, 404, 409, 410 and 400.
var (
	ErrSelfApproval   = errors.New("approvals: the requester cannot decide their own request")
	ErrNotApprover    = errors.New("approvals: caller is not an approver for this request")
	ErrNotFound       = errors.New("approvals: no such approval")
	ErrNotPending     = errors.New("approvals: approval is no longer pending")
	ErrExpired        = errors.New("approvals: approval has expired")
	ErrInvalidComment = errors.New("approvals: invalid comment")
	// ErrFleetKeyMismatch is Request's and Consume's refusal while the redaction key id
	// recorded for the fleet on the shared store is not this replica's: under another
	// key a call carrying a secret hashes differently, so this replica must not file or
	// release calls under hashes the others would not compute.
	ErrFleetKeyMismatch = errors.New("approvals: this replica's audit HMAC key id is not the one recorded for the fleet")
)

// Approval is one request for approval and its outcome.
type Approval struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Hash is CanonicalHash of the request this approval authorises.
	Hash string `json:"hash"`
	// Caller is the requester (sub, org, workspace, roles, session; claims are not kept).
	Caller  principal.Caller `json:"caller"`
	Tool    string           `json:"tool"`
	Surface string           `json:"surface"`
	// Arguments are the redacted arguments, as the proxy gave them.
	Arguments      json.RawMessage `json:"arguments"`
	Reason         string          `json:"reason"`
	PolicyRevision string          `json:"policy_revision"`
	// Approvers is the policy's approvers list ("role:security", "user:alice"); empty
	// means holders of the configured approver role.
	Approvers []string   `json:"approvers"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	DecidedBy string     `json:"decided_by,omitempty"`
	Comment   string     `json:"comment,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
}

// Request is what the proxy files for a require_approval decision.
type Request struct {
	Caller         principal.Caller
	Tool, Surface  string
	Arguments      json.RawMessage // redacted
	Hash           string          // CanonicalHash of the request
	Reason         string
	PolicyRevision string
	Approvers      []string
	TTL            time.Duration // 0: Config.DefaultTTL; capped at Config.MaxTTL
}

// ListFilter selects approvals for List.
type ListFilter struct {
	// Status selects one status; "" or "all" selects every status.
	Status Status
	// Org scopes the list to the requester's org. Always applied ("" is an org too).
	Org string
	// Limit caps the rows (newest first). Default 100, at most 1000.
	Limit int
}

// canDecide reports whether approver may approve or deny a (ignoring state): same org,
// not the requester, and matching the approvers list (or holding role when it is empty).
func canDecide(a *Approval, approver *principal.Caller, role string) error {
	if approver == nil || approver.Org != a.Caller.Org {
		return ErrNotFound
	}
	if approver.Sub == "" {
		return ErrNotApprover
	}
	if approver.Sub == a.Caller.Sub {
		return ErrSelfApproval
	}
	if !eligible(a, approver, role) {
		return ErrNotApprover
	}
	return nil
}

func eligible(a *Approval, c *principal.Caller, role string) bool {
	if len(a.Approvers) == 0 {
		return c.HasRole(role)
	}
	for _, entry := range a.Approvers {
		kind, name, ok := strings.Cut(entry, ":")
		if !ok {
			kind, name = "role", entry
		}
		switch {
		case name == "":
		case kind == "role" && c.HasRole(name):
			return true
		case kind == "user" && c.Sub == name:
			return true
		}
	}
	return false
}

// Visible reports whether caller may see a: same org, and the requester, a holder of the
// approver role, or someone the approval names. The admin API and the console use it.
func (s *Service) Visible(a *Approval, caller *principal.Caller) bool {
	if caller == nil || a.Caller.Org != caller.Org {
		return false
	}
	requester := a.Caller.Sub == caller.Sub
	return requester || caller.HasRole(s.cfg.ApproverRole) || eligible(a, caller, s.cfg.ApproverRole)
}

// MayDecide reports whether caller may approve or deny a, state aside: nil, or the
// reason not (ErrNotFound for another org, ErrSelfApproval, ErrNotApprover).
func (s *Service) MayDecide(a *Approval, caller *principal.Caller) error {
	return canDecide(a, caller, s.cfg.ApproverRole)
}

// WaitBudget is how long a caller is held open waiting for a decision
// (approvals.wait_budget).
func (s *Service) WaitBudget() time.Duration { return s.cfg.WaitBudget }

// ApproverRole is the role that decides approvals whose policy names no approvers.
func (s *Service) ApproverRole() string { return s.cfg.ApproverRole }
