// Package ssrf makes outbound connectivity checks to user-supplied addresses safe:
// only http/https (or plain TCP for database-style providers), only public unicast
// addresses, checked on the resolved IP at dial time (so DNS rebinding and names that
// resolve to loopback are caught), no redirects, no environment proxy, short timeouts.
package ssrf
