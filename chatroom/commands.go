package chatroom

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// In-band commands: a text/plain MESSAGE to a room whose body starts with
// '#'. The set is Kamailio imc's (#create #join #invite #accept #reject
// #leave #destroy #members #add #remove) so its users can migrate, plus
// #nick #kick #ban #unban #topic #role #history #help. Answers come from the
// room as MESSAGEs starting "*** " (as imc's do).

// Command is a parsed #command.
type Command struct {
	Name string   // lower-case, without '#'
	Args []string // whitespace-separated words after the name
	Rest string   // everything after the name, trimmed (for #topic, #ban reasons)
}

const maxCommandLen = 1024

// ParseCommand reports whether a body of content type ct is a command, and
// parses it. Only text/plain bodies starting with '#' followed by a letter
// are commands ("#1 in the charts" is not one, nor is a CPIM body).
func ParseCommand(ct string, body []byte) (Command, bool) {
	if mediaType(ct) != "text/plain" || len(body) < 2 || len(body) > maxCommandLen || body[0] != '#' || !utf8.Valid(body) {
		return Command{}, false
	}
	line := strings.TrimSpace(string(body[1:]))
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	name, rest, _ := strings.Cut(line, " ")
	name = strings.ToLower(name)
	if name == "" || !(name[0] >= 'a' && name[0] <= 'z') {
		return Command{}, false
	}
	if _, ok := commandHelp[name]; !ok {
		return Command{}, false
	}
	rest = strings.TrimSpace(rest)
	return Command{Name: name, Args: strings.Fields(rest), Rest: rest}, true
}

var commandHelp = map[string]string{
	"create":  "#create [name] [private] - create a room (you own it)",
	"join":    "#join [name] - join a room",
	"invite":  "#invite URI - invite a user (moderators)",
	"accept":  "#accept - accept an invitation",
	"reject":  "#reject - decline an invitation",
	"leave":   "#leave - leave the room",
	"destroy": "#destroy - delete the room (owner)",
	"members": "#members - list the participants",
	"add":     "#add URI - add a user (moderators)",
	"remove":  "#remove URI|nick - remove a participant (moderators)",
	"kick":    "#kick URI|nick - remove a participant (moderators)",
	"ban":     "#ban URI|*@domain|network:ID|nick [reason] - ban (moderators)",
	"unban":   "#unban PATTERN - lift a ban (moderators)",
	"nick":    "#nick NAME - change your nickname",
	"topic":   "#topic TEXT - set the subject (moderators)",
	"role":    "#role URI|nick owner|moderator|member|visitor - set a role (owner)",
	"history": "#history [N] - replay the last N messages",
	"help":    "#help - this list",
}

var commandOrder = []string{"create", "join", "invite", "accept", "reject", "leave", "destroy", "members", "add", "remove", "kick", "ban", "unban", "nick", "topic", "role", "history", "help"}

// errReply is a refusal shown to the user as it is.
type errReply string

func (e errReply) Error() string { return string(e) }

func (s *Service) runCommand(r *Request, room, sender string, c Command) {
	text, err := s.execute(r, room, sender, c)
	if err != nil {
		var er errReply
		if errors.As(err, &er) {
			text = "error: " + string(er)
		} else {
			text = "error: " + friendly(err)
		}
	}
	if text != "" {
		s.reply(room, sender, r.Source, text)
	}
}

// friendly shortens an FSM error for a user.
func friendly(err error) string {
	switch {
	case errors.Is(err, raft.ErrAlreadyExists):
		return "already exists: " + err.Error()
	case errors.Is(err, raft.ErrNotFound):
		return "not found: " + err.Error()
	case errors.Is(err, raft.ErrFailedPrecondition), errors.Is(err, raft.ErrInvalid):
		return err.Error()
	}
	return "the room is not available now, try again"
}

var roleNames = map[string]hubv1.RoomRole{
	"owner": hubv1.RoomRole_ROOM_ROLE_OWNER, "moderator": hubv1.RoomRole_ROOM_ROLE_MODERATOR,
	"member": hubv1.RoomRole_ROOM_ROLE_MEMBER, "visitor": hubv1.RoomRole_ROOM_ROLE_VISITOR,
}

// RoleName is the lower-case name of a role.
func RoleName(r hubv1.RoomRole) string {
	if r == hubv1.RoomRole_ROOM_ROLE_UNSPECIFIED {
		r = hubv1.RoomRole_ROOM_ROLE_MEMBER
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROOM_ROLE_"))
}

func (s *Service) propose(op any, actor string) error {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := s.cfg.Store.Propose(ctx, s.command(actor, op))
	return err
}

// defaultNick is the user part, or user-domainlabel when taken.
func defaultNick(r *hubv1.Room, user string) string {
	u := strings.TrimPrefix(user, "sip:")
	name, host, _ := strings.Cut(u, "@")
	cand := sanitizeNick(name)
	if r == nil || raft.RoomMemberByNick(r, cand) == nil {
		return cand
	}
	label, _, _ := strings.Cut(host, ".")
	return sanitizeNick(name + "-" + label)
}

func sanitizeNick(n string) string {
	var b strings.Builder
	for _, c := range n {
		if raft.NicknameProblem(string(c)) == "" {
			b.WriteRune(c)
		}
		if utf8.RuneCountInString(b.String()) == raft.MaxNicknameLen {
			break
		}
	}
	if b.Len() == 0 {
		return "guest"
	}
	return b.String()
}

// target resolves a command argument to a participant: a nickname or a
// user URI.
func target(r *hubv1.Room, arg string) *hubv1.RoomMember {
	if m := raft.RoomMemberByNick(r, arg); m != nil {
		return m
	}
	if u, err := raft.NormalizeUserURI(arg); err == nil {
		return raft.RoomMember(r, u)
	}
	return nil
}

func (s *Service) execute(r *Request, room, sender string, c Command) (string, error) {
	st := s.cfg.Store.State()
	rm := st.Room(room)
	me := raft.RoomMember(rm, sender)
	role := hubv1.RoomRole_ROOM_ROLE_UNSPECIFIED
	if me != nil {
		role = raft.RoleOf(me)
	}
	need := func(min hubv1.RoomRole) error {
		switch {
		case rm == nil:
			return errReply("no room " + room)
		case !raft.Joined(me):
			return errReply("you are not in " + room)
		case role < min:
			return errReply("needs role " + RoleName(min) + " (you are " + RoleName(role) + ")")
		}
		return nil
	}
	wantsCPIM := acceptsCPIM(r)
	switch c.Name {
	case "help":
		var b strings.Builder
		b.WriteString("commands:")
		for _, n := range commandOrder {
			b.WriteString("\n" + commandHelp[n])
		}
		return b.String(), nil
	case "create":
		name, private := "", false
		for _, a := range c.Args {
			if strings.EqualFold(a, "private") {
				private = true
			} else if name == "" {
				name = a
			}
		}
		if name != "" {
			u, err := s.RoomURI(name)
			if err != nil {
				return "", errReply(err.Error())
			}
			room = u
		}
		n := st.Network(r.Source)
		if n == nil || !n.GetRoomCreate() {
			return "", errReply("your network does not allow creating rooms in band; ask its operator")
		}
		first := &hubv1.RoomMember{User: sender, Network: r.Source, Role: hubv1.RoomRole_ROOM_ROLE_OWNER, Nickname: defaultNick(nil, sender), State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED}
		if wantsCPIM {
			first.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
		}
		err := s.propose(&hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Create: true, FirstMember: first,
			Room: &hubv1.Room{Uri: room, Owner: sender, MembersOnly: private}}}, sender)
		if err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "room created in band")
		return "room " + room + " created; you are its owner", nil
	case "join", "accept":
		if c.Name == "join" && len(c.Args) > 0 {
			u, err := s.RoomURI(c.Args[0])
			if err != nil {
				return "", errReply(err.Error())
			}
			room, rm = u, st.Room(u)
			me = raft.RoomMember(rm, sender)
		}
		if rm == nil {
			return "", errReply("no room " + room)
		}
		if raft.Joined(me) {
			return "you are already in " + room + " as " + me.GetNickname(), nil
		}
		if me == nil && (c.Name == "accept" || rm.GetMembersOnly()) {
			return "", errReply(room + " is members-only: you need an invitation")
		}
		if me == nil && len(rm.GetMembers()) >= s.cfg.MaxMembersCap {
			return "", errReply(fmt.Sprintf("%s is full (the hub's cap is %d)", room, s.cfg.MaxMembersCap))
		}
		m := &hubv1.RoomMember{User: sender, Network: r.Source, Nickname: defaultNick(rm, sender), State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED}
		if me != nil { // accepting an invitation keeps what the inviter set
			m.Role, m.Nickname, m.Delivery = me.GetRole(), me.GetNickname(), me.GetDelivery()
		}
		if wantsCPIM {
			m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
		}
		if err := s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "joined in band")
		s.reply(room, sender, r.Source, fmt.Sprintf("you joined %s as %s; subject: %s", room, m.GetNickname(), rm.GetSubject()))
		s.replay(room, m, 0)
		return "", nil
	case "reject":
		if me == nil || raft.Joined(me) {
			return "", errReply("no invitation to " + room)
		}
		if err := s.propose(&hubv1.Command_RemoveRoomMember{RemoveRoomMember: &hubv1.RemoveRoomMember{Room: room, User: sender}}, sender); err != nil {
			return "", err
		}
		return "invitation to " + room + " declined", nil
	case "leave":
		if me == nil {
			return "", errReply("you are not in " + room)
		}
		if err := s.propose(&hubv1.Command_RemoveRoomMember{RemoveRoomMember: &hubv1.RemoveRoomMember{Room: room, User: sender}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "left in band")
		return "you left " + room, nil
	case "destroy":
		if err := need(hubv1.RoomRole_ROOM_ROLE_OWNER); err != nil {
			return "", err
		}
		if err := s.propose(&hubv1.Command_DeleteRoom{DeleteRoom: &hubv1.DeleteRoom{Uri: room}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "room destroyed in band")
		return "room " + room + " destroyed", nil
	case "members":
		if rm == nil {
			return "", errReply("no room " + room)
		}
		if rm.GetMembersOnly() && me == nil {
			return "", errReply(room + " is members-only")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d in %s:", len(rm.GetMembers()), room)
		for _, m := range rm.GetMembers() {
			state := ""
			if !raft.Joined(m) {
				state = " invited"
			}
			fmt.Fprintf(&b, "\n%s (%s) %s%s", m.GetNickname(), strings.TrimPrefix(m.GetUser(), "sip:"), RoleName(m.GetRole()), state)
		}
		return b.String(), nil
	case "invite", "add":
		if err := need(hubv1.RoomRole_ROOM_ROLE_MODERATOR); err != nil {
			return "", err
		}
		if len(c.Args) != 1 {
			return "", errReply("usage: " + commandHelp[c.Name])
		}
		u, err := raft.NormalizeUserURI(c.Args[0])
		if err != nil {
			return "", errReply(err.Error())
		}
		if len(rm.GetMembers()) >= s.cfg.MaxMembersCap {
			return "", errReply(fmt.Sprintf("%s is full (the hub's cap is %d)", room, s.cfg.MaxMembersCap))
		}
		owner := st.DomainOwner(raft.UserHost(u))
		if owner == nil {
			return "", errReply("no member network owns " + raft.UserHost(u))
		}
		m := &hubv1.RoomMember{User: u, Network: owner.GetId(), Nickname: defaultNick(rm, u), State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED}
		if c.Name == "invite" {
			m.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED
		}
		if err := s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m, Create: true}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, c.Name+" "+u)
		if c.Name == "invite" {
			s.reply(room, u, owner.GetId(), fmt.Sprintf("%s (%s) invites you to %s; answer #accept or #reject to this address", me.GetNickname(), strings.TrimPrefix(sender, "sip:"), room))
			return "invited " + u, nil
		}
		s.reply(room, u, owner.GetId(), fmt.Sprintf("%s added you to %s as %s", me.GetNickname(), room, m.GetNickname()))
		return "added " + u + " as " + m.GetNickname(), nil
	case "remove", "kick":
		if err := need(hubv1.RoomRole_ROOM_ROLE_MODERATOR); err != nil {
			return "", err
		}
		if len(c.Args) != 1 {
			return "", errReply("usage: " + commandHelp[c.Name])
		}
		t := target(rm, c.Args[0])
		if t == nil {
			return "", errReply("no participant " + c.Args[0])
		}
		if raft.RoleOf(t) >= role && role != hubv1.RoomRole_ROOM_ROLE_OWNER {
			return "", errReply("you may not remove a " + RoleName(t.GetRole()))
		}
		if err := s.propose(&hubv1.Command_RemoveRoomMember{RemoveRoomMember: &hubv1.RemoveRoomMember{Room: room, User: t.GetUser()}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, c.Name+" "+t.GetUser())
		s.reply(room, t.GetUser(), t.GetNetwork(), "you were removed from "+room+" by "+me.GetNickname())
		return "removed " + t.GetNickname(), nil
	case "ban":
		if err := need(hubv1.RoomRole_ROOM_ROLE_MODERATOR); err != nil {
			return "", err
		}
		if len(c.Args) == 0 {
			return "", errReply("usage: " + commandHelp["ban"])
		}
		pattern := c.Args[0]
		if t := raft.RoomMemberByNick(rm, pattern); t != nil {
			pattern = t.GetUser()
		} else if !strings.HasPrefix(pattern, "*@") && !strings.HasPrefix(pattern, raft.BanNetworkPrefix) {
			u, err := raft.NormalizeUserURI(pattern)
			if err != nil {
				return "", errReply(err.Error())
			}
			pattern = u
		} else {
			pattern = strings.ToLower(pattern)
		}
		if raft.BanMatches(pattern, sender, r.Source) {
			return "", errReply("that ban would cover you")
		}
		for _, m := range rm.GetMembers() {
			if raft.BanMatches(pattern, m.GetUser(), m.GetNetwork()) && raft.RoleOf(m) >= role && role != hubv1.RoomRole_ROOM_ROLE_OWNER {
				return "", errReply("that ban would cover " + m.GetNickname() + ", a " + RoleName(m.GetRole()))
			}
		}
		reason := strings.TrimSpace(strings.TrimPrefix(c.Rest, c.Args[0]))
		if err := s.propose(&hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: pattern, Reason: reason}}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "ban "+pattern)
		return "banned " + pattern, nil
	case "unban":
		if err := need(hubv1.RoomRole_ROOM_ROLE_MODERATOR); err != nil {
			return "", err
		}
		if len(c.Args) != 1 {
			return "", errReply("usage: " + commandHelp["unban"])
		}
		p := c.Args[0]
		if !strings.HasPrefix(p, "*@") && !strings.HasPrefix(p, raft.BanNetworkPrefix) {
			if u, err := raft.NormalizeUserURI(p); err == nil {
				p = u
			}
		}
		if err := s.propose(&hubv1.Command_UnbanRoom{UnbanRoom: &hubv1.UnbanRoom{Room: room, Pattern: p}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "unban "+p)
		return "unbanned " + p, nil
	case "nick":
		if err := need(hubv1.RoomRole_ROOM_ROLE_VISITOR); err != nil {
			return "", err
		}
		if len(c.Args) != 1 {
			return "", errReply("usage: " + commandHelp["nick"])
		}
		m := cloneMember(me)
		m.Nickname = c.Args[0]
		if err := s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m}}, sender); err != nil {
			return "", err
		}
		return "you are now " + m.GetNickname(), nil
	case "topic":
		if err := need(hubv1.RoomRole_ROOM_ROLE_MODERATOR); err != nil {
			return "", err
		}
		nr := roomSettings(rm)
		nr.Subject = c.Rest
		if err := s.propose(&hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: nr}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "topic set")
		return "subject set to: " + c.Rest, nil
	case "role":
		if err := need(hubv1.RoomRole_ROOM_ROLE_OWNER); err != nil {
			return "", err
		}
		if len(c.Args) != 2 {
			return "", errReply("usage: " + commandHelp["role"])
		}
		t := target(rm, c.Args[0])
		nr, ok := roleNames[strings.ToLower(c.Args[1])]
		if t == nil || !ok {
			return "", errReply("usage: " + commandHelp["role"])
		}
		m := cloneMember(t)
		m.Role = nr
		if err := s.propose(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m}}, sender); err != nil {
			return "", err
		}
		s.audit(room, sender, r.Source, "role "+t.GetUser()+" "+RoleName(nr))
		return t.GetNickname() + " is now " + RoleName(nr), nil
	case "history":
		if err := need(hubv1.RoomRole_ROOM_ROLE_VISITOR); err != nil {
			return "", err
		}
		n := 0
		if len(c.Args) > 0 {
			v, err := strconv.Atoi(c.Args[0])
			if err != nil || v < 1 {
				return "", errReply("usage: " + commandHelp["history"])
			}
			n = v
		}
		s.replay(room, me, n)
		return "", nil
	}
	return "", errReply("unknown command; #help lists them")
}

func cloneMember(m *hubv1.RoomMember) *hubv1.RoomMember {
	return &hubv1.RoomMember{User: m.GetUser(), Network: m.GetNetwork(), Role: m.GetRole(), Nickname: m.GetNickname(), State: m.GetState(), Delivery: m.GetDelivery(),
		SessionNode: m.GetSessionNode(), JoinedBySession: m.GetJoinedBySession()}
}

// roomSettings copies the settings PutRoom replaces.
func roomSettings(r *hubv1.Room) *hubv1.Room {
	return &hubv1.Room{Uri: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(), MembersOnly: r.GetMembersOnly(),
		Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(), Networks: r.GetNetworks(), NoHistory: r.GetNoHistory()}
}

// acceptsCPIM: a client announces CPIM with an Accept header listing
// message/cpim on the MESSAGE that joins it (RFC 3261 20.1; RFC 3862
// clients list it). Absent, it gets text/plain.
func acceptsCPIM(r *Request) bool {
	for _, h := range r.Req.GetHeaders("Accept") {
		for _, v := range strings.Split(h.Value(), ",") {
			if mediaType(strings.TrimSpace(v)) == "message/cpim" {
				return true
			}
		}
	}
	return false
}
