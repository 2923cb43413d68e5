package chatroom

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Roster: the hub is the RFC 4575 notifier for Event: conference on every
// room URI. Subscriptions are node memory (DESIGN.md: dialogs are not
// replicated): after a node dies, a watcher's refresh gets 481 from the
// node it reaches and it subscribes again (RFC 6665 4.1.2.4), receiving full
// state. Changes are coalesced per watcher (at most one NOTIFY per
// RosterCoalesce) and sent as partial documents, version + 1 each
// (RFC 4575 4.6).

const (
	rosterEvent       = "conference"
	rosterContentType = "application/conference-info+xml"
	defaultExpires    = 3600
	minExpires        = 60
	maxRosterSubs     = 10000
)

type rosterUser struct {
	user, nick, role string
	joined           bool
	session          bool // in the room over an MSRP session (RFC 7701)
}

type subscription struct {
	key      string
	room     string
	network  string // the watcher's member network
	watcher  string // its canonical URI
	callID   string
	fromTag  string // the watcher's tag (our To)
	localTag string // ours (our From)
	remote   sip.Uri
	routes   []string // route set from Record-Route, in order (RFC 3261 12.1.1)
	contact  sip.Uri  // ours
	from     sip.Uri  // the watcher's From address
	cseq     uint32
	version  uint64
	expires  time.Time
	sent     map[string]rosterUser // what the watcher has been told
	dirty    bool
	lastSent time.Time
	timer    *time.Timer
	sending  bool
}

type roster struct {
	s    *Service
	mu   sync.Mutex
	subs map[string]*subscription
	// members remembers each watched room's participant slice as last
	// compared: the FSM replaces the slice on every change and shares it
	// otherwise, so an unchanged slice (a room message, another room's
	// change) costs no roster comparison.
	members map[string]memberSlice
}

// memberSlice identifies the slices a roster and its authorization depend
// on by their backing arrays (the FSM never edits a published slice in
// place, so the same array means the same content).
type memberSlice struct {
	members     **hubv1.RoomMember
	nMembers    int
	bans        **hubv1.RoomBan
	nBans       int
	networks    *string
	nNetworks   int
	membersOnly bool
}

func sliceID(r *hubv1.Room) memberSlice {
	id := memberSlice{nMembers: len(r.GetMembers()), nBans: len(r.GetBans()), nNetworks: len(r.GetNetworks()), membersOnly: r.GetMembersOnly()}
	if id.nMembers > 0 {
		id.members = &r.GetMembers()[0]
	}
	if id.nBans > 0 {
		id.bans = &r.GetBans()[0]
	}
	if id.nNetworks > 0 {
		id.networks = &r.GetNetworks()[0]
	}
	return id
}

func newRoster(s *Service) *roster {
	return &roster{s: s, subs: map[string]*subscription{}, members: map[string]memberSlice{}}
}

func dialogKey(callID, watcherTag, ourTag string) string {
	return callID + "\x00" + watcherTag + "\x00" + ourTag
}

func (ro *roster) serveSubscribe(r *Request) {
	req := r.Req
	ev := req.GetHeader("Event")
	if ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), rosterEvent) {
		res := sip.NewResponseFromRequest(req, 489, "Bad Event", nil)
		res.AppendHeader(sip.NewHeader("Allow-Events", rosterEvent))
		r.Respond(res)
		return
	}
	if acc := req.GetHeaders("Accept"); len(acc) > 0 {
		ok := false
		for _, h := range acc {
			if strings.Contains(strings.ToLower(h.Value()), rosterContentType) || strings.Contains(h.Value(), "*/*") {
				ok = true
			}
		}
		if !ok {
			respond(r, 406, "Conference Info Not Accepted") // RFC 6665 4.2.1.3
			return
		}
	}
	expires := defaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || v < 0 {
			respond(r, 400, "Bad Expires")
			return
		}
		expires = min(v, defaultExpires)
		if expires > 0 && expires < minExpires {
			res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
			res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
			r.Respond(res)
			return
		}
	}
	watcher, err := senderOf(req)
	if err != nil || req.To() == nil {
		respond(r, 400, "Bad From Or To Address")
		return
	}
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	fromTag, _ := req.From().Params.Get("tag")
	toTag, _ := req.To().Params.Get("tag")
	if toTag != "" {
		ro.refresh(r, dialogKey(callID, fromTag, toTag), expires)
		return
	}
	room, err := ro.s.RoomURI(req.Recipient.User + "@" + req.Recipient.Host)
	st := ro.s.cfg.Store.State()
	rm := st.Room(room)
	if err != nil || rm == nil {
		respond(r, 404, "Room Not Found")
		return
	}
	if why := ro.authorize(st, rm, watcher, r.Source); why != "" {
		respond(r, 403, why)
		return
	}
	if req.Contact() == nil {
		respond(r, 400, "Missing Contact")
		return
	}
	sub := &subscription{
		room: room, network: r.Source, watcher: watcher, callID: callID, fromTag: fromTag,
		localTag: sip.GenerateTagN(10), remote: req.Contact().Address, from: req.From().Address,
		contact: r.Contact(strings.TrimPrefix(strings.SplitN(room, "@", 2)[0], "sip:")),
		expires: ro.s.now().Add(time.Duration(expires) * time.Second),
	}
	for _, h := range req.GetHeaders("Record-Route") {
		sub.routes = append(sub.routes, strings.Split(h.Value(), ",")...)
	}
	sub.key = dialogKey(callID, fromTag, sub.localTag)
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.To().Params.Add("tag", sub.localTag)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res.AppendHeader(&sip.ContactHeader{Address: sub.contact})
	if expires > 0 {
		ro.mu.Lock()
		if len(ro.subs) >= maxRosterSubs {
			ro.mu.Unlock()
			res := sip.NewResponseFromRequest(req, 503, "Too Many Roster Subscriptions", nil)
			res.AppendHeader(sip.NewHeader("Retry-After", "60"))
			r.Respond(res)
			return
		}
		ro.subs[sub.key] = sub
		ro.mu.Unlock()
	}
	r.Respond(res)
	// RFC 6665 4.2.1: a NOTIFY at once with the full state (the
	// terminated one for a fetch, Expires: 0).
	ro.s.goBG(func() { ro.notify(sub, expires == 0, "") })
}

// authorize returns "" if watcher of network may see rm's roster.
func (ro *roster) authorize(st *raft.State, rm *hubv1.Room, watcher, network string) string {
	if raft.RoomBanFor(rm, watcher, network) != nil {
		return "Banned From Room"
	}
	if rm.GetMembersOnly() && raft.RoomMember(rm, watcher) == nil {
		return "Members-Only Room"
	}
	if len(rm.GetNetworks()) > 0 {
		for _, n := range rm.GetNetworks() {
			if n == network {
				return ""
			}
		}
		return "Network Not Admitted To Room"
	}
	return ""
}

func (ro *roster) refresh(r *Request, key string, expires int) {
	ro.mu.Lock()
	sub := ro.subs[key]
	if sub != nil {
		if expires == 0 {
			delete(ro.subs, key)
		} else {
			sub.expires = ro.s.now().Add(time.Duration(expires) * time.Second)
		}
	}
	ro.mu.Unlock()
	if sub == nil {
		// Not ours (another node's, or this node restarted): the watcher
		// subscribes afresh (RFC 6665 4.1.2.4).
		respond(r, 481, "Subscription Does Not Exist")
		return
	}
	res := sip.NewResponseFromRequest(r.Req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res.AppendHeader(&sip.ContactHeader{Address: sub.contact})
	r.Respond(res)
	if expires == 0 {
		ro.s.goBG(func() { ro.notify(sub, true, "timeout") })
	}
}

// stateChanged marks watchers of changed rosters and ends subscriptions of
// deleted rooms and of watchers who may no longer see them.
func (ro *roster) stateChanged(st *raft.State) {
	ro.mu.Lock()
	var end []*subscription
	changed := map[string]bool{}
	rosters := map[string]map[string]rosterUser{}
	for k, sub := range ro.subs {
		rm := st.Room(sub.room)
		if rm != nil {
			c, ok := changed[sub.room]
			if !ok {
				id := sliceID(rm)
				c = ro.members[sub.room] != id
				ro.members[sub.room] = id
				changed[sub.room] = c
			}
			if !c && sub.sent != nil {
				continue
			}
		}
		if rm == nil || ro.authorize(st, rm, sub.watcher, sub.network) != "" {
			delete(ro.subs, k)
			end = append(end, sub)
			continue
		}
		cur, ok := rosters[sub.room]
		if !ok {
			cur = rosterOf(rm)
			rosters[sub.room] = cur
		}
		if !sameRoster(sub.sent, cur) {
			ro.scheduleLocked(sub)
		}
	}
	for room := range ro.members {
		if _, ok := changed[room]; !ok {
			delete(ro.members, room) // no watcher left
		}
	}
	ro.mu.Unlock()
	for _, sub := range end {
		reason := "rejected"
		if st.Room(sub.room) == nil {
			reason = "noresource"
		}
		ro.s.goBG(func() { ro.notify(sub, true, reason) })
	}
}

// scheduleLocked sends a partial NOTIFY now or when the coalescing
// interval since the last one has passed.
func (ro *roster) scheduleLocked(sub *subscription) {
	if sub.dirty {
		return
	}
	sub.dirty = true
	wait := ro.s.cfg.RosterCoalesce - ro.s.now().Sub(sub.lastSent)
	if wait < 0 {
		wait = 0
	}
	sub.timer = time.AfterFunc(wait, func() {
		if ro.s.ctx.Err() != nil {
			return
		}
		ro.s.goBG(func() { ro.notify(sub, false, "") })
	})
}

func (ro *roster) expire() {
	now := ro.s.now()
	ro.mu.Lock()
	var end []*subscription
	for k, sub := range ro.subs {
		if now.After(sub.expires) {
			delete(ro.subs, k)
			end = append(end, sub)
		}
	}
	ro.mu.Unlock()
	for _, sub := range end {
		ro.s.goBG(func() { ro.notify(sub, true, "timeout") })
	}
}

func rosterOf(rm *hubv1.Room) map[string]rosterUser {
	out := make(map[string]rosterUser, len(rm.GetMembers()))
	for _, m := range rm.GetMembers() {
		out[m.GetUser()] = rosterUser{user: m.GetUser(), nick: m.GetNickname(), role: RoleName(m.GetRole()), joined: raft.Joined(m), session: m.GetSessionNode() != ""}
	}
	return out
}

func sameRoster(a, b map[string]rosterUser) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// notify sends the watcher what changed since its last NOTIFY (all of it
// the first time), or the final NOTIFY when terminated.
func (ro *roster) notify(sub *subscription, terminated bool, reason string) {
	ro.mu.Lock()
	if sub.sending {
		// One NOTIFY at a time per dialog (RFC 6665 4.2.2: CSeq order);
		// look again after the current one.
		sub.dirty = false
		ro.scheduleLocked(sub)
		ro.mu.Unlock()
		return
	}
	sub.sending, sub.dirty = true, false
	rm := ro.s.cfg.Store.State().Room(sub.room)
	cur := map[string]rosterUser{}
	subject := ""
	if rm != nil {
		cur, subject = rosterOf(rm), rm.GetSubject()
	}
	full := sub.sent == nil
	sub.version++
	sub.cseq++
	doc := conferenceInfo(sub.room, subject, sub.version, full, sub.sent, cur)
	sub.sent, sub.lastSent = cur, ro.s.now()
	state := fmt.Sprintf("active;expires=%d", max(int(time.Until(sub.expires).Seconds()), 0))
	if terminated {
		state = "terminated"
		if reason != "" {
			state += ";reason=" + reason
		}
	}
	req := ro.buildNotify(sub, state, doc)
	ro.mu.Unlock()
	ctx, cancel := context.WithTimeout(ro.s.ctx, 40*time.Second)
	res, err := ro.s.cfg.Sender.Send(ctx, req, sub.network, SendOptions{Note: "room roster " + sub.room})
	cancel()
	ro.mu.Lock()
	sub.sending = false
	if err == nil && (res.StatusCode == 481 || res.StatusCode == 408) {
		delete(ro.subs, sub.key) // RFC 6665 4.2.2: the watcher is gone
	}
	ro.mu.Unlock()
}

func (ro *roster) buildNotify(sub *subscription, state string, doc []byte) *sip.Request {
	req := sip.NewRequest(sip.NOTIFY, sub.remote)
	var from sip.Uri
	_ = sip.ParseUri(sub.room, &from)
	fp := sip.NewParams()
	fp.Add("tag", sub.localTag)
	req.AppendHeader(&sip.FromHeader{Address: from, Params: fp})
	tp := sip.NewParams()
	tp.Add("tag", sub.fromTag)
	req.AppendHeader(&sip.ToHeader{Address: sub.from, Params: tp})
	cid := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: sip.NOTIFY})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, rt := range sub.routes {
		if rt = strings.TrimSpace(rt); rt != "" {
			req.AppendHeader(sip.NewHeader("Route", rt))
		}
	}
	req.AppendHeader(&sip.ContactHeader{Address: sub.contact})
	req.AppendHeader(sip.NewHeader("Event", rosterEvent))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", rosterContentType))
	req.SetBody(doc)
	return req
}

// conferenceInfo renders an RFC 4575 document: state="full" with every
// user, or "partial" with the users that changed (state="full" each) and
// those gone (state="deleted").
func conferenceInfo(room, subject string, version uint64, full bool, before, now map[string]rosterUser) []byte {
	var b bytes.Buffer
	state := "partial"
	if full {
		state = "full"
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="%s" state="%s" version="%d">`+"\n", esc(room), state, version)
	if full {
		fmt.Fprintf(&b, "  <conference-description><subject>%s</subject></conference-description>\n", esc(subject))
	}
	b.WriteString("  <users>\n")
	for _, u := range sortedUsers(now) {
		if !full && before[u.user] == u {
			continue
		}
		status := "connected"
		if !u.joined {
			status = "pending"
		}
		// RFC 4575 5.7: a session participant's endpoint dialed in and
		// carries a message media stream; a pager one has no media.
		media := ""
		if u.session {
			media = `<joining-method>dialed-in</joining-method><media id="msrp"><type>message</type><status>sendrecv</status></media>`
		}
		fmt.Fprintf(&b, `    <user entity="%s" state="full"><display-text>%s</display-text><roles><entry>%s</entry></roles>`+
			`<endpoint entity="%s"><status>%s</status>%s</endpoint></user>`+"\n", esc(u.user), esc(u.nick), esc(u.role), esc(u.user), status, media)
	}
	if !full {
		for _, u := range sortedUsers(before) {
			if _, ok := now[u.user]; !ok {
				fmt.Fprintf(&b, `    <user entity="%s" state="deleted"/>`+"\n", esc(u.user))
			}
		}
	}
	b.WriteString("  </users>\n</conference-info>\n")
	return b.Bytes()
}

func sortedUsers(m map[string]rosterUser) []rosterUser {
	out := make([]rosterUser, 0, len(m))
	for _, u := range m {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b rosterUser) int { return strings.Compare(a.user, b.user) })
	return out
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
