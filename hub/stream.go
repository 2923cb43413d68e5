package hub

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// memberConn is an accepted TCP or TLS connection. sipgo keeps it as the
// net.Conn inside its *sip.TCPConnection and reads through it, so the hub
//
//   - caches the TLS identity once per connection (and again only when the
//     cluster state changes);
//   - frames the stream itself (RFC 3261 18.3: Content-Length delimits
//     messages on a stream), takes the non-INVITE requests and the lean
//     responses for the lean path, answers a message that frames but does
//     not parse with 400 instead of losing the connection, and hands sipgo
//     only the bytes of INVITE, ACK and CANCEL (and what is not the hub's).
//
// Read is called by sipgo's single read loop of the connection; Write may be
// called concurrently by sipgo and the hub (net.TCPConn and tls.Conn write a
// whole buffer under their own lock, so messages never interleave).
type memberConn struct {
	net.Conn
	tls       *tls.Conn // nil for plain TCP
	h         *Hub
	transport string // "TCP" or "TLS"
	src       string // remote address
	srcAP     netip.AddrPort
	ident     atomic.Pointer[identity]

	rbuf []byte
	in   []byte // received, not yet framed
	out  []byte // framed messages for sipgo, not yet read
}

// streamListener wraps a TCP listener so that every accepted connection is
// a *memberConn. The TLS handshake is not done here (Accept is serial); it
// runs on the connection's first Read, bounded by the transport read
// timeout.
type streamListener struct {
	net.Listener
	config *tls.Config // nil: plain TCP
	h      *Hub
}

func (l *streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	mc := &memberConn{Conn: c, h: l.h, transport: "TCP", src: c.RemoteAddr().String()}
	if l.config != nil {
		mc.tls = tls.Server(c, l.config)
		mc.Conn = mc.tls
		mc.transport = "TLS"
	}
	if ap, err := netip.ParseAddrPort(mc.src); err == nil {
		mc.srcAP = ap
	}
	return mc, nil
}

// errFraming ends a connection whose stream cannot be delimited any more.
var errFraming = errors.New("SIP stream framing lost")

func (c *memberConn) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.rbuf == nil {
			c.rbuf = make([]byte, 16<<10)
		}
		n, err := c.Conn.Read(c.rbuf)
		if n > 0 {
			c.in = append(c.in, c.rbuf[:n]...)
			if ferr := c.frame(); ferr != nil {
				return 0, ferr
			}
		}
		if err != nil {
			if len(c.out) > 0 {
				break
			}
			if r := (*refusal)(nil); errors.As(err, &r) {
				// The hub logged, counted and audited the refused
				// handshake (handshakeRefused); sipgo would log it again
				// as a read error on its global logger.
				return 0, io.EOF
			}
			return 0, err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
	}
	return n, nil
}

// frame consumes every complete message in c.in.
func (c *memberConn) frame() error {
	maxSize := c.h.cfg.MaxMessageSize
	off := 0
	defer func() {
		if off > 0 {
			n := copy(c.in, c.in[off:])
			c.in = c.in[:n]
			if n == 0 && cap(c.in) > 64<<10 {
				c.in = nil // do not keep a large buffer for an idle connection
			}
		}
	}()
	for {
		in := c.in[off:]
		// RFC 5626 3.5.1 keep-alives between messages: a double CRLF is a
		// ping answered with a single CRLF (pong); a lone CRLF is ignored.
		if len(in) >= 4 && string(in[:4]) == "\r\n\r\n" {
			_, _ = c.Conn.Write([]byte("\r\n"))
			off += 4
			continue
		}
		if len(in) >= 2 && string(in[:2]) == "\r\n" {
			off += 2
			continue
		}
		end := bytes.Index(in, []byte("\r\n\r\n"))
		if end < 0 {
			if len(in) > maxSize {
				return errFraming // no end of headers within the size limit
			}
			return nil
		}
		cl, has, ok := contentLength(in[:end])
		if !ok || cl > maxSize {
			// RFC 3261 18.3: without a usable Content-Length the end of
			// the message is unknown; nothing can be answered safely.
			c.h.m.malformed.Inc()
			return errFraming
		}
		total := end + 4 + cl
		if total > maxSize {
			c.h.m.malformed.Inc()
			return errFraming
		}
		if len(in) < total {
			return nil
		}
		msg := in[:total]
		off += total
		if !has {
			// RFC 3261 18.3 / 20.14: Content-Length is mandatory on
			// streams; the message ends at the blank line.
			c.h.refuseStream(c, msg, 400, "Bad Request", "Content-Length missing on a stream transport")
			continue
		}
		if c.h.streamMessage(c, msg) {
			c.out = append(c.out, msg...)
		}
	}
}

// contentLength finds the Content-Length (or compact "l") header in a header
// block. ok is false when the value is not a non-negative number.
func contentLength(head []byte) (n int, has, ok bool) {
	for len(head) > 0 {
		line := head
		if i := bytes.Index(head, []byte("\r\n")); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			head = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(line[colon+1:])))
		if err != nil || v < 0 {
			return 0, true, false
		}
		return v, true, true
	}
	return 0, false, true
}

// streamMessage handles one framed message from a member connection; true
// hands it on to sipgo.
func (h *Hub) streamMessage(c *memberConn, raw []byte) bool {
	msg, err := h.parser.ParseSIP(raw)
	if err != nil {
		h.refuseStream(c, raw, 400, "Bad Request", "malformed: "+sanitize(err.Error()))
		return false
	}
	switch m := msg.(type) {
	case *sip.Request:
		if !isLeanMethod(m.Method) {
			return true
		}
		m.SetTransport(c.transport)
		m.SetSource(c.src)
		h.leanRequest(m, upPath{conn: c})
		return false
	case *sip.Response:
		m.SetTransport(c.transport)
		m.SetSource(c.src)
		return !h.leanResponse(m)
	}
	return true
}

// refuseStream answers an unparsable request read from a stream with code
// (responses are dropped), audited like refuseRaw.
func (h *Hub) refuseStream(c *memberConn, raw []byte, code int, reason, detail string) {
	h.m.malformed.Inc()
	if bytes.HasPrefix(raw, []byte("SIP/")) {
		return
	}
	select {
	case h.badSem <- struct{}{}:
	default:
		return
	}
	data := bytes.Clone(raw[:min(len(raw), 8192)])
	if !h.spawn(func() {
		defer func() { <-h.badSem }()
		h.answerRaw(c.srcAP, c.transport, data, code, reason, detail, func(b []byte) error {
			_, err := c.Write(b)
			return err
		})
	}) {
		<-h.badSem
	}
}
