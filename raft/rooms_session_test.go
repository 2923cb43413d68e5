package raft

import (
	"testing"

	"clearhub/proto/hubv1"
)

// Session-mode participants (RFC 7701): left out of pager fan-outs, and
// while a room has any, its history keeps at least SessionWindow messages
// (their node delivers from it), also across a settings change.
func TestRoomSessionParticipants(t *testing.T) {
	cmds := append(roomSetup(),
		roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, HistoryLen: 2}}),
		roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: &hubv1.RoomMember{User: "sip:bob@b.example", Network: "b", Nickname: "bob", SessionNode: "n2"}}))
	for range 5 {
		cmds = append(cmds, roomCmdAt(clock, post("sip:alice@a.example", "x")))
	}
	s, err := roomState(t, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Room(testRoom)
	for _, f := range r.GetFanouts() {
		for _, u := range f.GetRecipients() {
			if u == "sip:bob@b.example" {
				t.Fatalf("session participant in a pager fan-out: %v", f)
			}
		}
	}
	if len(r.GetHistory()) != 5 {
		t.Fatalf("history %d, want all 5 kept for the session node", len(r.GetHistory()))
	}
	if len(RoomRecent(r)) != 2 {
		t.Fatalf("recent %d, want the room's 2", len(RoomRecent(r)))
	}
	s, err = ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, HistoryLen: 2, Subject: "new"}}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Room(testRoom).GetHistory()); n != 5 {
		t.Fatalf("a settings change trimmed the history to %d", n)
	}
	if _, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom,
		Member: &hubv1.RoomMember{User: "sip:bob@b.example", Network: "b", Nickname: "bob", SessionNode: "not a node id!"}})); err == nil {
		t.Fatal("a bad session_node was accepted")
	}
}
