// Package replay evaluates a candidate policy against the recorded audit trail: which
// past calls would be decided differently, by tool and by caller, with examples.
//
// Each recorded decision row is turned back into the policy input it was decided on
// (the caller's claims beyond sub, org, workspace, roles and session are not recorded,
// and arguments are recorded redacted). Both the live policy and the candidate decide
// that same rebuilt input, so what the rebuilding cannot restore affects both alike,
// and a change is a place where the two policies differ, never an artefact of replay.
//
// A secret's value is in the trail only as its HMAC ("hmac-sha256:..."). A rule that
// reads such a value sees the HMAC, not the secret, so replay cannot know what it would
// have decided. Replay finds those rows by deciding each one again with the redacted
// values replaced by probes (another HMAC, an empty string, values shaped like API keys):
// where the decision moves, it depends on a secret, and the row is counted and marked as
// such rather than guessed. A rule that compares a secret with one exact value is not
// caught this way; the report's notes say so.
package replay

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/redact"
	"github.com/portcullis/portcullis/policies"
)

// Source is the trail. *audit.Log and *audit.Reader implement it.
type Source interface {
	Query(ctx context.Context, f audit.Filter) (audit.Page, error)
}

// Decider is a policy. *policies.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in *policies.Input) policies.Decision
}

// Options select the rows and shape the report.
type Options struct {
	Since, Until time.Time
	Org          string // "" for every org (the CLI); the console passes the caller's
	// MaxRows bounds the rows replayed. Default 50000.
	MaxRows int
	// Examples is how many changed calls are kept, per transition. Default 5.
	Examples int
}

// Count is one group of changed calls.
type Count struct {
	Key     string `json:"key"`
	Changed int    `json:"changed"`
	Total   int    `json:"total"`
}

// Example is one call whose decision would change.
type Example struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Tool      string    `json:"tool"`
	Caller    string    `json:"caller"`
	Recorded  string    `json:"recorded"` // the decision label in the trail
	Live      string    `json:"live"`
	Candidate string    `json:"candidate"`
	Reason    string    `json:"candidate_reason"`
	// ReadsRedacted: the candidate's (or live policy's) decision for this call depends
	// on a redacted value, so the real decision is unknown.
	ReadsRedacted bool `json:"reads_redacted,omitempty"`
}

// Report is the result of Run.
type Report struct {
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Scanned  int       `json:"scanned"`  // decision rows read
	Replayed int       `json:"replayed"` // rows rebuilt and decided by both policies
	Skipped  int       `json:"skipped"`  // rows not decided by policy (refusals, admin reads)
	Changed  int       `json:"changed"`
	// ReadsRedacted counts replayed rows whose decision depends on a redacted value;
	// UncertainChanges those among the changed ones.
	ReadsRedacted    int       `json:"reads_redacted"`
	UncertainChanges int       `json:"uncertain_changes"`
	Truncated        bool      `json:"truncated,omitempty"`
	ByTool           []Count   `json:"by_tool"`
	ByCaller         []Count   `json:"by_caller"`
	Transitions      []Count   `json:"transitions"` // "allow -> deny"
	Examples         []Example `json:"examples"`
	Notes            []string  `json:"notes"`
}

// policyDecided are the decision labels of rows that a policy decision produced.
var policyDecided = map[string]bool{
	"allow": true, "deny": true, "policy_error": true, "rate_limited": true,
	"approval_required": true, "approval_requested": true, "approval_granted": true,
	"approval_denied": true, "approval_expired": true, "approval_used": true,
}

// Run replays the decision rows of src matching o through live and candidate. rebuild
// turns a row back into its policy input (false: not a policy-decided call).
func Run(ctx context.Context, src Source, rebuild func(*audit.Event) (policies.Input, bool), live, candidate Decider, o Options) (*Report, error) {
	if o.MaxRows <= 0 {
		o.MaxRows = 50000
	}
	if o.Examples <= 0 {
		o.Examples = 5
	}
	if o.Until.IsZero() {
		o.Until = time.Now().UTC()
	}
	rep := &Report{Since: o.Since, Until: o.Until, ByTool: []Count{}, ByCaller: []Count{}, Transitions: []Count{}, Examples: []Example{}}
	byTool, byCaller, trans := map[string]*Count{}, map[string]*Count{}, map[string]*Count{}
	perTransition := map[string]int{}
	f := audit.Filter{Since: o.Since, Until: o.Until, Org: o.Org, Kind: string(audit.KindDecision), Limit: 1000}
	for {
		page, err := src.Query(ctx, f)
		if err != nil {
			return nil, err
		}
		for i := range page.Events {
			ev := &page.Events[i]
			if rep.Scanned >= o.MaxRows {
				rep.Truncated = true
				break
			}
			rep.Scanned++
			if !policyDecided[string(ev.Decision)] || ev.Tool == "" || strings.HasPrefix(ev.Tool, "admin:") || strings.HasPrefix(ev.Tool, "console:") {
				rep.Skipped++
				continue
			}
			in, ok := rebuild(ev)
			if !ok {
				rep.Skipped++
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rep.Replayed++
			ld := live.Decide(ctx, &in)
			cd := candidate.Decide(ctx, &in)
			changed := policies.ShadowDiffers(ld, cd)
			secret := false
			if hasRedacted(in.Arguments) {
				for _, probe := range probes {
					alt := in
					alt.Arguments = perturb(in.Arguments, probe).(map[string]any)
					if policies.ShadowDiffers(cd, candidate.Decide(ctx, &alt)) || policies.ShadowDiffers(ld, live.Decide(ctx, &alt)) {
						secret = true
						break
					}
				}
			}
			if secret {
				rep.ReadsRedacted++
			}
			caller := ev.Caller.Sub
			if o.Org == "" {
				caller = ev.Caller.Org + "/" + ev.Caller.Sub
			}
			bump(byTool, ev.Tool, changed)
			bump(byCaller, caller, changed)
			if !changed {
				continue
			}
			rep.Changed++
			if secret {
				rep.UncertainChanges++
			}
			t := label(ld) + " -> " + label(cd)
			bump(trans, t, true)
			if perTransition[t] < o.Examples {
				perTransition[t]++
				rep.Examples = append(rep.Examples, Example{Seq: ev.Seq, Time: ev.Time, RequestID: ev.RequestID, Tool: ev.Tool,
					Caller: caller, Recorded: string(ev.Decision), Live: label(ld), Candidate: label(cd), Reason: cd.Reason, ReadsRedacted: secret})
			}
		}
		if rep.Truncated || page.NextCursor == "" {
			break
		}
		f.Cursor = page.NextCursor
	}
	rep.ByTool, rep.ByCaller, rep.Transitions = sorted(byTool), sorted(byCaller), sorted(trans)
	rep.Notes = append(rep.Notes,
		"Each call was rebuilt from its audit row; claims beyond sub, org, workspace, roles and session are not recorded, and both policies decided the same rebuilt input.")
	if rep.ReadsRedacted > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d replayed calls have a decision that depends on a redacted value (a secret recorded as its HMAC): a rule reads that value, so what it would decide on the real secret is unknown; %d of the changes are among them.", rep.ReadsRedacted, rep.UncertainChanges))
	}
	rep.Notes = append(rep.Notes, "Secrets are recorded as their HMAC: a rule that compares a secret with one exact value cannot be replayed, and is not detected.")
	if rep.Truncated {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Only the newest %d decision rows were replayed.", o.MaxRows))
	}
	return rep, nil
}

func label(d policies.Decision) string {
	if d.PolicyError {
		return "policy_error"
	}
	return string(d.Action)
}

func bump(m map[string]*Count, key string, changed bool) {
	c := m[key]
	if c == nil {
		c = &Count{Key: key}
		m[key] = c
	}
	c.Total++
	if changed {
		c.Changed++
	}
}

// sorted returns the groups with changes, most changes first.
func sorted(m map[string]*Count) []Count {
	out := make([]Count, 0, len(m))
	for _, c := range m {
		if c.Changed > 0 {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Changed != out[j].Changed {
			return out[i].Changed > out[j].Changed
		}
		return out[i].Key < out[j].Key
	})
	return out
}

var redactedMark = regexp.MustCompile(regexp.QuoteMeta(redact.Prefix) + `[0-9a-f]{16}`)

func hasRedacted(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, redact.Prefix)
	case map[string]any:
		for k, e := range x {
			if hasRedacted(k) || hasRedacted(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasRedacted(e) {
				return true
			}
		}
	}
	return false
}

// probes stand in for a secret's value: another HMAC, nothing, and values shaped like
// real secrets, so a rule that tests a secret's presence, prefix, length or form moves
// with them. A rule that compares a secret with one exact value is not found this way.
var probes = []string{"", "hmac-sha256:" + "0f1e2d3c4b5a6978", "sk-replay-probe-0123456789abcdefABCDEF", "ghp_0123456789abcdefghijABCDEFGHIJ012345", "0"}

// perturb returns v with every redacted mark replaced by probe: a string that is one
// mark becomes probe, and a mark inside a longer string is replaced in place.
func perturb(v any, probe string) any {
	switch x := v.(type) {
	case string:
		if len(x) == redactedLen && redactedMark.MatchString(x) {
			return probe
		}
		return redactedMark.ReplaceAllLiteralString(x, probe)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[perturb(k, probe).(string)] = perturb(e, probe)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = perturb(e, probe)
		}
		return out
	}
	return v
}

var redactedLen = len(redact.Prefix) + 16
