package lists

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// listSub is one list subscription (a dialog the hub is the notifier of),
// keyed by its dialog ID. Node-local soft state.
type listSub struct {
	id             string
	callID         string
	localTag       string
	remoteTag      string
	listURI, name  string
	adhoc          bool
	revision       uint64 // the named list's revision last sent
	network        string // the watcher's member network
	watcher        string // canonical watcher URI
	watcherHdr     sip.Uri
	event, eventID string
	remoteTarget   sip.Uri
	routeSet       []sip.Uri
	contact        sip.Uri
	entries        []Entry
	backs          map[string]*backend // entry URI -> back end
	static         map[string]resState // entry URI -> state without back end
	cseq           uint32
	version        uint32 // next RLMI version (RFC 4662 5.2: from 0, +1 per NOTIFY)
	full           bool   // next NOTIFY carries full state
	split          bool   // dirty holds the rest of a split state: not held by max-rate
	answering      bool   // the next NOTIFY answers a SUBSCRIBE: not held by max-rate
	noStreams      bool   // the stream edges failed a large NOTIFY: split until the next SUBSCRIBE
	dirty          map[string]bool
	sending        bool
	terminating    string // reason, once ending
	done           bool
	expires        time.Time
	expiry         Timer
	rates          rateParams // RFC 6446 (rate.go)
	lastSent       time.Time
	sentAny        bool
	amrSince       time.Time   // when adaptive-min-rate came into force (its initial history)
	amrSent        []time.Time // NOTIFYs of the adaptive-min-rate's last period
	gate           Timer       // a NOTIFY held back by max-rate
	heartbeat      Timer       // min-rate / adaptive-min-rate
}

func (sub *listSub) stopTimers() {
	for _, t := range []*Timer{&sub.expiry, &sub.gate, &sub.heartbeat} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

// kickLocked makes sure a NOTIFY goes out for whatever sub has pending; one
// sender per subscription at a time keeps CSeq and version in order.
func (s *Service) kickLocked(sub *listSub) {
	if sub.sending || sub.done {
		return
	}
	sub.sending = true
	s.goLocked(func() { s.sendLoop(sub) })
}

// terminateLocked ends sub: it leaves the table at once (a refresh gets
// 481), and its last NOTIFY says terminated;reason=reason (RFC 6665
// 4.2.2) with full state.
func (s *Service) terminateLocked(sub *listSub, reason string) {
	if sub.terminating != "" {
		return
	}
	sub.terminating, sub.full = reason, true
	sub.stopTimers()
	if s.subs[sub.id] == sub {
		delete(s.subs, sub.id)
	}
	s.kickLocked(sub)
}

// releaseLocked detaches sub from its back ends.
func (s *Service) releaseLocked(sub *listSub) {
	for uri := range sub.backs {
		s.detachLocked(sub, uri)
	}
}

func (s *Service) sendLoop(sub *listSub) {
	for {
		s.mu.Lock()
		if sub.done || (!sub.full && len(sub.dirty) == 0 && sub.terminating == "") {
			sub.sending = false
			s.mu.Unlock()
			return
		}
		if s.heldByMaxRateLocked(sub) {
			sub.sending = false
			s.mu.Unlock()
			return
		}
		req, final, streams := s.buildNotifyLocked(sub)
		s.sentLocked(sub, final)
		if final {
			sub.done = true
			s.releaseLocked(sub)
		}
		network := sub.network
		s.mu.Unlock()

		res, err := s.cfg.Sender.Send(s.ctx, req, "", network, "list NOTIFY "+sub.listURI, streams)
		if final {
			s.mu.Lock()
			sub.sending = false
			s.mu.Unlock()
			return
		}
		if err != nil && streams {
			// No edge of the watcher's network took it over TCP/TLS: send
			// the state again, split into datagrams, rather than lose the
			// subscription (until the next SUBSCRIBE).
			s.mu.Lock()
			s.cfg.Log.Info("list NOTIFY: no stream edge took it; splitting into datagrams", "list", sub.listURI, "watcher", sub.watcher, "err", err)
			// The state that did not get out goes again at once: max-rate
			// already let it through, and RFC 6446 5.2 does not hold a repeat.
			sub.noStreams, sub.full, sub.answering = true, true, true
			s.mu.Unlock()
			continue
		}
		if err != nil || res.StatusCode == 481 || res.StatusCode == 408 || (res.StatusCode >= 300 && res.StatusCode != 401 && res.StatusCode != 407) {
			// RFC 6665 4.2.2 / 4.1.3: a NOTIFY refused or timed out ends
			// the subscription; nothing more is sent to the watcher.
			s.mu.Lock()
			status := "no response"
			if res != nil {
				status = strconv.Itoa(res.StatusCode)
			}
			s.cfg.Log.Info("list subscription dropped: watcher refused a NOTIFY", "list", sub.listURI, "watcher", sub.watcher, "status", status)
			sub.done, sub.sending = true, false
			sub.stopTimers()
			if s.subs[sub.id] == sub {
				delete(s.subs, sub.id)
			}
			s.releaseLocked(sub)
			s.mu.Unlock()
			return
		}
		if res.StatusCode < 300 && (res.GetHeader("Event") != nil || res.GetHeader("o") != nil) {
			s.mu.Lock()
			s.ratesFromAnswerLocked(sub, res)
			s.mu.Unlock()
		}
	}
}

// ratesFromAnswerLocked applies the rates a watcher put in the Event header
// of its 2xx to a NOTIFY (RFC 6446 4.1, 5.2, 6.2, 7.2: the notifier MUST
// take them from there too). That Event header carries every rate wanted
// (9.3), so one left out is removed; an answer without an Event header
// changes nothing. Its event type must be the NOTIFY's (9.3) and its other
// parameters mean nothing. A response cannot be refused: a bad value is
// logged and the rates stay as they were.
func (s *Service) ratesFromAnswerLocked(sub *listSub, res *sip.Response) {
	if sub.done || sub.terminating != "" {
		return
	}
	h := res.GetHeader("Event")
	if h == nil {
		h = res.GetHeader("o")
	}
	v := h.Value()
	if pkg := strings.ToLower(strings.TrimSpace(strings.Split(v, ";")[0])); pkg != sub.event {
		s.cfg.Log.Debug("list NOTIFY answer: Event of another type ignored", "list", sub.listURI, "watcher", sub.watcher, "event", pkg)
		return
	}
	p, err := parseRates(v)
	if err != nil {
		s.cfg.Log.Info("list NOTIFY answer: rates ignored", "list", sub.listURI, "watcher", sub.watcher, "err", err)
		return
	}
	s.setRatesLocked(sub, p.applied(sub.expires.Sub(s.cfg.Clock.Now())))
	s.armHeartbeatLocked(sub)
}

// setRatesLocked puts new applied rates in force; adaptive-min-rate coming
// into force starts its history afresh (RFC 6446 7.2 step 1).
func (s *Service) setRatesLocked(sub *listSub, p rateParams) {
	if p.amrInterval <= 0 {
		sub.amrSent = nil
	} else if sub.rates.amrInterval <= 0 {
		sub.amrSince, sub.amrSent = s.cfg.Clock.Now(), nil
	}
	sub.rates = p
}

// resourceView is one resource as the next NOTIFY shows it.
func (s *Service) resourceLocked(sub *listSub, e Entry) rlmiResource {
	r := rlmiResource{uri: e.URI, name: e.DisplayName}
	if b := sub.backs[e.URI]; b != nil {
		r.id, r.state, r.reason = b.id, b.state, b.reason
		if b.state == stateActive && len(b.body) > 0 {
			r.contentType, r.body = b.contentType, b.body
		} else if b.state == stateActive {
			// Active but no document yet: RFC 4662 5.2 needs a part per
			// active instance; show it as pending until one arrives.
			r.state = statePending
		}
		return r
	}
	st := sub.static[e.URI]
	if st.state == "" {
		st = resState{statePending, ""}
	}
	r.id, r.state, r.reason = "s"+shortHash(e.URI), st.state, st.reason
	return r
}

// viaMargin is what the proxy core adds to a NOTIFY on its way out (its
// Via, with branch and received/rport room), counted in the size check.
const viaMargin = 200

// buildNotifyLocked builds the next NOTIFY and advances version and CSeq.
// streams says it is too large for a datagram (RFC 3261 18.1.1: over 1300
// bytes on a path of unknown MTU) and must go over TCP/TLS: the watcher
// network's stream edges, else TCP to its UDP edges (hub.OriginateOptions
// StreamsOnly). Only when no edge took it over TCP (noStreams) is a large
// state split: this NOTIFY carries the resources that fit and the rest go
// in partial NOTIFYs right after it (split; not held by max-rate), as
// small as the documents allow. RFC 4662 has no way to split one full
// state; the first part says fullState="true" and the subscriber's table
// is complete once the partial ones arrived (a partial notification adds
// the resources it names) — the order Kamailio's rls
// max_notify_body_length also uses.
func (s *Service) buildNotifyLocked(sub *listSub) (req *sip.Request, final, streams bool) {
	full := sub.full || sub.version == 0
	var rs []rlmiResource
	for _, e := range sub.entries {
		if full || sub.dirty[e.URI] {
			rs = append(rs, s.resourceLocked(sub, e))
		}
	}
	final = sub.terminating != ""
	sub.full, sub.split, sub.answering = false, false, false
	clear(sub.dirty)

	req = s.notifyRequest(sub, full, final, rs)
	if size := len(req.String()) + viaMargin; size > s.cfg.MaxDatagram {
		if !sub.noStreams {
			streams = true
			s.m.large.WithLabelValues("streams").Inc()
		} else if k := s.fitLocked(sub, full, final, rs); k < len(rs) {
			req = s.notifyRequest(sub, full, final, rs[:k])
			s.m.large.WithLabelValues("split").Inc()
			if !final {
				for _, r := range rs[k:] {
					sub.dirty[r.uri] = true
				}
				sub.split = true
			}
			s.cfg.Log.Debug("list NOTIFY split for a UDP-only network", "list", sub.listURI, "watcher", sub.watcher,
				"resources", k, "left", len(rs)-k, "version", sub.version)
		}
		if !streams && len(req.String())+viaMargin > s.cfg.MaxDatagram {
			// RFC 3261 18.1.1: TCP refused, the element SHOULD retry over
			// UDP; one resource per NOTIFY cannot be made smaller. Sent,
			// and said so.
			s.m.large.WithLabelValues("oversize").Inc()
			s.cfg.Log.Warn("list NOTIFY larger than a datagram toward a network that took no TCP",
				"list", sub.listURI, "watcher", sub.watcher, "network", sub.network, "bytes", len(req.String())+viaMargin)
		}
	}
	sub.version++
	sub.cseq++
	return req, final, streams
}

// fitLocked is how many of rs (at least one) fit in one datagram.
func (s *Service) fitLocked(sub *listSub, full, final bool, rs []rlmiResource) int {
	k := 1
	for k < len(rs) {
		if len(s.notifyRequest(sub, full, final, rs[:k+1]).String())+viaMargin > s.cfg.MaxDatagram {
			break
		}
		k++
	}
	return k
}

// notifyRequest is the NOTIFY with sub's next version and CSeq showing rs.
func (s *Service) notifyRequest(sub *listSub, full, final bool, rs []rlmiResource) *sip.Request {
	req := sip.NewRequest(sip.NOTIFY, sub.remoteTarget)
	for _, r := range sub.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	var lu sip.Uri
	if err := sip.ParseUri(sub.listURI, &lu); err != nil {
		lu = sip.Uri{Scheme: "sip", User: "list", Host: s.cfg.Domain}
	}
	fp := sip.NewParams()
	fp.Add("tag", sub.localTag)
	req.AppendHeader(&sip.FromHeader{Address: lu, Params: fp})
	tp := sip.NewParams()
	tp.Add("tag", sub.remoteTag)
	req.AppendHeader(&sip.ToHeader{Address: sub.watcherHdr, Params: tp})
	cid := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq + 1, MethodName: sip.NOTIFY})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: sub.contact})
	ev := sub.event
	if sub.eventID != "" {
		ev += ";id=" + sub.eventID
	}
	req.AppendHeader(sip.NewHeader("Event", ev))
	if final {
		// RFC 6446 4.2: the rates applied are echoed in every NOTIFY, the
		// last one too.
		req.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason="+sub.terminating+sub.rates.echo()))
	} else {
		left := max(int(sub.expires.Sub(s.cfg.Clock.Now())/time.Second), 0)
		req.AppendHeader(sip.NewHeader("Subscription-State", "active;expires="+strconv.Itoa(left)+sub.rates.echo()))
	}
	if sub.event == "presence" {
		req.AppendHeader(sip.NewHeader("Require", optEventlist)) // RFC 4662 4.4
		ct, body := s.rlmiBody(sub, sub.version, full, rs)
		req.AppendHeader(sip.NewHeader("Content-Type", ct))
		req.SetBody(body)
	} else {
		ct, body := buddylistBody(rs)
		if ct != "" {
			req.AppendHeader(sip.NewHeader("Content-Type", ct))
		}
		req.SetBody(body)
	}
	return req
}

// rlmiBody is the RFC 4662 body: multipart/related, RLMI root first.
func (s *Service) rlmiBody(sub *listSub, version uint32, full bool, rs []rlmiResource) (string, []byte) {
	boundary := randomHex(30) // 60 hex digits: a token, never in a body by chance
	rootCID := randomHex(8) + "@" + s.cfg.Domain
	for i := range rs {
		if rs[i].state == stateActive {
			rs[i].cid = randomHex(8) + "@" + s.cfg.Domain // RLMI cid: without angle brackets
		}
	}
	for _, r := range rs {
		if bytes.Contains(r.body, []byte(boundary)) {
			boundary = randomHex(30)
		}
	}
	rlmi := buildRLMI(sub.listURI, sub.name, version, full, rs)
	return notifyContentType(rootCID, boundary), buildMultipart(boundary, rootCID, rlmi, rs)
}

// buddylistBody serves Event: buddylist/presencelist (the drafts before
// RFC 4662): the changed members' presence documents, one as is or
// several in multipart/mixed.
func buddylistBody(rs []rlmiResource) (string, []byte) {
	var docs []rlmiResource
	for _, r := range rs {
		if r.state == stateActive && len(r.body) > 0 {
			docs = append(docs, r)
		}
	}
	switch len(docs) {
	case 0:
		return "", nil
	case 1:
		return docs[0].contentType, docs[0].body
	}
	boundary := randomHex(30)
	var b bytes.Buffer
	for _, d := range docs {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s\r\n\r\n", boundary, d.contentType)
		b.Write(d.body)
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return "multipart/mixed;boundary=" + boundary, b.Bytes()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shortHash(s string) string {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return strconv.FormatUint(h, 36)
}

// heldByMaxRateLocked reports whether RFC 6446 max-rate holds the next
// NOTIFY back, and if so schedules it. Only the NOTIFYs that answer a
// SUBSCRIBE or end the subscription are exempt (5.2); a full state after a
// list edit or a policy change waits like any change, and changes wait and
// go out together. The rest of a split state follows its first part at once
// (one state, cut in datagrams: see buildNotifyLocked).
func (s *Service) heldByMaxRateLocked(sub *listSub) bool {
	if sub.rates.maxInterval <= 0 || !sub.sentAny || sub.answering || sub.split || sub.terminating != "" {
		return false
	}
	if sub.gate != nil {
		return true
	}
	wait := sub.lastSent.Add(sub.rates.maxInterval).Sub(s.cfg.Clock.Now())
	if wait <= 0 {
		return false
	}
	sub.gate = s.afterLocked(wait, func() {
		sub.gate = nil
		s.kickLocked(sub)
	})
	return true
}

// sentLocked records a NOTIFY going out and re-arms the heartbeat.
func (s *Service) sentLocked(sub *listSub, final bool) {
	sub.lastSent, sub.sentAny = s.cfg.Clock.Now(), true
	sub.amrSent = sub.rates.recordSent(sub.amrSent, sub.lastSent)
	if final {
		if sub.heartbeat != nil {
			sub.heartbeat.Stop()
			sub.heartbeat = nil
		}
		return
	}
	s.armHeartbeatLocked(sub)
}

// armHeartbeatLocked (re)arms the min-rate / adaptive-min-rate heartbeat
// from the last NOTIFY (RFC 6446 6.2, 7.2 steps 3-4): with nothing new by
// then, full state goes again.
func (s *Service) armHeartbeatLocked(sub *listSub) {
	if sub.heartbeat != nil {
		sub.heartbeat.Stop()
		sub.heartbeat = nil
	}
	d := sub.rates.heartbeatIn(sub.amrSince, sub.lastSent, sub.amrSent)
	if d <= 0 || !sub.sentAny {
		return
	}
	wait := max(sub.lastSent.Add(d).Sub(s.cfg.Clock.Now()), 0)
	sub.heartbeat = s.afterLocked(wait, func() {
		sub.heartbeat = nil
		if sub.terminating == "" && !sub.done {
			sub.full = true
			s.kickLocked(sub)
		}
	})
}
