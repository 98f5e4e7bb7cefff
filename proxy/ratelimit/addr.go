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
