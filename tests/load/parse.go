package load

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits of what the driver accepts from the thing it measures: a
// misbehaving server must make the driver count errors, not grow memory.
const (
	MaxHeaderBytes = 16 << 10
	MaxBodyBytes   = 64 << 10
)

var (
	// ErrForeign: a response whose Call-ID is not one of this run's.
	ErrForeign = errors.New("call-id not from this run")
	// ErrMalformed: not a SIP message the driver can account for.
	ErrMalformed = errors.New("malformed SIP message")
)

// header is one header line of a message: name and value as slices of the
// message, and the whole line (with continuation lines, RFC 3261 7.3.1,
// without the final CRLF).
type header struct {
	name, value, line []byte
}

// forEachHeader calls fn for each header of the header block b (which
// starts after the start line and ends at or before the empty line). It
// stops early when fn returns false.
func forEachHeader(b []byte, fn func(h header) bool) error {
	for len(b) > 0 {
		end := lineEnd(b)
		line := b[:end]
		next := b[skipEOL(b, end):]
		if len(line) == 0 {
			return nil // the empty line ends the headers
		}
		// Continuation lines start with white space (RFC 3261 7.3.1).
		for len(next) > 0 && (next[0] == ' ' || next[0] == '\t') {
			e := lineEnd(next)
			line = b[:len(b)-len(next)+e]
			next = next[skipEOL(next, e):]
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: header line without a name", ErrMalformed)
		}
		h := header{name: bytes.TrimRight(line[:colon], " \t"), value: trimWS(line[colon+1:]), line: line}
		if !fn(h) {
			return nil
		}
		b = next
	}
	return nil
}

// lineEnd is the index of the CR or LF that ends the first line of b, or
// len(b).
func lineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return len(b)
	}
	if i > 0 && b[i-1] == '\r' {
		return i - 1
	}
	return i
}

// skipEOL returns the index after the line ending that starts at end.
func skipEOL(b []byte, end int) int {
	if end < len(b) && b[end] == '\r' {
		end++
	}
	if end < len(b) && b[end] == '\n' {
		end++
	}
	return end
}

func trimWS(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// isHeader matches a header name in its long or compact form (RFC 3261
// 7.3.3), case-insensitively (RFC 3261 7.3.1).
func isHeader(name []byte, long string, compact byte) bool {
	if len(name) == 1 && compact != 0 {
		return name[0]|0x20 == compact
	}
	return bytes.EqualFold(name, []byte(long))
}

// ParseResponse reads the status code of a response and the sequence
// number in its Call-ID, which must start with prefix followed by SeqWidth
// digits (Template writes them). Only the status line and the headers up
// to Call-ID are looked at.
func ParseResponse(b []byte, prefix []byte) (status int, seq uint64, err error) {
	// RFC 3261 7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		return 0, 0, fmt.Errorf("%w: not a response", ErrMalformed)
	}
	for _, c := range b[8:11] {
		if c < '0' || c > '9' {
			return 0, 0, fmt.Errorf("%w: status code", ErrMalformed)
		}
		status = status*10 + int(c-'0')
	}
	if b[11] != ' ' && b[11] != '\r' && b[11] != '\n' {
		return 0, 0, fmt.Errorf("%w: status code", ErrMalformed)
	}
	if status < 100 {
		return 0, 0, fmt.Errorf("%w: status code %d", ErrMalformed, status)
	}
	rest := b[skipEOL(b, lineEnd(b)):]
	var callID []byte
	if err := forEachHeader(rest, func(h header) bool {
		if isHeader(h.name, "call-id", 'i') {
			callID = h.value
			return false
		}
		return true
	}); err != nil {
		return status, 0, err
	}
	if callID == nil {
		return status, 0, fmt.Errorf("%w: no Call-ID", ErrMalformed)
	}
	if !bytes.HasPrefix(callID, prefix) || len(callID) < len(prefix)+SeqWidth {
		return status, 0, ErrForeign
	}
	for _, c := range callID[len(prefix) : len(prefix)+SeqWidth] {
		if c < '0' || c > '9' {
			return status, 0, ErrForeign
		}
		seq = seq*10 + uint64(c-'0')
	}
	return status, seq, nil
}

// FrameLen finds the first whole message in a stream buffer (RFC 3261
// 18.3: the header block, then Content-Length bytes of body). It returns
// skip > 0 for leading CRLFs (RFC 5626 3.5.1 keep-alives, to be dropped;
// ping is true for a double-CRLF ping, which wants a single-CRLF pong),
// n > 0 for a whole message of n bytes, or both zero when more bytes are
// needed.
func FrameLen(b []byte) (skip, n int, ping bool, err error) {
	for skip < len(b) && (b[skip] == '\r' || b[skip] == '\n') {
		skip++
	}
	if skip > 0 {
		return skip, 0, bytes.HasPrefix(b, []byte("\r\n\r\n")), nil
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > MaxHeaderBytes {
			return 0, 0, false, fmt.Errorf("%w: header block over %d bytes", ErrMalformed, MaxHeaderBytes)
		}
		return 0, 0, false, nil
	}
	if end > MaxHeaderBytes {
		return 0, 0, false, fmt.Errorf("%w: header block over %d bytes", ErrMalformed, MaxHeaderBytes)
	}
	start := skipEOL(b, lineEnd(b))
	if start > end+2 {
		start = end + 2
	}
	cl := -1
	var perr error
	if err := forEachHeader(b[start:end+2], func(h header) bool {
		if isHeader(h.name, "content-length", 'l') {
			cl, perr = atoi(h.value, MaxBodyBytes)
			return false
		}
		return true
	}); err != nil {
		return 0, 0, false, err
	}
	if perr != nil {
		return 0, 0, false, perr
	}
	if cl < 0 {
		// RFC 3261 18.3: mandatory over streams; without it the stream
		// cannot be framed any further.
		return 0, 0, false, fmt.Errorf("%w: no Content-Length on a stream", ErrMalformed)
	}
	total := end + 4 + cl
	if len(b) < total {
		return 0, 0, false, nil
	}
	return 0, total, false, nil
}

func atoi(b []byte, max int) (int, error) {
	if len(b) == 0 || len(b) > 9 {
		return 0, fmt.Errorf("%w: number %q", ErrMalformed, b)
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: number %q", ErrMalformed, b)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("%w: %d over %d", ErrMalformed, n, max)
	}
	return n, nil
}

// BuildResponse appends to dst a 200 OK answering the request req (RFC
// 3261 8.2.6: Via, From, To, Call-ID and CSeq copied in order, a To tag
// added when the request has none). ok is false when req is a response,
// an ACK (never answered, RFC 3261 17.2.1) or lacks a header the answer
// needs.
func BuildResponse(dst, req []byte, toTag string) (out []byte, ok bool) {
	if bytes.HasPrefix(req, []byte("SIP/")) || bytes.HasPrefix(req, []byte("ACK ")) {
		return dst, false
	}
	first := lineEnd(req)
	if bytes.IndexByte(req[:first], ' ') <= 0 || !bytes.HasSuffix(req[:first], []byte(" SIP/2.0")) {
		return dst, false
	}
	hdrEnd := bytes.Index(req, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		hdrEnd = len(req)
	} else {
		hdrEnd += 2
	}
	start := skipEOL(req, first)
	if start > hdrEnd {
		return dst, false
	}
	mark := len(dst)
	dst = append(dst, "SIP/2.0 200 OK\r\n"...)
	var via, cid, cseq, from, to bool
	err := forEachHeader(req[start:hdrEnd], func(h header) bool {
		switch {
		case isHeader(h.name, "via", 'v'):
			via = true
		case isHeader(h.name, "from", 'f'):
			from = true
		case isHeader(h.name, "call-id", 'i'):
			cid = true
		case isHeader(h.name, "cseq", 0):
			cseq = true
		case isHeader(h.name, "to", 't'):
			to = true
			dst = append(dst, bytes.TrimRight(h.line, " \t\r\n")...)
			if !hasTag(h.value) {
				dst = append(dst, ";tag="...)
				dst = append(dst, toTag...)
			}
			dst = append(dst, "\r\n"...)
			return true
		default:
			return true
		}
		dst = append(dst, h.line...)
		dst = append(dst, "\r\n"...)
		return true
	})
	if err != nil || !via || !cid || !cseq || !from || !to {
		return dst[:mark], false
	}
	dst = append(dst, "Content-Length: 0\r\n\r\n"...)
	return dst, true
}

// hasTag: a tag parameter after the URI (inside <> it would be a URI
// parameter, RFC 3261 20.39).
func hasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i:]
	}
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return false
		}
		v = v[i+1:]
		p := trimWS(v)
		if len(p) >= 4 && bytes.EqualFold(p[:4], []byte("tag=")) {
			return true
		}
	}
}
