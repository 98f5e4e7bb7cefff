package ratelimit

import "net"

// AddrKey is the key of a client address for what is counted per address before
// authentication (the proxy's pre-auth limit and auth failure rows, the console's
// sign-ins): an IPv4 address (or the loopback) as it is, an IPv6 address as its /64,
// since one host commonly holds a whole /64 and could otherwise spread a flood over as
// many keys as it likes.
//
// An IPv6 form that carries an IPv4 address (6to4, Teredo) is keyed by that address:
// its holder has a whole /48 of such /64s.
func AddrKey(ip net.IP) string {
	if v4 := embeddedIPv4(ip); v4 != nil {
		return v4.String()
	}
	if ip.IsLoopback() {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// PrefixKey is the key of the network a client address is in, for what is counted per
// network as well as per address (the console's sign-ins in flight): an IPv4 address as
// its /24, an IPv6 address as its /48 (the IPv6 loopback as it is). One party commonly
// holds a whole IPv4 /24 or IPv6 /48, so a cap per network bounds what a flood from
// many addresses of one network can take.
//
// IPv6 forms that carry an IPv4 address are keyed by that address's /24, so one IPv4
// network cannot become many /48s: 6to4 (2002:V4ADDR::/48, one /48 per IPv4 address)
// and Teredo (2001:0::/32, the client's address XOR-ed into the last 32 bits).
func PrefixKey(ip net.IP) string {
	if v4 := embeddedIPv4(ip); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String() + "/24"
	}
	if ip.IsLoopback() {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String() + "/48"
}

// embeddedIPv4 is the IPv4 address ip is, or carries (IPv4-mapped, 6to4, Teredo), or nil.
func embeddedIPv4(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	ip = ip.To16()
	switch {
	case ip == nil:
		return nil
	case ip[0] == 0x20 && ip[1] == 0x02: // 6to4
		return net.IPv4(ip[2], ip[3], ip[4], ip[5]).To4()
	case ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0 && ip[3] == 0: // Teredo
		return net.IPv4(^ip[12], ^ip[13], ^ip[14], ^ip[15]).To4()
	}
	return nil
}
