-- The caps: live sessions per person (sub and org), and OIDC sign-ins in flight per
-- client address (ratelimit.AddrKey: an IPv4 address, or an IPv6 /64). Sign-ins started
-- before this migration count under no address.
ALTER TABLE console_logins ADD COLUMN addr TEXT NOT NULL DEFAULT '';

CREATE INDEX console_logins_by_addr ON console_logins (addr, expires_at);
CREATE INDEX console_sessions_by_subject ON console_sessions (caller_org, caller_sub, last_seen);
