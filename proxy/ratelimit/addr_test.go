package ratelimit

import (
	"net"
	"testing"
)

// Addresses of one IPv4 /24 or one IPv6 /48 are one network for the per-network caps,
// and so are the IPv6 forms that carry an IPv4 address of that /24.
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
		// 6to4 and Teredo carry an IPv4 address: its /24, not a /48 each.
		{"2002:c000:0207::1", "192.0.2.0/24"},
		{"2002:c000:02fe:1::1", "192.0.2.0/24"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdf8", "192.0.2.0/24"}, // Teredo client 192.0.2.7
	} {
		if got := PrefixKey(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("%s: keyed as %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// A 6to4 or Teredo host holds a whole /48 of /64s: per address, it is its IPv4 address.
func TestAddrKeyOfAnIPv6FormCarryingIPv4IsThatAddress(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2002:c000:0207:1::1", "192.0.2.7"},
		{"2002:c000:0207:ffff::1", "192.0.2.7"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdf8", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"::1", "::1"},
	} {
		if got := AddrKey(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("%s: keyed as %q, want %q", tc.ip, got, tc.want)
		}
	}
}
