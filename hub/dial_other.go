//go:build !unix

package hub

import "net/netip"

// bindSource is a no-op where the socket cannot be bound portably: the
// kernel picks the source address.
func bindSource(uintptr, netip.Addr) error { return nil }
