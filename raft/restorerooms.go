package raft

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Rooms and lists of a RestoreState command (see restorestate.go for what
// a restore replaces and what it keeps).

// checkRestoreRooms validates the restored rooms as PutRoom, PutRoomMember
// and BanRoom would, against the restored networks' domains (domains:
// lower-case domain -> network id). Deterministic: command order.
func checkRestoreRooms(rooms []*hubv1.Room, domains map[string]string) error {
	seen := map[string]bool{}
	for i, r := range rooms {
		f := fmt.Sprintf("restore_state.state.rooms[%d]", i)
		uri, err := NormalizeRoomURI(r.GetUri())
		if err != nil || uri != r.GetUri() {
			return invalid(f+".uri", r.GetUri(), "want canonical sip:name@domain (name of a-z 0-9 . _ -)")
		}
		if seen[uri] {
			return fmt.Errorf("%s: room %s twice: %w", f, uri, ErrAlreadyExists)
		}
		seen[uri] = true
		if o, ok := domains[UserHost(uri)]; ok {
			return invalid(f+".uri", uri, "the domain belongs to member network "+o)
		}
		if err := roomText(f+".subject", r.GetSubject(), maxRoomSubjectLen); err != nil {
			return err
		}
		if o := r.GetOwner(); o != "" {
			if u, err := NormalizeUserURI(o); err != nil || u != o {
				return invalid(f+".owner", o, "want canonical sip:user@domain")
			}
		}
		if r.GetMaxMembers() > MaxRoomMembers {
			return invalid(f+".max_members", fmt.Sprint(r.GetMaxMembers()), fmt.Sprintf("at most %d", MaxRoomMembers))
		}
		if r.GetHistoryLen() > MaxRoomHistory {
			return invalid(f+".history_len", fmt.Sprint(r.GetHistoryLen()), fmt.Sprintf("at most %d", MaxRoomHistory))
		}
		for j, n := range r.GetNetworks() {
			// A removed network's id may stay in the list (evictRoomMembers),
			// so only the form is checked.
			if !ValidID(n) {
				return invalid(fmt.Sprintf("%s.networks[%d]", f, j), n, "network id must be 1..63 characters of [a-z0-9-]")
			}
		}
		if err := checkRestoreBans(f, r.GetBans()); err != nil {
			return err
		}
		if err := checkRestoreMembers(f, r); err != nil {
			return err
		}
	}
	return nil
}

func checkRestoreBans(f string, bans []*hubv1.RoomBan) error {
	if len(bans) > MaxRoomBans {
		return invalid(f+".bans", fmt.Sprint(len(bans)), fmt.Sprintf("at most %d", MaxRoomBans))
	}
	seen := map[string]bool{}
	for j, b := range bans {
		bf := fmt.Sprintf("%s.bans[%d]", f, j)
		if p := BanPatternProblem(b.GetPattern()); p != "" {
			return invalid(bf+".pattern", b.GetPattern(), p)
		}
		if seen[b.GetPattern()] {
			return invalid(bf+".pattern", b.GetPattern(), "banned twice")
		}
		seen[b.GetPattern()] = true
		if err := roomText(bf+".reason", b.GetReason(), maxRoomSubjectLen); err != nil {
			return err
		}
	}
	return nil
}

func checkRestoreMembers(f string, r *hubv1.Room) error {
	if len(r.GetMembers()) > RoomMaxMembers(r) {
		return invalid(f+".members", fmt.Sprint(len(r.GetMembers())), fmt.Sprintf("the room admits at most %d", RoomMaxMembers(r)))
	}
	users, nicks := map[string]bool{}, map[string]string{}
	for j, m := range r.GetMembers() {
		mf := fmt.Sprintf("%s.members[%d]", f, j)
		if u, err := NormalizeUserURI(m.GetUser()); err != nil || u != m.GetUser() {
			return invalid(mf+".user", m.GetUser(), "want canonical sip:user@domain")
		}
		if users[m.GetUser()] {
			return invalid(mf+".user", m.GetUser(), "a participant twice")
		}
		users[m.GetUser()] = true
		if !ValidID(m.GetNetwork()) {
			return invalid(mf+".network", m.GetNetwork(), "network id must be 1..63 characters of [a-z0-9-]")
		}
		if len(r.GetNetworks()) > 0 && !slices.Contains(r.GetNetworks(), m.GetNetwork()) {
			return invalid(mf+".network", m.GetNetwork(), "the room does not admit this network")
		}
		if p := NicknameProblem(m.GetNickname()); p != "" {
			return invalid(mf+".nickname", m.GetNickname(), p)
		}
		if o, ok := nicks[foldNick(m.GetNickname())]; ok {
			return invalid(mf+".nickname", m.GetNickname(), "taken by "+o)
		}
		nicks[foldNick(m.GetNickname())] = m.GetUser()
		if _, ok := hubv1.RoomRole_name[int32(m.GetRole())]; !ok {
			return invalid(mf+".role", m.GetRole().String(), "unknown role")
		}
		if _, ok := hubv1.RoomMemberState_name[int32(m.GetState())]; !ok {
			return invalid(mf+".state", m.GetState().String(), "unknown state")
		}
		if _, ok := hubv1.RoomDelivery_name[int32(m.GetDelivery())]; !ok {
			return invalid(mf+".delivery", m.GetDelivery().String(), "unknown delivery")
		}
		if b := RoomBanFor(r, m.GetUser(), m.GetNetwork()); b != nil {
			return invalid(mf+".user", m.GetUser(), "banned from the room ("+b.GetPattern()+")")
		}
	}
	return nil
}

// checkRestoreLists validates the restored lists as PutList would, plus the
// totals: MaxLists, MaxListsPerOwner.
func checkRestoreLists(lists []*hubv1.ResourceList) error {
	if len(lists) > MaxLists {
		return invalid("restore_state.state.lists", fmt.Sprint(len(lists)), fmt.Sprintf("at most %d lists", MaxLists))
	}
	seen, owners := map[string]bool{}, map[string]int{}
	for i, l := range lists {
		f := fmt.Sprintf("restore_state.state.lists[%d]", i)
		c, prob := CanonicalSIPURI(l.GetUri(), listURISchemes...)
		switch {
		case prob != "":
			return invalid(f+".uri", l.GetUri(), prob)
		case c != l.GetUri():
			return invalid(f+".uri", l.GetUri(), "not in canonical form "+c)
		case seen[c]:
			return fmt.Errorf("%s: list %s twice: %w", f, c, ErrAlreadyExists)
		}
		seen[c] = true
		if prob := validDisplayName(l.GetDisplayName()); prob != "" {
			return invalid(f+".display_name", l.GetDisplayName(), prob)
		}
		if o := l.GetOwner(); o != "" {
			co, prob := CanonicalSIPURI(o, listURISchemes...)
			if prob != "" {
				return invalid(f+".owner", o, prob)
			}
			if co != o {
				return invalid(f+".owner", o, "not in canonical form "+co)
			}
			if owners[o]++; owners[o] > MaxListsPerOwner {
				return fmt.Errorf("%s: owner %s has more than %d personal lists: %w", f, o, MaxListsPerOwner, ErrFailedPrecondition)
			}
		}
		if _, err := mergeEntries(f+".entries", nil, l.GetEntries()); err != nil {
			return err
		}
		if err := checkEntryCount(l.GetUri(), len(l.GetEntries())); err != nil {
			return err
		}
	}
	return nil
}

// restoreRooms replaces cs.Rooms (a private copy of the current rooms) by
// the restored ones. A room that exists now keeps its history, sequence
// and fan-outs; its update time moves only if its configuration,
// participants or bans change.
func restoreRooms(cs *hubv1.ClusterState, rooms []*hubv1.Room, now int64) {
	cur := newRoomMap(cs)
	out := make([]*hubv1.Room, 0, len(rooms))
	for _, in := range rooms {
		r := roomMembership(in)
		for _, m := range r.Members {
			if m.JoinedUnixNano == 0 {
				m.JoinedUnixNano = now
			}
		}
		if old := cur[r.GetUri()]; old != nil {
			r.History, r.LastSeq, r.Fanouts = old.GetHistory(), old.GetLastSeq(), old.GetFanouts()
			r.CreatedUnixNano, r.UpdatedUnixNano = old.GetCreatedUnixNano(), old.GetUpdatedUnixNano()
			if !proto.Equal(roomMembership(old), r) {
				r.UpdatedUnixNano = now
			}
			r.History = trimHistory(r.History, RoomHistoryLen(r), r.Fanouts)
		} else {
			r.CreatedUnixNano, r.UpdatedUnixNano = in.GetCreatedUnixNano(), now
			if r.CreatedUnixNano == 0 {
				r.CreatedUnixNano = now
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *hubv1.Room) int { return strings.Compare(a.GetUri(), b.GetUri()) })
	cs.Rooms = out
}

// roomMembership is the part of r a restore replaces, in canonical form
// (a deep copy: networks sorted and unique, members by user, bans by
// pattern), without history, sequence, fan-outs or times.
func roomMembership(r *hubv1.Room) *hubv1.Room {
	c := &hubv1.Room{
		Uri: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(), MembersOnly: r.GetMembersOnly(),
		Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(), NoHistory: r.GetNoHistory(),
		Networks: slices.Clone(r.GetNetworks()),
	}
	slices.Sort(c.Networks)
	c.Networks = slices.Compact(c.Networks)
	for _, m := range r.GetMembers() {
		c.Members = append(c.Members, proto.Clone(m).(*hubv1.RoomMember))
	}
	slices.SortFunc(c.Members, func(a, b *hubv1.RoomMember) int { return strings.Compare(a.GetUser(), b.GetUser()) })
	for _, b := range r.GetBans() {
		c.Bans = append(c.Bans, proto.Clone(b).(*hubv1.RoomBan))
	}
	slices.SortFunc(c.Bans, func(a, b *hubv1.RoomBan) int { return strings.Compare(a.GetPattern(), b.GetPattern()) })
	return c
}

// restoreLists replaces cs.Lists by the restored lists. A list whose
// display name, owner or entries change gets a revision above both the
// current and the saved one (live RFC 4662 subscriptions resync when it
// moves, 4.5); an unchanged list is kept as it is.
func restoreLists(cur *State, cs *hubv1.ClusterState, lists []*hubv1.ResourceList, now int64, actor string) {
	out := make([]*hubv1.ResourceList, 0, len(lists))
	for _, in := range lists {
		l := &hubv1.ResourceList{Uri: in.GetUri(), DisplayName: in.GetDisplayName(), Owner: in.GetOwner()}
		l.Entries, _ = mergeEntries("", nil, in.GetEntries()) // checked
		old := cur.List(l.GetUri())
		switch {
		case old != nil && sameList(old, l):
			l = proto.Clone(old).(*hubv1.ResourceList)
		case old != nil:
			l.CreatedUnixNano = old.GetCreatedUnixNano()
			l.Revision = max(old.GetRevision(), in.GetRevision()) + 1
			l.UpdatedUnixNano, l.UpdatedBy = now, actor
		default:
			l.CreatedUnixNano = in.GetCreatedUnixNano()
			if l.CreatedUnixNano == 0 {
				l.CreatedUnixNano = now
			}
			l.Revision = in.GetRevision() + 1
			l.UpdatedUnixNano, l.UpdatedBy = now, actor
		}
		out = append(out, l)
	}
	sortLists(out)
	cs.Lists = out
}

func sameList(a, b *hubv1.ResourceList) bool {
	return a.GetDisplayName() == b.GetDisplayName() && a.GetOwner() == b.GetOwner() &&
		slices.EqualFunc(a.GetEntries(), b.GetEntries(), func(x, y *hubv1.ListEntry) bool {
			return x.GetUri() == y.GetUri() && x.GetDisplayName() == y.GetDisplayName()
		})
}

// roomChanges and listChanges are StateChanges for rooms and lists.
func roomChanges(old, next *State) []string {
	var out []string
	for _, r := range next.Rooms() {
		o := old.Room(r.GetUri())
		if o == nil {
			out = append(out, fmt.Sprintf("add room %s (%d participants, %d bans)", r.GetUri(), len(r.GetMembers()), len(r.GetBans())))
			continue
		}
		if f := roomDiff(roomMembership(o), roomMembership(r)); len(f) > 0 {
			out = append(out, fmt.Sprintf("update room %s: %s", r.GetUri(), strings.Join(f, ", ")))
		}
	}
	for _, o := range old.Rooms() {
		if next.Room(o.GetUri()) == nil {
			out = append(out, fmt.Sprintf("remove room %s (and its history of %d messages)", o.GetUri(), len(o.GetHistory())))
		}
	}
	return out
}

// roomDiff names what differs between two roomMembership values: the
// settings by field name, then participants and bans added, removed or
// changed, by name.
func roomDiff(a, b *hubv1.Room) []string {
	var out []string
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if n := fd.Name(); n == "members" || n == "bans" {
			continue
		}
		if !equalField(fd, ra.Get(fd), rb.Get(fd)) {
			out = append(out, string(fd.Name()))
		}
	}
	key := func(m *hubv1.RoomMember) string { return m.GetUser() }
	out = append(out, setDiff("participant", a.GetMembers(), b.GetMembers(), key)...)
	out = append(out, setDiff("ban", a.GetBans(), b.GetBans(), (*hubv1.RoomBan).GetPattern)...)
	return out
}

// setDiff describes how the keyed messages of b differ from those of a:
// "+participant sip:x@y", "-ban network:b", "~participant ...".
func setDiff[T proto.Message](what string, a, b []T, key func(T) string) []string {
	var out []string
	have := map[string]T{}
	for _, x := range a {
		have[key(x)] = x
	}
	in := map[string]bool{}
	for _, y := range b {
		in[key(y)] = true
		if x, ok := have[key(y)]; !ok {
			out = append(out, "+"+what+" "+key(y))
		} else if !proto.Equal(x, y) {
			out = append(out, "~"+what+" "+key(y))
		}
	}
	for _, x := range a {
		if !in[key(x)] {
			out = append(out, "-"+what+" "+key(x))
		}
	}
	return bySubject(out, " room ")
}

func listChanges(old, next *State) []string {
	var out []string
	for _, l := range next.Lists() {
		o := old.List(l.GetUri())
		if o == nil {
			out = append(out, fmt.Sprintf("add list %s (%d entries)", l.GetUri(), len(l.GetEntries())))
			continue
		}
		var f []string
		if o.GetDisplayName() != l.GetDisplayName() {
			f = append(f, "display_name")
		}
		if o.GetOwner() != l.GetOwner() {
			f = append(f, "owner")
		}
		f = append(f, setDiff("entry", o.GetEntries(), l.GetEntries(), (*hubv1.ListEntry).GetUri)...)
		if len(f) == 0 && !sameList(o, l) {
			f = append(f, "entry order")
		}
		if len(f) > 0 {
			out = append(out, fmt.Sprintf("update list %s: %s", l.GetUri(), strings.Join(f, ", ")))
		}
	}
	for _, o := range old.Lists() {
		if next.List(o.GetUri()) == nil {
			out = append(out, "remove list "+o.GetUri())
		}
	}
	return bySubject(out, " list ")
}

// bySubject sorts lines by the uri after key (stable: an add or update
// before a remove of the same uri cannot happen).
func bySubject(lines []string, key string) []string {
	at := func(l string) string {
		_, rest, _ := strings.Cut(l, key)
		id, _, _ := strings.Cut(rest, " ")
		return strings.TrimSuffix(id, ":")
	}
	slices.SortStableFunc(lines, func(a, b string) int { return strings.Compare(at(a), at(b)) })
	return lines
}
