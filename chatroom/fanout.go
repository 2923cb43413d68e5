package chatroom

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"mime"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Fan-out: every committed room message carries a replicated RoomFanout
// record (recipients fixed at commit, an owner node, a cursor `done` and
// the set `acked` of finished recipients beyond it). The owner sends
// copies through a sliding window (at most Concurrency in flight, at most
// BatchSize recipients between the committed cursor and the next one sent)
// and records each final answer: one RoomFanoutProgress in flight at a
// time, so records coalesce under load. The FSM lets only the owner record,
// never moves the cursor back and never un-acks a recipient. One worker per
// room delivers that room's fan-outs in sequence order, so each participant
// gets a room's messages in its order. If the owner stops (crash, kill -9),
// the leader claims its stalled fan-outs after TakeoverAfter
// (compare-and-set in the FSM: one winner) and sends only to recipients
// neither before the committed cursor nor in the committed acked set.
//
// Guarantee: a recipient whose final answer was committed is never sent the
// message again. Only copies in flight at a crash, or answered since the
// last committed record (at most the window), may go out a second time, and
// such a copy is the identical request (same Call-ID, From tag and CSeq,
// derived from room, sequence and recipient; CPIM copies an IMDN
// Message-ID from room and sequence), so a UA or edge can recognise it; a
// 482 to it counts as delivered.

type fanout struct {
	s *Service

	mu      sync.Mutex
	workers map[string]*roomWorker
	watch   map[fanoutKey]*watched // other nodes' fan-outs (leader only)
}

type roomWorker struct{ pending bool }

type fanoutKey struct {
	room string
	seq  uint64
}

type watched struct {
	owner   string
	done    uint32
	since   time.Time
	claimed bool
}

func newFanout(s *Service) *fanout {
	return &fanout{s: s, workers: map[string]*roomWorker{}, watch: map[fanoutKey]*watched{}}
}

// kick makes sure room's worker runs and looks again.
func (f *fanout) kick(room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.workers[room]; w != nil {
		w.pending = true
		return
	}
	if f.s.ctx.Err() != nil {
		return
	}
	f.workers[room] = &roomWorker{}
	f.s.goBG(func() { f.work(room) })
}

// stateChanged starts workers for fan-outs this node owns (after a restart
// or a claim) and, on the leader, claims fan-outs that stand still.
func (f *fanout) stateChanged(st *raft.State) {
	me := f.s.cfg.NodeID
	leader := f.s.cfg.Store.IsLeader()
	now := f.s.now()
	seen := map[fanoutKey]bool{}
	for _, r := range st.Rooms() {
		for _, fo := range r.GetFanouts() {
			if fo.GetOwner() == me {
				f.kick(r.GetUri())
				continue
			}
			if !leader {
				continue
			}
			k := fanoutKey{r.GetUri(), fo.GetSeq()}
			seen[k] = true
			f.mu.Lock()
			w := f.watch[k]
			if w == nil || w.owner != fo.GetOwner() || w.done != fo.GetDone() {
				w = &watched{owner: fo.GetOwner(), done: fo.GetDone(), since: now}
				f.watch[k] = w
			}
			gone := len(st.Nodes()) > 0 && st.Node(fo.GetOwner()) == nil
			claim := !w.claimed && (gone || now.Sub(w.since) >= f.s.cfg.TakeoverAfter)
			if claim {
				w.claimed = true
			}
			f.mu.Unlock()
			if claim {
				f.s.goBG(func() { f.claim(k, fo.GetOwner()) })
			}
		}
	}
	f.mu.Lock()
	for k := range f.watch {
		if !seen[k] {
			delete(f.watch, k)
		}
	}
	f.mu.Unlock()
}

func (f *fanout) claim(k fanoutKey, from string) {
	cmd := f.s.command(f.s.cfg.NodeID, &hubv1.Command_ClaimRoomFanout{ClaimRoomFanout: &hubv1.ClaimRoomFanout{
		Room: k.room, Seq: k.seq, Owner: f.s.cfg.NodeID, PreviousOwner: from,
	}})
	ctx, cancel := context.WithTimeout(f.s.ctx, 10*time.Second)
	defer cancel()
	if _, err := f.s.cfg.Store.Propose(ctx, cmd); err != nil {
		f.s.log.Info("room fan-out claim failed", "room", k.room, "seq", k.seq, "from", from, "err", err)
		f.mu.Lock()
		if w := f.watch[k]; w != nil {
			w.claimed, w.since = false, f.s.now()
		}
		f.mu.Unlock()
		return
	}
	f.s.log.Warn("room fan-out taken over from a stalled node", "room", k.room, "seq", k.seq, "from", from)
	f.s.audit(k.room, f.s.cfg.NodeID, "", fmt.Sprintf("room %s seq %d: fan-out taken over from node %s", k.room, k.seq, from))
}

// work delivers room's fan-outs owned by this node, lowest sequence first,
// until there are none.
func (f *fanout) work(room string) {
	for {
		var next *hubv1.RoomFanout
		st := f.s.cfg.Store.State()
		r := st.Room(room)
		for _, fo := range r.GetFanouts() {
			if fo.GetOwner() == f.s.cfg.NodeID && (next == nil || fo.GetSeq() < next.GetSeq()) {
				next = fo
			}
		}
		if next == nil || f.s.ctx.Err() != nil {
			f.mu.Lock()
			w := f.workers[room]
			if w.pending && f.s.ctx.Err() == nil {
				w.pending = false
				f.mu.Unlock()
				continue
			}
			delete(f.workers, room)
			f.mu.Unlock()
			return
		}
		if err := f.run(room, next.GetSeq()); err != nil && f.s.ctx.Err() == nil {
			f.s.log.Warn("room fan-out interrupted", "room", room, "seq", next.GetSeq(), "err", err)
			select { // the cluster could not take progress: wait, then look again
			case <-f.s.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// run delivers one fan-out from its committed progress to the end.
//
// Copies go out through a sliding window: at most Concurrency in flight
// and at most BatchSize recipients between the committed cursor and the
// next one sent. Final answers are recorded as soon as the previous
// progress record is committed (one record in flight, so records coalesce
// under load): the cursor (every recipient before it finished) plus the
// finished recipients beyond it (acked). A new owner after a crash sends
// only to recipients neither before the cursor nor acked, so the only
// copies that can go out twice are those in flight at the crash and those
// answered since the last committed record.
func (f *fanout) run(room string, seq uint64) error {
	s := f.s
	st := s.cfg.Store.State()
	r := st.Room(room)
	fo := raft.RoomFanoutFor(r, seq)
	if fo == nil || fo.GetOwner() != s.cfg.NodeID {
		return nil // finished, claimed away, or the room is gone
	}
	msg := raft.RoomMessageBySeq(r, seq)
	rcpt := fo.GetRecipients()
	n := len(rcpt)
	finished := make([]bool, n)
	for _, a := range fo.GetAcked() {
		if int(a) < n {
			finished[a] = true
		}
	}
	committed := int(fo.GetDone())  // cursor as committed
	commAcked := len(fo.GetAcked()) // acked entries as committed
	next := committed               // next recipient to send to
	inflight := 0
	results := make(chan int, s.cfg.Concurrency)
	type commitResult struct {
		done, acked int
		err         error
	}
	commits := make(chan commitResult, 1)
	committing := false
	var retry <-chan time.Time
	drain := func() {
		for inflight > 0 {
			<-results
			inflight--
		}
		if committing {
			<-commits
			committing = false
		}
	}
	for {
		for next < n && inflight < s.cfg.Concurrency && next-committed < s.cfg.BatchSize && s.ctx.Err() == nil {
			i := next
			next++
			if finished[i] {
				continue // acked before a takeover: never again
			}
			m := raft.RoomMember(r, rcpt[i])
			nw := st.Network(m.GetNetwork())
			if msg == nil || !raft.Joined(m) || nw == nil || !nw.Active() {
				// Left, kicked, banned or evicted since the commit.
				finished[i] = true
				continue
			}
			inflight++
			f.s.wg.Add(1)
			go func() {
				defer f.s.wg.Done()
				f.deliver(room, msg, m, false)
				results <- i
			}()
		}
		done := committed
		for done < n && finished[done] {
			done++
		}
		var acked []uint32
		for i := done + 1; i < n; i++ {
			if finished[i] {
				acked = append(acked, uint32(i))
			}
		}
		if committed == n {
			if msg != nil {
				s.m.lag.Observe(s.now().Sub(time.Unix(0, msg.GetUnixNano())).Seconds())
			}
			return nil
		}
		if !committing && retry == nil && s.ctx.Err() == nil && (done > committed || len(acked) != commAcked) {
			committing = true
			go func() {
				cmd := s.command(s.cfg.NodeID, &hubv1.Command_RoomFanoutProgress{RoomFanoutProgress: &hubv1.RoomFanoutProgress{
					Room: room, Seq: seq, Owner: s.cfg.NodeID, Done: uint32(done), Acked: acked,
				}})
				ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
				_, err := s.cfg.Store.Propose(ctx, cmd)
				cancel()
				commits <- commitResult{done, len(acked), err}
			}()
		}
		select {
		case i := <-results:
			inflight--
			finished[i] = true
		case c := <-commits:
			committing = false
			switch {
			case errors.Is(c.err, raft.ErrFailedPrecondition) || errors.Is(c.err, raft.ErrNotFound):
				// Claimed away, or the room was deleted: stop; the new
				// owner goes on from what was committed.
				drain()
				return nil
			case c.err != nil:
				if s.ctx.Err() == nil {
					s.log.Warn("room fan-out progress not committed; retrying", "room", room, "seq", seq, "err", c.err)
					retry = time.After(500 * time.Millisecond)
				}
			default:
				committed, commAcked = c.done, c.acked
			}
		case <-retry:
			retry = nil
		case <-s.ctx.Done():
			// Stop sending; the copies in flight end with the context.
			drain()
			return s.ctx.Err()
		}
	}
}

// deliver sends msg to one participant; replay marks a history replay
// (time shown in the text prefix).
func (f *fanout) deliver(room string, msg *hubv1.RoomMessage, m *hubv1.RoomMember, replay bool) {
	s := f.s
	callID := deliveryCallID(room, msg.GetSeq(), m.GetUser(), replay, s.cfg.Domain)
	cpim := m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
	req := s.render(room, msg, m.GetUser(), callID, 1, cpim, replay)
	note := fmt.Sprintf("room %s seq %d", room, msg.GetSeq())
	if replay {
		note += " (history replay)"
	}
	o := SendOptions{Source: msg.GetNetwork(), Note: note}
	ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
	defer cancel()
	res, err := s.cfg.Sender.Send(ctx, req, m.GetNetwork(), o)
	if err == nil && cpim && (res.StatusCode == 415 || res.StatusCode == 488) {
		// The client does not take CPIM after all (linphone's basic chat
		// answers 488: it insists CPIM From == SIP From). Plain text from
		// now on for this room, and this message once more.
		s.downgrade(room, m)
		req = s.render(room, msg, m.GetUser(), callID, 2, false, replay)
		res, err = s.cfg.Sender.Send(ctx, req, m.GetNetwork(), o)
	}
	if err == nil && res.StatusCode < 300 {
		s.m.deliveries.WithLabelValues("delivered").Inc()
		return
	}
	switch {
	case err == nil && res.StatusCode == 482:
		s.m.deliveries.WithLabelValues("duplicate").Inc()
	case err == nil && res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != 408:
		s.m.deliveries.WithLabelValues("refused").Inc()
	default:
		s.m.deliveries.WithLabelValues("failed").Inc()
	}
	f.failed(req, m.GetNetwork(), o, res, err)
}

// failed hands a delivery to the queue, or retries it from memory, and
// audits what happened. A 4xx other than 408 (e.g. 404: no such user) is
// final: retrying would not help.
func (f *fanout) failed(req *sip.Request, dst string, o SendOptions, res *sip.Response, err error) {
	s := f.s
	user := req.Recipient.String()
	why := fmt.Sprint(err)
	if err == nil {
		why = fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
	}
	room := ""
	if fr := req.From(); fr != nil {
		room = fr.Address.String()
	}
	if err == nil && res.StatusCode == 482 {
		// RFC 3261 8.2.2.2: a UAS that still holds the transaction of a
		// request with this From tag, Call-ID and CSeq answers a merged
		// copy 482. Every attempt at one copy carries the same three, so
		// this is a copy re-sent after a takeover that the recipient
		// already has: delivered, not an error.
		s.audit(room, user, dst, fmt.Sprintf("%s: %s already had this copy (482 to a re-sent identical request)", o.Note, user))
		return
	}
	permanent := err == nil && res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != 408
	if permanent {
		s.audit(room, user, dst, fmt.Sprintf("%s: delivery to %s refused (%s), not retried", o.Note, user, why))
		return
	}
	if s.cfg.Deferrer != nil {
		if derr := s.cfg.Deferrer.Defer(s.ctx, req, o.Source, dst, o.Note); derr == nil {
			s.audit(room, user, dst, fmt.Sprintf("%s: delivery to %s failed (%s), handed to store-and-forward", o.Note, user, why))
			return
		}
	}
	s.audit(room, user, dst, fmt.Sprintf("%s: delivery to %s failed (%s), retrying from memory", o.Note, user, why))
	s.goBG(func() {
		for i, d := range s.cfg.RetryDelays {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(d):
			}
			ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
			res, err := s.cfg.Sender.Send(ctx, req.Clone(), dst, SendOptions{Source: o.Source, Note: fmt.Sprintf("%s retry %d", o.Note, i+1)})
			cancel()
			if err == nil && res.StatusCode < 300 {
				return
			}
		}
		s.audit(room, user, dst, fmt.Sprintf("%s: delivery to %s given up after %d retries", o.Note, user, len(s.cfg.RetryDelays)))
	})
}

// downgrade records that m takes plain text only.
func (s *Service) downgrade(room string, m *hubv1.RoomMember) {
	nm := cloneMember(m)
	nm.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_PLAIN
	cmd := s.command(s.cfg.NodeID, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: nm}})
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.Propose(ctx, cmd); err != nil {
		s.log.Info("room: switching a participant to plain text failed", "room", room, "user", m.GetUser(), "err", err)
		return
	}
	s.audit(room, m.GetUser(), m.GetNetwork(), "participant refused message/cpim: delivery switched to text/plain")
}

// deliveryCallID is the same for every attempt at one copy, on any node.
func deliveryCallID(room string, seq uint64, user string, replay bool, domain string) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%s\x00%v", room, seq, user, replay))
	return fmt.Sprintf("%x@%s", h[:12], domain)
}

// render builds the copy of msg for user: text/plain with a sender prefix,
// or CPIM naming the sender. The sender's content is never altered: a
// plain copy of non-text content goes unchanged with the sender in
// Subject (RFC 3261 20.36) since a prefix would corrupt it.
func (s *Service) render(room string, msg *hubv1.RoomMessage, user, callID string, cseq uint32, cpim, replay bool) *sip.Request {
	ct, body := msg.GetContentType(), msg.GetBody()
	var extra []CPIMHeader
	if mediaType(ct) == "message/cpim" {
		if inner, err := ParseCPIM(body); err == nil {
			ct, body, extra = inner.ContentType, inner.Body, imdnHeaders(inner)
		}
	}
	at := time.Unix(0, msg.GetUnixNano())
	var req *sip.Request
	if cpim {
		if !hasIMDNMessageID(extra) {
			// A receipt-less sender: the copy still carries an IMDN
			// Message-ID (RFC 5438 6.3) derived from room and sequence,
			// the key by which a client drops a copy re-sent after a
			// takeover (every attempt carries the same one).
			extra = append(extra, CPIMHeader{Name: "NS", Value: "imdn <urn:ietf:params:imdn>"},
				CPIMHeader{Name: "imdn.Message-ID", Value: RoomMessageID(room, msg.GetSeq())})
		}
		req = s.newMessage(room, user, callID, "message/cpim", BuildCPIM(msg.GetNickname(), msg.GetSender(), room, at, extra, ct, body))
	} else {
		who := fmt.Sprintf("%s (%s)", msg.GetNickname(), strings.TrimPrefix(msg.GetSender(), "sip:"))
		if replay {
			who = "[" + at.UTC().Format("2006-01-02 15:04:05Z") + "] " + who
		}
		if mediaType(ct) == "text/plain" {
			req = s.newMessage(room, user, callID, ct, append([]byte(who+": "), body...))
		} else {
			req = s.newMessage(room, user, callID, ct, body)
			req.AppendHeader(sip.NewHeader("Subject", who))
		}
	}
	req.CSeq().SeqNo = cseq
	return req
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

// replay sends the recent history to a participant who just joined.
func (s *Service) replay(room string, m *hubv1.RoomMember, limit int) {
	r := s.cfg.Store.State().Room(room)
	h := raft.RoomRecent(r)
	if limit > 0 && len(h) > limit {
		h = h[len(h)-limit:]
	}
	for _, msg := range h {
		s.fan.deliver(room, msg, m, true)
	}
}

// RoomMessageID is the IMDN Message-ID the hub gives room message seq
// when its sender gave none: the same on every node and every attempt.
func RoomMessageID(room string, seq uint64) string {
	h := sha256.Sum256(fmt.Appendf(nil, "imdn\x00%s\x00%d", room, seq))
	return fmt.Sprintf("%x", h[:12])
}

func hasIMDNMessageID(hs []CPIMHeader) bool {
	for _, h := range hs {
		if strings.HasSuffix(h.Name, ".Message-ID") {
			return true
		}
	}
	return false
}
