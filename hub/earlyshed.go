package hub

import (
	"bytes"
	"hash/maphash"
	"iter"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Early shedding: when the hub is over a limit, a new out-of-dialog UDP
// request is refused on the read loop from its raw bytes, before it is
// parsed. Parsing is most of what a datagram costs the read loop; a flood
// that is parsed before it is refused keeps the loop busy, the socket
// queue fills and the kernel then drops every member's datagrams alike.
// Refused early this way a datagram costs a scan of its header block and
// one send, so the loop keeps up with several times the rate it can
// forward and the quiet members' requests reach the pipeline.
//
// The decision is the one admit (overload.go) takes, on the same counters
// and buckets, except that buckets are only looked at (the parsed path
// takes the token of an admitted request). Only what is clearly new work
// is refused here: a request with a To tag (possibly in a dialog) and one
// whose transaction the hub already has (a retransmission of an admitted
// request, RFC 3261 17.2.2) go on to the parsed path, which decides with
// the full rules.

// rawScan is what early shedding reads of a request's header block.
type rawScan struct {
	via     []byte // value of the top Via (first value of the first Via header)
	event   []byte // Event header value, up to ';'
	toTag   bool
	hasVia  bool
	hasCSeq bool
}

// scanHeaders reads the header block of data once (compact forms
// included, names case-insensitive). It never fails: what it cannot read
// it leaves empty.
func scanHeaders(data []byte) rawScan {
	var s rawScan
	for line, colon := range headerLines(data) {
		name, val := headerName(line, colon), bytes.TrimSpace(line[colon+1:])
		switch {
		case hdrIs(name, "via", "v"):
			if !s.hasVia {
				s.hasVia = true
				if k := bytes.IndexByte(val, ','); k >= 0 {
					val = bytes.TrimSpace(val[:k])
				}
				s.via = val
			}
		case hdrIs(name, "to", "t"):
			s.toTag = hasTagParam(val)
		case hdrIs(name, "event", "o"):
			if k := bytes.IndexByte(val, ';'); k >= 0 {
				val = val[:k]
			}
			s.event = bytes.TrimSpace(val)
		case hdrIs(name, "cseq", ""):
			s.hasCSeq = true
		}
	}
	return s
}

// headerLines yields each line of data's header block (without its CRLF)
// and the index of its colon: the start line and the body are left out,
// and so are lines without a name. It is the one walk over a raw header
// block the raw-byte paths here share; headerName and the bytes after the
// colon are the header's name and raw value.
func headerLines(data []byte) iter.Seq2[[]byte, int] {
	return func(yield func(line []byte, colon int) bool) {
		head := data
		if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
			head = data[:i+2]
		}
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			return
		}
		head = head[i+2:]
		for len(head) > 0 {
			var line []byte
			if j := bytes.Index(head, []byte("\r\n")); j < 0 {
				line, head = head, nil
			} else {
				line, head = head[:j], head[j+2:]
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				continue
			}
			if !yield(line, colon) {
				return
			}
		}
	}
}

// headerName is a header line's name, without trailing blanks.
func headerName(line []byte, colon int) []byte { return bytes.TrimRight(line[:colon], " \t") }

func hdrIs(name []byte, long, short string) bool {
	if len(name) == len(short) && short != "" {
		return name[0]|0x20 == short[0]
	}
	return len(name) == len(long) && bytes.EqualFold(name, []byte(long))
}

// hasTagParam reports whether a From/To value carries a tag parameter
// outside its <URI> (RFC 3261 20.39: a ";tag" inside the brackets belongs
// to the URI).
func hasTagParam(v []byte) bool {
	if k := bytes.LastIndexByte(v, '>'); k >= 0 {
		v = v[k+1:]
	}
	for len(v) > 0 {
		k := bytes.IndexByte(v, ';')
		if k < 0 {
			return false
		}
		v = v[k+1:]
		p := bytes.TrimLeft(v, " \t")
		if len(p) >= 3 && p[0]|0x20 == 't' && p[1]|0x20 == 'a' && p[2]|0x20 == 'g' {
			rest := bytes.TrimLeft(p[3:], " \t")
			if len(rest) == 0 || rest[0] == '=' || rest[0] == ';' {
				return true
			}
		}
	}
	return false
}

// viaParts splits a Via value ("SIP/2.0/UDP host:port;branch=z9hG4bK...")
// into its sent-by and branch; ok is false when it has no RFC 3261 branch.
func viaParts(via []byte) (sentBy, branch []byte, ok bool) {
	sp := bytes.IndexAny(via, " \t")
	if sp < 0 {
		return nil, nil, false
	}
	rest := bytes.TrimLeft(via[sp:], " \t")
	params := []byte(nil)
	if k := bytes.IndexByte(rest, ';'); k >= 0 {
		sentBy, params = bytes.TrimSpace(rest[:k]), rest[k+1:]
	} else {
		sentBy = bytes.TrimSpace(rest)
	}
	for len(params) > 0 {
		var p []byte
		if k := bytes.IndexByte(params, ';'); k >= 0 {
			p, params = params[:k], params[k+1:]
		} else {
			p, params = params, nil
		}
		n, v, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(n), []byte("branch")) {
			branch = bytes.TrimSpace(v)
		}
	}
	if len(sentBy) == 0 || !bytes.HasPrefix(branch, []byte(sip.RFC3261BranchMagicCookie)) {
		return nil, nil, false
	}
	return sentBy, branch, true
}

// wireKey is the RFC 3261 17.2.3 key of a request from its top Via's raw
// sent-by and branch and its method; ok is false for a Via without an
// RFC 3261 branch (serverKey then matches by the older rules). A
// retransmission repeats the request byte for byte, so raw text matches it.
func (t *leanTable) wireKey(via []byte, method string) (txKey, bool) {
	sentBy, branch, ok := viaParts(via)
	if !ok {
		return txKey{}, false
	}
	var b [256]byte
	s := b[:0]
	s = append(s, branch...)
	s = append(s, 0)
	s = append(s, sentBy...)
	s = append(s, 0)
	s = append(s, method...)
	return txKey{maphash.Bytes(t.seed1, s), maphash.Bytes(t.seed2, s)}, true
}

// topVia returns the value of the top Via of a message (the first value
// of its first Via header), stopping at it.
func topVia(data []byte) []byte {
	for line, colon := range headerLines(data) {
		if !hdrIs(headerName(line, colon), "via", "v") {
			continue
		}
		val := bytes.TrimSpace(line[colon+1:])
		if k := bytes.IndexByte(val, ','); k >= 0 {
			val = bytes.TrimSpace(val[:k])
		}
		return val
	}
	return nil
}

// has reports whether the hub holds the upstream transaction k.
func (t *leanTable) has(k txKey) bool {
	t.mu.Lock()
	_, ok := t.srv[k]
	t.mu.Unlock()
	return ok
}

// rawLeanMethod returns the method of a request on the lean path, or ""
// (a response, INVITE/ACK/CANCEL, junk).
func rawLeanMethod(data []byte) string {
	if len(data) < 8 || data[0] == 'S' && bytes.HasPrefix(data, []byte("SIP/")) {
		return ""
	}
	end := bytes.IndexByte(data[:min(len(data), 17)], ' ')
	if end <= 0 {
		return ""
	}
	switch m := data[:end]; string(m) {
	case "MESSAGE":
		return "MESSAGE"
	case "SUBSCRIBE":
		return "SUBSCRIBE"
	case "NOTIFY":
		return "NOTIFY"
	case "PUBLISH":
		return "PUBLISH"
	case "OPTIONS":
		return "OPTIONS"
	case "REFER":
		return "REFER"
	case "INFO":
		return "INFO"
	case "UPDATE":
		return "UPDATE"
	}
	return ""
}

// shedEarly refuses src's datagram when admit would shed it, answering a
// stateless 503 (RFC 3261 8.2.7, 21.5.4); false when the datagram is to be
// parsed. It runs on a read loop: no blocking, no goroutine.
func (h *Hub) shedEarly(st *raft.State, netID string, src netip.AddrPort, data []byte, replies *replyBatch) bool {
	method := rawLeanMethod(data)
	if method == "" {
		return false
	}
	t := h.limits.table(st)
	mb := t.nets[netID]
	var load *memberLoad
	if mb != nil {
		load = mb.load
	}
	no := h.ovl.check(false, load)
	overloaded := no != nil
	var sc rawScan
	scanned := false
	if no == nil {
		if mb == nil {
			return false
		}
		// Rate limits: only the buckets this request would draw on.
		now := h.limits.now()
		svc := hubv1.Service(svcNone)
		switch method {
		case "SUBSCRIBE", "NOTIFY", "PUBLISH":
			if !mb.anyEmpty(now) {
				return false // nothing to refuse: no header scan for the class
			}
			sc, scanned = scanHeaders(data), true
			if s, ok := routing.Classify(method, strings.ToLower(string(sc.event)), false); ok && s != svcAny {
				svc = s
			}
		case "MESSAGE":
			svc = hubv1.Service_SERVICE_IM
		case "REFER":
			svc = hubv1.Service_SERVICE_SESSION
		case "OPTIONS", "INFO", "UPDATE":
		}
		if no = mb.peek(svc, now); no == nil {
			return false
		}
	}
	if !scanned {
		sc = scanHeaders(data)
	}
	if sc.toTag || !sc.hasVia || !sc.hasCSeq {
		return false // maybe in a dialog, or malformed: the parsed path decides
	}
	k, ok := h.lean.wireKey(sc.via, method)
	if !ok || h.lean.has(k) {
		return false
	}
	if overloaded {
		h.ovl.oc.count(true)
	}
	h.sm.shed.WithLabelValues(netID, no.label).Inc()
	ak := aggKey{src: src.Addr(), transport: "udp", what: "requests", label: no.label, status: 503, srcNet: netID}
	h.guard.count(ak, src, method, no.cause, true)
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	oc := ""
	if rawViaWantsOC(sc.via) {
		oc = h.ovl.oc.params(time.Now())
	}
	writeShed503(buf, data, no, oc)
	h.sendReply(replies, buf.Bytes(), rawUDPDest(sc.via, src))
	putBuf(buf)
	return true
}

// peek is take without taking: the refusal take would give now, or nil.
func (mb *memberBuckets) peek(svc hubv1.Service, now time.Time) *shedding {
	if all := mb.lim[0]; all != nil && all.TokensAt(now) < 1 {
		return rateRefusal(mb, 0, now)
	}
	if i := int(svc); i > 0 && i < numClasses {
		if l := mb.lim[i]; l != nil && l.TokensAt(now) < 1 {
			return rateRefusal(mb, i, now)
		}
	}
	return nil
}

// anyEmpty reports whether any of the member's buckets is out of tokens.
func (mb *memberBuckets) anyEmpty(now time.Time) bool {
	for _, l := range mb.lim {
		if l != nil && l.TokensAt(now) < 1 {
			return true
		}
	}
	return false
}

// rawUDPDest is udpDest (RFC 3261 18.2.2, RFC 3581) from a raw Via.
func rawUDPDest(via []byte, src netip.AddrPort) netip.AddrPort {
	sentBy, _, _ := viaParts(via)
	for _, p := range bytes.Split(via, []byte(";"))[1:] {
		if bytes.EqualFold(bytes.TrimSpace(p), []byte("rport")) {
			return src
		}
	}
	port := uint16(5060)
	if k := bytes.LastIndexByte(sentBy, ':'); k >= 0 && !bytes.HasSuffix(sentBy, []byte("]")) {
		if n, ok := atoiPort(sentBy[k+1:]); ok {
			port = n
		}
	}
	return netip.AddrPortFrom(src.Addr(), port)
}

func atoiPort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// writeShed503 writes the stateless 503 for a shed request: Via, From, To
// (with a tag of the hub's, RFC 3261 8.2.6.2), Call-ID and CSeq copied
// from the request, Retry-After (21.5.4).
// oc, when not empty, is RFC 7339's parameters for the top Via, which
// announced support (oc.go).
func writeShed503(b *bytes.Buffer, data []byte, no *shedding, oc string) {
	b.WriteString("SIP/2.0 503 ")
	b.WriteString(no.phrase)
	b.WriteString("\r\n")
	for line, colon := range headerLines(data) {
		name := headerName(line, colon)
		isVia := hdrIs(name, "via", "v")
		switch {
		case oc != "" && isVia && bytes.IndexByte(line, ',') < 0:
			// The top Via (one value): the bare oc becomes the reduction.
			for k, p := range bytes.Split(line, []byte(";")) {
				if k > 0 && bytes.EqualFold(bytes.TrimSpace(p), []byte("oc")) {
					continue
				}
				if k > 0 {
					b.WriteByte(';')
				}
				b.Write(p)
			}
			b.WriteString(oc)
			b.WriteString("\r\n")
			oc = ""
		case isVia, hdrIs(name, "from", "f"), hdrIs(name, "call-id", "i"), hdrIs(name, "cseq", ""):
			b.Write(line)
			b.WriteString("\r\n")
			if isVia {
				oc = "" // only ever the top Via
			}
		case hdrIs(name, "to", "t"):
			b.Write(line)
			if !hasTagParam(line[colon+1:]) {
				b.WriteString(";tag=")
				b.WriteString(sip.GenerateTagN(10))
			}
			b.WriteString("\r\n")
		}
	}
	b.WriteString("Retry-After: ")
	b.WriteString(strings.TrimPrefix(retryAfter(no.retry).Value(), " "))
	b.WriteString("\r\nContent-Length: 0\r\n\r\n")
}
