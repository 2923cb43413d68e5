package msrp

import (
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"strconv"
	"time"
)

// message is one MSRP message an endpoint sends through the hub, tracked
// from its first chunk to its last response, for the audit entry.
type message struct {
	id     string
	from   *leg
	ctype  string
	fr, sr string
	first  time.Time
	last   time.Time
	bytes  int64 // body bytes received
	next   int64 // next in-order byte position (1-based)
	total  int64 // from Byte-Range, -1 unknown
	chunks int
	sum    hash.Hash // SHA-256 of the bytes, in order
	sha1   hash.Hash // RFC 5547: only for the file of a file-transfer session
	order  bool      // every chunk arrived in order (the hashes mean something)
	file   bool
	body   []byte // kept for the audit when the network keeps bodies
	keep   bool

	cpimFrom, cpimTo string
	paced            time.Duration // time the network's byte rate held the sender back

	outstanding int  // the hub's SENDs toward the other leg awaiting a response
	final       bool // last chunk ($ or #) received
	aborted     bool
	failCode    int // first failure (0 none)
	failPhrase  string
	detail      string
	audited     bool
}

const (
	maxOpenMessages = 16       // per leg: messages in progress at once
	maxKeptBody     = 64 << 10 // bodies larger than this are hashed only
	maxSentIDs      = 1024     // Message-IDs remembered per leg for REPORTs
)

// wantsResponse applies Failure-Report (RFC 4975 section 7.1.2): "no"
// means no response at all, "partial" only negative ones.
func wantsResponse(fr string, code int) bool {
	switch fr {
	case "no":
		return false
	case "partial":
		return code != 200
	}
	return true
}

// handle processes one frame an endpoint sent on l.
func (l *leg) handle(f *Frame) {
	l.s.touch()
	if !f.IsRequest() {
		l.onResponse(f)
		return
	}
	to, err := ParseURI(f.ToPath[0])
	if err != nil || !to.Equal(l.hubURI) || len(f.ToPath) != 1 {
		// One session per connection; the hub is the last hop on it.
		l.respond(f, 481, "Session does not exist")
		return
	}
	l.s.mu.Lock()
	path := l.peerPath
	l.s.mu.Unlock()
	if !lastURIEqual(f.FromPath, path) {
		l.s.r.prom.refused(CauseFromPathMismatch)
		l.respond(f, 403, "From-Path does not match the SDP path")
		return
	}
	switch f.Method {
	case "SEND":
		if f.MessageID == "" {
			l.respond(f, 400, "Message-ID required")
			return
		}
		l.onSend(f)
	case "REPORT":
		l.onReport(f)
	case "AUTH":
		// The hub is this endpoint's peer, not its relay (RFC 4976).
		l.respond(f, 403, "Not a relay for this session")
	default:
		l.respond(f, 501, "Method not implemented")
	}
}

// respond answers request f hop by hop (RFC 4975 section 7.2: To-Path is
// the previous hop, From-Path the hub).
func (l *leg) respond(f *Frame, code int, phrase string) {
	if f.Method == "REPORT" || !wantsResponse(f.FailureReport, code) {
		return
	}
	res := &Frame{TID: f.TID, Code: code, Phrase: phrase, ToPath: f.FromPath[:1], FromPath: []string{l.hubURI.String()}}
	l.out.push(res.Append(nil), false)
}

// report sends a REPORT about message m to l's endpoint (the sender).
func (l *leg) report(m *message, br ByteRange, code int, phrase string) {
	l.s.mu.Lock()
	path := l.toPathLocked()
	l.s.mu.Unlock()
	rep := &Frame{TID: newTID(nil), Method: "REPORT", ToPath: path, FromPath: []string{l.hubURI.String()},
		MessageID: m.id, ByteRange: br, HasByteRange: true, Status: "000 " + strconv.Itoa(code) + " " + phrase, Flag: FlagEnd}
	l.out.push(rep.Append(nil), false)
	l.s.r.prom.report(code)
}

func (l *leg) onSend(f *Frame) {
	s, r := l.s, l.s.r
	fr := f.FailureReport
	if len(f.Body) == 0 && f.ContentType == "" && f.Flag == FlagEnd {
		// A bodiless SEND binds the connection or keeps it alive (RFC
		// 4975 section 7.1.1): answered, not relayed.
		l.respond(f, 200, "OK")
		return
	}
	now := time.Now()
	s.mu.Lock()
	m := l.inMsgs[f.MessageID]
	if m == nil {
		if len(l.inMsgs) >= maxOpenMessages {
			s.mu.Unlock()
			l.respond(f, 413, "Too many messages in progress")
			return
		}
		m = &message{id: f.MessageID, from: l, ctype: f.ContentType, fr: fr, sr: f.SuccessReport, first: now, next: 1, total: -1,
			sum: sha256.New(), order: true, keep: r.cfg.KeepBodies(l.net)}
		if s.fileFrom == l.side && !s.fileDone {
			m.file, s.fileDone = true, true
			m.sha1 = sha1.New()
		}
		l.inMsgs[f.MessageID] = m
	}
	m.last = now
	m.chunks++
	br := f.ByteRange
	if !f.HasByteRange {
		br = ByteRange{Start: m.next, End: -1, Total: -1}
	}
	if br.End < 0 || br.End != br.Start+int64(len(f.Body))-1 {
		br.End = br.Start + int64(len(f.Body)) - 1
	}
	if br.Total >= 0 {
		m.total = br.Total
	} else if f.Flag == FlagEnd && br.Start == m.next {
		br.Total = br.End
	}
	failed := m.failCode
	s.mu.Unlock()

	if failed != 0 {
		l.respond(f, failed, m.failPhrase)
		s.chunkReceived(m, f, false)
		return
	}
	if lim := r.settings(l.net).MaxMessageSize; lim > 0 && (br.Total > lim || br.End > lim) {
		// Per-network size limit: 413 tells the sender to stop sending
		// this message (RFC 4975 section 7.2.1); the receiver's copy is
		// aborted.
		s.mu.Lock()
		m.failCode, m.failPhrase, m.detail = 413, "Message too large", "over the network's limit of "+itoa(lim)+" bytes"
		s.mu.Unlock()
		r.count(func(x *Metrics) { x.Refused++ })
		r.prom.tooLarge.WithLabelValues(l.net).Inc()
		l.respond(f, 413, "Message too large")
		l.other().abortToward(m, br.Start)
		s.chunkReceived(m, f, false)
		s.finishMessage(m, 0, "", false) // audited refusal
		return
	}
	if lim := r.limiter(l.net); lim != nil {
		// Byte-rate limit per member: pace by reading this leg more
		// slowly (the wait is audited with the message).
		t0 := time.Now()
		for n := len(f.Body); n > 0; {
			take := min(n, lim.Burst())
			if err := lim.WaitN(r.ctx, take); err != nil {
				break
			}
			n -= take
		}
		if w := time.Since(t0); w > time.Millisecond {
			s.mu.Lock()
			m.paced += w
			s.mu.Unlock()
		}
	}
	o := l.other()
	select {
	case <-o.ready:
	case <-o.gone:
	case <-r.ctx.Done():
	case <-time.After(r.cfg.SetupTimeout):
	}
	if !o.isBound() || isDone(o.gone) {
		code, phrase := 481, "Session does not exist"
		if !isDone(o.gone) {
			code, phrase = 408, "Request Timeout"
		}
		s.mu.Lock()
		if m.failCode == 0 {
			m.failCode, m.failPhrase, m.detail = code, phrase, "receiving leg not connected"
		}
		s.mu.Unlock()
		l.respond(f, code, phrase)
		s.chunkReceived(m, f, false)
		s.finishMessage(m, 0, "", false)
		return
	}
	o.forward(m, f, br)
	l.respond(f, 200, "OK")
	s.chunkReceived(m, f, true)
	l.tap(f, now) // after the forward: interception never delays the relay
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// forward sends the chunk toward o's endpoint, re-chunked to MaxChunk
// bytes of body, with o's paths, the same Message-ID (1:1: the hub is the
// only sender on o, so the sender's ids stay unique) and byte positions
// (so REPORT Byte-Ranges map back unchanged). Waits while o's queue is
// full (backpressure).
func (o *leg) forward(m *message, f *Frame, br ByteRange) {
	s, r := o.s, o.s.r
	s.mu.Lock()
	path := o.toPathLocked()
	if !o.sentIDs[m.id] {
		o.sentIDs[m.id] = true
		o.sentFIF = append(o.sentFIF, m.id)
		if len(o.sentFIF) > maxSentIDs {
			delete(o.sentIDs, o.sentFIF[0])
			o.sentFIF = o.sentFIF[1:]
		}
	}
	s.mu.Unlock()
	from := []string{o.hubURI.String()}
	chunk := r.settings(o.net).MaxChunk // the receiving network's relay limits
	body := f.Body
	off := 0
	for {
		n := min(len(body)-off, chunk)
		piece := body[off : off+n]
		flag := byte(FlagMore)
		if off+n == len(body) {
			flag = f.Flag
		}
		pbr := ByteRange{Start: br.Start + int64(off), End: br.Start + int64(off+n) - 1, Total: br.Total}
		out := &Frame{TID: newTID(piece), Method: "SEND", ToPath: path, FromPath: from, MessageID: m.id,
			SuccessReport: f.SuccessReport, FailureReport: f.FailureReport, ByteRange: pbr, HasByteRange: true,
			Other: f.Other, ContentType: f.ContentType, Body: piece, Flag: flag}
		if f.FailureReport != "no" {
			s.mu.Lock()
			o.pending[out.TID] = &pendingTx{msg: m, br: pbr, sent: time.Now(), partial: f.FailureReport == "partial"}
			m.outstanding++
			s.mu.Unlock()
		}
		if !o.out.push(out.Append(make([]byte, 0, len(piece)+512)), true) {
			// The leg closed; close() reported what was pending then,
			// this chunk included unless it was registered too late.
			s.mu.Lock()
			_, still := o.pending[out.TID]
			delete(o.pending, out.TID)
			s.mu.Unlock()
			if still || f.FailureReport == "no" {
				s.chunkFailed(m, pbr, 481, "Session does not exist", "receiving leg closed", still)
			}
			return
		}
		r.count(func(x *Metrics) { x.Bytes += int64(n) })
		r.prom.bytes.WithLabelValues(m.from.net, o.net).Add(float64(n))
		off += n
		if off >= len(body) {
			return
		}
	}
}

// abortToward ends o's copy of m with an empty chunk flagged '#' (RFC 4975
// section 7.1.1: the sender interrupts a message).
func (o *leg) abortToward(m *message, at int64) {
	if !o.isBound() || isDone(o.gone) {
		return
	}
	o.s.mu.Lock()
	sent, path := o.sentIDs[m.id], o.toPathLocked()
	o.s.mu.Unlock()
	if !sent {
		return
	}
	f := &Frame{TID: newTID(nil), Method: "SEND", ToPath: path, FromPath: []string{o.hubURI.String()}, MessageID: m.id,
		ByteRange: ByteRange{Start: at, End: at - 1, Total: -1}, HasByteRange: true, FailureReport: "no", ContentType: m.ctype, Flag: FlagAborted}
	o.out.push(f.Append(nil), false)
}

// chunkReceived accounts for a chunk from the sender: hashes, CPIM
// sniffing, completion.
func (s *session) chunkReceived(m *message, f *Frame, relayed bool) {
	s.mu.Lock()
	if f.HasByteRange && f.ByteRange.Start != m.next {
		m.order = false
	}
	if m.order {
		m.sum.Write(f.Body)
		if m.sha1 != nil {
			m.sha1.Write(f.Body)
		}
	}
	if m.bytes == 0 && len(f.Body) > 0 && isCPIM(m.ctype) {
		m.cpimFrom, m.cpimTo = cpimAddresses(f.Body)
	}
	if m.keep && m.bytes+int64(len(f.Body)) <= maxKeptBody {
		m.body = append(m.body, f.Body...)
	} else {
		m.keep, m.body = false, nil
	}
	m.bytes += int64(len(f.Body))
	m.next += int64(len(f.Body))
	if f.Flag != FlagMore {
		m.final, m.aborted = true, f.Flag == FlagAborted
		delete(m.from.inMsgs, m.id)
	}
	complete := m.final && m.outstanding == 0
	whole := complete && m.failCode == 0 && !m.aborted
	s.mu.Unlock()
	if complete {
		s.r.count(func(x *Metrics) { x.Messages++ })
		if whole {
			s.countRelayed(m)
		}
		s.finishMessage(m, 0, "", false)
	}
}

// countRelayed counts a message relayed whole, by network pair.
func (s *session) countRelayed(m *message) {
	s.r.prom.messages.WithLabelValues(m.from.net, m.from.other().net).Inc()
}

// onResponse matches a member's response to one of the hub's SENDs.
func (l *leg) onResponse(f *Frame) {
	if l.viaRelay() && l.takeAuthResponse(f) {
		return // the relay's answer to a re-AUTH
	}
	s := l.s
	s.mu.Lock()
	p := l.pending[f.TID]
	delete(l.pending, f.TID)
	s.mu.Unlock()
	if p == nil || p.msg == nil {
		return // unknown, late, or the answer to the hub's bodiless SEND
	}
	if f.Code != 200 {
		s.chunkFailed(p.msg, p.br, f.Code, f.Phrase, "receiving endpoint answered "+strconv.Itoa(f.Code), true)
		return
	}
	s.chunkDelivered(p.msg)
}

// chunkDelivered accounts for a chunk the receiver took.
func (s *session) chunkDelivered(m *message) {
	s.mu.Lock()
	m.outstanding--
	complete := m.final && m.outstanding == 0
	whole := complete && m.failCode == 0 && !m.aborted
	s.mu.Unlock()
	if complete {
		s.r.count(func(x *Metrics) { x.Messages++ })
		if whole {
			s.countRelayed(m)
		}
		s.finishMessage(m, 0, "", false)
	}
}

// chunkFailed handles a chunk the receiving side did not take: the sender
// gets a REPORT with the failure (RFC 4975 section 7.1.2, when its
// Failure-Report asked for one: yes or partial), the message's result is
// the first failure, and after 413 further chunks are refused.
func (s *session) chunkFailed(m *message, br ByteRange, code int, phrase, detail string, counted bool) {
	s.mu.Lock()
	if counted {
		m.outstanding--
	}
	first := m.failCode == 0
	if first {
		m.failCode, m.failPhrase, m.detail = code, phrase, detail
	}
	s.mu.Unlock()
	if first && (m.fr == "" || m.fr == "yes" || m.fr == "partial") && !isDone(m.from.gone) {
		m.from.report(m, br, code, phrase)
	}
	// The result is the first failure: audit now, not when (if ever)
	// the sender's last chunk comes.
	s.finishMessage(m, 0, "", false)
}

// onReport relays an endpoint's REPORT about a message the hub sent it to
// the message's sender, with the sender leg's paths; Message-ID and
// Byte-Range are the sender's own (forward keeps both).
func (l *leg) onReport(f *Frame) {
	s := l.s
	s.mu.Lock()
	known := l.sentIDs[f.MessageID]
	s.mu.Unlock()
	if !known || f.Status == "" {
		return // not about a message the hub sent on this leg
	}
	o := l.other()
	if !o.isBound() || isDone(o.gone) {
		return
	}
	s.mu.Lock()
	path := o.toPathLocked()
	s.mu.Unlock()
	rep := &Frame{TID: newTID(nil), Method: "REPORT", ToPath: path, FromPath: []string{o.hubURI.String()},
		MessageID: f.MessageID, ByteRange: f.ByteRange, HasByteRange: f.HasByteRange, Status: f.Status, Other: f.Other, Flag: FlagEnd}
	o.out.push(rep.Append(nil), false)
}
