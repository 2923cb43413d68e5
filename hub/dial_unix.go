//go:build unix

package hub

import (
	"net/netip"
	"syscall"
)

// bindSource binds a socket that is about to connect to ip, port 0 (the
// kernel picks the port, as for any outbound connection).
func bindSource(fd uintptr, ip netip.Addr) error {
	if ip.Is4() {
		return syscall.Bind(int(fd), &syscall.SockaddrInet4{Addr: ip.As4()})
	}
	return syscall.Bind(int(fd), &syscall.SockaddrInet6{Addr: ip.As16()})
}
