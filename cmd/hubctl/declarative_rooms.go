package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The rooms: key of the declarative document: each chat room's settings,
// participants and bans. Message history is not membership and is never
// exported. As with lists:, a document without the key leaves every room
// as it is.
//
// RoomService creates and deletes rooms, adds and removes participants,
// changes roles, bans and unbans, changes an existing room's settings
// (UpdateRoom) and a participant's nickname or delivery (SetRoomMember).
// It has no call that changes a room's owner or a participant's
// invitation, nor one that puts a room's history length back to "the
// default" (0 in the file): apply refuses those edits before anything is
// sent (naming the YAML path) rather than delete and re-create what people
// are using. Removals of participants and bans, like those of rooms, need
// --prune: users join open rooms over SIP between export and apply.

type docRoom struct {
	URI          string           `json:"uri"`
	Subject      string           `json:"subject"`
	Owner        string           `json:"owner"` // "" = made by an operator
	MembersOnly  bool             `json:"members_only"`
	Moderated    bool             `json:"moderated"`
	MaxMembers   uint32           `json:"max_members"` // 0 = the default
	HistoryLen   uint32           `json:"history_len"` // 0 = the default
	Networks     []string         `json:"networks"`    // [] = every active one
	Participants []docParticipant `json:"participants"`
	Bans         []docBan         `json:"bans"`
}

type docParticipant struct {
	URI      string `json:"uri"`
	Nickname string `json:"nickname"`
	Role     string `json:"role"`
	Invited  bool   `json:"invited"`
	CPIM     bool   `json:"cpim"`
}

type docBan struct {
	Pattern string `json:"pattern"`
	Reason  string `json:"reason"`
}

func exportRooms(rs []*hubv1.Room) []docRoom {
	out := []docRoom{}
	for _, r := range rs {
		d := docRoom{URI: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(), MembersOnly: r.GetMembersOnly(),
			Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(),
			Networks: append([]string{}, r.GetNetworks()...), Participants: []docParticipant{}, Bans: []docBan{}}
		for _, m := range r.GetMembers() {
			d.Participants = append(d.Participants, docParticipant{URI: m.GetUser(), Nickname: m.GetNickname(), Role: roleName(m.GetRole()),
				Invited: !raft.Joined(m), CPIM: m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM})
		}
		for _, b := range r.GetBans() {
			d.Bans = append(d.Bans, docBan{Pattern: b.GetPattern(), Reason: b.GetReason()})
		}
		out = append(out, d)
	}
	return out
}

var roomKeys = []string{"uri", "subject", "owner", "members_only", "moderated", "max_members", "history_len", "networks", "participants", "bans"}
var participantKeys = []string{"uri", "nickname", "role", "invited", "cpim"}
var banKeys = []string{"pattern", "reason"}

// wantRoom is a room of the file: settings in room (URI canonical,
// networks sorted), participants and bans in file order.
type wantRoom struct {
	room     *hubv1.Room
	members  []*hubv1.RoomMember // Network left empty: the hub sets it
	bans     []*hubv1.RoomBan
	path     string
	memberAt map[string]string // user -> path
}

func (p *docParser) uint32Field(n *yaml.Node, path string, most int) uint32 {
	v := p.number(n, path)
	if v != float64(uint32(v)) || v > float64(most) {
		p.fail(n, path, "%v: want a whole number, at most %d", v, most)
		return 0
	}
	return uint32(v)
}

// userURI reads a user address as the hub stores it (sip:user@host).
func (p *docParser) userURI(n *yaml.Node, path string) string {
	before := len(p.errs)
	s := p.str(n, path)
	if len(p.errs) > before || s == "" {
		return s
	}
	u, err := raft.NormalizeUserURI(s)
	if err != nil {
		p.fail(n, path, "%v", err)
		return s
	}
	return u
}

// docBanPattern is the admin server's canonical ban pattern (rooms.go).
func docBanPattern(s string) (string, string) {
	switch {
	case strings.HasPrefix(s, "*@"), strings.HasPrefix(s, raft.BanNetworkPrefix):
		s = strings.ToLower(s)
	default:
		u, err := raft.NormalizeUserURI(s)
		if err != nil {
			return s, "want sip:user@domain, *@domain or network:ID"
		}
		s = u
	}
	return s, raft.BanPatternProblem(s)
}

// defaultNick is the nickname the hub gives a participant added without
// one: the user part.
func defaultNick(user string) string {
	return strings.TrimPrefix(user[:max(strings.LastIndexByte(user, '@'), 0)], "sip:")
}

// rooms reads the rooms: sequence into want.rooms.
func (p *docParser) rooms(n *yaml.Node, want *desiredState) {
	want.roomsGiven = true
	want.roomPaths = map[string]string{}
	// Which file network owns a domain: a ban on network:X must not cover a
	// participant the same room lists.
	domainNet := map[string]string{}
	for _, nw := range want.networks {
		for _, d := range nw.GetDomains() {
			domainNet[d] = nw.GetId()
		}
	}
	for i, item := range p.seq(n, "rooms") {
		path := fmt.Sprintf("rooms[%d]", i)
		before := len(p.errs)
		f := p.mapping(item, path, roomKeys)
		if f == nil {
			continue
		}
		r := &hubv1.Room{
			Subject:     p.str(f["subject"], path+".subject"),
			Owner:       p.userURI(f["owner"], path+".owner"),
			MembersOnly: p.boolean(f["members_only"], path+".members_only"),
			Moderated:   p.boolean(f["moderated"], path+".moderated"),
			MaxMembers:  p.uint32Field(f["max_members"], path+".max_members", raft.MaxRoomMembers),
			HistoryLen:  p.uint32Field(f["history_len"], path+".history_len", raft.MaxRoomHistory),
		}
		switch s := p.str(f["uri"], path+".uri"); {
		case s == "":
			p.fail(item, path+".uri", "required (the room's SIP URI, sip:name@rooms-domain)")
		default:
			u, err := raft.NormalizeRoomURI(s)
			if err != nil {
				p.fail(f["uri"], path+".uri", "%q: %v", s, err)
				break
			}
			if j, dup := want.roomPaths[u]; dup {
				p.fail(f["uri"], path+".uri", "%q: duplicate of %s", u, j)
				continue
			}
			r.Uri = u
			want.roomPaths[u] = path
		}
		for j, id := range p.strs(f["networks"], path+".networks") {
			if !raft.ValidID(id) {
				p.fail(nil, fmt.Sprintf("%s.networks[%d]", path, j), "%q: not a network id", id)
			}
			r.Networks = append(r.Networks, id)
		}
		slices.Sort(r.Networks)
		r.Networks = slices.Compact(r.Networks)
		w := &wantRoom{room: r, path: path, memberAt: map[string]string{}}
		nicks := map[string]string{}
		for j, m := range p.seq(f["participants"], path+".participants") {
			mp := fmt.Sprintf("%s.participants[%d]", path, j)
			mf := p.mapping(m, mp, participantKeys)
			if mf == nil {
				continue
			}
			rm := &hubv1.RoomMember{User: p.userURI(mf["uri"], mp+".uri"), Nickname: p.str(mf["nickname"], mp+".nickname")}
			if rm.GetUser() == "" {
				p.fail(m, mp+".uri", "required")
				continue
			}
			if o, dup := w.memberAt[rm.GetUser()]; dup {
				p.fail(mf["uri"], mp+".uri", "%q: also %s", rm.GetUser(), o)
				continue
			}
			w.memberAt[rm.GetUser()] = mp
			if rm.Nickname == "" {
				rm.Nickname = defaultNick(rm.GetUser())
			}
			if why := raft.NicknameProblem(rm.GetNickname()); why != "" {
				p.fail(mf["nickname"], mp+".nickname", "%q: %s", rm.GetNickname(), why)
			} else if o, dup := nicks[strings.ToLower(rm.GetNickname())]; dup {
				p.fail(mf["nickname"], mp+".nickname", "%q: taken by %s (nicknames are compared case-folded)", rm.GetNickname(), o)
			} else {
				nicks[strings.ToLower(rm.GetNickname())] = mp
			}
			rm.Role = hubv1.RoomRole_ROOM_ROLE_MEMBER
			if v, ok := mf["role"]; ok {
				role, err := parseRole(p.str(v, mp+".role"))
				if err != nil {
					p.fail(v, mp+".role", "%q: want owner, moderator, member or visitor", v.Value)
				}
				rm.Role = role
			}
			rm.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED
			if p.boolean(mf["invited"], mp+".invited") {
				rm.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED
			}
			if p.boolean(mf["cpim"], mp+".cpim") {
				rm.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
			}
			w.members = append(w.members, rm)
		}
		bans := map[string]string{}
		for j, b := range p.seq(f["bans"], path+".bans") {
			bp := fmt.Sprintf("%s.bans[%d]", path, j)
			bf := p.mapping(b, bp, banKeys)
			if bf == nil {
				continue
			}
			raw := p.str(bf["pattern"], bp+".pattern")
			if raw == "" {
				p.fail(b, bp+".pattern", "required (sip:user@domain, *@domain or network:ID)")
				continue
			}
			pat, why := docBanPattern(raw)
			if why != "" {
				p.fail(bf["pattern"], bp+".pattern", "%q: %s", raw, why)
				continue
			}
			if o, dup := bans[pat]; dup {
				p.fail(bf["pattern"], bp+".pattern", "%q: also %s", pat, o)
				continue
			}
			bans[pat] = bp
			for _, m := range w.members {
				if raft.BanMatches(pat, m.GetUser(), domainNet[raft.UserHost(m.GetUser())]) {
					p.fail(bf["pattern"], bp+".pattern", "%q bans %s, a participant of the same room (%s)", pat, m.GetUser(), w.memberAt[m.GetUser()])
				}
			}
			w.bans = append(w.bans, &hubv1.RoomBan{Pattern: pat, Reason: p.str(bf["reason"], bp+".reason")})
		}
		if len(p.errs) > before {
			continue
		}
		want.rooms = append(want.rooms, w)
	}
}

// roomChange is one room added (+), changed (~) or removed (-), rendered
// line by line ("+"/"~"/"-" then the text).
type roomChange struct {
	op    byte
	uri   string
	lines []string
}

func roomSettings(r *hubv1.Room) []fieldChange {
	return []fieldChange{
		{name: "subject", new: fmt.Sprintf("%q", r.GetSubject())},
		{name: "owner", new: orNone(r.GetOwner())},
		{name: "members_only", new: fmt.Sprint(r.GetMembersOnly())},
		{name: "moderated", new: fmt.Sprint(r.GetModerated())},
		{name: "max_members", new: fmt.Sprint(r.GetMaxMembers())},
		{name: "history_len", new: fmt.Sprint(r.GetHistoryLen())},
		{name: "networks", new: list(r.GetNetworks())},
	}
}

// roomUpdate is the UpdateRoom that makes cur's settings want's, with the
// diff lines; nil when they are equal. The owner and a history length put
// back to the default (0) have no call.
func roomUpdate(cur, want *hubv1.Room, path string) (*hubv1.UpdateRoomRequest, []string, error) {
	curSet, wantSet := roomSettings(cur), roomSettings(want)
	up := &hubv1.UpdateRoomRequest{Room: cur.GetUri()}
	var lines []string
	for i := range curSet {
		if curSet[i].new == wantSet[i].new {
			continue
		}
		lines = append(lines, fmt.Sprintf("~     %s: %s -> %s", curSet[i].name, curSet[i].new, wantSet[i].new))
		switch curSet[i].name {
		case "subject":
			up.Subject = proto.String(want.GetSubject())
		case "members_only":
			up.MembersOnly = proto.Bool(want.GetMembersOnly())
		case "moderated":
			up.Moderated = proto.Bool(want.GetModerated())
		case "max_members":
			up.MaxMembers = proto.Uint32(want.GetMaxMembers())
		case "history_len":
			if want.GetHistoryLen() == 0 {
				return nil, nil, fmt.Errorf("%s.history_len: %s -> 0: 0 means the default, which UpdateRoom cannot set back; write the length (20 is the default)", path, curSet[i].new)
			}
			up.HistoryLen = proto.Uint32(want.GetHistoryLen())
		case "networks":
			up.SetNetworks, up.Networks = true, want.GetNetworks()
		default: // owner
			return nil, nil, fmt.Errorf("%s.%s: %s -> %s: RoomService has no call that changes an existing room's owner; "+
				"put the cluster's value back in the file (hubctl room get %s), or delete the room and let apply create it (its history is lost)",
				path, curSet[i].name, curSet[i].new, wantSet[i].new, cur.GetUri())
		}
	}
	if len(lines) == 0 {
		return nil, nil, nil
	}
	return up, lines, nil
}

func orNone(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func memberWord(m *hubv1.RoomMember) string {
	s := fmt.Sprintf("%s nickname %s, %s", m.GetUser(), m.GetNickname(), roleName(m.GetRole()))
	if !raft.Joined(m) {
		s += ", invited"
	}
	if m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM {
		s += ", cpim"
	}
	return s
}

func banWord(b *hubv1.RoomBan) string {
	if b.GetReason() == "" {
		return b.GetPattern()
	}
	return fmt.Sprintf("%s (%q)", b.GetPattern(), b.GetReason())
}

// planRooms compares the cluster's rooms with the file's. It returns an
// error naming the YAML path for a change no RoomService call makes.
func planRooms(cur []*hubv1.Room, want *desiredState, prune bool) (changes []roomChange, steps, deletes []step, notes []string, err error) {
	if !want.roomsGiven {
		return nil, nil, nil, nil, nil
	}
	curByURI := map[string]*hubv1.Room{}
	for _, r := range cur {
		curByURI[r.GetUri()] = r
	}
	for _, w := range want.rooms {
		uri := w.room.GetUri()
		c := curByURI[uri]
		rc := roomChange{op: '~', uri: uri}
		isNew := c == nil
		if isNew {
			rc.op = '+'
			for _, f := range roomSettings(w.room) {
				rc.lines = append(rc.lines, fmt.Sprintf("+     %s: %s", f.name, f.new))
			}
			steps = append(steps, step{kind: stepCreateRoom, id: uri, room: w.room})
			// What CreateRoom makes: the owner as owner participant with the
			// default nickname; the participant diff below takes it from there.
			c = &hubv1.Room{Uri: uri, Owner: w.room.GetOwner()}
			if o := w.room.GetOwner(); o != "" {
				c.Members = []*hubv1.RoomMember{{User: o, Nickname: defaultNick(o), Role: hubv1.RoomRole_ROOM_ROLE_OWNER}}
			}
		} else {
			up, lines, err := roomUpdate(c, w.room, w.path)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			if up != nil {
				rc.lines = append(rc.lines, lines...)
				steps = append(steps, step{kind: stepUpdateRoom, id: uri, updateRoom: up})
			}
		}
		var unbans, removes, adds, roles, bans []step
		for _, m := range c.GetMembers() {
			if _, ok := w.memberAt[m.GetUser()]; ok {
				continue
			}
			if !prune && !isNew {
				notes = append(notes, fmt.Sprintf("# room %s: participant %s is not in the file: kept (apply --prune removes it)", uri, m.GetUser()))
				continue
			}
			rc.lines = append(rc.lines, "-     participant: "+memberWord(m))
			removes = append(removes, step{kind: stepRemoveRoomMember, id: uri, user: m.GetUser()})
		}
		for _, m := range w.members {
			o := raft.RoomMember(c, m.GetUser())
			if o == nil {
				rc.lines = append(rc.lines, "+     participant: "+memberWord(m))
				adds = append(adds, step{kind: stepAddRoomMember, id: uri, member: m})
				continue
			}
			if !isNew && raft.Joined(o) == raft.Joined(m) && (o.GetNickname() != m.GetNickname() || o.GetDelivery() != m.GetDelivery()) {
				// One SetRoomMember carries nickname, delivery and role
				// (a role alone stays a SetRoomRole, below).
				rc.lines = append(rc.lines, fmt.Sprintf("~     participant %s -> %s", memberWord(o), memberWord(m)))
				sm := &hubv1.SetRoomMemberRequest{Room: uri, User: m.GetUser()}
				if o.GetNickname() != m.GetNickname() {
					sm.Nickname = proto.String(m.GetNickname())
				}
				if o.GetDelivery() != m.GetDelivery() {
					sm.Cpim = proto.Bool(m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM)
				}
				if raft.RoleOf(o) != raft.RoleOf(m) {
					sm.Role = m.GetRole().Enum()
				}
				roles = append(roles, step{kind: stepSetRoomMember, id: uri, user: m.GetUser(), setMember: sm})
				continue
			}
			if o.GetNickname() != m.GetNickname() || raft.Joined(o) != raft.Joined(m) || o.GetDelivery() != m.GetDelivery() {
				if !isNew {
					return nil, nil, nil, nil, fmt.Errorf("%s: %s -> %s: RoomService has no call that changes a participant's invitation; "+
						"put the cluster's value back in the file, or remove the participant from it, apply --prune, and add it back",
						w.memberAt[m.GetUser()], memberWord(o), memberWord(m))
				}
				// A room this apply creates: nobody uses the owner's record yet.
				rc.lines = append(rc.lines, "+     participant: "+memberWord(m))
				removes = append(removes, step{kind: stepRemoveRoomMember, id: uri, user: m.GetUser()})
				adds = append(adds, step{kind: stepAddRoomMember, id: uri, member: m})
				continue
			}
			if raft.RoleOf(o) != raft.RoleOf(m) {
				rc.lines = append(rc.lines, fmt.Sprintf("~     participant %s: role %s -> %s", m.GetUser(), roleName(o.GetRole()), roleName(m.GetRole())))
				roles = append(roles, step{kind: stepSetRoomRole, id: uri, user: m.GetUser(), role: m.GetRole()})
			} else if isNew {
				rc.lines = append(rc.lines, "+     participant: "+memberWord(m))
			}
		}
		wantBan := map[string]*hubv1.RoomBan{}
		for _, b := range w.bans {
			wantBan[b.GetPattern()] = b
		}
		curBan := map[string]*hubv1.RoomBan{}
		for _, b := range c.GetBans() {
			curBan[b.GetPattern()] = b
			nb := wantBan[b.GetPattern()]
			switch {
			case nb == nil && !prune:
				notes = append(notes, fmt.Sprintf("# room %s: ban %s is not in the file: kept (apply --prune lifts it)", uri, b.GetPattern()))
			case nb == nil:
				rc.lines = append(rc.lines, "-     ban: "+banWord(b))
				unbans = append(unbans, step{kind: stepUnbanRoom, id: uri, ban: b})
			case nb.GetReason() != b.GetReason():
				// A new reason is a new ban record: BanRoom replaces it.
				rc.lines = append(rc.lines, fmt.Sprintf("~     ban %s: reason %q -> %q", b.GetPattern(), b.GetReason(), nb.GetReason()))
				bans = append(bans, step{kind: stepBanRoom, id: uri, ban: nb})
			}
		}
		for _, b := range w.bans {
			if curBan[b.GetPattern()] == nil {
				rc.lines = append(rc.lines, "+     ban: "+banWord(b))
				bans = append(bans, step{kind: stepBanRoom, id: uri, ban: b})
			}
		}
		// Lift bans and make room first, then add, then ban: a user moving
		// from banned to listed is admitted, and the cap is never exceeded.
		steps = append(steps, unbans...)
		steps = append(steps, removes...)
		steps = append(steps, adds...)
		steps = append(steps, roles...)
		steps = append(steps, bans...)
		if isNew || len(rc.lines) > 0 {
			changes = append(changes, rc)
		}
	}
	for _, c := range cur {
		if _, ok := want.roomPaths[c.GetUri()]; ok {
			continue
		}
		if !prune {
			notes = append(notes, fmt.Sprintf("# room %s is in the cluster but not in the file: kept (apply --prune deletes it with its history)", c.GetUri()))
			continue
		}
		changes = append(changes, roomChange{op: '-', uri: c.GetUri()})
		deletes = append(deletes, step{kind: stepDeleteRoom, id: c.GetUri()})
	}
	slices.SortFunc(changes, func(a, b roomChange) int { return strings.Compare(a.uri, b.uri) })
	return changes, steps, deletes, notes, nil
}

func writeRoomDiff(w io.Writer, pl *plan) {
	for _, r := range pl.rooms {
		fmt.Fprintf(w, "%c room %s\n", r.op, r.uri)
		for _, l := range r.lines {
			fmt.Fprintln(w, l)
		}
	}
	for _, n := range pl.roomNotes {
		fmt.Fprintln(w, n)
	}
}

func roomSummary(pl *plan) string {
	if len(pl.rooms) == 0 {
		return ""
	}
	var add, change, remove int
	for _, r := range pl.rooms {
		switch r.op {
		case '+':
			add++
		case '~':
			change++
		default:
			remove++
		}
	}
	return fmt.Sprintf("; rooms: %d to add, %d to change, %d to remove", add, change, remove)
}

// roomCommand builds the command the admin server proposes for a room
// step, from the state it would see (rooms.go: a participant's network is
// the one owning its domain).
func roomCommand(st *raft.State, cmd *hubv1.Command, s step) error {
	member := func(m *hubv1.RoomMember) (*hubv1.RoomMember, error) {
		n := st.DomainOwner(raft.UserHost(m.GetUser()))
		if n == nil {
			return nil, fmt.Errorf("no member network owns the domain of %s: %w", m.GetUser(), raft.ErrNotFound)
		}
		out := &hubv1.RoomMember{User: m.GetUser(), Network: n.GetId(), Role: m.GetRole(), Nickname: m.GetNickname(), State: m.GetState(), Delivery: m.GetDelivery()}
		if out.State == hubv1.RoomMemberState_ROOM_MEMBER_STATE_UNSPECIFIED {
			out.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED
		}
		return out, nil
	}
	switch s.kind {
	case stepCreateRoom:
		r := s.room
		p := &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: r.GetUri(), Subject: r.GetSubject(), MembersOnly: r.GetMembersOnly(),
			Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(), Networks: r.GetNetworks()}}
		if o := r.GetOwner(); o != "" {
			m, err := member(&hubv1.RoomMember{User: o, Nickname: defaultNick(o), Role: hubv1.RoomRole_ROOM_ROLE_OWNER})
			if err != nil {
				return err
			}
			p.Room.Owner, p.FirstMember = o, m
		}
		cmd.Op = &hubv1.Command_PutRoom{PutRoom: p}
	case stepDeleteRoom:
		cmd.Op = &hubv1.Command_DeleteRoom{DeleteRoom: &hubv1.DeleteRoom{Uri: s.id}}
	case stepAddRoomMember:
		m, err := member(s.member)
		if err != nil {
			return err
		}
		cmd.Op = &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: s.id, Member: m, Create: true}}
	case stepRemoveRoomMember:
		cmd.Op = &hubv1.Command_RemoveRoomMember{RemoveRoomMember: &hubv1.RemoveRoomMember{Room: s.id, User: s.user}}
	case stepSetRoomRole:
		cur := raft.RoomMember(st.Room(s.id), s.user)
		if cur == nil {
			return fmt.Errorf("%s in room %s: %w", s.user, s.id, raft.ErrNotFound)
		}
		m := &hubv1.RoomMember{User: cur.GetUser(), Network: cur.GetNetwork(), Role: s.role, Nickname: cur.GetNickname(), State: cur.GetState(), Delivery: cur.GetDelivery()}
		cmd.Op = &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: s.id, Member: m}}
	case stepUpdateRoom:
		cur := st.Room(s.id)
		if cur == nil {
			return fmt.Errorf("room %s: %w", s.id, raft.ErrNotFound)
		}
		u := s.updateRoom
		r := &hubv1.Room{Uri: cur.GetUri(), Subject: cur.GetSubject(), Owner: cur.GetOwner(), MembersOnly: cur.GetMembersOnly(), Moderated: cur.GetModerated(),
			MaxMembers: cur.GetMaxMembers(), HistoryLen: cur.GetHistoryLen(), Networks: cur.GetNetworks(), NoHistory: cur.GetNoHistory()}
		if u.Subject != nil {
			r.Subject = u.GetSubject()
		}
		if u.MembersOnly != nil {
			r.MembersOnly = u.GetMembersOnly()
		}
		if u.Moderated != nil {
			r.Moderated = u.GetModerated()
		}
		if u.MaxMembers != nil {
			r.MaxMembers = u.GetMaxMembers()
		}
		if u.HistoryLen != nil {
			r.HistoryLen = u.GetHistoryLen()
		}
		if u.GetSetNetworks() {
			r.Networks = u.GetNetworks()
		}
		cmd.Op = &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: r}}
	case stepSetRoomMember:
		cur := raft.RoomMember(st.Room(s.id), s.user)
		if cur == nil {
			return fmt.Errorf("%s in room %s: %w", s.user, s.id, raft.ErrNotFound)
		}
		m := proto.Clone(cur).(*hubv1.RoomMember)
		if v := s.setMember; v.Nickname != nil {
			m.Nickname = v.GetNickname()
		}
		if v := s.setMember; v.Cpim != nil {
			m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_PLAIN
			if v.GetCpim() {
				m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
			}
		}
		if v := s.setMember; v.Role != nil {
			m.Role = v.GetRole()
		}
		cmd.Op = &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: s.id, Member: m}}
	case stepBanRoom:
		cmd.Op = &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: s.id, Ban: &hubv1.RoomBan{Pattern: s.ban.GetPattern(), Reason: s.ban.GetReason()}}}
	case stepUnbanRoom:
		cmd.Op = &hubv1.Command_UnbanRoom{UnbanRoom: &hubv1.UnbanRoom{Room: s.id, Pattern: s.ban.GetPattern()}}
	}
	return nil
}

func isRoomStep(k stepKind) bool {
	switch k {
	case stepCreateRoom, stepDeleteRoom, stepAddRoomMember, stepRemoveRoomMember, stepSetRoomRole, stepBanRoom, stepUnbanRoom,
		stepUpdateRoom, stepSetRoomMember:
		return true
	}
	return false
}

func roomStepString(s step) string {
	switch s.kind {
	case stepCreateRoom:
		return "create room " + s.id
	case stepDeleteRoom:
		return "delete room " + s.id
	case stepAddRoomMember:
		return fmt.Sprintf("room %s: add %s", s.id, s.member.GetUser())
	case stepRemoveRoomMember:
		return fmt.Sprintf("room %s: remove %s", s.id, s.user)
	case stepSetRoomRole:
		return fmt.Sprintf("room %s: %s is %s", s.id, s.user, roleName(s.role))
	case stepUpdateRoom:
		return "update room " + s.id
	case stepSetRoomMember:
		return fmt.Sprintf("room %s: set %s", s.id, s.user)
	case stepBanRoom:
		return fmt.Sprintf("room %s: ban %s", s.id, s.ban.GetPattern())
	case stepUnbanRoom:
		return fmt.Sprintf("room %s: unban %s", s.id, s.ban.GetPattern())
	}
	return "?"
}
