-- Approvals. Times are Unix milliseconds (UTC). Caller claims are not stored.
CREATE TABLE IF NOT EXISTS approvals (
    id               TEXT PRIMARY KEY,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'used')),
    hash             TEXT NOT NULL,
    caller_sub       TEXT NOT NULL,
    caller_org       TEXT NOT NULL,
    caller_workspace TEXT NOT NULL,
    caller_session   TEXT NOT NULL,
    caller_roles     TEXT NOT NULL, -- JSON array
    tool             TEXT NOT NULL,
    surface          TEXT NOT NULL,
    arguments        TEXT NOT NULL, -- redacted JSON
    reason           TEXT NOT NULL,
    policy_revision  TEXT NOT NULL,
    approvers        TEXT NOT NULL, -- JSON array
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    decided_by       TEXT NOT NULL DEFAULT '',
    comment          TEXT NOT NULL DEFAULT '',
    decided_at       INTEGER,
    used_at          INTEGER
) STRICT;

CREATE INDEX IF NOT EXISTS approvals_by_hash ON approvals (hash, created_at);
CREATE INDEX IF NOT EXISTS approvals_by_org ON approvals (caller_org, status, created_at);
CREATE INDEX IF NOT EXISTS approvals_due ON approvals (status, expires_at);
-- At most one pending approval per request, whatever happens in the process above.
CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending ON approvals (hash) WHERE status = 'pending';
