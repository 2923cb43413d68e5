package hub

import (
	"bytes"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Splice forwarding (issue 10): a lean request forwarded over UDP is built
// from the bytes it arrived in instead of cloning sipgo's parsed request and
// marshalling the clone (~7% of the CPU per forwarded MESSAGE: every header
// copied, re-rendered, written). RFC 3261 16.6 asks a proxy for exactly
// these changes, which the splice makes in place:
//
//   - step 8: the hub's Via on top;
//   - step 3: Max-Forwards decremented (replaced, or added when absent);
//   - 18.2.1 / RFC 3581 4: received (when the top Via's host is not the
//     source address) and rport=<source port> (when asked for) on the
//     sender's Via.
//
// Everything else stays byte for byte. Whatever the splice does not handle
// it declines (the caller then takes the sipgo path, buildForward): a
// method other than MESSAGE, NOTIFY, PUBLISH and OPTIONS, a Route
// to pop, a Record-Route to add (SUBSCRIBE, REFER), folded or bare-LF
// header lines, a top Via line holding several values or a quote, a
// received parameter to overwrite, several Max-Forwards lines, no or
// several Content-Length lines. The body
// forwarded is the one sipgo parsed (RFC 3261 18.3: bytes past
// Content-Length in a datagram are dropped). FuzzSplice checks that
// sipgo reads a spliced request exactly as it reads buildForward's.

// spliceRequest returns the forwarded datagram for req, received as raw
// from srcHost:srcPort, with via (the hub's Via value) on top and
// Max-Forwards mf; ok false means the caller must use buildForward.
func spliceRequest(raw []byte, req *sip.Request, via string, mf int, srcHost, srcPort string) ([]byte, bool) {
	headEnd := bytes.Index(raw, []byte("\r\n\r\n"))
	first := bytes.Index(raw, []byte("\r\n"))
	if headEnd < 0 || first < 0 || first == headEnd {
		return nil, false
	}
	top := req.Via()
	if top == nil {
		return nil, false
	}
	head := raw[first+2 : headEnd+2] // header lines, each with its CRLF
	// Every line break must be CRLF: a bare CR or LF is something sipgo and
	// the splice might read differently.
	for i, b := range head {
		if (b == '\n' && (i == 0 || head[i-1] != '\r')) || (b == '\r' && (i+1 >= len(head) || head[i+1] != '\n')) {
			return nil, false
		}
	}
	topVia, topViaEnd, mfAt, mfCount, clCount := -1, -1, -1, 0, 0
	for off := 0; off < len(head); {
		n := bytes.Index(head[off:], []byte("\r\n"))
		line := head[off : off+n]
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return nil, false // folded (RFC 3261 7.3.1) or empty
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return nil, false
		}
		switch name := bytes.TrimSpace(line[:colon]); {
		case nameIs(name, "via", "v"):
			if topVia < 0 {
				topVia, topViaEnd = off, off+n
			}
		case nameIs(name, "max-forwards", ""):
			mfAt = off
			mfCount++
		case nameIs(name, "content-length", "l"):
			clCount++
		}
		off += n + 2
	}
	// Without Content-Length sipgo's clone adds one (SetBody).
	if topVia < 0 || mfCount > 1 || clCount != 1 {
		return nil, false
	}
	line := head[topVia:topViaEnd]
	colon := bytes.IndexByte(line, ':')
	value := bytes.TrimRight(line[colon+1:], " \t")
	// The line is rewritten, so it must read the same to sipgo and to the
	// splice: only the plain form (no comma, quote, space in the params).
	if host, port, ok := plainVia(bytes.TrimLeft(value, " \t")); !ok || string(host) != top.Host || port != top.Port {
		return nil, false
	}
	needReceived := top.Host != srcHost
	if _, has := top.Params.Get("received"); needReceived && has {
		return nil, false // sipgo would overwrite it in place
	}
	rp, hasRport := top.Params.Get("rport")
	needRport := hasRport && rp == ""

	out := make([]byte, 0, len(raw)+len(via)+64)
	out = append(out, raw[:first+2]...) // start line
	out = append(out, "Via: "...)
	out = append(out, via...)
	out = append(out, "\r\n"...)
	for off := 0; off < len(head); {
		n := bytes.Index(head[off:], []byte("\r\n"))
		switch off {
		case topVia:
			out = append(out, line[:colon+1]...)
			v, ok := spliceRport(value, needRport, srcPort)
			if !ok {
				return nil, false
			}
			out = append(out, v...)
			if needReceived {
				out = append(out, ";received="...)
				out = append(out, srcHost...)
			}
		case mfAt:
			out = append(out, "Max-Forwards: "...)
			out = strconv.AppendInt(out, int64(mf), 10)
		default:
			out = append(out, head[off:off+n]...)
		}
		out = append(out, "\r\n"...)
		off += n + 2
	}
	if mfAt < 0 {
		// sipgo appends a missing Max-Forwards after the last header.
		out = append(out, "Max-Forwards: "...)
		out = strconv.AppendInt(out, int64(mf), 10)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, req.Body()...), true
}

// spliceRport fills the empty rport parameter of a Via value with port
// (RFC 3581 4); ok false when it is not found exactly once as ";rport".
func spliceRport(value []byte, need bool, port string) ([]byte, bool) {
	if !need {
		return value, true
	}
	var at, found int
	for i := 0; i < len(value); {
		j := bytes.IndexByte(value[i:], ';')
		if j < 0 {
			break
		}
		seg := value[i+j+1:]
		if k := bytes.IndexByte(seg, ';'); k >= 0 {
			seg = seg[:k]
		}
		if string(seg) == "rport" {
			at = i + j + 1 + len(seg)
			found++
		}
		i += j + 1
	}
	if found != 1 {
		return nil, false
	}
	v := make([]byte, 0, len(value)+1+len(port))
	v = append(v, value[:at]...)
	v = append(v, '=')
	v = append(v, port...)
	return append(v, value[at:]...), true
}

// spliced is a lean UDP forward built by splicing: the datagram and the
// hub branch in its top Via.
type spliced struct {
	raw    []byte
	branch string
}

// spliceMethod lists the methods spliced: the IM and presence hot path.
// Session methods (UPDATE, PRACK, INFO, BYE) take buildForward, where
// per-forward rewrites of the body (media anchoring) happen.
var spliceMethod = map[sip.RequestMethod]bool{sip.MESSAGE: true, sip.NOTIFY: true, sip.PUBLISH: true, sip.OPTIONS: true}

// spliceFor builds the forward of c's request to hp by splicing, when the
// lean path kept the received bytes and the forward needs nothing the
// splice does not do (see above); nil otherwise.
func (c *call) spliceFor(hp hop, popN, mf int, lh string, rr *dialogRoute) *spliced {
	if c.lean == nil || c.lean.raw == nil || hp.transport != "UDP" || popN != 0 || rr != nil || !spliceMethod[c.req.Method] {
		return nil
	}
	host, port, err := net.SplitHostPort(c.req.Source())
	if err != nil {
		return nil
	}
	branch := newBranch(lh)
	// The hub's Via as buildForward renders it (sipgo brackets an IPv6
	// host, as uriIP does).
	vh := c.h.cfg.Hostname
	if strings.IndexByte(vh, ':') >= 0 && !strings.HasPrefix(vh, "[") {
		vh = "[" + vh + "]"
	}
	vp := c.h.port(hp.transport)
	if vp == 0 {
		vp = c.h.anyPort()
	}
	var pb [8]byte
	via := "SIP/2.0/" + hp.transport + " " + vh + ":" + string(strconv.AppendInt(pb[:0], int64(vp), 10)) + ";branch=" + branch
	raw, ok := spliceRequest(c.lean.raw, c.req, via, mf-1, host, port)
	if !ok {
		return nil
	}
	return &spliced{raw: raw, branch: branch}
}

// plainVia checks that v is a Via value in the plain form UAs send,
// "SIP/2.0/<transport> <host>[:<port>]" then ";name[=value]" parameters
// of token characters (RFC 3261 25.1 token, plus ':' and brackets in
// values for IPv6 received), and returns its sent-by.
func plainVia(v []byte) (host []byte, port int, ok bool) {
	const proto = "SIP/2.0/"
	if len(v) < len(proto) || !strings.EqualFold(string(v[:len(proto)]), proto) {
		return nil, 0, false
	}
	v = v[len(proto):]
	i := 0
	for i < len(v) && isAlpha(v[i]) {
		i++
	}
	if i == 0 || i == len(v) || v[i] != ' ' {
		return nil, 0, false
	}
	for i < len(v) && v[i] == ' ' {
		i++
	}
	v = v[i:]
	end := bytes.IndexByte(v, ';')
	if end < 0 {
		end = len(v)
	}
	sentBy := v[:end]
	h, p := sentBy, []byte(nil)
	if len(sentBy) > 0 && sentBy[0] == '[' {
		rb := bytes.IndexByte(sentBy, ']')
		if rb < 0 || !allIn(sentBy[1:rb], &hexColonSet) {
			return nil, 0, false
		}
		h = sentBy[:rb+1]
		if rest := sentBy[rb+1:]; len(rest) > 0 {
			if rest[0] != ':' {
				return nil, 0, false
			}
			p = rest[1:]
		}
	} else if c := bytes.IndexByte(sentBy, ':'); c >= 0 {
		h, p = sentBy[:c], sentBy[c+1:]
	}
	if len(h) == 0 || (h[0] != '[' && !allIn(h, &hostSet)) {
		return nil, 0, false
	}
	if p != nil {
		if len(p) == 0 || len(p) > 5 || !allIn(p, &digitSet) {
			return nil, 0, false
		}
		port, _ = strconv.Atoi(string(p))
	}
	for params := v[end:]; len(params) > 0; {
		params = params[1:] // the ';'
		next := bytes.IndexByte(params, ';')
		if next < 0 {
			next = len(params)
		}
		name, val, hasVal := bytes.Cut(params[:next], []byte("="))
		if len(name) == 0 || !allIn(name, &tokenSet) || (hasVal && (len(val) == 0 || !allIn(val, &paramValueSet))) {
			return nil, 0, false
		}
		params = params[next:]
	}
	return h, port, true
}

const (
	alnum      = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	tokenChars = alnum + "-.!%*_+`'~"
)

// Character classes of plainVia, as lookup tables.
var (
	hexColonSet   = charSet("0123456789abcdefABCDEF:.")
	hostSet       = charSet(alnum + ".-")
	digitSet      = charSet("0123456789")
	tokenSet      = charSet(tokenChars)
	paramValueSet = charSet(tokenChars + ":[]")
)

func charSet(chars string) (set [256]bool) {
	for i := 0; i < len(chars); i++ {
		set[chars[i]] = true
	}
	return set
}

// nameIs reports whether a header name is long or its compact form
// (RFC 3261 7.3.3), case-insensitively, without allocating.
func nameIs(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}

func isAlpha(b byte) bool { return (b|0x20) >= 'a' && (b|0x20) <= 'z' }

func allIn(b []byte, set *[256]bool) bool {
	for _, c := range b {
		if !set[c] {
			return false
		}
	}
	return true
}
