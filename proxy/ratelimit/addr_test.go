package ratelimit

import (
	"net"
	"testing"
)

// Addresses of one IPv4 /24 or one IPv6 /48 are one network for the per-network caps.
func TestPrefixKeyIsTheIPv4Slash24OrTheIPv6Slash48(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.0/24"},
		{"192.0.2.255", "192.0.2.0/24"},
		{"::ffff:192.0.2.7", "192.0.2.0/24"},
		{"192.0.3.7", "192.0.3.0/24"},
		{"127.0.1.200", "127.0.1.0/24"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1::/48"},
		{"2001:db8:1:ff00::1", "2001:db8:1::/48"},
		{"2001:db8:2::1", "2001:db8:2::/48"},
		{"::1", "::1"},
	} {
		if got := PrefixKey(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("%s: keyed as %q, want %q", tc.ip, got, tc.want)
		}
	}
}
