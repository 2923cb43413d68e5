package intercept

import (
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Event is one message the hub forwarded, as it arrived (cmd/hubd fills it
// from hub.TapEvent; this package does not import the proxy core).
type Event struct {
	State *raft.State // the state the call ran on
	Time  time.Time
	// Wire is the message; the body starts at BodyOffset.
	Wire       []byte
	BodyOffset int
	// Src, Dst are "ip:port"; Transport lower-case (udp, tcp, tls; msrp
	// for MSRP content).
	Src, Dst       string
	Transport      string
	SrcNet, DstNet string
	Response       bool
	Method, CallID string
	From, To       *sip.Uri
}

// matches reports whether warrant w covers a message at now (Unix ns) of a
// transaction srcNet -> dstNet between from and to. Allocation-free.
func matches(w *hubv1.Warrant, now int64, srcNet, dstNet string, from, to *sip.Uri) bool {
	if now < w.GetStartUnixNano() || now >= w.GetEndUnixNano() {
		return false
	}
	t := w.GetTarget()
	switch w.GetKind() {
	case hubv1.WarrantTargetKind_WARRANT_TARGET_USER:
		return isAOR(from, t) || isAOR(to, t)
	case hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN:
		return from != nil && strings.EqualFold(from.Host, t) || to != nil && strings.EqualFold(to.Host, t)
	case hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK:
		return srcNet == t || dstNet == t
	}
	return false
}

// isAOR reports whether u is the address of record aor ("sip:user@host",
// canonical: raft.CanonicalWarrantTarget). The user part compares exactly
// and the host case-insensitively (RFC 3261 19.1.4); scheme, port and
// parameters are ignored, so sips: and a port do not hide a target.
func isAOR(u *sip.Uri, aor string) bool {
	if u == nil {
		return false
	}
	rest, ok := strings.CutPrefix(aor, "sip:")
	if !ok {
		return false
	}
	// No scan for the '@': a canonical user part holds none (RFC 3261
	// 25.1), so the user is a prefix followed by '@' and the rest is the host.
	n := len(u.User)
	return n > 0 && n < len(rest) && rest[n] == '@' && rest[:n] == u.User && strings.EqualFold(u.Host, rest[n+1:])
}

// packet builds the HEP packet of ev with payload.
func packet(ev *Event, payload []byte, agent uint32, proto uint8) Packet {
	src, _ := netip.ParseAddrPort(ev.Src)
	dst, _ := netip.ParseAddrPort(ev.Dst)
	p := Packet{
		Proto:   ProtoUDP,
		SrcIP:   src.Addr().Unmap(),
		DstIP:   dst.Addr().Unmap(),
		SrcPort: src.Port(), DstPort: dst.Port(),
		Time:          ev.Time,
		ProtoType:     proto,
		AgentID:       agent,
		CorrelationID: ev.CallID,
		Payload:       payload,
	}
	if ev.Transport != "udp" {
		p.Proto = ProtoTCP // tcp, tls, and MSRP over either
	}
	if p.SrcIP.Is4() != p.DstIP.Is4() {
		// A v4 member reaching a v6 listener (or the reverse) cannot be
		// said in one HEP frame: the unknown side goes unspecified.
		if p.SrcIP.Is4() {
			p.DstIP = netip.IPv4Unspecified()
		} else {
			p.DstIP = netip.IPv6Unspecified()
		}
	}
	if !p.SrcIP.IsValid() {
		p.SrcIP = netip.IPv4Unspecified()
		if p.DstIP.Is6() {
			p.SrcIP = netip.IPv6Unspecified()
		}
	}
	return p
}
