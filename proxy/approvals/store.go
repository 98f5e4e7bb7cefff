package approvals

import (
	"context"
	"time"
)

// Store is where approvals live: the seam between the service's rules (who may
// decide, whom a change wakes, the webhook and the audit hook) and a database.
// Each method is one atomic step, and a driver keeps it atomic across every
// process that shares the database. SQLite (OpenSQLite) keeps one node's
// approvals; PostgreSQL (OpenPostgres) is shared by replicas.
type Store interface {
	// Get returns approval id as stored (ErrNotFound when there is none); it does
	// not expire it.
	Get(ctx context.Context, id string) (*Approval, error)
	// Find returns the newest approval for hash that is pending, approved or denied
	// and expires after now, or nil.
	Find(ctx context.Context, hash string, now time.Time) (*Approval, error)
	// Create, atomically for a.Hash: expires that hash's overdue pending and
	// approved approvals (returning their ids), then returns the approval Find
	// would, or, when there is none, stores a (pending) and returns nil. Concurrent
	// Creates of one hash store at most one approval.
	Create(ctx context.Context, a *Approval, now time.Time) (existing *Approval, expired []string, err error)
	// Expire marks approval id expired if its status is still from, and reports
	// whether it did.
	Expire(ctx context.Context, id string, from Status) (bool, error)
	// ExpireDue marks every pending or approved approval that expires at or before
	// now expired and returns their ids.
	ExpireDue(ctx context.Context, now time.Time) ([]string, error)
	// Decide records to (approved or denied), by and comment on approval id if it is
	// still pending, and reports whether it was.
	Decide(ctx context.Context, id string, to Status, by, comment string, at time.Time) (bool, error)
	// Consume moves the newest approved approval for hash that expires after now to
	// used and returns it, or returns nil. Of any number of concurrent calls, on any
	// process, exactly one gets a given approval.
	Consume(ctx context.Context, hash string, now time.Time) (*Approval, error)
	// Release moves approval id from used back to approved if it expires after now,
	// and reports whether it did.
	Release(ctx context.Context, id string, now time.Time) (bool, error)
	// List returns approvals of org (with status, unless it is ""), newest first, at
	// most limit.
	List(ctx context.Context, org string, status Status, limit int) ([]Approval, error)
	// NotPending returns those of ids whose approval is no longer pending.
	NotPending(ctx context.Context, ids []string) ([]string, error)
	// Close releases the database.
	Close() error
}

// Broadcaster is a Store that several processes share. Watch calls wake with the id
// of each approval that left pending (decided or expired) in any process, until
// ctx ends or the subscription fails. Delivery is best effort: the service also
// polls waiting approvals, so a lost message only delays a release.
type Broadcaster interface {
	Watch(ctx context.Context, wake func(id string)) error
}
