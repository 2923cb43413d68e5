package hub

import (
	"bytes"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// readFilter sees every UDP datagram before sipgo parses it, and parses it
// once: non-INVITE requests and responses to the hub's lean forwards go to
// the lean path (lean.go) and never reach sipgo; INVITE, ACK, CANCEL and
// their responses are handed on. sipgo drops an unparsable datagram silently
// (the sender would retransmit for 32 s), so the hub answers what it cannot
// accept: 513 for oversize, 400 for malformed (RFC 3261 16.3 step 1 /
// 21.4.1), audited. Stream transports are framed by memberConn.
func (h *Hub) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.Transport != "UDP" {
		return data, nil
	}
	if len(data) > h.cfg.MaxMessageSize {
		h.refuseRaw(p, data, 513, "Message Too Large", "message exceeds the size limit")
		return nil, nil
	}
	if len(data) <= 4 && len(bytes.Trim(data, "\r\n")) == 0 {
		return nil, nil // keep-alive (RFC 5626 4.4.1 uses STUN; CRLF is common)
	}
	msg, err := h.parser.ParseSIP(data)
	if err != nil {
		h.refuseRaw(p, data, 400, "Bad Request", "malformed: "+sanitize(err.Error()))
		return nil, nil
	}
	switch m := msg.(type) {
	case *sip.Request:
		if !isLeanMethod(m.Method) {
			return data, nil
		}
		src, ok := addrPortOf(p.RemoteAddr)
		if !ok {
			return nil, nil
		}
		m.SetTransport("UDP")
		m.SetSource(src.String())
		h.leanRequest(m, upPath{udp: udpDest(m, src)})
		return nil, nil
	case *sip.Response:
		m.SetTransport("UDP")
		if h.leanResponse(m) {
			return nil, nil
		}
	}
	return data, nil
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

// refuseRaw answers a datagram that is a request but cannot be parsed. It
// runs on the UDP read loop, so the audit and the answer happen on a
// bounded set of helper goroutines; beyond that the datagram is just dropped.
func (h *Hub) refuseRaw(p sip.TransportReadProps, data []byte, code int, reason, detail string) {
	h.m.malformed.Inc()
	if bytes.HasPrefix(data, []byte("SIP/")) || h.udp == nil {
		return // a response: nothing to answer
	}
	src, ok := addrPortOf(p.RemoteAddr)
	if !ok {
		return
	}
	select {
	case h.badSem <- struct{}{}:
	default:
		return
	}
	data = append([]byte(nil), data[:min(len(data), 8192)]...)
	if !h.spawn(func() {
		defer func() { <-h.badSem }()
		// RFC 3261 18.2.2: answer to the source address of the datagram.
		h.answerRaw(src, "UDP", data, code, reason, detail, func(b []byte) error {
			_, err := h.udp.WriteToUDPAddrPort(b, src)
			return err
		})
	}) {
		<-h.badSem
	}
}

// answerRaw audits an unparsable request from src and answers it with
// code through send, echoing the transaction headers it can salvage.
func (h *Hub) answerRaw(src netip.AddrPort, transport string, data []byte, code int, reason, detail string, send func([]byte) error) {
	tp := strings.ToLower(transport)
	e := &ledger.Entry{Kind: ledger.KindRequest, Src: src.String(), Transport: tp, Status: code, Reason: detail}
	if tp != "tls" {
		if v := h.state.State().NetworkByAddr(src.Addr()); v != nil {
			e.SrcNet = v.GetId()
		}
	}
	// Salvage what the start line and the transaction headers say, as raw
	// text (they did not parse as a whole).
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	if f := strings.Fields(lines[0]); len(f) == 3 && strings.HasPrefix(f[2], "SIP/") {
		e.Method, e.RURI = sanitize(f[0]), sanitize(f[1])
	}
	var echo []string
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
			e.From = sanitize(strings.TrimSpace(val))
		case "to", "t":
			echo = append(echo, l)
			e.To = sanitize(strings.TrimSpace(val))
		case "call-id", "i":
			echo = append(echo, l)
			e.CallID = sanitize(strings.TrimSpace(val))
		case "cseq":
			echo = append(echo, l)
			e.CSeq = sanitize(strings.TrimSpace(val))
		}
	}
	if _, err := h.audit.Append(h.ctx, e); err != nil {
		h.m.auditErrs.Inc()
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 ")
	b.WriteString(itoa(code))
	b.WriteString(" " + reason + "\r\n")
	for _, l := range echo {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	resp := &ledger.Entry{Kind: ledger.KindResponse, Method: e.Method, CallID: e.CallID, CSeq: e.CSeq, From: e.From, To: e.To,
		RURI: e.RURI, Transport: tp, SrcNet: e.SrcNet, Status: code, Reason: reason + ": " + detail}
	if _, err := h.audit.Append(h.ctx, resp); err != nil {
		h.m.auditErrs.Inc()
	}
	if err := send([]byte(b.String())); err != nil {
		h.log.Debug("answer malformed request", "err", err)
	}
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
