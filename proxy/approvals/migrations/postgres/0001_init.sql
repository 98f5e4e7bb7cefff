-- Approvals. Times are Unix milliseconds (UTC). Caller claims are not stored.
-- seq orders approvals created in the same millisecond, as rowid does on SQLite.
CREATE TABLE approvals (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY,
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
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    decided_by       TEXT NOT NULL DEFAULT '',
    comment          TEXT NOT NULL DEFAULT '',
    decided_at       BIGINT,
    used_at          BIGINT
);

CREATE INDEX approvals_by_hash ON approvals (hash, created_at);
CREATE INDEX approvals_by_org ON approvals (caller_org, status, created_at);
CREATE INDEX approvals_due ON approvals (status, expires_at);
-- At most one pending approval per request, whatever happens in the replicas above.
CREATE UNIQUE INDEX approvals_one_pending ON approvals (hash) WHERE status = 'pending';
