package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// CopyOptions are Copy's checks beyond an approval's own consistency.
type CopyOptions struct {
	// MaxTTL, when set, is the longest an approval may live (approvals.max_ttl).
	MaxTTL time.Duration
	// Vouch, when set, is asked about every approval; an error refuses the copy.
	// migrate checks decided approvals against the verified audit trail with it.
	Vouch func(*Approval) error
	// RetireLive stores pending and approved approvals (those that could still
	// release a call) as expired. Nothing ties an approval's request hash to what its
	// approver saw but the row itself, so one edited in the file (the hash of another
	// request, a used approval made approved again) could release a call nobody
	// approved; in-flight requests are asked for again instead.
	RetireLive bool
}

// consistent says what is wrong with a on its own terms (the rules the service keeps
// when it writes approvals), or "".
func consistent(a *Approval, maxTTL time.Duration) string {
	switch a.Status {
	case StatusPending, StatusApproved, StatusDenied, StatusExpired, StatusUsed:
	default:
		return fmt.Sprintf("unknown status %q", a.Status)
	}
	if a.Hash == "" || !a.ExpiresAt.After(a.CreatedAt) {
		return "no request hash, or it expires before it was created"
	}
	if maxTTL > 0 && a.ExpiresAt.Sub(a.CreatedAt) > maxTTL {
		return fmt.Sprintf("lives %s, longer than approvals.max_ttl (%s)", a.ExpiresAt.Sub(a.CreatedAt).Round(time.Second), maxTTL)
	}
	decided := a.Status == StatusApproved || a.Status == StatusDenied || a.Status == StatusUsed
	switch {
	case decided && (a.DecidedBy == "" || a.DecidedAt == nil):
		return fmt.Sprintf("%s, but no decider or decision time", a.Status)
	case decided && a.DecidedBy == a.Caller.Sub:
		return fmt.Sprintf("decided by its own requester %s", a.DecidedBy)
	case decided && a.DecidedAt.Before(a.CreatedAt):
		return "decided before it was requested"
	case a.Status == StatusUsed && a.UsedAt == nil:
		return "used, but no time of use"
	case a.Status == StatusPending && (a.DecidedBy != "" || a.DecidedAt != nil || a.UsedAt != nil):
		return "pending, but it carries a decision"
	}
	return ""
}

// CopyReport counts, by status, the approvals Copy stored and those the target
// already held with the same contents.
type CopyReport struct {
	Copied  map[Status]int
	Present map[Status]int
	Retired int // pending or approved approvals stored expired (CopyOptions.RetireLive)
}

// sqlBacked is a Store on one of this package's SQL drivers (SQLite or PostgreSQL).
type sqlBacked interface{ base() *sqlStore }

func (s *sqlStore) base() *sqlStore { return s }

// maxCopyProblems bounds the differing approvals one Copy error names.
const maxCopyProblems = 20

// Copy stores every approval of src in dst as it is (status, decider, comment, times,
// hash, expiry: every column), oldest first, in one transaction of dst: `portcullis
// migrate` moves a single node's approvals.db into PostgreSQL with it. An approval dst
// already holds with the same contents counts as present, so a second Copy copies
// nothing. One dst holds with other contents (or a pending approval there for the same
// request under another id) is an error naming the id; then nothing is copied and
// nothing in dst changes. Both stores must come from OpenSQLite or OpenPostgres.
//
// Before anything is stored, every approval must hold together (see consistent) and,
// when opts.Vouch is set, be vouched for: an approvals.db is a file anyone who can write
// the data dir can edit, and an approval copied into the fleet's store releases calls
// on every replica.
func Copy(ctx context.Context, dst, src Store, opts CopyOptions) (CopyReport, error) {
	rep := CopyReport{Copied: map[Status]int{}, Present: map[Status]int{}}
	d, ok1 := dst.(sqlBacked)
	s, ok2 := src.(sqlBacked)
	if !ok1 || !ok2 {
		return rep, errors.New("approvals: copy: both stores must be SQLite or PostgreSQL stores")
	}
	from, to := s.base(), d.base()
	// Oldest first, so the target's insertion order (its tie-break between approvals of
	// one millisecond) is the source's.
	rows, err := from.db.QueryContext(ctx, from.q("SELECT "+columns+" FROM approvals ORDER BY "+strings.ReplaceAll(from.newest, "DESC", "ASC")))
	if err != nil {
		return rep, fmt.Errorf("approvals: copy: reading the source: %w", err)
	}
	defer rows.Close()
	tx, err := to.db.BeginTx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("approvals: copy: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	insert := to.q(`INSERT INTO approvals (` + columns + `) VALUES (?` + strings.Repeat(", ?", 19) + `) ON CONFLICT DO NOTHING`)
	var problems []string
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return rep, fmt.Errorf("approvals: copy: reading the source: %w", err)
		}
		if why := consistent(a, opts.MaxTTL); why != "" {
			problems = append(problems, fmt.Sprintf("approval %s: %s", a.ID, why))
			continue
		}
		if opts.Vouch != nil {
			if err := opts.Vouch(a); err != nil {
				problems = append(problems, fmt.Sprintf("approval %s: %v", a.ID, err))
				continue
			}
		}
		retired := false
		if opts.RetireLive && (a.Status == StatusPending || a.Status == StatusApproved) {
			a.Status, retired = StatusExpired, true
		}
		args, err := approvalArgs(a)
		if err != nil {
			return rep, err
		}
		res, err := tx.ExecContext(ctx, insert, args...)
		if err != nil {
			return rep, fmt.Errorf("approvals: copy: approval %s: %w", a.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if retired {
				rep.Retired++
			}
			rep.Copied[a.Status]++
			continue
		}
		// Already there (a second run), or in the way of the one-pending-per-request rule.
		have, err := scanApproval(tx.QueryRowContext(ctx, to.q("SELECT "+columns+" FROM approvals WHERE id = ?"), a.ID))
		switch {
		case err == nil && sameApproval(have, a):
			rep.Present[a.Status]++
		case err == nil:
			problems = append(problems, fmt.Sprintf("approval %s: the target holds it with other contents (status %s there, %s here)", a.ID, have.Status, a.Status))
		default:
			other, ferr := scanApproval(tx.QueryRowContext(ctx, to.q("SELECT "+columns+" FROM approvals WHERE hash = ? AND status = 'pending'"), a.Hash))
			if ferr != nil {
				return rep, fmt.Errorf("approvals: copy: approval %s: not stored, and the target holds no approval with its id: %w", a.ID, errors.Join(err, ferr))
			}
			problems = append(problems, fmt.Sprintf("approval %s: the target holds another pending approval (%s) for the same request", a.ID, other.ID))
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("approvals: copy: reading the source: %w", err)
	}
	if len(problems) > 0 {
		n := len(problems)
		if n > maxCopyProblems {
			problems = append(problems[:maxCopyProblems], fmt.Sprintf("and %d more", n-maxCopyProblems))
		}
		return CopyReport{Copied: map[Status]int{}, Present: map[Status]int{}},
			fmt.Errorf("approvals: copy: %d approvals refused; nothing was copied or overwritten: %s", n, strings.Join(problems, "; "))
	}
	if err := tx.Commit(); err != nil {
		return CopyReport{Copied: map[Status]int{}, Present: map[Status]int{}}, fmt.Errorf("approvals: copy: committing: %w", err)
	}
	return rep, nil
}

// approvalArgs are a's values in the order of columns.
func approvalArgs(a *Approval) ([]any, error) {
	roles, err := json.Marshal(a.Caller.Roles)
	if err != nil {
		return nil, fmt.Errorf("approvals: copy: approval %s: encoding caller roles: %w", a.ID, err)
	}
	approvers, err := json.Marshal(a.Approvers)
	if err != nil {
		return nil, fmt.Errorf("approvals: copy: approval %s: encoding approvers: %w", a.ID, err)
	}
	var decidedAt, usedAt any
	if a.DecidedAt != nil {
		decidedAt = a.DecidedAt.UnixMilli()
	}
	if a.UsedAt != nil {
		usedAt = a.UsedAt.UnixMilli()
	}
	return []any{a.ID, string(a.Status), a.Hash, a.Caller.Sub, a.Caller.Org, a.Caller.Workspace, a.Caller.Session, string(roles),
		a.Tool, a.Surface, string(a.Arguments), a.Reason, a.PolicyRevision, string(approvers), a.CreatedAt.UnixMilli(), a.ExpiresAt.UnixMilli(),
		a.DecidedBy, a.Comment, decidedAt, usedAt}, nil
}

// sameApproval compares every stored field of a and b.
func sameApproval(a, b *Approval) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
