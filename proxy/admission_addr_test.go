package proxy

import (
	"net"
	"testing"
)

// Clients in one IPv6 /64 share a key for the pre-auth limit and auth failure rows, so a
// host holding a /64 cannot spread a flood over more budgets or rows than one address; IPv4 addresses (and
// the loopback) are keyed as they are.
func TestOneIPv6PrefixIsOneClientBeforeAuthentication(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::1", "::1"},
	} {
		if got := addrKey(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("%s: keyed as %q, want %q", tc.ip, got, tc.want)
		}
	}
}
