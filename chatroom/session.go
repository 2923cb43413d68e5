package chatroom

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/msrp"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Session-mode rooms (RFC 7701): an INVITE to a room URI with an MSRP offer
// joins the room with the hub as the chat-room focus. The focus terminates
// MSRP itself (this file; the frame reader and writer are hub/msrp's):
//
//   - the answer names a hub MSRP URI, a=setup:passive (the participant
//     connects, RFC 4975 5.4) and a=chatroom:nickname private-messages
//     (RFC 7701 5);
//   - a SEND from a participant must be message/cpim whose From is the
//     participant's own address, the identity its network vouched for in
//     the SIP From (403 otherwise, RFC 7701 9); To the room (or absent):
//     ordered and replicated like a pager message (PostRoomMessage) and
//     answered 200 only once committed; To one participant: a private
//     message (RFC 7701 8), delivered to that participant only, never in
//     the history (404 when nobody in the room has that address);
//   - NICKNAME with Use-Nickname (RFC 7701 7): 424 malformed, 425 taken;
//   - the participant's record names this node (session_node): the FSM
//     leaves it out of pager fan-outs, and this node sends it every new
//     room message over the session, CPIM-wrapped with the speaker in the
//     CPIM From (RFC 7701 6);
//   - BYE ends the session; a participant the INVITE made leaves the room.
//
// A session is node memory, like the relay's: when the node dies the MSRP
// connection drops; the participant re-INVITEs (another node answers).
// Records naming a node that restarted or left the cluster are cleaned up.

// sessionMaxMessage bounds one reassembled SEND (the room's body limit).
const sessionMaxMessage = raft.MaxRoomBody

// sessionQueue bounds frames waiting toward one participant; a participant
// that falls this far behind is disconnected rather than buffered for.
const sessionQueue = 512

// capLabel is the cap label of clearhub_rooms_session_connections_refused_total
// for each reason the gate gives.
var capLabel = map[string]string{
	msrp.RefusedTotal:      "total",
	msrp.RefusedPerSource:  "per_source",
	msrp.RefusedPendingSrc: "pending_per_source",
}

type focus struct {
	s    *Service
	ln   net.Listener
	host string
	port int
	// TCP/TLS/MSRP (RFC 4975 14.1): the node certificate, its SHA-256
	// fingerprint in the answer (RFC 4572); nil tlsLn: no TLS.
	tlsLn   net.Listener
	tlsPort int
	tlsConf *tls.Config
	// gate caps inbound connections (both listeners), see Config.
	gate *msrp.ConnGate

	mu      sync.Mutex
	legs    map[string]*sessionLeg // hub session-id -> leg
	byCall  map[string]*sessionLeg // SIP Call-ID -> leg
	cleanup map[string]bool        // room+" "+user being cleaned up
}

type sessionLeg struct {
	f       *focus
	id      string
	room    string
	user    string
	network string
	callID  string
	hubURI  string
	peer    []string // the participant's a=path
	answer  []byte   // SDP answer, for a retransmitted INVITE
	secure  bool     // TCP/TLS/MSRP
	peerFP  string   // the offer's a=fingerprint ("" none)
	byINV   bool     // the INVITE made the participant
	ready   bool     // the record naming this node is committed (f.mu)
	// userURI, roomURI: the parties for Config.Tap (nil without a tap).
	userURI, roomURI *sip.Uri

	mu       sync.Mutex
	conn     net.Conn
	out      chan []byte
	lastSeq  uint64 // room messages up to here were sent (or were its own)
	partial  map[string]*bytes.Buffer
	partCT   map[string]string
	closed   bool
	closedCh chan struct{}
}

func newFocus(s *Service) (*focus, error) {
	if s.cfg.SessionAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.SessionAddr)
	if err != nil {
		return nil, fmt.Errorf("chatroom: MSRP focus listener: %w", err)
	}
	host := s.cfg.SessionHost
	if host == "" {
		host, _, _ = net.SplitHostPort(ln.Addr().String())
	}
	f := &focus{s: s, ln: ln, host: host, port: ln.Addr().(*net.TCPAddr).Port,
		gate: msrp.NewConnGate(s.cfg.SessionMaxConns, s.cfg.SessionMaxConnsPerIP, s.cfg.SessionMaxPendingPerIP),
		legs: map[string]*sessionLeg{}, byCall: map[string]*sessionLeg{}, cleanup: map[string]bool{}}
	if s.cfg.SessionTLSAddr != "" {
		if s.cfg.SessionTLS == nil {
			ln.Close()
			return nil, errors.New("chatroom: SessionTLSAddr needs SessionTLS (the node certificate)")
		}
		tl, err := net.Listen("tcp", s.cfg.SessionTLSAddr)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("chatroom: MSRP focus TLS listener: %w", err)
		}
		conf := s.cfg.SessionTLS.Clone()
		// The participant's certificate is checked against its offered
		// fingerprint, not a CA (RFC 4572 5): ask for it, verify nothing.
		conf.ClientAuth = tls.RequestClientCert
		f.tlsLn, f.tlsPort, f.tlsConf = tl, tl.Addr().(*net.TCPAddr).Port, conf
	}
	return f, nil
}

// SessionAddr is the focus's MSRP listen address (nil: session mode off).
func (s *Service) SessionAddr() net.Addr {
	if s.focus == nil {
		return nil
	}
	return s.focus.ln.Addr()
}

func (f *focus) closeListeners() {
	f.ln.Close()
	if f.tlsLn != nil {
		f.tlsLn.Close()
	}
}

func (f *focus) run() {
	f.s.goBG(func() {
		<-f.s.ctx.Done()
		f.closeListeners()
		f.mu.Lock()
		legs := make([]*sessionLeg, 0, len(f.legs))
		for _, l := range f.legs {
			legs = append(legs, l)
		}
		f.mu.Unlock()
		for _, l := range legs {
			l.close("shutdown")
		}
	})
	f.s.goBG(func() { f.acceptLoop(f.ln, false) })
	if f.tlsLn != nil {
		f.s.goBG(func() { f.acceptLoop(f.tlsLn, true) })
	}
}

// acceptLoop serves ln until it is closed (shutdown). Every other Accept
// error (EMFILE, ECONNABORTED, anything unknown) is retried after a
// backoff: returning would end session mode on this node for good, and a
// connection waits in the kernel's backlog while descriptors free up.
func (f *focus) acceptLoop(ln net.Listener, secure bool) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.s.ctx.Err() != nil {
				return
			}
			delay = msrp.NextAcceptDelay(delay)
			f.s.m.acceptErrs.Inc()
			// One line per backoff step: at most one a second once the
			// delay is at its ceiling.
			f.s.log.Warn("room MSRP accept failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-f.s.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		ip := msrp.SourceIP(c.RemoteAddr())
		if ok, why := f.gate.Admit(ip); !ok {
			// Closed before any byte is read: no goroutine, no buffer.
			// Counted before the close, so a peer that saw the close
			// also sees it in the metric.
			f.s.m.connRefused.WithLabelValues(capLabel[why]).Inc()
			c.Close()
			if f.gate.ShouldLog(time.Now()) {
				f.s.log.Warn("room MSRP connection refused", "remote", c.RemoteAddr().String(), "why", why, "refused", f.gate.Refused())
			}
			continue
		}
		f.s.goBG(func() { f.serveConn(c, secure, ip) })
	}
}

// fingerprint is the SHA-256 fingerprint of the node certificate, as
// a=fingerprint wants it (RFC 4572 5).
func (f *focus) fingerprint() (string, error) {
	var cert *tls.Certificate
	var err error
	switch {
	case f.tlsConf.GetCertificate != nil:
		cert, err = f.tlsConf.GetCertificate(&tls.ClientHelloInfo{})
	case len(f.tlsConf.Certificates) > 0:
		cert = &f.tlsConf.Certificates[0]
	default:
		return "", errors.New("no node certificate")
	}
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return "", fmt.Errorf("node certificate: %v", err)
	}
	return "SHA-256 " + fpHex(cert.Certificate[0]), nil
}

func fpHex(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, x := range sum {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{x}))
	}
	return strings.Join(parts, ":")
}

// fingerprintMatches checks a certificate against an offered a=fingerprint
// ("sha-256 AB:CD:..."; SHA-256 only).
func fingerprintMatches(der []byte, offered string) bool {
	alg, v, ok := strings.Cut(strings.TrimSpace(offered), " ")
	return ok && strings.EqualFold(alg, "sha-256") && strings.EqualFold(strings.TrimSpace(v), fpHex(der))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serveInvite answers an INVITE to a room: joins the sender in session
// mode, or refuses with a specific reason.
func (f *focus) serveInvite(r *Request) {
	req := r.Req
	cid := ""
	if h := req.CallID(); h != nil {
		cid = h.Value()
	}
	f.mu.Lock()
	if l := f.byCall[cid]; l != nil && cid != "" {
		f.mu.Unlock()
		f.answer(r, l) // a retransmission or a re-INVITE: same answer
		return
	}
	f.mu.Unlock()
	room, err := f.s.RoomURI(req.Recipient.User + "@" + req.Recipient.Host)
	if err != nil || req.Recipient.User == "" {
		respond(r, 404, "Room Not Found")
		return
	}
	sender, err := senderOf(req)
	if err != nil {
		respond(r, 400, "Bad From Address")
		return
	}
	var media *msrp.Media
	for _, m := range msrp.ParseSDP(req.Body()) {
		if m.Port != 0 {
			media = &m
			break
		}
	}
	switch {
	case media == nil:
		respond(r, 488, "Room Session Needs An MSRP Offer")
		return
	case media.Proto == msrp.ProtoTLS && f.tlsLn == nil:
		respond(r, 488, "Room Focus Takes TCP/MSRP Only")
		return
	case media.Proto != msrp.ProtoTCP && media.Proto != msrp.ProtoTLS:
		respond(r, 488, "Room Session Needs An MSRP Offer")
		return
	case media.Setup == "passive":
		// RFC 6135: the offerer insists the focus connect out; the
		// focus only listens.
		respond(r, 488, "Room Focus Does Not Connect Out")
		return
	case len(media.Path) == 0:
		respond(r, 488, "MSRP Offer Without Path")
		return
	}
	for _, p := range media.Path {
		if _, err := msrp.ParseURI(p); err != nil {
			respond(r, 488, "Bad MSRP Path In Offer")
			return
		}
	}
	st := f.s.cfg.Store.State()
	rm := st.Room(room)
	if rm == nil {
		respond(r, 404, "Room Not Found")
		return
	}
	if raft.RoomBanFor(rm, sender, r.Source) != nil {
		respond(r, 403, "Banned From Room")
		return
	}
	cur := raft.RoomMember(rm, sender)
	var m *hubv1.RoomMember
	byINV := false
	switch {
	case cur == nil && rm.GetMembersOnly():
		respond(r, 403, "Not A Room Participant")
		return
	case cur == nil:
		if len(rm.GetMembers()) >= f.s.cfg.MaxMembersCap {
			respond(r, 486, "Room Is Full")
			return
		}
		m = &hubv1.RoomMember{User: sender, Network: r.Source, Nickname: defaultNick(rm, sender), State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED}
		byINV = true
	case cur.GetNetwork() != r.Source:
		respond(r, 403, "Participant Belongs To Another Network")
		return
	case cur.GetSessionNode() != "":
		// One session per participant: a second device would split what
		// the participant receives between two legs.
		respond(r, 486, "Participant Already In A Session")
		return
	default:
		m = cloneMember(cur)
		m.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED // INVITE accepts an invitation
	}
	m.SessionNode, m.JoinedBySession = f.s.cfg.NodeID, byINV
	l := &sessionLeg{f: f, id: randomHex(10), room: room, user: sender, network: r.Source, callID: cid, peer: media.Path, byINV: byINV,
		out: make(chan []byte, sessionQueue), partial: map[string]*bytes.Buffer{}, partCT: map[string]string{}, closedCh: make(chan struct{}),
		lastSeq: rm.GetLastSeq()}
	l.secure, l.peerFP = media.Proto == msrp.ProtoTLS, media.Fingerprint
	if f.s.cfg.Tap != nil {
		l.userURI, l.roomURI = msrp.ParseParty(l.user), msrp.ParseParty(l.room)
	}
	u := msrp.URI{Scheme: "msrp", Host: f.host, Port: f.port, Session: l.id, Transport: "tcp"}
	if l.secure {
		u.Scheme, u.Port = "msrps", f.tlsPort
	}
	l.hubURI = u.String()
	if l.answer, err = f.sdpAnswer(l); err != nil {
		f.s.log.Error("room focus: no TLS fingerprint", "err", err)
		respond(r, 500, "Room Focus Certificate Unavailable")
		return
	}
	// Registered before the record names this node, so the cleanup of
	// stale session records never takes a live one for dead.
	f.mu.Lock()
	f.legs[l.id], f.byCall[cid] = l, l
	f.mu.Unlock()
	if err := f.s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m, Create: byINV}}, sender); err != nil {
		f.forget(l)
		code, reason := refusal(err)
		if errors.Is(err, raft.ErrAlreadyExists) {
			code, reason = 486, "Participant Already In A Session"
		}
		respond(r, code, reason)
		return
	}
	f.mu.Lock()
	l.ready = true
	f.mu.Unlock()
	f.s.audit(room, sender, r.Source, fmt.Sprintf("joined in session mode (MSRP %s)", l.hubURI))
	f.answer(r, l)
	// The session's own deadline: a participant that never connects is
	// taken out again.
	f.s.goBG(func() {
		select {
		case <-f.s.ctx.Done():
		case <-l.closedCh:
		case <-time.After(f.s.cfg.SessionSetupTimeout):
			l.mu.Lock()
			bound := l.conn != nil
			l.mu.Unlock()
			if !bound {
				f.end(l, "the participant never connected its MSRP session")
			}
		}
	})
}

func (f *focus) sdpAnswer(l *sessionLeg) ([]byte, error) {
	ipv := "IP4"
	if strings.Contains(f.host, ":") {
		ipv = "IP6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- %d 1 IN %s %s\r\ns=%s\r\nc=IN %s %s\r\nt=0 0\r\n", time.Now().Unix(), ipv, f.host, l.room, ipv, f.host)
	port, proto := f.port, msrp.ProtoTCP
	if l.secure {
		port, proto = f.tlsPort, msrp.ProtoTLS
	}
	fmt.Fprintf(&b, "m=message %d %s *\r\n", port, proto)
	b.WriteString("a=accept-types:message/cpim\r\n")
	b.WriteString("a=accept-wrapped-types:*\r\n")
	fmt.Fprintf(&b, "a=max-size:%d\r\n", sessionMaxMessage)
	b.WriteString("a=path:" + l.hubURI + "\r\n")
	b.WriteString("a=setup:passive\r\n")
	// RFC 7701 5: the focus supports nicknames and private messages.
	b.WriteString("a=chatroom:nickname private-messages\r\n")
	if l.secure {
		fp, err := f.fingerprint()
		if err != nil {
			return nil, err
		}
		b.WriteString("a=fingerprint:" + fp + "\r\n")
	}
	return []byte(b.String()), nil
}

func (f *focus) answer(r *Request, l *sessionLeg) {
	res := sip.NewResponseFromRequest(r.Req, 200, "OK", l.answer)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	c := r.Contact(strings.TrimPrefix(strings.SplitN(l.room, "@", 2)[0], "sip:"))
	// RFC 4579 3: the Contact of a conference focus carries isfocus.
	res.AppendHeader(sip.NewHeader("Contact", "<"+c.String()+">;isfocus"))
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, MESSAGE, SUBSCRIBE, OPTIONS"))
	r.Respond(res)
}

// serveBye ends the session of the BYE's dialog.
func (f *focus) serveBye(r *Request) {
	cid := ""
	if h := r.Req.CallID(); h != nil {
		cid = h.Value()
	}
	f.mu.Lock()
	l := f.byCall[cid]
	f.mu.Unlock()
	if l == nil {
		respond(r, 481, "Call/Transaction Does Not Exist")
		return
	}
	if s, err := senderOf(r.Req); err != nil || s != l.user {
		respond(r, 403, "BYE From Another User")
		return
	}
	respond(r, 200, "OK")
	f.end(l, "BYE")
}

// end closes l and takes its participant out of session mode: out of the
// room when the INVITE made it, back to pager mode otherwise.
func (f *focus) end(l *sessionLeg, why string) {
	l.close(why)
	f.forget(l)
	f.clearRecord(l.room, l.user, why)
}

func (f *focus) forget(l *sessionLeg) {
	f.mu.Lock()
	if f.legs[l.id] == l {
		delete(f.legs, l.id)
	}
	if f.byCall[l.callID] == l {
		delete(f.byCall, l.callID)
	}
	f.mu.Unlock()
}

// clearRecord ends user's session-mode record in room if it names this
// node (or a node gone from the cluster).
func (f *focus) clearRecord(room, user, why string) {
	key := room + " " + user
	f.mu.Lock()
	if f.cleanup[key] {
		f.mu.Unlock()
		return
	}
	f.cleanup[key] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.cleanup, key)
		f.mu.Unlock()
	}()
	m := raft.RoomMember(f.s.cfg.Store.State().Room(room), user)
	if m == nil || m.GetSessionNode() == "" {
		return
	}
	var op any
	if m.GetJoinedBySession() {
		op = &hubv1.Command_RemoveRoomMember{RemoveRoomMember: &hubv1.RemoveRoomMember{Room: room, User: user}}
	} else {
		nm := cloneMember(m)
		nm.SessionNode, nm.JoinedBySession = "", false
		op = &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: nm}}
	}
	if err := f.s.propose(op, f.s.cfg.NodeID); err != nil {
		f.s.log.Info("room session record not cleared", "room", room, "user", user, "err", err)
		return
	}
	f.s.audit(room, user, m.GetNetwork(), "session ended ("+why+")")
}

// stateChanged sends each bound session the room messages it has not had,
// ends sessions whose participant is gone, and clears session records of
// this node that have no session (a restart) or of nodes that left.
func (f *focus) stateChanged(st *raft.State) {
	f.mu.Lock()
	legs := make([]*sessionLeg, 0, len(f.legs))
	for _, l := range f.legs {
		if l.ready { // a leg whose record is not committed yet is left alone
			legs = append(legs, l)
		}
	}
	live := map[string]bool{}
	for _, l := range f.legs {
		live[l.room+" "+l.user] = true
	}
	f.mu.Unlock()
	for _, l := range legs {
		r := st.Room(l.room)
		m := raft.RoomMember(r, l.user)
		if r == nil || m == nil || !raft.Joined(m) {
			f.s.goBG(func() { f.end(l, "no longer a participant") })
			continue
		}
		if m.GetSessionNode() != f.s.cfg.NodeID {
			continue // the record is not written yet (or was taken)
		}
		l.push(r)
	}
	leader := f.s.cfg.Store.IsLeader()
	for _, r := range st.Rooms() {
		for _, m := range r.GetMembers() {
			sn := m.GetSessionNode()
			if sn == "" {
				continue
			}
			mine := sn == f.s.cfg.NodeID && !live[r.GetUri()+" "+m.GetUser()]
			gone := leader && sn != f.s.cfg.NodeID && len(st.Nodes()) > 0 && st.Node(sn) == nil
			if mine || gone {
				room, user := r.GetUri(), m.GetUser()
				f.s.goBG(func() { f.clearRecord(room, user, "its session's node "+sn+" restarted or left") })
			}
		}
	}
}

// push queues the room messages after l.lastSeq (not l's own).
func (l *sessionLeg) push(r *hubv1.Room) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.closed {
		return // sent once the participant connects
	}
	for seq := l.lastSeq + 1; seq <= r.GetLastSeq(); seq++ {
		msg := raft.RoomMessageBySeq(r, seq)
		if msg == nil {
			// Trimmed before this node looked (more than the session
			// window committed in between): say so rather than skip
			// silently.
			l.f.s.audit(l.room, l.user, l.network, fmt.Sprintf("room %s seq %d: not in the history any more, not sent to session participant %s", l.room, seq, l.user))
			continue
		}
		if msg.GetSender() == l.user {
			continue // no echo
		}
		if !l.enqueueLocked(l.f.frameFor(l, msg, l.room)) {
			return
		}
	}
	l.lastSeq = r.GetLastSeq()
}

func (l *sessionLeg) enqueueLocked(b []byte) bool {
	select {
	case l.out <- b:
		return true
	default:
		l.f.s.log.Warn("room session participant too slow; disconnecting", "room", l.room, "user", l.user)
		l.f.s.goBG(func() { l.f.end(l, "too slow to take the room's messages") })
		return false
	}
}

// frameFor is msg as a SEND to l: CPIM with the speaker in From (RFC 7701
// 6), To the room (or the recipient of a private message).
func (f *focus) frameFor(l *sessionLeg, msg *hubv1.RoomMessage, to string) []byte {
	ct, body := msg.GetContentType(), msg.GetBody()
	var extra []CPIMHeader
	if mediaType(ct) == "message/cpim" {
		if inner, err := ParseCPIM(body); err == nil {
			ct, body, extra = inner.ContentType, inner.Body, imdnHeaders(inner)
		}
	}
	cpim := BuildCPIM(msg.GetNickname(), msg.GetSender(), to, time.Unix(0, msg.GetUnixNano()), extra, ct, body)
	mid := msg.GetCallId()
	if msg.GetSeq() > 0 {
		// The same on every attempt and node: a participant can tell
		// the message again.
		mid = RoomMessageID(l.room, msg.GetSeq())
	}
	fr := &msrp.Frame{TID: randomHex(8), Method: "SEND", ToPath: l.peer, FromPath: []string{l.hubURI}, MessageID: mid,
		ByteRange: msrp.ByteRange{Start: 1, End: int64(len(cpim)), Total: int64(len(cpim))}, HasByteRange: true,
		ContentType: "message/cpim", Body: cpim, Flag: msrp.FlagEnd}
	for msrp.BodyHasEndLine(cpim, fr.TID) {
		fr.TID = randomHex(8)
	}
	b := fr.Append(nil)
	l.tap(func() []byte { return bytes.Clone(b) }, false, l.conn) // callers hold l.mu
	return b
}

// tap offers one SEND to Config.Tap: in, the participant sent wire to the
// focus; otherwise the focus sends it to the participant. conn is the
// participant's connection (nil: not bound yet). wire makes the tap's own
// copy, only when a warrant wants it.
func (l *sessionLeg) tap(wire func() []byte, in bool, conn net.Conn) {
	t := l.f.s.cfg.Tap
	if t == nil {
		return
	}
	c := msrp.TapChunk{Time: l.f.s.now(), Transport: "tcp", CallID: l.callID}
	if l.secure {
		c.Transport = "tls"
	}
	if in {
		c.SrcNet, c.From, c.To = l.network, l.userURI, l.roomURI
	} else {
		c.DstNet, c.From, c.To = l.network, l.roomURI, l.userURI
	}
	if !t.WantsMSRP(c.SrcNet, c.DstNet, c.From, c.To) {
		return
	}
	if conn != nil {
		peer, hub := conn.RemoteAddr().String(), conn.LocalAddr().String()
		c.Src, c.Dst = peer, hub
		if !in {
			c.Src, c.Dst = hub, peer
		}
	}
	c.Wire = wire()
	t.TapMSRP(c)
}

func (l *sessionLeg) close(why string) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	c := l.conn
	close(l.closedCh)
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
	l.f.s.log.Info("room session closed", "room", l.room, "user", l.user, "why", why)
}

// serveConn binds a participant's connection to its session by the first
// request's To-Path (RFC 4975 5.4), then serves it. The connection holds a
// gate slot from ip, pending until it is bound.
func (f *focus) serveConn(c net.Conn, secure bool, ip string) {
	pending := true
	defer func() {
		if p := recover(); p != nil {
			f.s.log.Error("panic on a room MSRP connection", "panic", p)
		}
		c.Close()
		f.gate.Release(ip, pending)
	}()
	// Shutdown closes the connection at any stage (an unbound one would
	// otherwise hold Stop until its first-frame deadline).
	stop := context.AfterFunc(f.s.ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(f.s.cfg.SessionFirstFrameTimeout))
	var peerCert []byte
	if secure {
		tc := tls.Server(c, f.tlsConf)
		if err := tc.HandshakeContext(f.s.ctx); err != nil {
			f.s.log.Info("room MSRP TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
			peerCert = pc[0].Raw
		}
		c = tc
	}
	rd := msrp.NewReader(c, msrp.Limits{MaxBody: sessionMaxMessage})
	fr, err := rd.ReadFrame()
	if err != nil || !fr.IsRequest() {
		return
	}
	_ = c.SetDeadline(time.Time{})
	refuse := func(code int, phrase string) {
		if fr.Method != "REPORT" {
			res := &msrp.Frame{TID: fr.TID, Code: code, Phrase: phrase, ToPath: fr.FromPath[len(fr.FromPath)-1:], FromPath: fr.ToPath[:1]}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(res.Append(nil))
		}
	}
	to, err := msrp.ParseURI(fr.ToPath[0])
	if err != nil {
		refuse(400, "Bad To-Path")
		return
	}
	f.mu.Lock()
	l := f.legs[to.Session]
	f.mu.Unlock()
	if l == nil || l.secure != secure || fr.ToPath[0] != l.hubURI && !sameURI(fr.ToPath[0], l.hubURI) {
		refuse(481, "Session does not exist")
		return
	}
	// RFC 4572 5: an offered fingerprint names the only certificate
	// that may bind the session.
	if secure && l.peerFP != "" && (peerCert == nil || !fingerprintMatches(peerCert, l.peerFP)) {
		refuse(403, "Certificate does not match the offered fingerprint")
		return
	}
	// The From-Path must end in the participant's offered URI (RFC 4975
	// 7.3): nobody else binds its session.
	if !sameURI(fr.FromPath[len(fr.FromPath)-1], l.peer[len(l.peer)-1]) {
		refuse(403, "From-Path does not match the session")
		return
	}
	l.mu.Lock()
	if l.conn != nil || l.closed {
		l.mu.Unlock()
		refuse(506, "Session already bound")
		return
	}
	l.conn = c
	l.mu.Unlock()
	pending = false
	f.gate.Bound(ip)
	f.s.goBG(func() { l.writeLoop(c) })
	// History replay: the recent messages, in order, then whatever the
	// state says is new.
	r := f.s.cfg.Store.State().Room(l.room)
	l.mu.Lock()
	for _, msg := range raft.RoomRecent(r) {
		if msg.GetSeq() <= l.lastSeq && msg.GetSender() != l.user {
			if !l.enqueueLocked(f.frameFor(l, msg, l.room)) {
				break
			}
		}
	}
	l.mu.Unlock()
	l.push(r)
	for {
		l.handle(fr)
		if fr.Method == "SEND" && l.f.s.cfg.Tap != nil {
			// After handling: the participant's message is never held
			// up by interception. Re-encoded (the focus's reader keeps
			// no raw bytes): the same frame, byte for byte, as a
			// well-formed sender wrote it.
			l.tap(func() []byte { return fr.Append(nil) }, true, c)
		}
		rd.Release(fr)
		if fr, err = rd.ReadFrame(); err != nil {
			f.end(l, "MSRP connection closed")
			return
		}
	}
}

func sameURI(a, b string) bool {
	ua, err1 := msrp.ParseURI(a)
	ub, err2 := msrp.ParseURI(b)
	return err1 == nil && err2 == nil && ua.Equal(ub)
}

func (l *sessionLeg) writeLoop(c net.Conn) {
	for {
		select {
		case <-l.closedCh:
			return
		case b := <-l.out:
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(b); err != nil {
				l.f.end(l, "write failed")
				return
			}
		}
	}
}

func (l *sessionLeg) respond(fr *msrp.Frame, code int, phrase string) {
	// RFC 4975 7.2: Failure-Report no: no response at all; partial: only
	// failures.
	if fr.FailureReport == "no" || fr.FailureReport == "partial" && code == 200 {
		return
	}
	res := &msrp.Frame{TID: fr.TID, Code: code, Phrase: phrase, ToPath: fr.FromPath[len(fr.FromPath)-1:], FromPath: []string{l.hubURI}}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.enqueueLocked(res.Append(nil))
	}
}

func (l *sessionLeg) handle(fr *msrp.Frame) {
	switch {
	case !fr.IsRequest(), fr.Method == "REPORT":
		return // answers to the focus's SENDs; reports are not asked for
	case fr.Method == "NICKNAME":
		code, phrase := l.nickname(fr)
		l.respond(fr, code, phrase)
	case fr.Method == "SEND":
		code, phrase := l.send(fr)
		l.respond(fr, code, phrase)
	default:
		l.respond(fr, 501, "Method not understood")
	}
}

// send takes one chunk; a message is acted on at its last chunk.
func (l *sessionLeg) send(fr *msrp.Frame) (int, string) {
	if len(fr.Body) == 0 && fr.ContentType == "" {
		return 200, "OK" // the binding SEND, or a keep-alive
	}
	id := fr.MessageID
	buf := l.partial[id]
	if buf == nil {
		if len(l.partial) >= 16 {
			return 413, "Too many messages at once"
		}
		buf = &bytes.Buffer{}
		l.partial[id] = buf
		l.partCT[id] = fr.ContentType
	}
	if buf.Len()+len(fr.Body) > sessionMaxMessage {
		delete(l.partial, id)
		delete(l.partCT, id)
		return 413, "Room message too large"
	}
	buf.Write(fr.Body)
	switch fr.Flag {
	case msrp.FlagMore:
		return 200, "OK"
	case msrp.FlagAborted:
		delete(l.partial, id)
		delete(l.partCT, id)
		return 200, "OK"
	}
	ct, body := l.partCT[id], buf.Bytes()
	delete(l.partial, id)
	delete(l.partCT, id)
	return l.message(id, ct, body)
}

// message acts on one complete SEND.
func (l *sessionLeg) message(id, ct string, body []byte) (int, string) {
	s := l.f.s
	if mediaType(ct) != "message/cpim" {
		// RFC 7701 6: messages in a chat room are CPIM-wrapped; the
		// focus cannot name the speaker otherwise.
		return 415, "Room messages must be message/cpim"
	}
	m, err := ParseCPIM(body)
	if err != nil {
		return 400, "Malformed CPIM"
	}
	from, err := cpimURI(m.Get("From"))
	if err == nil {
		from, err = raft.NormalizeUserURI(from)
	}
	if err != nil || from != l.user {
		// RFC 7701 9: the focus checks the CPIM From against the
		// identity the session was set up with.
		s.audit(l.room, l.user, l.network, fmt.Sprintf("session message refused: CPIM From %q is not %s", m.Get("From"), l.user))
		return 403, "CPIM From is not the session's user"
	}
	if isIMDN(ct, body) {
		// A receipt is for the original sender, not the room (see
		// serveMessage).
		return 200, "OK"
	}
	st := s.cfg.Store.State()
	r := st.Room(l.room)
	me := raft.RoomMember(r, l.user)
	if r == nil || me == nil {
		return 403, "Not a room participant"
	}
	if raft.RoomBanFor(r, l.user, l.network) != nil {
		return 403, "Banned from room"
	}
	if why := raft.MaySpeak(r, me); why != "" {
		return 403, "Visitors may not speak"
	}
	if !s.allow(l.room, l.user) {
		return 403, "Room rate limit exceeded"
	}
	to := l.room
	if v := m.Get("To"); v != "" {
		u, err := cpimURI(v)
		if err != nil {
			return 400, "Bad CPIM To"
		}
		if ru, err := raft.NormalizeRoomURI(u); err != nil || ru != l.room {
			if to, err = raft.NormalizeUserURI(u); err != nil {
				return 400, "Bad CPIM To"
			}
		}
	}
	if to != l.room {
		return l.private(r, me, to, m, body)
	}
	cmd := s.command(l.user, &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{
		Room: l.room, Owner: s.cfg.NodeID, RatePerMinute: s.ratePerMinute(), Burst: uint32(s.cfg.Burst),
		// The MSRP Message-ID is the sender's retransmission key, as
		// the Call-ID is for a MESSAGE.
		Message: &hubv1.RoomMessage{Sender: l.user, ContentType: ct, Body: body, CallId: "msrp:" + id},
	}})
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	start := time.Now()
	idx, err := s.cfg.Store.Propose(ctx, cmd)
	cancel()
	if err == nil {
		s.m.since(s.m.commit, start)
		s.m.posted.WithLabelValues("session").Inc()
	}
	switch {
	case errors.Is(err, raft.ErrAlreadyExists):
		return 200, "OK"
	case err != nil:
		code, reason := refusal(err)
		s.log.Info("room session message refused", "room", l.room, "sender", l.user, "err", err)
		if reason == "Room Rate Limit Exceeded" {
			return 403, "Room rate limit exceeded"
		}
		if code >= 500 {
			return 403, "Room not available, try again"
		}
		return 403, reason
	}
	seq := uint64(0)
	if msg := raft.RoomMessageAt(s.cfg.Store.State().Room(l.room), idx); msg != nil {
		seq = msg.GetSeq()
	}
	l.auditMessage(ct, body, "msrp:"+id, fmt.Sprintf("room %s seq %d", l.room, seq), l.room)
	s.fan.kick(l.room)
	return 200, "OK"
}

// private delivers a private message (RFC 7701 8) to one participant:
// over its session when it is on this node, else as a MESSAGE from the
// room through its network. Never in the history.
func (l *sessionLeg) private(r *hubv1.Room, me *hubv1.RoomMember, to string, m *CPIMMessage, body []byte) (int, string) {
	s := l.f.s
	target := raft.RoomMember(r, to)
	if target == nil || !raft.Joined(target) {
		return 404, "No such participant in the room"
	}
	msg := &hubv1.RoomMessage{Sender: l.user, Nickname: me.GetNickname(), Network: l.network, ContentType: "message/cpim", Body: body,
		UnixNano: s.now().UnixNano(), CallId: "private-" + randomHex(8)}
	l.auditMessage("message/cpim", body, msg.GetCallId(), fmt.Sprintf("room %s private message to %s", l.room, to), to)
	if target.GetSessionNode() == s.cfg.NodeID {
		l.f.mu.Lock()
		var tl *sessionLeg
		for _, x := range l.f.legs {
			if x.room == l.room && x.user == to {
				tl = x
			}
		}
		l.f.mu.Unlock()
		if tl != nil {
			tl.mu.Lock()
			ok := tl.conn != nil && !tl.closed && tl.enqueueLocked(l.f.frameFor(tl, msg, to))
			tl.mu.Unlock()
			if ok {
				s.m.private.Inc()
				return 200, "OK"
			}
			return 408, "Participant not reachable"
		}
	}
	// A pager participant (or a session on another node, reached through
	// its SIP side): a MESSAGE from the room, CPIM To naming it.
	cid := fmt.Sprintf("%s@%s", randomHex(12), s.cfg.Domain)
	req := s.newMessage(l.room, to, cid, "message/cpim", BuildCPIM(msg.GetNickname(), l.user, to, time.Unix(0, msg.GetUnixNano()), imdnHeaders(m), m.ContentType, m.Body))
	ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
	defer cancel()
	res, err := s.cfg.Sender.Send(ctx, req, target.GetNetwork(), SendOptions{Source: l.network, Note: "room " + l.room + " private message"})
	if err != nil || res.StatusCode >= 300 {
		return 408, "Private message not delivered"
	}
	s.m.private.Inc()
	return 200, "OK"
}

func (l *sessionLeg) auditMessage(ct string, body []byte, callID, reason, to string) {
	s := l.f.s
	if s.cfg.Auditor == nil {
		return
	}
	sum := sha256.Sum256(body)
	e := &ledger.Entry{Time: s.now().UnixNano(), Kind: ledger.KindChat, Method: "MSRP SEND", From: l.user, To: to, RURI: l.room,
		SrcNet: l.network, Transport: "msrp", Reason: reason, BodyType: ct, BodySHA256: sum[:], CallID: callID}
	if n := s.cfg.Store.State().Network(l.network); n != nil && n.GetKeepBodies() {
		e.Body, e.BodyKept = body, true
	}
	if _, err := s.cfg.Auditor.Append(s.ctx, e); err != nil {
		s.log.Error("audit append of a room session message failed", "room", l.room, "err", err)
	}
}

// nickname answers NICKNAME (RFC 7701 7): 424 malformed, 425 taken by
// someone else, 200 and the record changed otherwise.
func (l *sessionLeg) nickname(fr *msrp.Frame) (int, string) {
	nick := ""
	for _, h := range fr.Other {
		if strings.EqualFold(h.Name, "Use-Nickname") {
			nick = strings.TrimSpace(h.Value)
		}
	}
	if n, err := strconv.Unquote(nick); err == nil {
		nick = n // RFC 7701 11: a quoted string
	}
	if nick == "" || raft.NicknameProblem(nick) != "" {
		return 424, "Malformed nickname"
	}
	r := l.f.s.cfg.Store.State().Room(l.room)
	if o := raft.RoomMemberByNick(r, nick); o != nil && o.GetUser() != l.user {
		return 425, "Nickname reserved or already in use"
	}
	me := raft.RoomMember(r, l.user)
	if me == nil {
		return 403, "Not a room participant"
	}
	nm := cloneMember(me)
	nm.Nickname = nick
	err := l.f.s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: l.room, Member: nm}}, l.user)
	switch {
	case errors.Is(err, raft.ErrAlreadyExists):
		return 425, "Nickname reserved or already in use" // taken meanwhile
	case err != nil:
		return 403, "Nickname not changed"
	}
	l.f.s.audit(l.room, l.user, l.network, fmt.Sprintf("nickname %q (MSRP NICKNAME)", nick))
	return 200, "OK"
}

// cpimURI is the URI inside a CPIM From/To value ("Name <sip:u@d>" or
// "<sip:u@d>").
func cpimURI(v string) (string, error) {
	i, j := strings.IndexByte(v, '<'), strings.LastIndexByte(v, '>')
	if i < 0 || j < i {
		return "", fmt.Errorf("CPIM address %q without <URI>", v)
	}
	return v[i+1 : j], nil
}
