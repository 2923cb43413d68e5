package raft

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"clearhub/proto/hubv1"
)

// Fan-out progress with an acked set (recipients beyond the cursor whose
// copy has its final answer): the new owner after a takeover skips them, so
// a slow recipient holding the cursor back no longer makes every faster
// copy after it go out twice.
func TestRoomFanoutAcked(t *testing.T) {
	// Five recipients: bob, carol, u1..u3 (sender alice excluded).
	setup := append(roomSetup(),
		roomCmdAt(clock+3, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:u1@b.example", "b", "u1"), Create: true}),
		roomCmdAt(clock+4, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:u2@b.example", "b", "u2"), Create: true}),
		roomCmdAt(clock+5, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:u3@b.example", "b", "u3"), Create: true}),
		roomCmdAt(clock+6, post("sip:alice@a.example", "1")))
	prog := func(owner string, done uint32, acked ...uint32) *hubv1.Command {
		return roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: owner, Done: done, Acked: acked})
	}
	tests := []struct {
		name      string
		cmds      []*hubv1.Command
		err       error
		done      uint32
		acked     []uint32
		finished  bool
		wantOwner string
	}{
		{name: "acked beyond a slow first recipient", cmds: []*hubv1.Command{prog("n1", 0, 1, 2, 4)}, done: 0, acked: []uint32{1, 2, 4}},
		{name: "cursor passes acked ones", cmds: []*hubv1.Command{prog("n1", 0, 1, 2, 4), prog("n1", 3, 4)}, done: 3, acked: []uint32{4}},
		{name: "cursor stopping on an acked one folds over it", cmds: []*hubv1.Command{prog("n1", 0, 1, 2, 4), prog("n1", 1, 2, 4)}, done: 3, acked: []uint32{4}},
		{name: "acked survive a claim", cmds: []*hubv1.Command{prog("n1", 0, 2, 3),
			roomCmdAt(clock, &hubv1.ClaimRoomFanout{Room: testRoom, Seq: 1, Owner: "n2", PreviousOwner: "n1"})}, done: 0, acked: []uint32{2, 3}, wantOwner: "n2"},
		{name: "all acked finishes", cmds: []*hubv1.Command{prog("n1", 0, 1, 2, 3, 4), prog("n1", 1, 2, 3, 4)}, finished: true},
		{name: "un-acking refused", cmds: []*hubv1.Command{prog("n1", 0, 2, 3), prog("n1", 1, 3)}, err: ErrInvalid},
		{name: "unsorted refused", cmds: []*hubv1.Command{prog("n1", 0, 3, 2)}, err: ErrInvalid},
		{name: "acked at the cursor refused", cmds: []*hubv1.Command{prog("n1", 2, 2)}, err: ErrInvalid},
		{name: "acked out of range refused", cmds: []*hubv1.Command{prog("n1", 0, 5)}, err: ErrInvalid},
		{name: "no change refused", cmds: []*hubv1.Command{prog("n1", 0, 2), prog("n1", 0, 2)}, err: ErrInvalid},
		{name: "cursor backwards refused", cmds: []*hubv1.Command{prog("n1", 2), prog("n1", 1, 3)}, err: ErrInvalid},
		{name: "foreign owner refused", cmds: []*hubv1.Command{prog("n2", 0, 1)}, err: ErrFailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := roomState(t, append(slices.Clone(setup), tc.cmds...)...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := RoomFanoutFor(s.Room(testRoom), 1)
			if tc.finished {
				if f != nil {
					t.Fatalf("fan-out not finished: %v", f)
				}
				return
			}
			if f == nil || f.GetDone() != tc.done || fmt.Sprint(f.GetAcked()) != fmt.Sprint(tc.acked) {
				t.Fatalf("fan-out = %v, want done %d acked %v", f, tc.done, tc.acked)
			}
			if tc.wantOwner != "" && f.GetOwner() != tc.wantOwner {
				t.Fatalf("owner = %q", f.GetOwner())
			}
			if len(f.GetRecipients()) != 5 {
				t.Fatalf("recipients = %v", f.GetRecipients())
			}
		})
	}
}
