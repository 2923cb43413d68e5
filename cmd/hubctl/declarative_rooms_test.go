package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"clearhub/proto/hubv1"
)

const roomURI = "sip:team@rooms.example"

// TestParseRoomsErrors: every problem of a rooms: section names its YAML
// path, and unknown keys are refused.
func TestParseRoomsErrors(t *testing.T) {
	room := "rooms:\n- uri: " + roomURI + "\n"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown key", room + "  history: []\n", "5:3: rooms[0].history: unknown key (valid: uri, subject, owner,"},
		{"uri required", "rooms:\n- subject: x\n", "rooms[0].uri: required"},
		{"bad room name", "rooms:\n- uri: sip:Team!@rooms.example\n", `rooms[0].uri: "sip:Team!@rooms.example": room name`},
		{"duplicate room", room + "- uri: sip:TEAM@rooms.example\n", `rooms[1].uri: "sip:team@rooms.example": duplicate of rooms[0]`},
		{"bad role", room + "  participants:\n  - {uri: bob@b.example, role: boss}\n", `rooms[0].participants[0].role: "boss": want owner, moderator, member or visitor`},
		{"third participant's role", room + "  participants:\n  - {uri: a@a.example}\n  - {uri: b@a.example}\n  - {uri: c@a.example, role: 7}\n", "rooms[0].participants[2].role: want a string"},
		{"participant twice", room + "  participants:\n  - {uri: bob@b.example}\n  - {uri: sip:bob@B.example}\n", `rooms[0].participants[1].uri: "sip:bob@b.example": also rooms[0].participants[0]`},
		{"nickname taken", room + "  participants:\n  - {uri: bob@b.example, nickname: Bob}\n  - {uri: rob@b.example, nickname: bob}\n", `rooms[0].participants[1].nickname: "bob": taken by rooms[0].participants[0]`},
		{"bad nickname", room + "  participants:\n  - {uri: bob@b.example, nickname: \"b b\"}\n", `rooms[0].participants[0].nickname: "b b": only letters`},
		{"max_members too big", room + "  max_members: 99999\n", "rooms[0].max_members: 99999: want a whole number, at most 5000"},
		{"bad network id", room + "  networks: [Net_A]\n", `rooms[0].networks[0]: "Net_A": not a network id`},
		{"bad ban", room + "  bans:\n  - {pattern: \"*@\"}\n", `rooms[0].bans[0].pattern: "*@"`},
		{"ban covers a participant", room + "  participants:\n  - {uri: bob@b.example}\n  bans:\n  - {pattern: \"*@B.example\"}\n",
			`rooms[0].bans[0].pattern: "*@b.example" bans sip:bob@b.example, a participant of the same room (rooms[0].participants[0])`},
		{"network ban covers a participant", "networks:\n" + yamlNet("b") + room + "  participants:\n  - {uri: bob@b.example}\n  bans:\n  - {pattern: \"network:b\"}\n",
			`bans sip:bob@b.example, a participant of the same room`},
		{"history is not a key", room + "  last_seq: 3\n", "rooms[0].last_seq: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDocument("f.yaml", []byte(docHeader+tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func storedRoom(mod func(r *hubv1.Room)) *hubv1.Room {
	r := &hubv1.Room{Uri: roomURI, Subject: "Team", Owner: "sip:alice@a.example", Networks: []string{"a", "b"},
		Members: []*hubv1.RoomMember{
			{User: "sip:alice@a.example", Network: "a", Role: hubv1.RoomRole_ROOM_ROLE_OWNER, Nickname: "alice", State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED},
			{User: "sip:bob@b.example", Network: "b", Role: hubv1.RoomRole_ROOM_ROLE_MEMBER, Nickname: "bob", State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_JOINED},
		},
		Bans:    []*hubv1.RoomBan{{Pattern: "sip:mallory@b.example", Reason: "spam", By: "CN=op", UnixNano: 5}},
		History: []*hubv1.RoomMessage{{Seq: 1, Sender: "sip:bob@b.example", Body: []byte("hi")}}, LastSeq: 1,
		CreatedUnixNano: 100, UpdatedUnixNano: 200}
	if mod != nil {
		mod(r)
	}
	return r
}

// yamlRoom is storedRoom as the file has it, with extra lines appended to
// the room.
const yamlRoom = "rooms:\n- uri: " + roomURI + "\n  subject: Team\n  owner: sip:alice@a.example\n  networks: [a, b]\n" +
	"  participants:\n  - {uri: sip:alice@a.example, nickname: alice, role: owner}\n  - {uri: sip:bob@b.example, nickname: bob, role: member}\n" +
	"  bans:\n  - {pattern: sip:mallory@b.example, reason: spam}\n"

// TestPlanRooms: creation with participants and bans, role changes, kept
// and pruned participants, bans and rooms, a document without rooms: that
// leaves them alone, settings and nickname edits as UpdateRoom and
// SetRoomMember, changes RoomService cannot make refused with the YAML
// path; the steps, replayed with the hub's checks, reach the file's
// state.
func TestPlanRooms(t *testing.T) {
	nets := []*hubv1.Network{stored("a", nil), stored("b", nil)}
	tests := []struct {
		name      string
		cur       []*hubv1.Room
		doc       string
		prune     bool
		wantSteps []string
		wantDiff  []string
		wantErr   string
	}{
		{
			name: "create",
			doc:  yamlRoom,
			wantSteps: []string{"create room " + roomURI, "room " + roomURI + ": add sip:bob@b.example",
				"room " + roomURI + ": ban sip:mallory@b.example"},
			wantDiff: []string{"+ room " + roomURI, `+     subject: "Team"`, "+     networks: [a, b]",
				"+     participant: sip:alice@a.example nickname alice, owner", "+     participant: sip:bob@b.example nickname bob, member",
				`+     ban: sip:mallory@b.example ("spam")`, "rooms: 1 to add, 0 to change, 0 to remove (3 calls)"},
		},
		{
			name:      "same room: no change (history is not compared)",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       yamlRoom,
			wantSteps: nil,
			wantDiff:  []string{"no changes"},
		},
		{
			name: "owner with its own nickname in a new room: re-added",
			doc:  strings.Replace(yamlRoom, "nickname: alice", "nickname: Boss", 1),
			wantSteps: []string{"create room " + roomURI, "room " + roomURI + ": remove sip:alice@a.example", "room " + roomURI + ": add sip:alice@a.example",
				"room " + roomURI + ": add sip:bob@b.example", "room " + roomURI + ": ban sip:mallory@b.example"},
		},
		{
			name: "role, new participant, unban with --prune, new ban",
			cur:  []*hubv1.Room{storedRoom(nil)},
			doc: strings.Replace(strings.Replace(yamlRoom, "role: member}", "role: moderator}\n  - {uri: carol@a.example, invited: true, cpim: true}", 1),
				"{pattern: sip:mallory@b.example, reason: spam}", "{pattern: \"*@c.example\"}", 1),
			prune: true,
			wantSteps: []string{"room " + roomURI + ": unban sip:mallory@b.example", "room " + roomURI + ": add sip:carol@a.example",
				"room " + roomURI + ": sip:bob@b.example is moderator", "room " + roomURI + ": ban *@c.example"},
			wantDiff: []string{"~ room " + roomURI, "~     participant sip:bob@b.example: role member -> moderator",
				"+     participant: sip:carol@a.example nickname carol, member, invited, cpim", "-     ban: sip:mallory@b.example", "+     ban: *@c.example",
				"rooms: 0 to add, 1 to change, 0 to remove (4 calls)"},
		},
		{
			name:     "participant and ban not in the file: kept without --prune",
			cur:      []*hubv1.Room{storedRoom(nil)},
			doc:      strings.Replace(strings.Replace(yamlRoom, "  - {uri: sip:bob@b.example, nickname: bob, role: member}\n", "", 1), "  - {pattern: sip:mallory@b.example, reason: spam}\n", "", 1),
			wantDiff: []string{"# room " + roomURI + ": participant sip:bob@b.example is not in the file: kept (apply --prune removes it)", "# room " + roomURI + ": ban sip:mallory@b.example is not in the file: kept", "no changes"},
		},
		{
			name:      "participant not in the file: removed with --prune",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       strings.Replace(yamlRoom, "  - {uri: sip:bob@b.example, nickname: bob, role: member}\n", "", 1),
			prune:     true,
			wantSteps: []string{"room " + roomURI + ": remove sip:bob@b.example"},
			wantDiff:  []string{"~ room " + roomURI, "-     participant: sip:bob@b.example nickname bob, member"},
		},
		{
			name:      "ban reason changed",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       strings.Replace(yamlRoom, "reason: spam", "reason: abuse", 1),
			wantSteps: []string{"room " + roomURI + ": ban sip:mallory@b.example"},
			wantDiff:  []string{`~     ban sip:mallory@b.example: reason "spam" -> "abuse"`},
		},
		{
			name:     "room not in the file: kept",
			cur:      []*hubv1.Room{storedRoom(nil)},
			doc:      "rooms: []\n",
			wantDiff: []string{"# room " + roomURI + " is in the cluster but not in the file: kept (apply --prune deletes it with its history)", "no changes"},
		},
		{
			name:      "room not in the file: deleted with --prune, last",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       "lists:\n- uri: sip:l@lists.example\nrooms: []\n",
			prune:     true,
			wantSteps: []string{"create list sip:l@lists.example", "delete room " + roomURI},
			wantDiff:  []string{"- room " + roomURI, "rooms: 0 to add, 0 to change, 1 to remove (2 calls)"},
		},
		{
			name:      "no rooms key: rooms untouched even with --prune",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       "lists: []\n",
			prune:     true,
			wantDiff:  []string{"no changes"},
			wantSteps: nil,
		},
		{
			name:      "settings of an existing room: one UpdateRoom",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       strings.Replace(strings.Replace(yamlRoom, "subject: Team", "subject: Other\n  moderated: true\n  history_len: 50", 1), "networks: [a, b]", "networks: [a]", 1),
			wantSteps: []string{"update room " + roomURI},
			wantDiff:  []string{`~     subject: "Team" -> "Other"`, "~     moderated: false -> true", "~     history_len: 0 -> 50", "~     networks: [a, b] -> [a]"},
		},
		{
			name:      "nickname of an existing participant: one SetRoomMember",
			cur:       []*hubv1.Room{storedRoom(nil)},
			doc:       strings.Replace(yamlRoom, "nickname: bob, role: member", "nickname: bobby, role: moderator, cpim: true", 1),
			wantSteps: []string{"room " + roomURI + ": set sip:bob@b.example"},
			wantDiff:  []string{"~     participant sip:bob@b.example nickname bob, member -> sip:bob@b.example nickname bobby, moderator, cpim"},
		},
		{
			name:    "the owner of an existing room: refused with its path",
			cur:     []*hubv1.Room{storedRoom(nil)},
			doc:     strings.Replace(yamlRoom, "owner: sip:alice@a.example\n", "owner: sip:bob@b.example\n", 1),
			wantErr: "rooms[0].owner: sip:alice@a.example -> sip:bob@b.example: RoomService has no call that changes an existing room's owner",
		},
		{
			name:    "history length back to the default: refused",
			cur:     []*hubv1.Room{storedRoom(func(r *hubv1.Room) { r.HistoryLen = 5 })},
			doc:     yamlRoom,
			wantErr: "rooms[0].history_len: 5 -> 0: 0 means the default",
		},
		{
			name:    "an invitation of an existing participant: refused with its path",
			cur:     []*hubv1.Room{storedRoom(nil)},
			doc:     strings.Replace(yamlRoom, "nickname: bob, role: member", "nickname: bob, role: member, invited: true", 1),
			wantErr: "rooms[0].participants[1]: sip:bob@b.example nickname bob, member -> sip:bob@b.example nickname bob, member, invited: RoomService has no call that changes a participant's invitation",
		},
		{
			name:    "a participant no network owns: refused by the hub's checks",
			doc:     strings.Replace(yamlRoom, "sip:bob@b.example, nickname: bob", "sip:bob@nowhere.example, nickname: bob", 1),
			wantErr: "room " + roomURI + ": add sip:bob@nowhere.example would be refused by the hub: no member network owns the domain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := parseDocument("f.yaml", []byte(docHeader+tt.doc))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			cs := &hubv1.ClusterState{Networks: nets, Rooms: tt.cur}
			// The file's networks: a and b as the cluster has them.
			want.index = map[string]int{"a": -1, "b": -1}
			pl, err := planCluster(cs, want, tt.prune)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range pl.steps {
				got = append(got, s.String())
			}
			if diff := cmp.Diff(tt.wantSteps, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			var b bytes.Buffer
			writeDiff(&b, pl)
			text := b.String()
			at := 0
			for _, w := range tt.wantDiff {
				i := strings.Index(text[at:], w)
				if i < 0 {
					t.Errorf("diff lacks %q (in this order):\n%s", w, text)
					break
				}
				at += i + len(w)
			}
			end, err := simulateCluster(cs, pl.steps)
			if err != nil {
				t.Fatal(err)
			}
			again, err := planCluster(&hubv1.ClusterState{Networks: end.Networks(), Policies: end.Policies(), Lists: end.Lists(), Rooms: end.Rooms()}, want, tt.prune)
			if err != nil {
				t.Fatal(err)
			}
			if !again.empty() {
				var b bytes.Buffer
				writeDiff(&b, again)
				t.Errorf("after the steps the cluster still differs:\n%s", b.String())
			}
		})
	}
}

// FuzzParseDocumentRooms: whatever the rooms: section holds, parsing does
// not panic, and an accepted document exports to one that parses to the
// same rooms.
func FuzzParseDocumentRooms(f *testing.F) {
	f.Add([]byte(docHeader + yamlRoom))
	f.Add([]byte(docHeader + "rooms: [null, {uri: null}, {participants: [null, {}], bans: [{}]}]\n"))
	f.Add([]byte(docHeader + "rooms:\n- uri: sip:x@r.example\n  max_members: 1.5\n  participants: [{uri: \"@\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, err := parseDocument("fuzz", data)
		if err != nil {
			return
		}
		var rooms []*hubv1.Room
		for _, w := range want.rooms {
			r := &hubv1.Room{Uri: w.room.GetUri(), Subject: w.room.GetSubject(), Owner: w.room.GetOwner(), MembersOnly: w.room.GetMembersOnly(),
				Moderated: w.room.GetModerated(), MaxMembers: w.room.GetMaxMembers(), HistoryLen: w.room.GetHistoryLen(), Networks: w.room.GetNetworks(),
				Members: w.members, Bans: w.bans}
			rooms = append(rooms, r)
		}
		d := exportDoc(nil, nil)
		d.Rooms = exportRooms(rooms)
		j, err := toJSON(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseDocument("again", j)
		if err != nil {
			t.Fatalf("export of accepted rooms does not parse: %v\n%s", err, j)
		}
		if len(again.rooms) != len(want.rooms) {
			t.Fatalf("%d rooms, then %d", len(want.rooms), len(again.rooms))
		}
		for i := range want.rooms {
			a, b := want.rooms[i], again.rooms[i]
			if diff := cmp.Diff(exportRooms(rooms[i:i+1]), exportRooms([]*hubv1.Room{{Uri: b.room.GetUri(), Subject: b.room.GetSubject(), Owner: b.room.GetOwner(),
				MembersOnly: b.room.GetMembersOnly(), Moderated: b.room.GetModerated(), MaxMembers: b.room.GetMaxMembers(), HistoryLen: b.room.GetHistoryLen(),
				Networks: b.room.GetNetworks(), Members: b.members, Bans: b.bans}})); diff != "" {
				t.Fatalf("room %d (%s) changed:\n%s", i, a.path, diff)
			}
		}
	})
}
