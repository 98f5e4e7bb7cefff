-- Console sessions and OIDC sign-ins in flight, shared by replicas. Times are Unix
-- milliseconds (UTC). A session is filed under the SHA-256 of its cookie's value and a
-- sign-in under the SHA-256 of its state: neither table holds a value that signs anyone
-- in. Of the caller, only sub, org, workspace, roles and session are kept.
CREATE TABLE console_sessions (
    key              BYTEA PRIMARY KEY CHECK (length(key) = 32),
    csrf             TEXT NOT NULL,
    caller_sub       TEXT NOT NULL,
    caller_org       TEXT NOT NULL,
    caller_workspace TEXT NOT NULL,
    caller_roles     TEXT NOT NULL, -- JSON array
    caller_session   TEXT NOT NULL,
    method           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);

CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

CREATE TABLE console_logins (
    key        BYTEA PRIMARY KEY CHECK (length(key) = 32),
    verifier   TEXT NOT NULL,  -- the PKCE verifier: useless without the provider's code
    nonce      TEXT NOT NULL,
    binding    BYTEA NOT NULL, -- SHA-256 of the browser's login cookie
    return_to  TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX console_logins_by_expiry ON console_logins (expires_at);
