package msrp

import (
	"bytes"
	"fmt"
	"time"
)

// Dialog names the SIP dialog an offer or answer belongs to. It has the
// fields of hub.AnchorDialog, in the same order, so cmd/hubd converts one
// into the other.
type Dialog struct {
	CallID string
	// OffererNet and AnswererNet are the member networks that sent and
	// received the offer; Offerer and Answerer their parties' AoRs.
	OffererNet, AnswererNet string
	Offerer, Answerer       string
}

// Who connects to whom (RFC 4975 section 5.4, RFC 6135): the hub is a
// separate endpoint on each leg.
//
//   - Toward the offerer the hub answers a=setup:passive and waits for the
//     offerer's connection (the RFC 4975 default: the offerer connects),
//     unless the offerer insisted on a=setup:passive, then the hub answers
//     active and connects to it.
//   - Toward the answerer the hub offers a=setup:actpass when the offerer
//     used a=setup (so an RFC 6135 answerer may choose), and no a=setup
//     otherwise (plain RFC 4975: the hub, as offerer, connects). The hub
//     connects unless the answer says a=setup:active.
//
// Each leg gets its own connection: the hub never shares one between
// sessions (a=connection is left as the endpoint wrote it).

// Offer anchors the MSRP sections of an SDP offer crossing the hub and
// returns the SDP to forward (nil: nothing to anchor, forward as it is).
// A re-offer (re-INVITE, UPDATE) on an anchored session keeps the hub's
// URIs and takes the offerer's new path.
func (r *Relay) Offer(d Dialog, sdp []byte) ([]byte, error) {
	media := ParseSDP(sdp)
	rw := map[int]Rewrite{}
	var created []*session
	fail := func(err error) ([]byte, error) {
		for _, s := range created {
			s.end("offer not anchored")
		}
		return nil, err
	}
	for _, m := range media {
		if m.Port == 0 {
			continue
		}
		if len(m.Path) == 0 {
			return fail(fmt.Errorf("msrp offer: m=message section %d without a=path", m.Index))
		}
		for _, p := range m.Path {
			if _, err := ParseURI(p); err != nil {
				return fail(fmt.Errorf("msrp offer: section %d: %w", m.Index, err))
			}
		}
		s, side := r.sessionFor(d, m.Index)
		if s == nil {
			var err error
			if s, err = r.newSession(d, m); err != nil {
				return fail(err)
			}
			created = append(created, s)
			side = 0
		}
		s.mu.Lock()
		off, ans := s.legs[side], s.legs[1-side]
		off.peerPath, off.peerFP = m.Path, m.Fingerprint
		s.media, s.offerSide, s.offerSetup = m, side, m.Setup
		s.fileFrom = -1
		if m.IsFileTransfer() {
			// RFC 5547 section 6: push = offerer sendonly, pull = recvonly.
			s.fileFrom = side
			if m.Direction == "recvonly" {
				s.fileFrom = 1 - side
			}
			s.fileDone = false
		}
		s.setupStart = time.Now()
		rwv := Rewrite{Path: ans.hubURI.String(), Host: r.cfg.Host, Port: ans.hubURI.Port}
		if m.Setup != "" {
			rwv.Setup = "actpass"
		}
		secure := ans.secure
		s.mu.Unlock()
		if ans.viaRelay() {
			// The callee's network runs its own relay: AUTH to it now,
			// the offer carries its Use-Path (RFC 4976 section 6).
			if !ans.isBound() {
				if err := ans.authenticate(); err != nil {
					return fail(err)
				}
			}
			rwv.Path, rwv.Host, rwv.Port = ans.sdpPath()
		}
		if secure {
			fp, err := r.fingerprint()
			if err != nil {
				return fail(err)
			}
			rwv.Fingerprint = fp
		}
		rw[m.Index] = rwv
	}
	if len(rw) == 0 {
		return nil, nil
	}
	out, err := RewriteSDP(sdp, rw)
	if err != nil {
		return fail(err)
	}
	return out, nil
}

// Answer anchors the answer to the pending offer of d.CallID and returns
// the SDP to relay to the offerer (nil: nothing anchored). A retransmitted
// answer (the same bytes) gets the same rewrite.
func (r *Relay) Answer(d Dialog, sdp []byte) ([]byte, error) {
	r.mu.Lock()
	sessions := append([]*session(nil), r.byCall[d.CallID]...)
	r.mu.Unlock()
	if len(sessions) == 0 {
		return nil, nil
	}
	c := sessions[0]
	c.mu.Lock()
	if c.lastAnswerIn != nil && bytes.Equal(c.lastAnswerIn, sdp) {
		out := c.lastAnswerOut
		c.mu.Unlock()
		return out, nil // a 2xx retransmission: the same rewrite
	}
	c.mu.Unlock()
	byIndex := map[int]Media{}
	for _, m := range ParseSDP(sdp) {
		byIndex[m.Index] = m
	}
	rw := map[int]Rewrite{}
	var toDial, toBind []*leg
	for _, s := range sessions {
		s.mu.Lock()
		if s.offerSide < 0 {
			s.mu.Unlock()
			continue
		}
		m, ok := byIndex[s.index]
		off, ans := s.legs[s.offerSide], s.legs[1-s.offerSide]
		if !ok || m.Port == 0 || len(m.Path) == 0 {
			// Refused in the answer (RFC 3264 section 6: port 0).
			s.offerSide = -1
			fresh := !s.answered
			s.mu.Unlock()
			if fresh {
				s.end("refused in the answer")
			}
			continue
		}
		ok = true
		for _, p := range m.Path {
			if _, err := ParseURI(p); err != nil {
				ok = false
			}
		}
		if !ok {
			s.mu.Unlock()
			return nil, fmt.Errorf("msrp answer: bad a=path in section %d", m.Index)
		}
		ans.peerPath, ans.peerFP = m.Path, m.Fingerprint
		// Answerer leg: the hub connects unless the answerer chose to
		// (a=setup:active in reply to the hub's actpass).
		ansActive := !(s.offerSetup != "" && m.Setup == "active")
		ans.active = ansActive && !ans.viaRelay()
		// Offerer leg: the hub waits unless the offerer insisted on being
		// passive. Through a member's relay the hub is connected already
		// (its AUTH connection) and the endpoint reaches the relay.
		offActive := s.offerSetup == "passive"
		off.active = offActive && !off.viaRelay()
		// Through a relay the active hub still owes the endpoint the
		// bodiless SEND of RFC 4975 section 5.4: it makes the relay open
		// the connection the passive endpoint waits for, so that the
		// endpoint can send first (RFC 4976 section 7.1).
		if ansActive && ans.viaRelay() {
			toBind = append(toBind, ans)
		}
		if offActive && off.viaRelay() {
			toBind = append(toBind, off)
		}
		setupOff := "passive"
		if off.active {
			setupOff = "active"
		}
		rwv := Rewrite{Path: off.hubURI.String(), Host: r.cfg.Host, Port: off.hubURI.Port}
		if s.offerSetup != "" || m.Setup != "" {
			rwv.Setup = setupOff
		}
		secure := off.secure
		s.answered = true
		s.offerSide = -1
		s.setupStart = time.Now()
		for _, l := range []*leg{off, ans} {
			if l.active && !l.boundOrDialing() {
				toDial = append(toDial, l)
			}
		}
		s.mu.Unlock()
		if off.viaRelay() {
			// The caller's network runs its own relay: the answer
			// toward it carries the relay's Use-Path.
			if !off.isBound() {
				if err := off.authenticate(); err != nil {
					return nil, err
				}
			}
			rwv.Path, rwv.Host, rwv.Port = off.sdpPath()
		}
		if secure {
			fp, err := r.fingerprint()
			if err != nil {
				return nil, err
			}
			rwv.Fingerprint = fp
		}
		rw[s.index] = rwv
	}
	for _, l := range toDial {
		l.startDial()
	}
	for _, l := range toBind {
		if l.isBound() { // its AUTH connection
			l.s.mu.Lock()
			to := l.toPathLocked()
			l.s.mu.Unlock()
			l.sendBind(to)
		}
	}
	if len(rw) == 0 {
		return nil, nil
	}
	out, err := RewriteSDP(sdp, rw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.lastAnswerIn, c.lastAnswerOut = append([]byte(nil), sdp...), out
	c.mu.Unlock()
	return out, nil
}

// End closes every session of a dialog (the BYE crossed the hub, or the
// INVITE failed).
func (r *Relay) End(callID string) {
	r.mu.Lock()
	sessions := append([]*session(nil), r.byCall[callID]...)
	r.mu.Unlock()
	for _, s := range sessions {
		s.end("dialog ended")
	}
}

// sessionFor finds the session of a re-offer and which of its legs faces
// the offerer.
func (r *Relay) sessionFor(d Dialog, index int) (*session, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.byCall[d.CallID] {
		if s.index != index {
			continue
		}
		if s.legs[1].net == d.OffererNet && s.legs[0].net != d.OffererNet {
			return s, 1
		}
		return s, 0
	}
	return nil, 0
}

func (r *Relay) newSession(d Dialog, m Media) (*session, error) {
	secure := m.Proto == ProtoTLS
	s := &session{r: r, callID: d.CallID, index: m.Index, offerSide: -1, fileFrom: -1, created: time.Now()}
	s.lastActive.Store(time.Now().UnixNano())
	if r.cfg.Tap != nil {
		s.tapFrom, s.tapTo = ParseParty(d.Offerer), ParseParty(d.Answerer)
	}
	for i, p := range []struct{ net, user string }{{d.OffererNet, d.Offerer}, {d.AnswererNet, d.Answerer}} {
		u, err := r.hubURI(secure)
		if err != nil {
			return nil, err
		}
		s.legs[i] = newLeg(s, i, p.net, p.user, u, secure)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("msrp: relay closed")
	}
	for _, l := range s.legs {
		r.byID[l.hubURI.Session] = l
	}
	r.byCall[d.CallID] = append(r.byCall[d.CallID], s)
	r.metrics.Sessions++
	return s, nil
}
