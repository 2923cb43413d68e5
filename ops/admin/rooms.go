package admin

import (
	"context"
	"fmt"
	"strings"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// RoomService: chat rooms hosted by the hub (chatroom/ serves them over
// SIP). Every change is proposed through Raft and audited like the network
// and policy calls; reads answer from this node's state.
type roomService struct {
	hubv1.UnimplementedRoomServiceServer
	s *Server
}

// roomURI turns a room name or URI into the canonical room URI; a bare
// name is taken under the node's rooms domain.
func (rs *roomService) roomURI(ref string) (string, error) {
	if ref == "" {
		return "", fieldErr("room", "required")
	}
	if !strings.Contains(ref, "@") {
		if rs.s.roomsDomain == "" {
			return "", fieldErr("room", "give the full room URI: this node has no rooms domain configured")
		}
		ref = "sip:" + ref + "@" + rs.s.roomsDomain
	}
	u, err := raft.NormalizeRoomURI(ref)
	if err != nil {
		return "", &raft.FieldError{Field: "room", Value: ref, Reason: err.Error()}
	}
	return u, nil
}

func (rs *roomService) room(uri string) (*hubv1.Room, error) {
	if r := rs.s.store.State().Room(uri); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("room %s: %w", uri, raft.ErrNotFound)
}

// memberFor builds a participant record for user: its network is the one
// owning the user's domain.
func (rs *roomService) memberFor(field, user, nick string) (*hubv1.RoomMember, error) {
	u, err := raft.NormalizeUserURI(user)
	if err != nil {
		return nil, &raft.FieldError{Field: field, Value: user, Reason: err.Error()}
	}
	n := rs.s.store.State().DomainOwner(raft.UserHost(u))
	if n == nil {
		return nil, fmt.Errorf("no member network owns the domain of %s: %w", u, raft.ErrNotFound)
	}
	if nick == "" {
		nick = strings.TrimPrefix(u[:strings.LastIndexByte(u, '@')], "sip:")
		if raft.NicknameProblem(nick) != "" {
			return nil, fieldErr("nickname", fmt.Sprintf("the user part of %s is not a valid nickname; give one", u))
		}
	}
	return &hubv1.RoomMember{User: u, Network: n.GetId(), Nickname: nick, State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED}, nil
}

func (rs *roomService) propose(ctx context.Context, actor string, op any) error {
	cmd := rs.s.command(actor)
	switch op := op.(type) {
	case *hubv1.PutRoom:
		cmd.Op = &hubv1.Command_PutRoom{PutRoom: op}
	case *hubv1.DeleteRoom:
		cmd.Op = &hubv1.Command_DeleteRoom{DeleteRoom: op}
	case *hubv1.PutRoomMember:
		cmd.Op = &hubv1.Command_PutRoomMember{PutRoomMember: op}
	case *hubv1.RemoveRoomMember:
		cmd.Op = &hubv1.Command_RemoveRoomMember{RemoveRoomMember: op}
	case *hubv1.BanRoom:
		cmd.Op = &hubv1.Command_BanRoom{BanRoom: op}
	case *hubv1.UnbanRoom:
		cmd.Op = &hubv1.Command_UnbanRoom{UnbanRoom: op}
	default:
		return fmt.Errorf("admin: room command %T", op)
	}
	_, err := rs.s.propose(ctx, cmd)
	return err
}

// CreateRoom creates a room, with its owner as first participant if named.
func (rs *roomService) CreateRoom(ctx context.Context, req *hubv1.CreateRoomRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	if cap := rs.s.roomsMaxMembers; cap > 0 && int(req.GetMaxMembers()) > cap {
		return nil, fieldErr("max_members", fmt.Sprintf("at most %d (the hub's rooms.max_members)", cap))
	}
	p := &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: uri, Subject: req.GetSubject(), MembersOnly: req.GetMembersOnly(),
		Moderated: req.GetModerated(), MaxMembers: req.GetMaxMembers(), HistoryLen: req.GetHistoryLen(), Networks: req.GetNetworks()}}
	if req.GetOwner() != "" {
		m, err := rs.memberFor("owner", req.GetOwner(), "")
		if err != nil {
			return nil, err
		}
		m.Role = hubv1.RoomRole_ROOM_ROLE_OWNER
		p.Room.Owner, p.FirstMember = m.GetUser(), m
	}
	if err := rs.propose(ctx, c.Name, p); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "CreateRoom", c.Name, fmt.Sprintf("create room %s (owner %q, members-only %v, moderated %v)", uri, p.Room.GetOwner(), req.GetMembersOnly(), req.GetModerated()))
	return rs.room(uri)
}

// GetRoom returns one room from this node's state.
func (rs *roomService) GetRoom(ctx context.Context, req *hubv1.RoomRef) (*hubv1.Room, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	return rs.room(uri)
}

// ListRooms returns every room (without history: RoomHistory has it).
func (rs *roomService) ListRooms(ctx context.Context, _ *hubv1.ListRoomsRequest) (*hubv1.ListRoomsResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	out := &hubv1.ListRoomsResponse{}
	for _, r := range rs.s.store.State().Rooms() {
		out.Rooms = append(out.Rooms, &hubv1.Room{Uri: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(), MembersOnly: r.GetMembersOnly(),
			Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(), Networks: r.GetNetworks(),
			Members: r.GetMembers(), Bans: r.GetBans(), LastSeq: r.GetLastSeq(), Fanouts: r.GetFanouts(),
			CreatedUnixNano: r.GetCreatedUnixNano(), UpdatedUnixNano: r.GetUpdatedUnixNano(), NoHistory: r.GetNoHistory()})
	}
	return out, nil
}

// DeleteRoom deletes a room with its history.
func (rs *roomService) DeleteRoom(ctx context.Context, req *hubv1.RoomRef) (*hubv1.DeleteRoomResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	if err := rs.propose(ctx, c.Name, &hubv1.DeleteRoom{Uri: uri}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "DeleteRoom", c.Name, "delete room "+uri)
	return &hubv1.DeleteRoomResponse{}, nil
}

// AddRoomMember adds (or invites) a participant.
func (rs *roomService) AddRoomMember(ctx context.Context, req *hubv1.AddRoomMemberRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	m, err := rs.memberFor("user", req.GetUser(), req.GetNickname())
	if err != nil {
		return nil, err
	}
	m.Role = req.GetRole()
	if req.GetInvite() {
		m.State = hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED
	}
	if req.GetCpim() {
		m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
	}
	if cap := rs.s.roomsMaxMembers; cap > 0 {
		if r := rs.s.store.State().Room(uri); r != nil && raft.RoomMember(r, m.GetUser()) == nil && len(r.GetMembers()) >= cap {
			return nil, fmt.Errorf("room %s is at the hub's cap of %d members: %w", uri, cap, raft.ErrFailedPrecondition)
		}
	}
	if err := rs.propose(ctx, c.Name, &hubv1.PutRoomMember{Room: uri, Member: m, Create: true}); err != nil {
		return nil, err
	}
	verb := "add"
	if req.GetInvite() {
		verb = "invite"
	}
	rs.s.audit(ctx, "AddRoomMember", c.Name, fmt.Sprintf("%s %s to room %s as %s", verb, m.GetUser(), uri, m.GetNickname()))
	return rs.room(uri)
}

// RemoveRoomMember removes a participant.
func (rs *roomService) RemoveRoomMember(ctx context.Context, req *hubv1.RemoveRoomMemberRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	u, err := raft.NormalizeUserURI(req.GetUser())
	if err != nil {
		return nil, &raft.FieldError{Field: "user", Value: req.GetUser(), Reason: err.Error()}
	}
	if err := rs.propose(ctx, c.Name, &hubv1.RemoveRoomMember{Room: uri, User: u}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "RemoveRoomMember", c.Name, fmt.Sprintf("remove %s from room %s", u, uri))
	return rs.room(uri)
}

// SetRoomRole changes a participant's role.
func (rs *roomService) SetRoomRole(ctx context.Context, req *hubv1.SetRoomRoleRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	u, err := raft.NormalizeUserURI(req.GetUser())
	if err != nil {
		return nil, &raft.FieldError{Field: "user", Value: req.GetUser(), Reason: err.Error()}
	}
	r, err := rs.room(uri)
	if err != nil {
		return nil, err
	}
	cur := raft.RoomMember(r, u)
	if cur == nil {
		return nil, fmt.Errorf("%s in room %s: %w", u, uri, raft.ErrNotFound)
	}
	m := &hubv1.RoomMember{User: cur.GetUser(), Network: cur.GetNetwork(), Role: req.GetRole(), Nickname: cur.GetNickname(), State: cur.GetState(), Delivery: cur.GetDelivery(),
		SessionNode: cur.GetSessionNode(), JoinedBySession: cur.GetJoinedBySession()}
	if err := rs.propose(ctx, c.Name, &hubv1.PutRoomMember{Room: uri, Member: m}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "SetRoomRole", c.Name, fmt.Sprintf("room %s: %s is now %s", uri, u, req.GetRole()))
	return rs.room(uri)
}

// banPattern canonicalises a ban pattern: a user URI, *@domain or
// network:ID.
func banPattern(p string) (string, error) {
	switch {
	case strings.HasPrefix(p, "*@"), strings.HasPrefix(p, raft.BanNetworkPrefix):
		p = strings.ToLower(p)
	default:
		u, err := raft.NormalizeUserURI(p)
		if err != nil {
			return "", &raft.FieldError{Field: "pattern", Value: p, Reason: "want user@domain, *@domain or network:ID"}
		}
		p = u
	}
	if why := raft.BanPatternProblem(p); why != "" {
		return "", &raft.FieldError{Field: "pattern", Value: p, Reason: why}
	}
	return p, nil
}

// BanRoom bans a pattern (and removes the participants it covers).
func (rs *roomService) BanRoom(ctx context.Context, req *hubv1.BanRoomRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	p, err := banPattern(req.GetPattern())
	if err != nil {
		return nil, err
	}
	if err := rs.propose(ctx, c.Name, &hubv1.BanRoom{Room: uri, Ban: &hubv1.RoomBan{Pattern: p, Reason: req.GetReason()}}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "BanRoom", c.Name, fmt.Sprintf("room %s: ban %s (%s)", uri, p, req.GetReason()))
	return rs.room(uri)
}

// UnbanRoom lifts a ban.
func (rs *roomService) UnbanRoom(ctx context.Context, req *hubv1.UnbanRoomRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	p, err := banPattern(req.GetPattern())
	if err != nil {
		return nil, err
	}
	if err := rs.propose(ctx, c.Name, &hubv1.UnbanRoom{Room: uri, Pattern: p}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "UnbanRoom", c.Name, fmt.Sprintf("room %s: unban %s", uri, p))
	return rs.room(uri)
}

// RoomHistory returns the kept messages, oldest first.
func (rs *roomService) RoomHistory(ctx context.Context, req *hubv1.RoomHistoryRequest) (*hubv1.RoomHistoryResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	r, err := rs.room(uri)
	if err != nil {
		return nil, err
	}
	h := raft.RoomRecent(r)
	if n := int(req.GetLimit()); n > 0 && len(h) > n {
		h = h[len(h)-n:]
	}
	return &hubv1.RoomHistoryResponse{Messages: h}, nil
}

// UpdateRoom changes the settings the request names; the others, and the
// participants, bans and history, are kept (PutRoom replaces settings
// only).
func (rs *roomService) UpdateRoom(ctx context.Context, req *hubv1.UpdateRoomRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	cur, err := rs.room(uri)
	if err != nil {
		return nil, err
	}
	r := &hubv1.Room{Uri: uri, Subject: cur.GetSubject(), Owner: cur.GetOwner(), MembersOnly: cur.GetMembersOnly(), Moderated: cur.GetModerated(),
		MaxMembers: cur.GetMaxMembers(), HistoryLen: cur.GetHistoryLen(), Networks: cur.GetNetworks(), NoHistory: cur.GetNoHistory()}
	var changed []string
	if req.Subject != nil {
		r.Subject = req.GetSubject()
		changed = append(changed, fmt.Sprintf("subject %q", r.Subject))
	}
	if req.MembersOnly != nil {
		r.MembersOnly = req.GetMembersOnly()
		changed = append(changed, fmt.Sprintf("members-only %v", r.MembersOnly))
	}
	if req.Moderated != nil {
		r.Moderated = req.GetModerated()
		changed = append(changed, fmt.Sprintf("moderated %v", r.Moderated))
	}
	if req.MaxMembers != nil {
		if cap := rs.s.roomsMaxMembers; cap > 0 && int(req.GetMaxMembers()) > cap {
			return nil, fieldErr("max_members", fmt.Sprintf("at most %d (the hub's rooms.max_members)", cap))
		}
		r.MaxMembers = req.GetMaxMembers()
		changed = append(changed, fmt.Sprintf("max-members %d", r.MaxMembers))
	}
	if req.HistoryLen != nil {
		// 0 means no history here: the default applies only to a room
		// created without a length.
		r.HistoryLen, r.NoHistory = req.GetHistoryLen(), req.GetHistoryLen() == 0
		changed = append(changed, fmt.Sprintf("history %d", r.HistoryLen))
	}
	if req.GetSetNetworks() {
		r.Networks = req.GetNetworks()
		changed = append(changed, fmt.Sprintf("networks %v", r.Networks))
	} else if len(req.GetNetworks()) > 0 {
		return nil, fieldErr("networks", "set set_networks to replace the room's networks")
	}
	if len(changed) == 0 {
		return nil, fieldErr("room", "nothing to change: name at least one setting")
	}
	if err := rs.propose(ctx, c.Name, &hubv1.PutRoom{Room: r}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "UpdateRoom", c.Name, fmt.Sprintf("room %s: %s", uri, strings.Join(changed, ", ")))
	return rs.room(uri)
}

// SetRoomMember changes a participant's role, nickname or delivery format.
func (rs *roomService) SetRoomMember(ctx context.Context, req *hubv1.SetRoomMemberRequest) (*hubv1.Room, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := rs.roomURI(req.GetRoom())
	if err != nil {
		return nil, err
	}
	u, err := raft.NormalizeUserURI(req.GetUser())
	if err != nil {
		return nil, &raft.FieldError{Field: "user", Value: req.GetUser(), Reason: err.Error()}
	}
	r, err := rs.room(uri)
	if err != nil {
		return nil, err
	}
	cur := raft.RoomMember(r, u)
	if cur == nil {
		return nil, fmt.Errorf("%s in room %s: %w", u, uri, raft.ErrNotFound)
	}
	m := &hubv1.RoomMember{User: cur.GetUser(), Network: cur.GetNetwork(), Role: cur.GetRole(), Nickname: cur.GetNickname(), State: cur.GetState(), Delivery: cur.GetDelivery(),
		SessionNode: cur.GetSessionNode(), JoinedBySession: cur.GetJoinedBySession()}
	var changed []string
	if req.Role != nil {
		m.Role = req.GetRole()
		changed = append(changed, "role "+strings.ToLower(strings.TrimPrefix(m.Role.String(), "ROOM_ROLE_")))
	}
	if req.Nickname != nil {
		n := req.GetNickname()
		if why := raft.NicknameProblem(n); why != "" {
			return nil, &raft.FieldError{Field: "nickname", Value: n, Reason: why}
		}
		if o := raft.RoomMemberByNick(r, n); o != nil && o.GetUser() != u {
			return nil, fmt.Errorf("nickname %q is %s's in room %s: %w", n, o.GetUser(), uri, raft.ErrAlreadyExists)
		}
		m.Nickname = n
		changed = append(changed, fmt.Sprintf("nickname %q", n))
	}
	if req.Cpim != nil {
		m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_PLAIN
		if req.GetCpim() {
			m.Delivery = hubv1.RoomDelivery_ROOM_DELIVERY_CPIM
		}
		changed = append(changed, fmt.Sprintf("cpim %v", req.GetCpim()))
	}
	if len(changed) == 0 {
		return nil, fieldErr("user", "nothing to change: give a role, nickname or cpim")
	}
	if err := rs.propose(ctx, c.Name, &hubv1.PutRoomMember{Room: uri, Member: m}); err != nil {
		return nil, err
	}
	rs.s.audit(ctx, "SetRoomMember", c.Name, fmt.Sprintf("room %s: %s %s", uri, u, strings.Join(changed, ", ")))
	return rs.room(uri)
}
