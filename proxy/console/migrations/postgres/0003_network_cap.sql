-- The cap on OIDC sign-ins in flight per client network (ratelimit.PrefixKey: an IPv4
-- /24, an IPv6 /48), counted beside the one per address. Sign-ins started before this
-- migration count under the empty network; they expire within minutes.
ALTER TABLE console_logins ADD COLUMN network TEXT NOT NULL DEFAULT '';

CREATE INDEX console_logins_by_network ON console_logins (network, expires_at);
