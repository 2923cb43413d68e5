package hub

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/raft"
)

// readFilter sees every UDP datagram before sipgo parses it. It runs on
// the UDP read loop, so refusals are decided here on the raw bytes (guard.go):
// a datagram from a source no member network owns (or from a suspended
// one) is refused before it is parsed, answered 403 within the source's
// budget and otherwise dropped, all counted in aggregate entries. Member
// traffic is parsed once: non-INVITE requests and responses to the hub's
// lean forwards go to the lean path (lean.go) and never reach sipgo;
// INVITE, ACK, CANCEL and their responses are handed on. sipgo drops an
// unparsable datagram silently (the sender would retransmit for 32 s), so
// the hub answers what it cannot accept: 513 for oversize, 400 for
// malformed or missing mandatory headers (RFC 3261 16.3 step 1 / 21.4.1),
// nothing when there is no Via to answer along (18.2.2); all accounted for.
// Stream transports are framed by memberConn.
func (h *Hub) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		return data, nil
	}
	if len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0 {
		return nil, nil // keep-alive (RFC 5626 4.4.1 uses STUN; CRLF is common)
	}
	src, ok := addrPortOf(p.RemoteAddr)
	if !ok {
		return nil, nil
	}
	return h.filterUDP(src, data, nil, time.Time{}), nil
}

// filterUDP handles one UDP datagram from src on a read loop (udpread.go):
// it returns the datagram when sipgo's stack is to have it (INVITE, ACK,
// CANCEL and responses to them), nil when the hub dealt with it.
// Shed answers go through replies (nil: sent at once); arrived is when the
// kernel received the datagram (zero: unknown, now).
func (h *Hub) filterUDP(src netip.AddrPort, data []byte, replies *replyBatch, arrived time.Time) []byte {
	if len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0 {
		return nil // keep-alive
	}
	send := func(b []byte) error {
		// RFC 3261 18.2.2: answer to the source address of the datagram.
		_, err := h.udp.WriteToUDPAddrPort(b, src)
		return err
	}
	st := h.state.State()
	v := st.NetworkByAddr(src.Addr())
	if v == nil || !v.Active() {
		if !h.strangerDatagram(data, src, v, send) {
			return nil
		}
	}
	srcNet := netIDOf(v)
	if v != nil && h.shedEarly(st, srcNet, src, data, replies) {
		return nil
	}
	if len(data) > h.cfg.MaxMessageSize {
		h.m.malformed.Inc()
		h.refuse(rawRefusal{transport: "udp", src: src, srcNet: srcNet, data: data, label: "oversize",
			code: 513, reason: "Message Too Large", detail: "message exceeds the size limit", send: send})
		return nil
	}
	msg, err := h.parser.ParseSIP(data)
	if err != nil {
		h.m.malformed.Inc()
		h.refuse(rawRefusal{transport: "udp", src: src, srcNet: srcNet, data: data, label: "malformed",
			code: 400, reason: "Bad Request", detail: "malformed: " + sanitize(err.Error()), send: send})
		return nil
	}
	switch m := msg.(type) {
	case *sip.Request:
		if reason, detail := missingMandatory(m); reason != "" {
			h.m.malformed.Inc()
			h.refuse(rawRefusal{transport: "udp", src: src, srcNet: srcNet, data: data, label: "missing_header",
				code: 400, reason: reason, detail: detail, send: send})
			return nil
		}
		if !isLeanMethod(m.Method) {
			return data
		}
		m.SetTransport("UDP")
		m.SetSource(src.String())
		h.leanRequest(m, upPath{udp: udpDest(m, src)}, data, arrived)
		return nil
	case *sip.Response:
		m.SetTransport("UDP")
		// The audit entry of a relayed response names where it came from.
		m.SetSource(src.String())
		if h.leanResponse(m) {
			return nil
		}
	}
	return data
}

// strangerDatagram handles a datagram from a source no active member
// network is known for (v: the suspended network, or nil); true lets it
// through to be parsed. Requests are refused unparsed. Responses are let
// through only when they answer one of the hub's forwards (a member edge's
// address need not be inside its lab prefixes): a lean one the hub waits
// for, or, within the source's budget, one of the hub's INVITE branches.
func (h *Hub) strangerDatagram(data []byte, src netip.AddrPort, v *raft.NetworkView, send func([]byte) error) bool {
	label, detail := "unattributed", "unattributable source: source address not in any member network's lab prefixes"
	if v != nil {
		label, detail = "suspended", "source network suspended"
	}
	if bytes.HasPrefix(data, []byte("SIP/")) {
		branch := rawBranch(data)
		if strings.HasPrefix(branch, branchPrefix) && (h.lean.waiting(branch) || h.guard.passResponse(src.Addr())) {
			return true
		}
		h.refuse(rawRefusal{transport: "udp", src: src, srcNet: netIDOf(v), data: data, label: label,
			detail: "response dropped: " + detail + ", no transaction of the hub"})
		return false
	}
	h.refuse(rawRefusal{transport: "udp", src: src, srcNet: netIDOf(v), data: data, label: label,
		code: 403, reason: "Forbidden", detail: detail, send: send})
	return false
}

func netIDOf(v *raft.NetworkView) string {
	if v == nil {
		return ""
	}
	return v.GetId()
}

// missingMandatory names a mandatory header (RFC 3261 8.1.1) a parsed
// request lacks: the hub can neither match a transaction nor answer
// consistently without them.
func missingMandatory(req *sip.Request) (reason, detail string) {
	switch {
	case req.Via() == nil:
		return "Missing Via", "missing Via header: no response can be routed (RFC 3261 18.2.2), dropped"
	case req.CSeq() == nil:
		return "Missing CSeq", "missing CSeq header (RFC 3261 8.1.1.5)"
	case req.CallID() == nil:
		return "Missing Call-ID", "missing Call-ID header (RFC 3261 8.1.1.4)"
	case req.From() == nil:
		return "Missing From", "missing From header (RFC 3261 8.1.1.3)"
	case req.To() == nil:
		return "Missing To", "missing To header (RFC 3261 8.1.1.2)"
	}
	return "", ""
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// answerRaw audits a refused request from src (srcNet: its network, if
// known) and answers it with code through send, echoing the transaction
// headers it can salvage; send nil (no Via, a response, an ACK) only audits.
// The text is salvaged from the raw bytes: they may not parse as a whole.
func (h *Hub) answerRaw(src netip.AddrPort, transport, srcNet string, data []byte, code int, reason, detail string, send func([]byte) error) {
	tp := strings.ToLower(transport)
	echo, f := salvage(data)
	status := code
	if send == nil {
		status = 0
	}
	e := &ledger.Entry{Kind: ledger.KindRequest, Method: f.method, RURI: f.ruri, CallID: f.callID, CSeq: f.cseq, From: f.from, To: f.to,
		Src: src.String(), Transport: tp, SrcNet: srcNet, Status: status, Reason: detail}
	if bytes.HasPrefix(data, []byte("SIP/")) {
		e.Kind = ledger.KindResponse
	}
	if _, err := h.audit.Append(h.ctx, e); err != nil {
		h.m.auditErrs.Inc()
	}
	if send == nil {
		return
	}
	resp := &ledger.Entry{Kind: ledger.KindResponse, Method: f.method, CallID: f.callID, CSeq: f.cseq, From: f.from, To: f.to,
		RURI: f.ruri, Transport: tp, SrcNet: srcNet, Status: code, Reason: reason + ": " + detail}
	if _, err := h.audit.Append(h.ctx, resp); err != nil {
		h.m.auditErrs.Inc()
	}
	if err := send(buildRawResponse(code, reason, echo)); err != nil {
		h.log.Debug("answer refused request", "err", err)
	}
}

// salvaged is what the start line and transaction headers of a raw
// message say, sanitised for the audit entry.
type salvaged struct {
	method, ruri, callID, cseq, from, to string
}

// salvage reads the start line and the Via, From, To, Call-ID and CSeq
// lines of raw (they need not parse as a whole); echo holds the lines to
// copy into a response (RFC 3261 8.2.6.2).
func salvage(data []byte) (echo []string, f salvaged) {
	head, _, _ := bytes.Cut(data[:min(len(data), 8192)], []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	if fl := strings.Fields(lines[0]); len(fl) == 3 && strings.HasPrefix(fl[2], "SIP/") {
		f.method, f.ruri = sanitize(fl[0]), sanitize(fl[1])
	}
	for _, l := range lines[1:] {
		name, val, ok := strings.Cut(l, ":")
		if !ok || strings.ContainsAny(l, "\r\n\x00") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			echo = append(echo, l)
		case "from", "f":
			echo = append(echo, l)
			f.from = sanitize(strings.TrimSpace(val))
		case "to", "t":
			echo = append(echo, l)
			f.to = sanitize(strings.TrimSpace(val))
		case "call-id", "i":
			echo = append(echo, l)
			f.callID = sanitize(strings.TrimSpace(val))
		case "cseq":
			echo = append(echo, l)
			f.cseq = sanitize(strings.TrimSpace(val))
		}
	}
	return echo, f
}

// buildRawResponse writes a response of the hub's own from salvaged lines.
func buildRawResponse(code int, reason string, echo []string) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 ")
	b.WriteString(itoa(code))
	b.WriteString(" " + reason + "\r\n")
	for _, l := range echo {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// sanitize keeps audit text printable.
func sanitize(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [12]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
