package raft

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Chat rooms (issue 11). Room settings, participants and bans change at
// human speed; room messages go through the log too, because that is what
// gives each room one total order that every node agrees on and a history
// that survives any node (a message is acknowledged to its sender only after
// it is committed). A room message must therefore be cheap to apply: it
// copies only its own room's changed slices, never the whole state (see
// applyRoomCommand).

// Room limits. The hub's configuration may set a lower hard cap on members;
// these bound what the FSM accepts at all.
const (
	DefaultRoomMaxMembers = 200
	MaxRoomMembers        = 5000
	DefaultRoomHistory    = 20
	MaxRoomHistory        = 1000
	MaxRoomBody           = 64 << 10
	MaxRoomBans           = 1000
	// MaxRoomFanouts bounds a room's unfinished deliveries: beyond it new
	// messages are refused (the sender gets 503) instead of growing the
	// replicated state without bound while a fan-out is stuck.
	MaxRoomFanouts    = 1024
	MaxNicknameLen    = 32 // runes
	maxRoomNameLen    = 64
	maxRoomSubjectLen = 256 // runes
	maxContentTypeLen = 256
	maxUserURILen     = 256
)

// BanNetworkPrefix starts a ban pattern naming a whole member network.
const BanNetworkPrefix = "network:"

func newRoomMap(cs *hubv1.ClusterState) map[string]*hubv1.Room {
	m := make(map[string]*hubv1.Room, len(cs.GetRooms()))
	for _, r := range cs.GetRooms() {
		m[r.GetUri()] = r
	}
	return m
}

// Room returns the room with uri (as NormalizeRoomURI returns it), or nil.
// The message is shared: do not modify it.
func (s *State) Room(uri string) *hubv1.Room { return s.rooms[uri] }

// Rooms returns every room sorted by uri.
func (s *State) Rooms() []*hubv1.Room {
	out := make([]*hubv1.Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetUri() < out[j].GetUri() })
	return out
}

func (s *State) roomsProto(cs *hubv1.ClusterState) {
	for _, r := range s.Rooms() {
		cs.Rooms = append(cs.Rooms, proto.Clone(r).(*hubv1.Room))
	}
}

// RoomMember returns user's membership of r, or nil.
func RoomMember(r *hubv1.Room, user string) *hubv1.RoomMember {
	ms := r.GetMembers()
	i, ok := slices.BinarySearchFunc(ms, user, func(m *hubv1.RoomMember, u string) int { return strings.Compare(m.GetUser(), u) })
	if !ok {
		return nil
	}
	return ms[i]
}

// RoomMemberByNick returns the participant of r with nickname nick
// (case-folded), or nil.
func RoomMemberByNick(r *hubv1.Room, nick string) *hubv1.RoomMember {
	f := foldNick(nick)
	for _, m := range r.GetMembers() {
		if foldNick(m.GetNickname()) == f {
			return m
		}
	}
	return nil
}

// RoomBanFor returns the first ban of r matching user (of network), or nil.
func RoomBanFor(r *hubv1.Room, user, network string) *hubv1.RoomBan {
	for _, b := range r.GetBans() {
		if BanMatches(b.GetPattern(), user, network) {
			return b
		}
	}
	return nil
}

// BanMatches reports whether a ban pattern covers user of network.
func BanMatches(pattern, user, network string) bool {
	switch {
	case strings.HasPrefix(pattern, BanNetworkPrefix):
		return pattern[len(BanNetworkPrefix):] == network
	case strings.HasPrefix(pattern, "*@"):
		return strings.EqualFold(pattern[2:], UserHost(user))
	default:
		return pattern == user
	}
}

// UserHost returns the host of a normalized user URI (sip:user@host).
func UserHost(user string) string {
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		return user[i+1:]
	}
	return ""
}

// RoomMaxMembers is r's member limit with the default applied.
func RoomMaxMembers(r *hubv1.Room) int {
	if r.GetMaxMembers() == 0 {
		return DefaultRoomMaxMembers
	}
	return int(r.GetMaxMembers())
}

// RoomHistoryLen is how many messages r keeps, with the default applied.
func RoomHistoryLen(r *hubv1.Room) int {
	switch {
	case r.GetNoHistory():
		return 0
	case r.GetHistoryLen() == 0:
		return DefaultRoomHistory
	}
	return int(r.GetHistoryLen())
}

// RoleOf is m's role with the default (member) applied.
func RoleOf(m *hubv1.RoomMember) hubv1.RoomRole {
	if m.GetRole() == hubv1.RoomRole_ROOM_ROLE_UNSPECIFIED {
		return hubv1.RoomRole_ROOM_ROLE_MEMBER
	}
	return m.GetRole()
}

// Joined reports whether m is a participant (not just invited).
func Joined(m *hubv1.RoomMember) bool {
	return m != nil && m.GetState() != hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED
}

// MaySpeak returns "" if m may post to r, else why not.
func MaySpeak(r *hubv1.Room, m *hubv1.RoomMember) string {
	switch {
	case m == nil:
		return "not a participant"
	case !Joined(m):
		return "invited, not joined"
	case r.GetModerated() && RoleOf(m) == hubv1.RoomRole_ROOM_ROLE_VISITOR:
		return "visitors may not speak in a moderated room"
	}
	return ""
}

// RoomFanoutFor returns r's unfinished fan-out of seq, or nil.
func RoomFanoutFor(r *hubv1.Room, seq uint64) *hubv1.RoomFanout {
	for _, f := range r.GetFanouts() {
		if f.GetSeq() == seq {
			return f
		}
	}
	return nil
}

// RoomMessageAt returns the history message of r committed at raft index,
// or nil (not kept any more, or not a message of r).
func RoomMessageAt(r *hubv1.Room, index uint64) *hubv1.RoomMessage {
	h := r.GetHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].GetRaftIndex() == index {
			return h[i]
		}
	}
	return nil
}

// NormalizeRoomURI returns the canonical form of a room URI
// (sip:name@domain, lower-case) or an error. A bare name is not accepted
// here: the FSM does not know the rooms domain.
func NormalizeRoomURI(s string) (string, error) {
	u, err := NormalizeUserURI(s)
	if err != nil {
		return "", err
	}
	u = strings.ToLower(u)
	name := u[len("sip:"):strings.LastIndexByte(u, '@')]
	if len(name) > maxRoomNameLen {
		return "", fmt.Errorf("room name longer than %d characters", maxRoomNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", fmt.Errorf("room name %q: only a-z 0-9 . _ - allowed", name)
		}
	}
	return u, nil
}

// NormalizeUserURI returns "sip:user@host" with the host lower-cased (the
// user part is case-sensitive, RFC 3261 19.1.4). It accepts "user@host",
// "sip:user@host" and "sips:user@host" (stored as sip:, the address of
// record is the same); parameters, headers and ports are refused.
func NormalizeUserURI(s string) (string, error) {
	if len(s) > maxUserURILen {
		return "", fmt.Errorf("address longer than %d characters", maxUserURILen)
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "sip:"):
		s = s[4:]
	case strings.HasPrefix(lower, "sips:"):
		s = s[5:]
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", fmt.Errorf("address %q: want user@domain", s)
	}
	user, host := s[:at], strings.ToLower(s[at+1:])
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("<>\"@;?:/\\", c) >= 0 {
			return "", fmt.Errorf("address %q: character %q not allowed in the user part", s, c)
		}
	}
	if !ValidDNSName(host) {
		return "", fmt.Errorf("address %q: %q is not a DNS name", s, host)
	}
	return "sip:" + user + "@" + host, nil
}

// NicknameProblem returns "" if nick is a valid nickname, else why not:
// 1..32 letters, digits, '.', '_' or '-' (no spaces, so a #command can
// name it; no punctuation that could pose as the sender prefix).
func NicknameProblem(nick string) string {
	n := utf8.RuneCountInString(nick)
	if n == 0 || n > MaxNicknameLen {
		return fmt.Sprintf("must be 1..%d characters", MaxNicknameLen)
	}
	for _, r := range nick {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-') {
			return "only letters, digits, '.', '_' and '-' allowed"
		}
	}
	return ""
}

func foldNick(n string) string { return strings.ToLower(n) }

// BanPatternProblem returns "" if p is a canonical ban pattern.
func BanPatternProblem(p string) string {
	switch {
	case strings.HasPrefix(p, BanNetworkPrefix):
		if !ValidID(p[len(BanNetworkPrefix):]) {
			return "network id must be 1..63 characters of [a-z0-9-]"
		}
	case strings.HasPrefix(p, "*@"):
		if !ValidDNSName(p[2:]) || p[2:] != strings.ToLower(p[2:]) {
			return "want *@domain (lower-case)"
		}
	default:
		if u, err := NormalizeUserURI(p); err != nil || u != p {
			return "want sip:user@domain, *@domain or network:ID"
		}
	}
	return ""
}

func roomText(field, s string, max int) error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return invalid(field, s, fmt.Sprintf("must be valid UTF-8 of at most %d characters", max))
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, s, "control characters not allowed")
		}
	}
	return nil
}

func isRoomCommand(cmd *hubv1.Command) bool {
	switch cmd.GetOp().(type) {
	case *hubv1.Command_PutRoom, *hubv1.Command_DeleteRoom, *hubv1.Command_PutRoomMember,
		*hubv1.Command_RemoveRoomMember, *hubv1.Command_BanRoom, *hubv1.Command_UnbanRoom,
		*hubv1.Command_PostRoomMessage, *hubv1.Command_RoomFanoutProgress, *hubv1.Command_ClaimRoomFanout:
		return true
	}
	return false
}

func needRoom(s *State, field, uri string) (*hubv1.Room, error) {
	if _, err := NormalizeRoomURI(uri); err != nil {
		return nil, invalid(field, uri, err.Error())
	}
	r := s.Room(uri)
	if r == nil {
		return nil, fmt.Errorf("room %q: %w", uri, ErrNotFound)
	}
	return r, nil
}

// checkRoomCommand is CheckCommand for the room operations.
func checkRoomCommand(s *State, cmd *hubv1.Command) error {
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutRoom:
		return checkPutRoom(s, op.PutRoom)
	case *hubv1.Command_DeleteRoom:
		_, err := needRoom(s, "delete_room.uri", op.DeleteRoom.GetUri())
		return err
	case *hubv1.Command_PutRoomMember:
		r, err := needRoom(s, "put_room_member.room", op.PutRoomMember.GetRoom())
		if err != nil {
			return err
		}
		return checkMember(s, r, op.PutRoomMember.GetMember(), op.PutRoomMember.GetCreate())
	case *hubv1.Command_RemoveRoomMember:
		r, err := needRoom(s, "remove_room_member.room", op.RemoveRoomMember.GetRoom())
		if err != nil {
			return err
		}
		if RoomMember(r, op.RemoveRoomMember.GetUser()) == nil {
			return fmt.Errorf("%s in room %s: %w", op.RemoveRoomMember.GetUser(), r.GetUri(), ErrNotFound)
		}
		return nil
	case *hubv1.Command_BanRoom:
		r, err := needRoom(s, "ban_room.room", op.BanRoom.GetRoom())
		if err != nil {
			return err
		}
		b := op.BanRoom.GetBan()
		if p := BanPatternProblem(b.GetPattern()); p != "" {
			return invalid("ban_room.ban.pattern", b.GetPattern(), p)
		}
		if err := roomText("ban_room.ban.reason", b.GetReason(), maxRoomSubjectLen); err != nil {
			return err
		}
		if len(r.GetBans()) >= MaxRoomBans && !slices.ContainsFunc(r.GetBans(), func(x *hubv1.RoomBan) bool { return x.GetPattern() == b.GetPattern() }) {
			return fmt.Errorf("room %s has %d bans, the most it may have: %w", r.GetUri(), MaxRoomBans, ErrFailedPrecondition)
		}
		return nil
	case *hubv1.Command_UnbanRoom:
		r, err := needRoom(s, "unban_room.room", op.UnbanRoom.GetRoom())
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(r.GetBans(), func(x *hubv1.RoomBan) bool { return x.GetPattern() == op.UnbanRoom.GetPattern() }) {
			return fmt.Errorf("ban %q in room %s: %w", op.UnbanRoom.GetPattern(), r.GetUri(), ErrNotFound)
		}
		return nil
	case *hubv1.Command_PostRoomMessage:
		return checkPost(s, op.PostRoomMessage, cmd.GetTimeUnixNano())
	case *hubv1.Command_RoomFanoutProgress:
		p := op.RoomFanoutProgress
		r, err := needRoom(s, "room_fanout_progress.room", p.GetRoom())
		if err != nil {
			return err
		}
		f := RoomFanoutFor(r, p.GetSeq())
		if f == nil {
			return fmt.Errorf("fan-out of %s #%d: %w", r.GetUri(), p.GetSeq(), ErrNotFound)
		}
		if f.GetOwner() != p.GetOwner() {
			return fmt.Errorf("fan-out of %s #%d is owned by %q, not %q: %w", r.GetUri(), p.GetSeq(), f.GetOwner(), p.GetOwner(), ErrFailedPrecondition)
		}
		return checkFanoutProgress(f, p)
	case *hubv1.Command_ClaimRoomFanout:
		c := op.ClaimRoomFanout
		r, err := needRoom(s, "claim_room_fanout.room", c.GetRoom())
		if err != nil {
			return err
		}
		if !ValidID(c.GetOwner()) {
			return invalid("claim_room_fanout.owner", c.GetOwner(), "must be a node id")
		}
		f := RoomFanoutFor(r, c.GetSeq())
		if f == nil {
			return fmt.Errorf("fan-out of %s #%d: %w", r.GetUri(), c.GetSeq(), ErrNotFound)
		}
		if f.GetOwner() != c.GetPreviousOwner() {
			return fmt.Errorf("fan-out of %s #%d is owned by %q now, not %q: %w", r.GetUri(), c.GetSeq(), f.GetOwner(), c.GetPreviousOwner(), ErrFailedPrecondition)
		}
		return nil
	}
	return invalid("command.op", fmt.Sprintf("%T", cmd.GetOp()), "not a room operation")
}

func checkPutRoom(s *State, p *hubv1.PutRoom) error {
	r := p.GetRoom()
	uri, err := NormalizeRoomURI(r.GetUri())
	if err != nil || uri != r.GetUri() {
		return invalid("put_room.room.uri", r.GetUri(), "want canonical sip:name@domain (name of a-z 0-9 . _ -)")
	}
	cur := s.Room(uri)
	switch {
	case p.GetCreate() && cur != nil:
		return fmt.Errorf("room %s: %w", uri, ErrAlreadyExists)
	case !p.GetCreate() && cur == nil:
		return fmt.Errorf("room %s: %w", uri, ErrNotFound)
	case !p.GetCreate() && p.GetFirstMember() != nil:
		return invalid("put_room.first_member", "", "only when creating")
	}
	if s.DomainOwner(UserHost(uri)) != nil {
		return invalid("put_room.room.uri", uri, "the domain belongs to a member network")
	}
	if err := roomText("put_room.room.subject", r.GetSubject(), maxRoomSubjectLen); err != nil {
		return err
	}
	if o := r.GetOwner(); o != "" {
		if u, err := NormalizeUserURI(o); err != nil || u != o {
			return invalid("put_room.room.owner", o, "want canonical sip:user@domain")
		}
	}
	if r.GetMaxMembers() > MaxRoomMembers {
		return invalid("put_room.room.max_members", fmt.Sprint(r.GetMaxMembers()), fmt.Sprintf("at most %d", MaxRoomMembers))
	}
	if r.GetHistoryLen() > MaxRoomHistory {
		return invalid("put_room.room.history_len", fmt.Sprint(r.GetHistoryLen()), fmt.Sprintf("at most %d", MaxRoomHistory))
	}
	for i, n := range r.GetNetworks() {
		if err := needNetwork(s, fmt.Sprintf("put_room.room.networks[%d]", i), n); err != nil {
			return err
		}
	}
	if m := p.GetFirstMember(); m != nil {
		// Check against the room as it will be.
		return checkMember(s, &hubv1.Room{Uri: uri, Networks: r.GetNetworks(), MaxMembers: r.GetMaxMembers()}, m, true)
	}
	return nil
}

func checkMember(s *State, r *hubv1.Room, m *hubv1.RoomMember, create bool) error {
	if m == nil {
		return invalid("member", "", "missing")
	}
	if u, err := NormalizeUserURI(m.GetUser()); err != nil || u != m.GetUser() {
		return invalid("member.user", m.GetUser(), "want canonical sip:user@domain")
	}
	n := s.Network(m.GetNetwork())
	if n == nil {
		return fmt.Errorf("network %q: %w", m.GetNetwork(), ErrNotFound)
	}
	if !n.Active() {
		return fmt.Errorf("network %q is suspended: %w", m.GetNetwork(), ErrFailedPrecondition)
	}
	if len(r.GetNetworks()) > 0 && !slices.Contains(r.GetNetworks(), m.GetNetwork()) {
		return fmt.Errorf("room %s does not admit network %q: %w", r.GetUri(), m.GetNetwork(), ErrFailedPrecondition)
	}
	if p := NicknameProblem(m.GetNickname()); p != "" {
		return invalid("member.nickname", m.GetNickname(), p)
	}
	if _, ok := hubv1.RoomRole_name[int32(m.GetRole())]; !ok {
		return invalid("member.role", m.GetRole().String(), "unknown role")
	}
	if _, ok := hubv1.RoomMemberState_name[int32(m.GetState())]; !ok {
		return invalid("member.state", m.GetState().String(), "unknown state")
	}
	if _, ok := hubv1.RoomDelivery_name[int32(m.GetDelivery())]; !ok {
		return invalid("member.delivery", m.GetDelivery().String(), "unknown delivery")
	}
	if sn := m.GetSessionNode(); sn != "" && !ValidID(sn) {
		return invalid("member.session_node", sn, "must be a node id")
	}
	if b := RoomBanFor(r, m.GetUser(), m.GetNetwork()); b != nil {
		return fmt.Errorf("%s is banned from %s (%s): %w", m.GetUser(), r.GetUri(), b.GetPattern(), ErrFailedPrecondition)
	}
	if o := RoomMemberByNick(r, m.GetNickname()); o != nil && o.GetUser() != m.GetUser() {
		return fmt.Errorf("nickname %q is taken in %s: %w", m.GetNickname(), r.GetUri(), ErrAlreadyExists)
	}
	cur := RoomMember(r, m.GetUser())
	if create && cur != nil {
		return fmt.Errorf("%s in room %s: %w", m.GetUser(), r.GetUri(), ErrAlreadyExists)
	}
	if cur == nil && len(r.GetMembers()) >= RoomMaxMembers(r) {
		return fmt.Errorf("room %s is full (%d members): %w", r.GetUri(), RoomMaxMembers(r), ErrFailedPrecondition)
	}
	if cur != nil && cur.GetNetwork() != m.GetNetwork() {
		return invalid("member.network", m.GetNetwork(), "differs from the participant's network "+cur.GetNetwork())
	}
	return nil
}

func checkPost(s *State, p *hubv1.PostRoomMessage, cmdTime int64) error {
	r, err := needRoom(s, "post_room_message.room", p.GetRoom())
	if err != nil {
		return err
	}
	msg := p.GetMessage()
	m := RoomMember(r, msg.GetSender())
	if why := MaySpeak(r, m); why != "" {
		return fmt.Errorf("%s may not post to %s: %s: %w", msg.GetSender(), r.GetUri(), why, ErrFailedPrecondition)
	}
	if b := RoomBanFor(r, m.GetUser(), m.GetNetwork()); b != nil {
		return fmt.Errorf("%s is banned from %s: %w", m.GetUser(), r.GetUri(), ErrFailedPrecondition)
	}
	if ct := msg.GetContentType(); ct == "" || len(ct) > maxContentTypeLen || strings.ContainsAny(ct, "\r\n") {
		return invalid("post_room_message.message.content_type", ct, fmt.Sprintf("must be 1..%d bytes on one line", maxContentTypeLen))
	}
	if len(msg.GetBody()) > MaxRoomBody {
		return invalid("post_room_message.message.body", "", fmt.Sprintf("at most %d bytes", MaxRoomBody))
	}
	if len(msg.GetCallId()) > maxUserURILen {
		return invalid("post_room_message.message.call_id", msg.GetCallId(), "too long")
	}
	if !ValidID(p.GetOwner()) {
		return invalid("post_room_message.owner", p.GetOwner(), "must be a node id")
	}
	if len(r.GetFanouts()) >= MaxRoomFanouts {
		return fmt.Errorf("room %s has %d deliveries in progress: %w", r.GetUri(), len(r.GetFanouts()), ErrFailedPrecondition)
	}
	if dup := RoomDuplicate(r, msg.GetSender(), msg.GetCallId()); dup != nil {
		// The sender's retransmission of a message already committed
		// (its 200 was lost, or it retried on another node): not
		// posted twice.
		return fmt.Errorf("%s's message %s is already seq %d of %s: %w", msg.GetSender(), msg.GetCallId(), dup.GetSeq(), r.GetUri(), ErrAlreadyExists)
	} // After the duplicate check: a retransmission is answered 200 even
	// with an empty bucket.
	if p.GetRatePerMinute() > 0 {
		if _, ok := takeToken(r.GetBuckets(), msg.GetSender(), p, cmdTime); !ok {
			return fmt.Errorf("%s is over the room rate limit of %s (%d a minute, burst %d): %w", msg.GetSender(), r.GetUri(),
				p.GetRatePerMinute(), p.GetBurst(), ErrRoomRateLimited)
		}
	}

	return nil
}

// RoomDuplicate returns the kept message of r that sender posted with
// callID, or nil ("" matches nothing).
func RoomDuplicate(r *hubv1.Room, sender, callID string) *hubv1.RoomMessage {
	if callID == "" {
		return nil
	}
	h := r.GetHistory()
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].GetCallId() == callID && h[i].GetSender() == sender {
			return h[i]
		}
	}
	return nil
}

// applyRoomCommand applies a checked room command to s without copying the
// rest of the state: the new State shares every map but the rooms map, and
// the new room shares every slice it does not change (slices of a published
// room are never modified in place). Returns nil for other commands.
func applyRoomCommand(s *State, index uint64, cmd *hubv1.Command) *State {
	if !isRoomCommand(cmd) {
		return nil
	}
	now := cmd.GetTimeUnixNano()
	next := *s
	next.Index = index
	next.rooms = make(map[string]*hubv1.Room, len(s.rooms)+1)
	for k, v := range s.rooms {
		next.rooms[k] = v
	}
	put := func(r *hubv1.Room) { next.rooms[r.GetUri()] = r }
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutRoom:
		in := op.PutRoom.GetRoom()
		var r *hubv1.Room
		if cur := s.Room(in.GetUri()); cur != nil {
			r = shallowRoom(cur)
		} else {
			r = &hubv1.Room{Uri: in.GetUri(), CreatedUnixNano: now}
			if m := op.PutRoom.GetFirstMember(); m != nil {
				fm := proto.Clone(m).(*hubv1.RoomMember)
				fm.JoinedUnixNano = now
				r.Members = []*hubv1.RoomMember{fm}
			}
		}
		r.Subject, r.Owner, r.MembersOnly, r.Moderated = in.GetSubject(), in.GetOwner(), in.GetMembersOnly(), in.GetModerated()
		r.MaxMembers, r.HistoryLen, r.NoHistory = in.GetMaxMembers(), in.GetHistoryLen(), in.GetNoHistory()
		r.Networks = slices.Clone(in.GetNetworks())
		slices.Sort(r.Networks)
		r.Networks = slices.Compact(r.Networks)
		r.UpdatedUnixNano = now
		r.History = trimHistory(r.GetHistory(), historyKeep(r), r.GetFanouts())
		put(r)
	case *hubv1.Command_DeleteRoom:
		delete(next.rooms, op.DeleteRoom.GetUri())
	case *hubv1.Command_PutRoomMember:
		cur := s.Room(op.PutRoomMember.GetRoom())
		r := shallowRoom(cur)
		m := proto.Clone(op.PutRoomMember.GetMember()).(*hubv1.RoomMember)
		ms := slices.Clone(cur.GetMembers())
		i, found := slices.BinarySearchFunc(ms, m.GetUser(), func(x *hubv1.RoomMember, u string) int { return strings.Compare(x.GetUser(), u) })
		if found {
			old := ms[i]
			m.JoinedUnixNano = old.GetJoinedUnixNano()
			if !Joined(old) && Joined(m) {
				m.JoinedUnixNano = now
			}
			ms[i] = m
		} else {
			m.JoinedUnixNano = now
			ms = slices.Insert(ms, i, m)
		}
		r.Members = ms
		r.UpdatedUnixNano = now
		put(r)
	case *hubv1.Command_RemoveRoomMember:
		cur := s.Room(op.RemoveRoomMember.GetRoom())
		r := shallowRoom(cur)
		u := op.RemoveRoomMember.GetUser()
		r.Members = slices.DeleteFunc(slices.Clone(cur.GetMembers()), func(m *hubv1.RoomMember) bool { return m.GetUser() == u })
		r.UpdatedUnixNano = now
		put(r)
	case *hubv1.Command_BanRoom:
		cur := s.Room(op.BanRoom.GetRoom())
		r := shallowRoom(cur)
		b := proto.Clone(op.BanRoom.GetBan()).(*hubv1.RoomBan)
		b.By, b.UnixNano = cmd.GetActor(), now
		bans := slices.DeleteFunc(slices.Clone(cur.GetBans()), func(x *hubv1.RoomBan) bool { return x.GetPattern() == b.GetPattern() })
		bans = append(bans, b)
		slices.SortFunc(bans, func(a, b *hubv1.RoomBan) int { return strings.Compare(a.GetPattern(), b.GetPattern()) })
		r.Bans = bans
		// A ban takes effect at apply on every node: matching participants
		// are out of the room (and of its roster) at once.
		r.Members = slices.DeleteFunc(slices.Clone(cur.GetMembers()), func(m *hubv1.RoomMember) bool {
			return BanMatches(b.GetPattern(), m.GetUser(), m.GetNetwork())
		})
		r.UpdatedUnixNano = now
		put(r)
	case *hubv1.Command_UnbanRoom:
		cur := s.Room(op.UnbanRoom.GetRoom())
		r := shallowRoom(cur)
		p := op.UnbanRoom.GetPattern()
		r.Bans = slices.DeleteFunc(slices.Clone(cur.GetBans()), func(x *hubv1.RoomBan) bool { return x.GetPattern() == p })
		r.UpdatedUnixNano = now
		put(r)
	case *hubv1.Command_PostRoomMessage:
		put(applyPost(s.Room(op.PostRoomMessage.GetRoom()), index, now, op.PostRoomMessage))
	case *hubv1.Command_RoomFanoutProgress:
		p := op.RoomFanoutProgress
		cur := s.Room(p.GetRoom())
		r := shallowRoom(cur)
		r.Fanouts = updateFanout(cur.GetFanouts(), p.GetSeq(), func(f *hubv1.RoomFanout) *hubv1.RoomFanout {
			done, acked := mergeAcked(f, p)
			if int(done) >= len(f.GetRecipients()) {
				return nil // finished: forget it
			}
			return &hubv1.RoomFanout{Seq: f.GetSeq(), Owner: f.GetOwner(), Recipients: f.GetRecipients(), Done: done, Acked: acked, UpdatedUnixNano: now}
		})
		put(r)
	case *hubv1.Command_ClaimRoomFanout:
		c := op.ClaimRoomFanout
		cur := s.Room(c.GetRoom())
		r := shallowRoom(cur)
		r.Fanouts = updateFanout(cur.GetFanouts(), c.GetSeq(), func(f *hubv1.RoomFanout) *hubv1.RoomFanout {
			return &hubv1.RoomFanout{Seq: f.GetSeq(), Owner: c.GetOwner(), Recipients: f.GetRecipients(), Done: f.GetDone(), Acked: f.GetAcked(), UpdatedUnixNano: now}
		})
		put(r)
	}
	return &next
}

func applyPost(cur *hubv1.Room, index uint64, now int64, p *hubv1.PostRoomMessage) *hubv1.Room {
	r := shallowRoom(cur)
	in := p.GetMessage()
	m := RoomMember(cur, in.GetSender())
	r.LastSeq = cur.GetLastSeq() + 1
	if p.GetRatePerMinute() > 0 {
		r.Buckets, _ = takeToken(cur.GetBuckets(), m.GetUser(), p, now)
	}
	// Nickname and network come from the state, not the proposer: what
	// every replica shows is what the FSM knew at this index.
	msg := &hubv1.RoomMessage{
		Seq: r.LastSeq, Sender: m.GetUser(), Nickname: m.GetNickname(), Network: m.GetNetwork(),
		ContentType: in.GetContentType(), Body: in.GetBody(), UnixNano: now, RaftIndex: index, CallId: in.GetCallId(),
	}
	var rcpt []string
	sessions := false
	for _, x := range cur.GetMembers() {
		if x.GetSessionNode() != "" {
			// Session mode (RFC 7701): the node holding the MSRP
			// session delivers from the history, not a fan-out.
			sessions = true
			continue
		}
		if Joined(x) && x.GetUser() != m.GetUser() {
			rcpt = append(rcpt, x.GetUser())
		}
	}
	if len(rcpt) > 0 {
		r.Fanouts = append(slices.Clip(cur.GetFanouts()), &hubv1.RoomFanout{Seq: r.LastSeq, Owner: p.GetOwner(), Recipients: rcpt, UpdatedUnixNano: now})
	}
	n := RoomHistoryLen(cur)
	if sessions {
		n = max(n, SessionWindow)
	}
	if n > 0 || len(rcpt) > 0 {
		// Clip: never write into the shared array.
		r.History = trimHistory(append(slices.Clip(cur.GetHistory()), msg), n, r.Fanouts)
	}
	return r
}

// historyKeep is how many messages r's history keeps: its history length,
// at least SessionWindow while it has session-mode participants (their
// nodes read new messages from the history: enough for them to catch up
// between two looks at the state).
func historyKeep(r *hubv1.Room) int {
	n := RoomHistoryLen(r)
	for _, m := range r.GetMembers() {
		if m.GetSessionNode() != "" {
			return max(n, SessionWindow)
		}
	}
	return n
}

// trimHistory keeps the last n messages of h, and every message whose
// fan-out is unfinished (the fan-out reads its content from here, so a short
// history never loses an undelivered message).
func trimHistory(h []*hubv1.RoomMessage, n int, pending []*hubv1.RoomFanout) []*hubv1.RoomMessage {
	start := max(len(h)-n, 0)
	if len(pending) > 0 {
		low := pending[0].GetSeq()
		for _, f := range pending {
			low = min(low, f.GetSeq())
		}
		first, _ := slices.BinarySearchFunc(h, low, func(m *hubv1.RoomMessage, seq uint64) int { return cmpUint(m.GetSeq(), seq) })
		start = min(start, first)
	}
	if start == 0 {
		return h
	}
	return slices.Clip(h[start:])
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// RoomRecent returns the last RoomHistoryLen(r) messages of r's history
// (the history may hold more while their deliveries are unfinished).
func RoomRecent(r *hubv1.Room) []*hubv1.RoomMessage {
	h := r.GetHistory()
	return h[max(len(h)-RoomHistoryLen(r), 0):]
}

// RoomMessageBySeq returns r's history message seq, or nil.
func RoomMessageBySeq(r *hubv1.Room, seq uint64) *hubv1.RoomMessage {
	h := r.GetHistory()
	i, ok := slices.BinarySearchFunc(h, seq, func(m *hubv1.RoomMessage, s uint64) int { return cmpUint(m.GetSeq(), s) })
	if !ok {
		return nil
	}
	return h[i]
}

// updateFanout returns fs with seq's entry replaced by fn's result (or
// dropped if it returns nil), in a new slice.
func updateFanout(fs []*hubv1.RoomFanout, seq uint64, fn func(*hubv1.RoomFanout) *hubv1.RoomFanout) []*hubv1.RoomFanout {
	out := make([]*hubv1.RoomFanout, 0, len(fs))
	for _, f := range fs {
		if f.GetSeq() == seq {
			if f = fn(f); f == nil {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// shallowRoom returns a new Room sharing r's slices. (Copying the struct
// itself would copy protobuf internals.)
func shallowRoom(r *hubv1.Room) *hubv1.Room {
	return &hubv1.Room{
		Uri: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(), MembersOnly: r.GetMembersOnly(),
		Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(),
		Networks: r.GetNetworks(), Members: r.GetMembers(), Bans: r.GetBans(), History: r.GetHistory(),
		LastSeq: r.GetLastSeq(), Fanouts: r.GetFanouts(), CreatedUnixNano: r.GetCreatedUnixNano(),
		UpdatedUnixNano: r.GetUpdatedUnixNano(), NoHistory: r.GetNoHistory(), Buckets: r.GetBuckets(),
	}
}

// evictRoomMembers removes, in cs (a private copy), every participant whose
// network is gone or suspended: suspending or removing a member network cuts its users
// out of every room at the same log index on every node. Their pending
// deliveries are skipped at send time (the fan-out looks the member up).
// A room's admitted-network list keeps a removed id: dropping it could turn
// the list empty, which means "every network".
func evictRoomMembers(cs *hubv1.ClusterState) {
	active := map[string]bool{}
	for _, n := range cs.GetNetworks() {
		active[n.GetId()] = n.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
	}
	for _, r := range cs.GetRooms() {
		r.Members = slices.DeleteFunc(r.Members, func(m *hubv1.RoomMember) bool { return !active[m.GetNetwork()] })
	}
}

// SessionWindow is the least history a room with session-mode
// participants keeps: their nodes deliver from it (chatroom/session.go).
const SessionWindow = 64

// MaxFanoutAcked bounds a progress record's acked set (the owner keeps at
// most its batch window beyond the cursor).
const MaxFanoutAcked = 4096

// checkFanoutProgress: the cursor never moves back, acked recipients stay
// acked (a copy with its final answer recorded is never sent again), and
// the record changes something.
func checkFanoutProgress(f *hubv1.RoomFanout, p *hubv1.RoomFanoutProgress) error {
	n := len(f.GetRecipients())
	if p.GetDone() < f.GetDone() || int(p.GetDone()) > n {
		return invalid("room_fanout_progress.done", fmt.Sprint(p.GetDone()), fmt.Sprintf("must not move back from %d, at most %d", f.GetDone(), n))
	}
	a := p.GetAcked()
	if len(a) > MaxFanoutAcked {
		return invalid("room_fanout_progress.acked", fmt.Sprint(len(a)), fmt.Sprintf("at most %d entries", MaxFanoutAcked))
	}
	for i, x := range a {
		if x <= p.GetDone() || int(x) >= n || (i > 0 && x <= a[i-1]) {
			return invalid("room_fanout_progress.acked", fmt.Sprint(x), fmt.Sprintf("want ascending indexes in (%d, %d)", p.GetDone(), n))
		}
	}
	grew := p.GetDone() > f.GetDone()
	for _, x := range f.GetAcked() {
		if x <= p.GetDone() {
			continue // passed by the cursor (or the cursor stops on it: kept, see mergeAcked)
		}
		if _, ok := slices.BinarySearch(a, x); !ok {
			return invalid("room_fanout_progress.acked", fmt.Sprint(x), "an acked recipient may not be un-acked")
		}
	}
	if !grew && len(a) == countAbove(f.GetAcked(), p.GetDone()) {
		return invalid("room_fanout_progress", "", "changes nothing")
	}
	return nil
}

func countAbove(a []uint32, from uint32) int {
	n := 0
	for _, x := range a {
		if x > from {
			n++
		}
	}
	return n
}

// mergeAcked returns the cursor and acked set after p: the old acked
// entries the cursor has not passed are kept (one the cursor stops on
// included), and the cursor moves over acked recipients right after it.
func mergeAcked(f *hubv1.RoomFanout, p *hubv1.RoomFanoutProgress) (uint32, []uint32) {
	done := p.GetDone()
	acked := slices.Clone(p.GetAcked())
	for _, x := range f.GetAcked() {
		if x == done {
			acked = append(acked, x)
		}
	}
	slices.Sort(acked)
	acked = slices.Compact(acked)
	i := 0
	for ; i < len(acked) && acked[i] <= done; i++ {
		if acked[i] == done {
			done++
		}
	}
	if i == len(acked) {
		return done, nil
	}
	return done, acked[i:]
}

// ErrRoomRateLimited wraps ErrFailedPrecondition: a sender over the
// cluster-wide rate limit of a room.
var ErrRoomRateLimited = fmt.Errorf("room rate limit: %w", ErrFailedPrecondition)

// MaxRoomBuckets bounds a room's rate-limit buckets (senders whose bucket
// has not refilled yet); beyond, the oldest full-soonest are dropped.
const MaxRoomBuckets = 4096

// takeToken is the cluster-wide token bucket of sender in a room: it
// refills at rate_per_minute from the command times of the sender's posts
// (a command time before the bucket's own counts as the bucket's: the
// clock never runs back, so a node whose clock lags refills nothing
// extra). It returns the buckets after taking one token (a new slice;
// buckets that are full again by now are dropped) and whether a token
// was there.
func takeToken(bs []*hubv1.RoomSenderBucket, sender string, p *hubv1.PostRoomMessage, now int64) ([]*hubv1.RoomSenderBucket, bool) {
	rate := int64(p.GetRatePerMinute())
	burst := int64(max(p.GetBurst(), 1)) * 1000
	perMilli := int64(60e9) / rate / 1000 // ns to refill one milli-token
	if perMilli <= 0 {
		perMilli = 1
	}
	out := make([]*hubv1.RoomSenderBucket, 0, len(bs)+1)
	var cur *hubv1.RoomSenderBucket
	for _, b := range bs {
		switch {
		case b.GetSender() == sender:
			cur = b
		case b.GetFullUnixNano() > now:
			out = append(out, b)
		}
	}
	tokens, at := burst, now
	if cur != nil {
		at = max(now, cur.GetUnixNano())
		tokens = min(burst, cur.GetMilliTokens()+(at-cur.GetUnixNano())/perMilli)
	}
	ok := tokens >= 1000
	if ok {
		tokens -= 1000
	}
	nb := &hubv1.RoomSenderBucket{Sender: sender, MilliTokens: tokens, UnixNano: at, FullUnixNano: at + (burst-tokens)*perMilli}
	i, _ := slices.BinarySearchFunc(out, sender, func(b *hubv1.RoomSenderBucket, s string) int { return strings.Compare(b.GetSender(), s) })
	out = slices.Insert(out, i, nb)
	if len(out) > MaxRoomBuckets {
		// Forget the buckets closest to full: they lose the least.
		byFull := slices.Clone(out)
		slices.SortFunc(byFull, func(a, b *hubv1.RoomSenderBucket) int { return cmpInt64(a.GetFullUnixNano(), b.GetFullUnixNano()) })
		drop := map[string]bool{}
		for _, b := range byFull[:len(out)-MaxRoomBuckets] {
			drop[b.GetSender()] = true
		}
		out = slices.DeleteFunc(out, func(b *hubv1.RoomSenderBucket) bool { return drop[b.GetSender()] })
	}
	return out, ok
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
