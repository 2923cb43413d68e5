package msrp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// session is one anchored m=message section: two legs, each an MSRP
// session between an endpoint and the hub.
type session struct {
	r      *Relay
	callID string
	index  int
	legs   [2]*leg // 0: the party of the first offer, 1: the other
	// tapFrom, tapTo: the parties parsed for Config.Tap (nil without one).
	tapFrom, tapTo *sip.Uri

	created    time.Time
	lastActive atomic.Int64 // unix ns of the last frame on either leg

	mu         sync.Mutex
	media      Media // the latest offer's section
	offerSide  int   // leg whose offer awaits an answer, -1 none
	offerSetup string
	answered   bool
	setupStart time.Time
	fileFrom   int  // leg that sends the RFC 5547 file, -1 none
	fileDone   bool // the file's message was seen
	done       bool

	lastAnswerIn, lastAnswerOut []byte
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// end closes both legs and forgets the session.
func (s *session) end(reason string) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	s.mu.Unlock()
	r := s.r
	r.mu.Lock()
	for _, l := range s.legs {
		delete(r.byID, l.hubURI.Session)
	}
	list := r.byCall[s.callID]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byCall, s.callID)
	} else {
		r.byCall[s.callID] = list
	}
	r.mu.Unlock()
	for _, l := range s.legs {
		l.close(reason, false)
	}
	for _, l := range s.legs {
		l.abandonMessages(reason)
	}
	r.log.Debug("MSRP session ended", "call_id", s.callID, "reason", reason)
}

// tick runs once a second: idle and setup timeouts, overdue transactions.
func (s *session) tick(now time.Time) {
	r := s.r
	if now.Sub(time.Unix(0, s.lastActive.Load())) > r.cfg.IdleTimeout {
		s.end("idle timeout")
		return
	}
	s.mu.Lock()
	ready := s.answered && s.legs[0].isBound() && s.legs[1].isBound()
	late := !ready && now.Sub(s.setupStart) > r.cfg.SetupTimeout
	s.mu.Unlock()
	if late {
		s.end("setup timeout")
		return
	}
	for _, l := range s.legs {
		l.expire(now)
	}
}

// leg is the hub's side of one MSRP session with one endpoint.
type leg struct {
	s      *session
	side   int
	net    string // member network of the endpoint
	user   string // its party's AoR
	hubURI URI
	secure bool

	// Set from the SDP under s.mu.
	active   bool     // the hub connects
	peerPath []string // the endpoint's a=path (To-Path of what the hub sends)
	peerFP   string   // its a=fingerprint
	usePath  []string // the member relay's Use-Path (RFC 4976), nil without one

	relay     *RelayAccount // the network's RFC 4976 relay, nil: none
	relayIP   string        // where the AUTH connection reached it (under mu)
	authWait  map[string]chan *Frame
	authCount int // re-AUTHs done (tests)

	out    *outQueue
	ready  chan struct{} // closed once a connection is bound
	gone   chan struct{} // closed when the leg failed or ended
	once   sync.Once
	dialed atomic.Bool

	mu      sync.Mutex // conn, rd, remote, why
	conn    net.Conn
	rd      *Reader
	remote  string
	why     string
	bound   bool
	pending map[string]*pendingTx // the hub's SENDs on this leg, by tid (under s.mu)
	inMsgs  map[string]*message   // messages the endpoint is sending (under s.mu)
	sentIDs map[string]bool       // Message-IDs the hub sent here, for REPORTs (under s.mu)
	sentFIF []string
}

type pendingTx struct {
	msg  *message // nil for the hub's own bodiless SEND
	br   ByteRange
	sent time.Time
	// partial: Failure-Report: partial, so silence is success (RFC 4975
	// section 7.1.2: only negative responses are sent).
	partial bool
}

func newLeg(s *session, side int, net, user string, u URI, secure bool) *leg {
	return &leg{
		s: s, side: side, net: net, user: user, hubURI: u, secure: secure, relay: s.r.settings(net).Relay,
		out: newOutQueue(s.r.cfg.SessionBuffer, &s.r.peakQueued), ready: make(chan struct{}), gone: make(chan struct{}),
		pending: map[string]*pendingTx{}, inMsgs: map[string]*message{}, sentIDs: map[string]bool{},
	}
}

func (l *leg) other() *leg { return l.s.legs[1-l.side] }

func (l *leg) isBound() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bound
}

func (l *leg) boundOrDialing() bool { return l.isBound() || l.dialed.Load() }

// checkPeer verifies that an inbound connection's first request comes from
// the endpoint the SDP announced: its From-Path ends with the endpoint's
// own URI (RFC 4975 section 7.3), and over TLS its certificate matches
// the a=fingerprint the endpoint offered (RFC 4572 section 5). A refusal
// has its metrics cause and the 403 phrase.
func (l *leg) checkPeer(f *Frame, c net.Conn) (cause, why string) {
	l.s.mu.Lock()
	path, fp, active := l.peerPath, l.peerFP, l.active
	l.s.mu.Unlock()
	if active {
		return CauseNotReady, "Hub connects on this leg" // a=setup said so
	}
	if len(path) == 0 {
		return CauseNotReady, "Session not ready"
	}
	if !lastURIEqual(f.FromPath, path) {
		return CauseFromPathMismatch, "From-Path does not match the SDP path"
	}
	if tc, ok := c.(*tls.Conn); ok && fp != "" {
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 || !matchFingerprint(certs[0], fp) {
			return CauseFingerprintMismatch, "Certificate does not match a=fingerprint"
		}
	}
	return "", ""
}

func lastURIEqual(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	u, err1 := ParseURI(a[len(a)-1])
	v, err2 := ParseURI(b[len(b)-1])
	return err1 == nil && err2 == nil && u.Equal(v)
}

// bind attaches a connection and starts the writer.
func (l *leg) bind(c net.Conn, rd *Reader) bool {
	l.mu.Lock()
	if l.bound || l.why != "" {
		l.mu.Unlock()
		return false
	}
	l.conn, l.rd, l.bound, l.remote = c, rd, true, c.RemoteAddr().String()
	l.mu.Unlock()
	close(l.ready)
	if !l.s.r.goTracked(func() { l.writeLoop(c) }) {
		c.Close()
		return false
	}
	return true
}

func (l *leg) writeLoop(c net.Conn) {
	wt := l.s.r.cfg.WriteTimeout
	for {
		items := l.out.pop()
		if items == nil {
			return
		}
		bufs := make(net.Buffers, len(items))
		for i, it := range items {
			bufs[i] = it.b
		}
		_ = c.SetWriteDeadline(time.Now().Add(wt))
		_, err := bufs.WriteTo(c)
		l.out.done(items)
		if err != nil {
			l.close("write: "+err.Error(), true)
			return
		}
	}
}

func (l *leg) readLoop() {
	l.mu.Lock()
	rd := l.rd
	l.mu.Unlock()
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			why := "connection closed"
			if !errors.Is(err, net.ErrClosed) {
				why = "read: " + err.Error()
			}
			l.close(why, true)
			return
		}
		l.handle(f)
		rd.Release(f)
	}
}

// startDial connects to the endpoint when the hub is the active side,
// then binds the connection with a bodiless SEND (RFC 4975 section 5.4).
func (l *leg) startDial() {
	if !l.dialed.CompareAndSwap(false, true) {
		return
	}
	l.s.r.goTracked(l.dial)
}

func (l *leg) dial() {
	r := l.s.r
	l.s.mu.Lock()
	path, fp := l.peerPath, l.peerFP
	l.s.mu.Unlock()
	first, err := ParseURI(path[0])
	if err != nil {
		l.close("bad peer path", true)
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", first.Addr())
	if err != nil {
		l.close("connect: "+err.Error(), true)
		return
	}
	if l.secure {
		conf := &tls.Config{ServerName: first.Host, MinVersion: tls.VersionTLS12}
		if r.cfg.TLS != nil {
			conf.Certificates = r.cfg.TLS.Certificates
			if g := r.cfg.TLS.GetCertificate; g != nil && len(conf.Certificates) == 0 {
				conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return g(&tls.ClientHelloInfo{ServerName: r.cfg.Host})
				}
			}
		}
		if fp != "" {
			// Self-signed endpoint certificates: the SDP fingerprint is
			// the trust anchor (RFC 4572 section 5).
			conf.InsecureSkipVerify = true
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !matchFingerprint(cs.PeerCertificates[0], fp) {
					return errors.New("endpoint certificate does not match its a=fingerprint")
				}
				return nil
			}
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			l.close("tls: "+err.Error(), true)
			return
		}
		c = tc
	}
	rd := r.newReader(c)
	if !l.bind(c, rd) {
		c.Close()
		return
	}
	r.prom.connected(LegOutbound, l.secure)
	l.sendBind(path)
	l.readLoop()
}

// sendBind queues the bodiless SEND with which the active side binds a
// connection (RFC 4975 section 5.4); toPath includes a relay's Use-Path.
func (l *leg) sendBind(toPath []string) {
	bindSend := &Frame{TID: newTID(nil), Method: "SEND", ToPath: toPath, FromPath: []string{l.hubURI.String()},
		MessageID: randomID(8), ByteRange: ByteRange{1, 0, 0}, HasByteRange: true, Flag: FlagEnd}
	l.s.mu.Lock()
	l.pending[bindSend.TID] = &pendingTx{sent: time.Now()}
	l.s.mu.Unlock()
	l.out.push(bindSend.Append(nil), false)
}

// close fails the leg once: the connection is closed, the hub's SENDs
// still waiting for a response are reported to their senders (000 408),
// and the other leg's endpoint gets 481 for whatever it sends next.
// failed is false when the session ends on purpose.
func (l *leg) close(why string, failed bool) {
	first := false
	l.once.Do(func() { first = true })
	if !first {
		return
	}
	l.mu.Lock()
	if l.why == "" {
		l.why = why
	}
	c := l.conn
	l.mu.Unlock()
	close(l.gone)
	l.out.close()
	if c != nil {
		c.Close()
	}
	s := l.s
	s.mu.Lock()
	pend := l.pending
	l.pending = map[string]*pendingTx{}
	s.mu.Unlock()
	if failed {
		s.r.count(func(m *Metrics) { m.Failed++ })
		s.r.log.Info("MSRP leg failed", "call_id", s.callID, "network", l.net, "why", why)
	}
	for _, p := range pend {
		if p.msg != nil {
			s.chunkFailed(p.msg, p.br, 408, "Request Timeout", "receiving leg closed: "+why, true)
		}
	}
	if failed {
		l.abandonMessages("sending leg closed: " + why)
	}
}

// expire fails the hub's SENDs on l that waited too long for a response.
func (l *leg) expire(now time.Time) {
	s := l.s
	var late []*pendingTx
	s.mu.Lock()
	for tid, p := range l.pending {
		if now.Sub(p.sent) > s.r.cfg.TransactionTimeout {
			late = append(late, p)
			delete(l.pending, tid)
		}
	}
	s.mu.Unlock()
	for _, p := range late {
		switch {
		case p.msg == nil:
		case p.partial:
			s.chunkDelivered(p.msg)
		default:
			s.chunkFailed(p.msg, p.br, 408, "Request Timeout", "no response from the receiving endpoint", true)
		}
	}
}

// abandonMessages finishes the messages l's endpoint was still sending.
func (l *leg) abandonMessages(why string) {
	s := l.s
	s.mu.Lock()
	var open []*message
	for id, m := range l.inMsgs {
		open = append(open, m)
		delete(l.inMsgs, id)
	}
	s.mu.Unlock()
	for _, m := range open {
		s.finishMessage(m, 0, "incomplete: "+why, true)
	}
}

// peerCert is the endpoint's TLS certificate, if any (tests).
func (l *leg) peerCert() *x509.Certificate {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc, ok := l.conn.(*tls.Conn); ok {
		if cs := tc.ConnectionState().PeerCertificates; len(cs) > 0 {
			return cs[0]
		}
	}
	return nil
}
