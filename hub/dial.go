package hub

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Outbound TCP/TLS connections to member edges leave from the node's SIP
// address: members that identify the hub by source address, and their
// firewalls, expect the address the hub listens on, not whatever the
// kernel's route picks (127.0.0.1 on loopback, the primary address on a
// multi-homed host). UDP already sends from the listening socket.
//
// sipgo's dialer takes one local address, but the family of the edge is only
// known per dial attempt, so the socket is bound in the dialer's Control
// hook, when the attempt's family matches a listen address.

// sourceAddrs returns the specific listen IPs outbound connections of
// transport ("tcp" or "tls") may leave from, at most one per family: the
// transport's own listener first, then the others.
func (h *Hub) sourceAddrs(transport string) (v4, v6 netip.Addr) {
	order := []string{transport, "tls", "tcp", "udp"}
	for _, name := range order {
		var a net.Addr
		switch name {
		case "udp":
			if h.udp != nil {
				a = h.udp.LocalAddr()
			}
		case "tcp":
			if h.tcp != nil {
				a = h.tcp.Addr()
			}
		case "tls":
			if h.tlsL != nil {
				a = h.tlsL.Addr()
			}
		}
		if a == nil {
			continue
		}
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			continue
		}
		ip := ap.Addr().Unmap()
		switch {
		case ip.IsUnspecified(), ip.Zone() != "":
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && !v6.IsValid():
			v6 = ip
		}
	}
	return v4, v6
}

// dialer is sipgo's TransportTCP.DialerCreate for transport.
func (h *Hub) dialer(transport string) func(laddr net.Addr) net.Dialer {
	v4, v6 := h.sourceAddrs(transport)
	return func(laddr net.Addr) net.Dialer {
		d := net.Dialer{Timeout: time.Minute} // sipgo's default; the caller's context is shorter
		if la, ok := laddr.(*net.TCPAddr); ok && la != nil && la.IP != nil {
			d.LocalAddr = la // the request asked for a local address itself
			return d
		}
		if !v4.IsValid() && !v6.IsValid() {
			return d // wildcard listeners: the kernel picks
		}
		d.ControlContext = func(_ context.Context, network, address string, c syscall.RawConn) error {
			src := v4
			if network == "tcp6" {
				src = v6
			}
			dst, err := netip.ParseAddrPort(address)
			if !src.IsValid() || err != nil || (src.IsLoopback() && !dst.Addr().Unmap().IsLoopback()) {
				return nil // no address of this family, or loopback cannot reach dst
			}
			var berr error
			if err := c.Control(func(fd uintptr) { berr = bindSource(fd, src) }); err != nil {
				return fmt.Errorf("bind outbound %s connection to %s: %w", transport, src, err)
			}
			if berr != nil {
				return fmt.Errorf("bind outbound %s connection to %s: %w", transport, src, berr)
			}
			return nil
		}
		return d
	}
}
