package ratelimit

import "net"

// AddrKey is the key of a client address for what is counted per address before
// authentication (the proxy's pre-auth limit and auth failure rows, the console's
// sign-ins): an IPv4 address (or the loopback) as it is, an IPv6 address as its /64,
// since one host commonly holds a whole /64 and could otherwise spread a flood over as
// many keys as it likes.
func AddrKey(ip net.IP) string {
	if ip.To4() != nil || ip.IsLoopback() {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// PrefixKey is the key of the network a client address is in, for what is counted per
// network as well as per address (the console's sign-ins in flight): an IPv4 address as
// its /24, an IPv6 address as its /48 (the IPv6 loopback as it is). One party commonly
// holds a whole IPv4 /24 or IPv6 /48, so a cap per network bounds what a flood from
// many addresses of one network can take.
func PrefixKey(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String() + "/24"
	}
	if ip.IsLoopback() {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String() + "/48"
}
