package raft

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

const testList = "sip:friends@lists.hub.example"

// savedWithRooms is a state with networks a and b, a room with three
// participants, a ban and one message, a public and a personal list.
func savedWithRooms(t *testing.T) *State {
	t.Helper()
	cmds := append(roomSetup(),
		roomCmdAt(clock+3, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "sip:mallory@b.example", Reason: "spam"}}),
		roomCmdAt(clock+4, post("sip:alice@a.example", "hello")),
		listCmd(&hubv1.PutList{List: &hubv1.ResourceList{Uri: testList, DisplayName: "Friends", Entries: entries("sip:bob@b.example", "sip:carol@b.example")}}),
		listCmd(&hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:alice-buddies@lists.hub.example", Owner: "sip:alice@a.example", Entries: entries("sip:bob@b.example")}}),
	)
	s, err := roomState(t, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A saved state with rooms and lists, restored onto a cluster that has
// the networks but lost the rooms and lists, brings back each room's
// configuration, participants and bans (not its history) and every list;
// restoring it again changes nothing.
func TestRestoreStateRoomsAndLists(t *testing.T) {
	saved := savedWithRooms(t)
	snap, err := EncodeSnapshot(saved)
	if err != nil {
		t.Fatal(err)
	}
	file, err := DecodeSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	// The live cluster: same networks, the room deleted, the list gone.
	live, err := roomState(t, append(roomSetup(), roomCmdAt(clock+5, &hubv1.DeleteRoom{Uri: testRoom}))...)
	if err != nil {
		t.Fatal(err)
	}
	c := restoreCmd(file.Proto())
	next, err := ApplyTo(live, live.Index+1, c)
	if err != nil {
		t.Fatal(err)
	}
	r := next.Room(testRoom)
	if r == nil {
		t.Fatal("room not restored")
	}
	if !proto.Equal(roomMembership(r), roomMembership(saved.Room(testRoom))) {
		t.Errorf("room membership:\n got %v\nwant %v", roomMembership(r), roomMembership(saved.Room(testRoom)))
	}
	if len(r.GetHistory()) != 0 || r.GetLastSeq() != 0 || len(r.GetFanouts()) != 0 {
		t.Errorf("a room new to the cluster took the saved history: %v", r)
	}
	if len(next.Lists()) != 2 || !sameList(next.List(testList), saved.List(testList)) {
		t.Errorf("lists not restored: %v", next.Lists())
	}
	want := []string{
		"add room " + testRoom + " (3 participants, 1 bans)",
		"add list sip:alice-buddies@lists.hub.example (1 entries)",
		"add list " + testList + " (2 entries)",
	}
	if got := StateChanges(live, next); !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
	again, err := ApplyTo(next, next.Index+1, restoreCmd(next.Proto()))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again.Proto(), next.Proto()) {
		t.Error("restoring the restored state changed it")
	}
}

// Restoring over existing rooms and lists replaces their membership,
// keeps the room's history and sequence, moves a changed list's revision
// above both, and describes each change.
func TestRestoreStateReplacesRoomsAndLists(t *testing.T) {
	live := savedWithRooms(t)
	saved := live.Proto()
	rm := saved.Rooms[0]
	rm.Subject, rm.Moderated = "Renamed", true
	rm.Members = slices.DeleteFunc(rm.Members, func(m *hubv1.RoomMember) bool { return m.GetUser() == "sip:carol@b.example" })
	rm.Members[1].Role = hubv1.RoomRole_ROOM_ROLE_MODERATOR // bob
	rm.Bans = nil
	rm.History, rm.LastSeq = nil, 0 // must not matter
	saved.Rooms = append(saved.Rooms, &hubv1.Room{Uri: "sip:new@rooms.hub.example", Members: []*hubv1.RoomMember{member("sip:bob@b.example", "b", "bob")}})
	saved.Lists = slices.DeleteFunc(saved.Lists, func(l *hubv1.ResourceList) bool { return l.GetOwner() != "" })
	saved.Lists[0].Entries = entries("sip:carol@b.example", "sip:dave@b.example")
	c := restoreCmd(saved)
	next, err := ApplyTo(live, live.Index+1, c)
	if err != nil {
		t.Fatal(err)
	}
	r, old := next.Room(testRoom), live.Room(testRoom)
	if r.GetSubject() != "Renamed" || len(r.GetMembers()) != 2 || len(r.GetBans()) != 0 || r.GetUpdatedUnixNano() != c.GetTimeUnixNano() {
		t.Errorf("room after restore: %v", r)
	}
	if r.GetLastSeq() != old.GetLastSeq() || len(r.GetHistory()) != len(old.GetHistory()) || !slices.EqualFunc(r.GetFanouts(), old.GetFanouts(), func(a, b *hubv1.RoomFanout) bool { return proto.Equal(a, b) }) {
		t.Errorf("history/fan-outs not kept: seq %d, %d messages", r.GetLastSeq(), len(r.GetHistory()))
	}
	l, ol := next.List(testList), live.List(testList)
	if l.GetRevision() <= ol.GetRevision() || l.GetCreatedUnixNano() != ol.GetCreatedUnixNano() {
		t.Errorf("list revision %d (was %d), created %d (was %d)", l.GetRevision(), ol.GetRevision(), l.GetCreatedUnixNano(), ol.GetCreatedUnixNano())
	}
	want := []string{
		"add room sip:new@rooms.hub.example (1 participants, 0 bans)",
		"update room " + testRoom + ": subject, moderated, ~participant sip:bob@b.example, -participant sip:carol@b.example, -ban sip:mallory@b.example",
		"remove list sip:alice-buddies@lists.hub.example",
		"update list " + testList + ": +entry sip:dave@b.example, -entry sip:bob@b.example",
	}
	if got := StateChanges(live, next); !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
	// Every replica computes the same bytes.
	a, _ := EncodeSnapshot(next)
	again, _ := ApplyTo(live, live.Index+1, c)
	b, _ := EncodeSnapshot(again)
	if string(a) != string(b) {
		t.Error("RestoreState is not deterministic")
	}
	// A saved state without rooms or lists removes them.
	saved.Rooms, saved.Lists = nil, nil
	empty, err := ApplyTo(live, live.Index+1, restoreCmd(saved))
	if err != nil {
		t.Fatal(err)
	}
	if len(empty.Rooms()) != 0 || len(empty.Lists()) != 0 {
		t.Errorf("rooms/lists left: %v %v", empty.Rooms(), empty.Lists())
	}
	if got := StateChanges(live, empty); !slices.Contains(got, "remove room "+testRoom+" (and its history of 1 messages)") {
		t.Errorf("changes %q", got)
	}
}

// CheckCommand refuses restored rooms and lists that their own commands
// would refuse, naming the field.
func TestRestoreStateCheckRoomsAndLists(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(cs *hubv1.ClusterState)
		want   error
		inErr  string
	}{
		{"room uri", func(cs *hubv1.ClusterState) { cs.Rooms[0].Uri = "sip:Team@rooms.hub.example" }, ErrInvalid, "rooms[0].uri"},
		{"room twice", func(cs *hubv1.ClusterState) { cs.Rooms = append(cs.Rooms, cs.Rooms[0]) }, ErrAlreadyExists, "rooms[1]: room " + testRoom + " twice"},
		{"room in member domain", func(cs *hubv1.ClusterState) { cs.Rooms[0].Uri = "sip:team@a.example" }, ErrInvalid, "belongs to member network a"},
		{"subject control", func(cs *hubv1.ClusterState) { cs.Rooms[0].Subject = "a\x07" }, ErrInvalid, "rooms[0].subject"},
		{"owner", func(cs *hubv1.ClusterState) { cs.Rooms[0].Owner = "alice" }, ErrInvalid, "rooms[0].owner"},
		{"max members", func(cs *hubv1.ClusterState) { cs.Rooms[0].MaxMembers = MaxRoomMembers + 1 }, ErrInvalid, "rooms[0].max_members"},
		{"history len", func(cs *hubv1.ClusterState) { cs.Rooms[0].HistoryLen = MaxRoomHistory + 1 }, ErrInvalid, "rooms[0].history_len"},
		{"room network", func(cs *hubv1.ClusterState) { cs.Rooms[0].Networks = []string{"A"} }, ErrInvalid, "rooms[0].networks[0]"},
		{"too many members", func(cs *hubv1.ClusterState) { cs.Rooms[0].MaxMembers = 2 }, ErrInvalid, "rooms[0].members"},
		{"member twice", func(cs *hubv1.ClusterState) {
			cs.Rooms[0].Members = append(cs.Rooms[0].Members, member("sip:alice@a.example", "a", "al"))
		}, ErrInvalid, "members[3].user"},
		{"nick taken", func(cs *hubv1.ClusterState) { cs.Rooms[0].Members[1].Nickname = "ALICE" }, ErrInvalid, "members[1].nickname"},
		{"bad nick", func(cs *hubv1.ClusterState) { cs.Rooms[0].Members[1].Nickname = "b o b" }, ErrInvalid, "members[1].nickname"},
		{"member not admitted", func(cs *hubv1.ClusterState) { cs.Rooms[0].Networks = []string{"a"} }, ErrInvalid, "members[1].network"},
		{"bad role", func(cs *hubv1.ClusterState) { cs.Rooms[0].Members[0].Role = 42 }, ErrInvalid, "members[0].role"},
		{"banned member", func(cs *hubv1.ClusterState) {
			cs.Rooms[0].Bans = append(cs.Rooms[0].Bans, &hubv1.RoomBan{Pattern: "network:b"})
		}, ErrInvalid, "banned from the room (network:b)"},
		{"bad ban", func(cs *hubv1.ClusterState) { cs.Rooms[0].Bans[0].Pattern = "*@B.example" }, ErrInvalid, "bans[0].pattern"},
		{"ban twice", func(cs *hubv1.ClusterState) { cs.Rooms[0].Bans = append(cs.Rooms[0].Bans, cs.Rooms[0].Bans[0]) }, ErrInvalid, "banned twice"},
		{"list uri", func(cs *hubv1.ClusterState) { cs.Lists[0].Uri = "sip:x@LISTS.hub.example" }, ErrInvalid, "lists[0].uri"},
		{"list twice", func(cs *hubv1.ClusterState) { cs.Lists[1].Uri = cs.Lists[0].Uri }, ErrAlreadyExists, "lists[1]: list"},
		{"list owner", func(cs *hubv1.ClusterState) { cs.Lists[0].Owner = "alice" }, ErrInvalid, "lists[0].owner"},
		{"entry twice", func(cs *hubv1.ClusterState) { cs.Lists[1].Entries = entries("sip:x@b.example", "sip:x@b.example") }, ErrInvalid, "lists[1].entries[1].uri"},
		{"too many entries", func(cs *hubv1.ClusterState) { cs.Lists[1].Entries = manyEntries(MaxListEntries + 1) }, ErrFailedPrecondition, "the most allowed"},
		{"display name", func(cs *hubv1.ClusterState) { cs.Lists[1].DisplayName = "x\x00" }, ErrInvalid, "lists[1].display_name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			live := savedWithRooms(t)
			cs := live.Proto()
			tc.mutate(cs)
			err := CheckCommand(live, restoreCmd(cs))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("CheckCommand = %v, want %v naming %q", err, tc.want, tc.inErr)
			}
		})
	}
}
