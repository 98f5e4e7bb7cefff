// Package approvals holds calls that policy sends to a human (require_approval) until an
// approver decides. A pending approval is a row in a Store bound to the hash of the canonical
// request (caller sub, org, workspace, session, tool, canonical arguments, policy
// revision), so approving one request never authorises a different one. It is single
// use: Consume moves it from approved to used in one conditional UPDATE, so of any number
// of identical retries exactly one is forwarded. Approvals expire (policy ttl, default
// 15 minutes) whether they were decided or not.
//
// Who may decide: an approver must be in the requester's org (other orgs' approvals are
// reported as not found) and must not be the requester. When the decision's approvers
// list is non-empty the approver must match one entry ("role:NAME" = holds role NAME,
// "user:SUB" = is SUB, a bare "NAME" = role NAME), and the configured approver role alone
// does not suffice; when the list is empty the approver must hold the configured role
// (default "approver"). Deny requires a comment, which is what the agent is told.
//
// An identical request made while an approval is pending, approved or denied gets that
// approval back: a denial stands for the identical request until its expiry, so an agent
// cannot wear approvers down by repeating a denied call. Changing the arguments, the
// session or the policy revision makes a new request.
//
// Waiters are woken in memory (a channel per approval id), not by polling the database,
// and a sweeper expires overdue approvals and wakes their waiters. New pending approvals
// are announced to an optional webhook, signed with HMAC-SHA256.
//
// # Storage
//
// The Service holds the rules; a Store holds the rows, each of its methods one atomic
// step. OpenSQLite keeps one node's approvals in a file (mode 0600). OpenPostgres
// (approvals.database_url) is shared by replicas: each step is a conditional UPDATE
// or runs under a per-hash advisory lock, so the single use and the one pending
// approval per request hold across them, and every change out of pending is sent
// with NOTIFY. A Store that is shared (a Broadcaster) wakes this process's waiters
// on other processes' decisions, and every poll_interval one query re-reads the
// approvals this process's callers wait for, so a lost notification only delays a
// release. Both drivers pass
// one test suite (store_test.go).
package approvals
