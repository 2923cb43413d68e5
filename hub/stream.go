package hub

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
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
//     only the bytes of INVITE, ACK and CANCEL (and what is not the hub's);
//   - refuses, unparsed, what a source no active member network is known
//     for sends (guard.go);
//   - owns the read deadlines (sipgo's are ignored): the TLS handshake must
//     end within HandshakeTimeout of the accept, a message must arrive
//     whole within HeaderTimeout of its first byte, and a connection
//     closes after IdleTimeout without a useful message: only a member's
//     messages and RFC 5626 pings refresh it, so a stranger's connection
//     lives at most IdleTimeout whatever it sends.
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
	slot      connSlot // in h.conns; guarded by h.conns.mu
	closed    atomic.Bool

	// Write combining (Write).
	wmu     sync.Mutex
	wbuf    []byte // waiting for the writer
	wspare  []byte // the writer's last buffer, reused
	writing bool
	werr    error // sticky: the first failed write

	// Read-loop state.
	rbuf      []byte
	in        []byte // received, not yet framed
	out       []byte // framed messages for sipgo, not yet read
	accepted  time.Time
	handshook bool
	member    bool      // attributed to an active network (pings refresh idleUntil)
	idleUntil time.Time // closes without a useful message by then
	msgStart  time.Time // first byte of the partial message in c.in
	armed     time.Time // read deadline set on the connection
	armedWhy  string    // what the armed deadline enforces (metric label)
}

// streamListener wraps a TCP listener so that every accepted connection is
// a *memberConn, within the connection caps. The TLS handshake is not done
// here (Accept is serial); it runs on the connection's first Read, bounded
// by HandshakeTimeout.
type streamListener struct {
	net.Listener
	config *tls.Config // nil: plain TCP
	h      *Hub
}

// Accept retries temporary errors (EMFILE, ENFILE, ...) with a backoff of
// 5 ms doubling to 1 s, as net/http does, instead of ending the listener:
// the connection waits in the kernel's backlog while descriptors free up.
// Connections over a cap are closed at once and counted (guard.go).
func (l *streamListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAccept(err) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.h.m.acceptErrs.Inc()
			l.h.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.h.done():
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if mc := l.h.admitConn(c, l.config); mc != nil {
			return mc, nil
		}
	}
}

// temporaryAccept reports whether an accept error is worth retrying: out
// of descriptors or buffers, or a connection that died in the backlog.
func temporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// done is closed when the hub closes (nil-safe before Run).
func (h *Hub) done() <-chan struct{} {
	if h.ctx == nil {
		return nil
	}
	return h.ctx.Done()
}

// admitConn wraps an accepted connection, or closes it when a cap refuses
// it. Plain TCP is attributed by source address here (and again per
// message); TLS counts against its source address until the certificate
// names a network.
func (h *Hub) admitConn(c net.Conn, config *tls.Config) *memberConn {
	now := time.Now()
	mc := &memberConn{Conn: c, h: h, transport: "TCP", src: c.RemoteAddr().String(), accepted: now, idleUntil: now.Add(h.cfg.IdleTimeout)}
	if ap, err := netip.ParseAddrPort(mc.src); err == nil {
		mc.srcAP = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if config != nil {
		mc.tls = tls.Server(c, config)
		mc.Conn = mc.tls
		mc.transport = "TLS"
	}
	mc.slot.ip = mc.srcAP.Addr()
	if v := h.state.State().NetworkByAddr(mc.slot.ip); v != nil {
		mc.slot.netID = v.GetId()
		mc.member = mc.tls == nil && v.Active()
	}
	if label, why := h.conns.admit(&h.cfg, &mc.slot); label != "" {
		_ = c.Close()
		h.connRefused(mc, label, why)
		return nil
	}
	h.m.connsOpen.Inc()
	return mc
}

func (h *Hub) connRefused(c *memberConn, label, why string) {
	h.m.connRefused.WithLabelValues(label).Inc()
	h.guard.count(aggKey{src: c.srcAP.Addr(), transport: strings.ToLower(c.transport), what: "connections", label: label, srcNet: c.slot.netID},
		c.srcAP, "", why, false)
}

// Close releases the connection's slot (once) and closes it.
func (c *memberConn) Close() error {
	if c.closed.CompareAndSwap(false, true) && c.h != nil {
		c.h.conns.release(&c.slot)
		c.h.m.connsOpen.Dec()
	}
	return c.Conn.Close()
}

// Write combines concurrent writes: a writer that finds another one
// writing leaves its bytes in the connection's buffer and returns; the one
// writing takes what piled up with its next system call (and, over TLS,
// its next record). Pipelined responses on one connection then cost one
// write per burst instead of one each. Order is kept (one writer at a
// time, appending in arrival order). Every write is bounded (a peer that
// stops reading must not hold a writer, or the read loop answering it,
// forever), and so is the buffer: past maxPendingWrite bytes a write is
// refused rather than queued. After a failed write the connection refuses
// every later one with that error.
func (c *memberConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return 0, err
	}
	if len(c.wbuf)+len(b) > maxPendingWrite {
		c.wmu.Unlock()
		return 0, errWriteBacklog
	}
	c.wbuf = append(c.wbuf, b...)
	if c.writing {
		c.wmu.Unlock()
		return len(b), nil
	}
	c.writing = true
	for len(c.wbuf) > 0 && c.werr == nil {
		out := c.wbuf
		c.wbuf = c.wspare[:0]
		c.wmu.Unlock()
		if c.h != nil {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(max(c.h.cfg.TransactionTimeout, time.Second)))
		}
		_, err := c.Conn.Write(out)
		c.wmu.Lock()
		if cap(out) <= 64<<10 {
			c.wspare = out[:0]
		} else {
			c.wspare = nil
		}
		if err != nil {
			c.werr = err
		}
	}
	c.writing = false
	err := c.werr
	c.wbuf = c.wbuf[:0]
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// maxPendingWrite bounds the bytes waiting for a connection's writer.
const maxPendingWrite = 4 << 20

var errWriteBacklog = errors.New("connection write backlog full")

// SetReadDeadline ignores sipgo's per-read deadline: Read sets its own.
func (c *memberConn) SetReadDeadline(time.Time) error { return nil }

// errFraming ends a connection whose stream cannot be delimited any more.
var errFraming = errors.New("SIP stream framing lost")

func (c *memberConn) Read(b []byte) (int, error) {
	if c.tls != nil && !c.handshook {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	for len(c.out) == 0 {
		if c.rbuf == nil {
			c.rbuf = make([]byte, 16<<10)
		}
		if err := c.arm(); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(c.rbuf)
		if n > 0 {
			now := time.Now()
			if len(c.in) == 0 {
				c.msgStart = now
			}
			c.in = append(c.in, c.rbuf[:n]...)
			if ferr := c.frame(now); ferr != nil {
				// Counted and accounted for by frame; EOF keeps sipgo
				// from logging every junk stream as an error.
				c.h.m.connClosed.WithLabelValues("framing").Inc()
				return 0, io.EOF
			}
		}
		if err != nil {
			if len(c.out) > 0 {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.h.m.connClosed.WithLabelValues(c.armedWhy).Inc()
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

// arm sets the read deadline the connection is due to meet.
func (c *memberConn) arm() error {
	dl, why := c.idleUntil, "idle"
	if len(c.in) > 0 && !c.msgStart.IsZero() {
		if hd := c.msgStart.Add(c.h.cfg.HeaderTimeout); hd.Before(dl) {
			dl, why = hd, "header_timeout"
		}
	}
	c.armedWhy = why
	if dl.Equal(c.armed) {
		return nil
	}
	c.armed = dl
	return c.Conn.SetReadDeadline(dl)
}

// handshake runs the TLS handshake within HandshakeTimeout of the accept
// and files the connection under the network its certificate names.
func (c *memberConn) handshake() error {
	h := c.h
	_ = c.Conn.SetDeadline(c.accepted.Add(h.cfg.HandshakeTimeout))
	if err := c.tls.Handshake(); err != nil {
		var r *refusal
		var ne net.Error
		switch {
		case errors.As(err, &r):
			// Logged, counted and audited by handshakeRefused; sipgo
			// would log it again as a read error on its global logger.
			h.m.connClosed.WithLabelValues("handshake_refused").Inc()
		case errors.As(err, &ne) && ne.Timeout():
			h.m.connClosed.WithLabelValues("handshake_timeout").Inc()
		default:
			h.m.connClosed.WithLabelValues("handshake_failed").Inc()
			h.log.Debug("TLS handshake failed", "remote", c.src, "err", err)
		}
		return io.EOF
	}
	c.handshook = true
	_ = c.Conn.SetDeadline(time.Time{})
	c.armed = time.Time{}
	if v, _ := h.attributeTLS(h.state.State(), c); v != nil {
		c.member = v.Active()
		if label, why := h.conns.move(&h.cfg, &c.slot, connSlot{netID: v.GetId()}); label != "" {
			h.connRefused(c, label, why)
			return io.EOF
		}
	}
	return nil
}

// frame consumes every complete message in c.in.
func (c *memberConn) frame(now time.Time) error {
	maxSize := c.h.cfg.MaxMessageSize
	off := 0
	defer func() {
		if off > 0 {
			n := copy(c.in, c.in[off:])
			c.in = c.in[:n]
			if n == 0 && cap(c.in) > 64<<10 {
				c.in = nil // do not keep a large buffer for an idle connection
			}
			// What is left started in this read.
			c.msgStart = now
		}
		if len(c.in) == 0 {
			c.msgStart = time.Time{}
		}
	}()
	for {
		in := c.in[off:]
		// RFC 5626 3.5.1 keep-alives between messages: a double CRLF is a
		// ping answered with a single CRLF (pong); a lone CRLF is ignored.
		// Only a member's pings keep the connection open (4.4.1: they
		// exist to keep a flow alive, which a stranger has no use for).
		if len(in) >= 4 && string(in[:4]) == "\r\n\r\n" {
			_, _ = c.Write([]byte("\r\n"))
			if c.member {
				c.idleUntil = now.Add(c.h.cfg.IdleTimeout)
			}
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
				c.framingLost(in, "no end of headers within the size limit")
				return errFraming
			}
			return nil
		}
		cl, has, ok := contentLength(in[:end])
		if !ok || cl > maxSize || end+4+cl > maxSize {
			// RFC 3261 18.3: without a usable Content-Length the end of
			// the message is unknown; nothing can be answered safely.
			c.framingLost(in, "unusable Content-Length")
			return errFraming
		}
		total := end + 4 + cl
		if len(in) < total {
			return nil
		}
		msg := in[:total]
		off += total
		if !c.h.streamSource(c, msg) {
			continue
		}
		if !has {
			// RFC 3261 18.3 / 20.14: Content-Length is mandatory on
			// streams; the message ends at the blank line.
			c.h.refuseStream(c, msg, "missing_header", 400, "Bad Request", "Content-Length missing on a stream transport")
			continue
		}
		if c.member {
			c.idleUntil = now.Add(c.h.cfg.IdleTimeout)
		}
		if c.h.streamMessage(c, msg) {
			c.out = append(c.out, msg...)
		}
	}
}

// framingLost accounts for the bytes dropped with a connection whose
// stream cannot be delimited.
func (c *memberConn) framingLost(in []byte, why string) {
	c.h.m.malformed.Inc()
	c.h.refuse(rawRefusal{transport: strings.ToLower(c.transport), src: c.srcAP, srcNet: c.slot.netID, data: in[:min(len(in), 8192)],
		label: "framing", detail: "stream framing lost (" + why + "), connection closed"})
}

// streamSource decides whether a framed message may go on: false when its
// connection is not attributed to an active member network (the message
// is refused unparsed, guard.go), except for responses to the hub's own
// forwards. It also tells whether pings may keep the connection open.
func (h *Hub) streamSource(c *memberConn, msg []byte) bool {
	st := h.state.State()
	var v *raft.NetworkView
	why := ""
	if c.tls != nil {
		v, why = h.attributeTLS(st, c)
	} else {
		v = st.NetworkByAddr(c.srcAP.Addr())
		why = "source address not in any member network's lab prefixes"
	}
	c.member = v != nil && v.Active()
	if c.member {
		return true
	}
	label, detail := "unattributed", "unattributable source: "+why
	if v != nil {
		label, detail = "suspended", "source network suspended"
	}
	r := rawRefusal{transport: strings.ToLower(c.transport), src: c.srcAP, srcNet: netIDOf(v), data: msg, label: label,
		code: 403, reason: "Forbidden", detail: detail, send: c.writeAll}
	if bytes.HasPrefix(msg, []byte("SIP/")) {
		branch := rawBranch(msg)
		if strings.HasPrefix(branch, branchPrefix) && (h.lean.waiting(branch) || h.guard.passResponse(c.srcAP.Addr())) {
			return true
		}
		r.code, r.detail = 0, "response dropped: "+detail+", no transaction of the hub"
	}
	h.refuse(r)
	return false
}

func (c *memberConn) writeAll(b []byte) error {
	_, err := c.Write(b)
	return err
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
		h.refuseStream(c, raw, "malformed", 400, "Bad Request", "malformed: "+sanitize(err.Error()))
		return false
	}
	switch m := msg.(type) {
	case *sip.Request:
		if reason, detail := missingMandatory(m); reason != "" {
			h.refuseStream(c, raw, "missing_header", 400, reason, detail)
			return false
		}
		if !isLeanMethod(m.Method) {
			return true
		}
		m.SetTransport(c.transport)
		m.SetSource(c.src)
		h.leanRequest(m, upPath{conn: c}, raw, time.Time{})
		return false
	case *sip.Response:
		m.SetTransport(c.transport)
		m.SetSource(c.src)
		return !h.leanResponse(m)
	}
	return true
}

// refuseStream answers an unparsable request read from a stream with code
// (responses are dropped), accounted for like every refusal (guard.go).
func (h *Hub) refuseStream(c *memberConn, raw []byte, label string, code int, reason, detail string) {
	h.m.malformed.Inc()
	h.refuse(rawRefusal{transport: strings.ToLower(c.transport), src: c.srcAP, srcNet: c.slot.netID, data: raw, label: label,
		code: code, reason: reason, detail: detail, send: c.writeAll})
}
