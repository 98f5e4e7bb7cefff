-- What the replicas sharing these approvals must agree on, each by a one-way id (never
-- the secret): the first replica to start records it, a replica with another refuses to
-- start. name 'audit_hmac' is the audit redaction key, under which arguments are hashed.
-- Rotating that key: stop every replica, DELETE the row, start them all with the new key.
CREATE TABLE approvals_fleet_keys (
    name          TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL,
    registered_at BIGINT NOT NULL -- Unix milliseconds
);
