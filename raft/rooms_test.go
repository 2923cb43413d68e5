package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func roomCmdAt(t int64, op any) *hubv1.Command {
	c := &hubv1.Command{Version: 1, TimeUnixNano: t, Actor: "test"}
	switch op := op.(type) {
	case *hubv1.PutRoom:
		c.Op = &hubv1.Command_PutRoom{PutRoom: op}
	case *hubv1.DeleteRoom:
		c.Op = &hubv1.Command_DeleteRoom{DeleteRoom: op}
	case *hubv1.PutRoomMember:
		c.Op = &hubv1.Command_PutRoomMember{PutRoomMember: op}
	case *hubv1.RemoveRoomMember:
		c.Op = &hubv1.Command_RemoveRoomMember{RemoveRoomMember: op}
	case *hubv1.BanRoom:
		c.Op = &hubv1.Command_BanRoom{BanRoom: op}
	case *hubv1.UnbanRoom:
		c.Op = &hubv1.Command_UnbanRoom{UnbanRoom: op}
	case *hubv1.PostRoomMessage:
		c.Op = &hubv1.Command_PostRoomMessage{PostRoomMessage: op}
	case *hubv1.RoomFanoutProgress:
		c.Op = &hubv1.Command_RoomFanoutProgress{RoomFanoutProgress: op}
	case *hubv1.ClaimRoomFanout:
		c.Op = &hubv1.Command_ClaimRoomFanout{ClaimRoomFanout: op}
	default:
		return cmdAt(t, op)
	}
	return c
}

const testRoom = "sip:team@rooms.hub.example"

func member(user, network, nick string) *hubv1.RoomMember {
	return &hubv1.RoomMember{User: user, Network: network, Nickname: nick}
}

func post(sender, body string) *hubv1.PostRoomMessage {
	return &hubv1.PostRoomMessage{Room: testRoom, Owner: "n1", Message: &hubv1.RoomMessage{Sender: sender, ContentType: "text/plain", Body: []byte(body)}}
}

// roomState applies cmds in order from the empty state, failing on the
// first error unless it is the last command.
func roomState(t *testing.T, cmds ...*hubv1.Command) (*State, error) {
	t.Helper()
	s := Empty()
	for i, c := range cmds {
		next, err := ApplyTo(s, uint64(i+1), c)
		if err != nil {
			if i == len(cmds)-1 {
				return s, err
			}
			t.Fatalf("command %d (%T): %v", i, c.GetOp(), err)
		}
		s = next
	}
	return s, nil
}

func roomSetup() []*hubv1.Command {
	return []*hubv1.Command{
		addNet("a"), addNet("b"),
		roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: testRoom, Subject: "Team"},
			FirstMember: &hubv1.RoomMember{User: "sip:alice@a.example", Network: "a", Nickname: "alice", Role: hubv1.RoomRole_ROOM_ROLE_OWNER}}),
		roomCmdAt(clock+1, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:bob@b.example", "b", "bob"), Create: true}),
		roomCmdAt(clock+2, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:carol@b.example", "b", "carol"), Create: true}),
	}
}

func TestRoomCommands(t *testing.T) {
	tests := []struct {
		name  string
		cmds  []*hubv1.Command
		err   error // wrapped by the last command's error, nil: success
		check func(t *testing.T, s *State)
	}{
		{name: "setup", check: func(t *testing.T, s *State) {
			r := s.Room(testRoom)
			if len(r.GetMembers()) != 3 || r.GetMembers()[0].GetUser() != "sip:alice@a.example" || r.GetCreatedUnixNano() != clock {
				t.Fatalf("room = %v", r)
			}
		}},
		{name: "create twice", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: testRoom}})}, err: ErrAlreadyExists},
		{name: "non-canonical uri", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: "sip:Team@rooms.hub.example"}})}, err: ErrInvalid},
		{name: "room in a member domain", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: "sip:x@a.example"}})}, err: ErrInvalid},
		{name: "update keeps members", cmds: []*hubv1.Command{roomCmdAt(clock+9, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, Subject: "New", Moderated: true}})}, check: func(t *testing.T, s *State) {
			r := s.Room(testRoom)
			if r.GetSubject() != "New" || !r.GetModerated() || len(r.GetMembers()) != 3 || r.GetUpdatedUnixNano() != clock+9 {
				t.Fatalf("room = %v", r)
			}
		}},
		{name: "nickname taken case-folded", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:bob@a.example", "a", "BOB")})}, err: ErrAlreadyExists},
		{name: "bad nickname", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:dave@a.example", "a", "da ve")})}, err: ErrInvalid},
		{name: "join twice with create", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:bob@b.example", "b", "bob"), Create: true})}, err: ErrAlreadyExists},
		{name: "unknown network", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:x@c.example", "c", "x")})}, err: ErrNotFound},
		{name: "room full", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, MaxMembers: 3}}),
			roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:dave@a.example", "a", "dave")}),
		}, err: ErrFailedPrecondition},
		{name: "network not admitted", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, Networks: []string{"a"}}}),
			roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:dave@b.example", "b", "dave")}),
		}, err: ErrFailedPrecondition},
		{name: "role change keeps join time", cmds: []*hubv1.Command{
			roomCmdAt(clock+50, &hubv1.PutRoomMember{Room: testRoom, Member: &hubv1.RoomMember{User: "sip:bob@b.example", Network: "b", Nickname: "bobby", Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR}}),
		}, check: func(t *testing.T, s *State) {
			m := RoomMember(s.Room(testRoom), "sip:bob@b.example")
			if RoleOf(m) != hubv1.RoomRole_ROOM_ROLE_MODERATOR || m.GetNickname() != "bobby" || m.GetJoinedUnixNano() != clock+1 {
				t.Fatalf("member = %v", m)
			}
		}},
		{name: "remove", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.RemoveRoomMember{Room: testRoom, User: "sip:bob@b.example"})}, check: func(t *testing.T, s *State) {
			if RoomMember(s.Room(testRoom), "sip:bob@b.example") != nil || len(s.Room(testRoom).GetMembers()) != 2 {
				t.Fatal("bob still in the room")
			}
		}},
		{name: "remove absent", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.RemoveRoomMember{Room: testRoom, User: "sip:zed@b.example"})}, err: ErrNotFound},
		{name: "ban domain evicts and refuses", cmds: []*hubv1.Command{
			roomCmdAt(clock+7, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "*@b.example", Reason: "spam"}}),
		}, check: func(t *testing.T, s *State) {
			r := s.Room(testRoom)
			if len(r.GetMembers()) != 1 || len(r.GetBans()) != 1 || r.GetBans()[0].GetBy() != "test" || r.GetBans()[0].GetUnixNano() != clock+7 {
				t.Fatalf("room = %v", r)
			}
			if _, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:bob@b.example", "b", "bob")})); !errors.Is(err, ErrFailedPrecondition) {
				t.Fatalf("banned join: %v", err)
			}
		}},
		{name: "ban network then unban", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "network:b"}}),
			roomCmdAt(clock, &hubv1.UnbanRoom{Room: testRoom, Pattern: "network:b"}),
			roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:bob@b.example", "b", "bob")}),
		}, check: func(t *testing.T, s *State) {
			if len(s.Room(testRoom).GetMembers()) != 2 || len(s.Room(testRoom).GetBans()) != 0 {
				t.Fatalf("room = %v", s.Room(testRoom))
			}
		}},
		{name: "bad ban pattern", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "bob"}})}, err: ErrInvalid},
		{name: "unban absent", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.UnbanRoom{Room: testRoom, Pattern: "*@x.example"})}, err: ErrNotFound},
		{name: "suspension evicts", cmds: []*hubv1.Command{
			cmd(&hubv1.SetNetworkStatus{Id: "b", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED}),
		}, check: func(t *testing.T, s *State) {
			if ms := s.Room(testRoom).GetMembers(); len(ms) != 1 || ms[0].GetNetwork() != "a" {
				t.Fatalf("members after suspending b = %v", ms)
			}
		}},
		{name: "removal evicts", cmds: []*hubv1.Command{cmd(&hubv1.RemoveNetwork{Id: "a"})}, check: func(t *testing.T, s *State) {
			if ms := s.Room(testRoom).GetMembers(); len(ms) != 2 {
				t.Fatalf("members after removing a = %v", ms)
			}
		}},
		{name: "post orders and fans out", cmds: []*hubv1.Command{
			roomCmdAt(clock+100, post("sip:bob@b.example", "one")),
			roomCmdAt(clock+101, post("sip:alice@a.example", "two")),
		}, check: func(t *testing.T, s *State) {
			r := s.Room(testRoom)
			if r.GetLastSeq() != 2 || len(r.GetHistory()) != 2 {
				t.Fatalf("room = %v", r)
			}
			h := r.GetHistory()[1]
			if h.GetSeq() != 2 || h.GetNickname() != "alice" || h.GetNetwork() != "a" || h.GetUnixNano() != clock+101 || h.GetRaftIndex() != s.Index || string(h.GetBody()) != "two" {
				t.Fatalf("message = %v", h)
			}
			f := RoomFanoutFor(r, 1)
			if f == nil || f.GetOwner() != "n1" || fmt.Sprint(f.GetRecipients()) != "[sip:alice@a.example sip:carol@b.example]" {
				t.Fatalf("fan-out 1 = %v", f)
			}
			if RoomMessageAt(r, s.Index) != h {
				t.Fatal("RoomMessageAt does not find the message by index")
			}
		}},
		{name: "a sender's retransmission is not posted twice", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PostRoomMessage{Room: testRoom, Owner: "n1", Message: &hubv1.RoomMessage{Sender: "sip:bob@b.example", ContentType: "text/plain", CallId: "c1@b"}}),
			roomCmdAt(clock, &hubv1.PostRoomMessage{Room: testRoom, Owner: "n2", Message: &hubv1.RoomMessage{Sender: "sip:bob@b.example", ContentType: "text/plain", CallId: "c1@b"}}),
		}, err: ErrAlreadyExists},
		{name: "non-member may not post", cmds: []*hubv1.Command{roomCmdAt(clock, post("sip:zed@a.example", "x"))}, err: ErrFailedPrecondition},
		{name: "visitor in moderated room may not post", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, Moderated: true}}),
			roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: &hubv1.RoomMember{User: "sip:bob@b.example", Network: "b", Nickname: "bob", Role: hubv1.RoomRole_ROOM_ROLE_VISITOR}}),
			roomCmdAt(clock, post("sip:bob@b.example", "x")),
		}, err: ErrFailedPrecondition},
		{name: "invited may not post", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: &hubv1.RoomMember{User: "sip:dave@a.example", Network: "a", Nickname: "dave", State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED}}),
			roomCmdAt(clock, post("sip:dave@a.example", "x")),
		}, err: ErrFailedPrecondition},
		{name: "body too big", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.PostRoomMessage{Room: testRoom, Owner: "n1", Message: &hubv1.RoomMessage{Sender: "sip:bob@b.example", ContentType: "text/plain", Body: make([]byte, MaxRoomBody+1)}})}, err: ErrInvalid},
		{name: "history trimmed", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, HistoryLen: 2}}),
			roomCmdAt(clock, post("sip:bob@b.example", "1")),
			roomCmdAt(clock, post("sip:bob@b.example", "2")),
			roomCmdAt(clock, post("sip:bob@b.example", "3")),
		}, check: func(t *testing.T, s *State) {
			// Undelivered messages stay; the recent view is the last two.
			if h := s.Room(testRoom).GetHistory(); len(h) != 3 {
				t.Fatalf("history with pending fan-outs = %v", h)
			}
			h := RoomRecent(s.Room(testRoom))
			if len(h) != 2 || string(h[0].GetBody()) != "2" || string(h[1].GetBody()) != "3" {
				t.Fatalf("recent history = %v", h)
			}
			for seq := uint64(1); seq <= 3; seq++ {
				next, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: seq, Owner: "n1", Done: 2}))
				if err != nil {
					t.Fatal(err)
				}
				s = next
			}
			next, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, post("sip:bob@b.example", "4")))
			if err != nil {
				t.Fatal(err)
			}
			if h := next.Room(testRoom).GetHistory(); len(h) != 2 || string(h[0].GetBody()) != "3" {
				t.Fatalf("history after delivery = %v", h)
			}
		}},
		{name: "no history keeps only undelivered", cmds: []*hubv1.Command{
			roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, NoHistory: true}}),
			roomCmdAt(clock, post("sip:bob@b.example", "1")),
		}, check: func(t *testing.T, s *State) {
			r := s.Room(testRoom)
			if RoomMessageBySeq(r, 1) == nil || len(RoomRecent(r)) != 0 {
				t.Fatalf("history = %v", r.GetHistory())
			}
		}},
		{name: "fan-out progress, foreign owner, claim", cmds: []*hubv1.Command{
			roomCmdAt(clock, post("sip:bob@b.example", "1")),
			roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 1}),
			roomCmdAt(clock, &hubv1.ClaimRoomFanout{Room: testRoom, Seq: 1, Owner: "n2", PreviousOwner: "n1"}),
		}, check: func(t *testing.T, s *State) {
			f := RoomFanoutFor(s.Room(testRoom), 1)
			if f.GetOwner() != "n2" || f.GetDone() != 1 {
				t.Fatalf("fan-out = %v", f)
			}
			// The old owner's next batch is refused: it learns it lost.
			if _, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 2})); !errors.Is(err, ErrFailedPrecondition) {
				t.Fatalf("progress by old owner: %v", err)
			}
			// A second claimer that read the old owner loses too.
			if _, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.ClaimRoomFanout{Room: testRoom, Seq: 1, Owner: "n3", PreviousOwner: "n1"})); !errors.Is(err, ErrFailedPrecondition) {
				t.Fatalf("second claim: %v", err)
			}
			next, err := ApplyTo(s, s.Index+1, roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n2", Done: 2}))
			if err != nil || len(next.Room(testRoom).GetFanouts()) != 0 {
				t.Fatalf("finishing: %v, %v", err, next.Room(testRoom).GetFanouts())
			}
		}},
		{name: "progress backwards", cmds: []*hubv1.Command{
			roomCmdAt(clock, post("sip:bob@b.example", "1")),
			roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 1}),
			roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 1}),
		}, err: ErrInvalid},
		{name: "delete", cmds: []*hubv1.Command{roomCmdAt(clock, &hubv1.DeleteRoom{Uri: testRoom})}, check: func(t *testing.T, s *State) {
			if s.Room(testRoom) != nil || len(s.Rooms()) != 0 {
				t.Fatal("room still there")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := roomState(t, append(roomSetup(), tc.cmds...)...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// A room command must not change the state it was applied to: readers of
// the previous State (the SIP path) share its slices.
func TestRoomApplyLeavesPreviousStateAlone(t *testing.T) {
	cmds := append(roomSetup(),
		roomCmdAt(clock, &hubv1.PutRoom{Room: &hubv1.Room{Uri: testRoom, HistoryLen: 3}}),
		roomCmdAt(clock, post("sip:bob@b.example", "1")),
		roomCmdAt(clock, post("sip:bob@b.example", "2")))
	s, err := roomState(t, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	before := proto.Clone(s.Proto()).(*hubv1.ClusterState)
	for i, c := range []*hubv1.Command{
		roomCmdAt(clock, post("sip:alice@a.example", "3")),
		roomCmdAt(clock, post("sip:alice@a.example", "4")),
		roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 1}),
		roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member("sip:dave@a.example", "a", "dave")}),
		roomCmdAt(clock, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "sip:carol@b.example"}}),
		roomCmdAt(clock, &hubv1.DeleteRoom{Uri: testRoom}),
	} {
		if _, err := ApplyTo(s, s.Index+1, c); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if !proto.Equal(before, s.Proto()) {
			t.Fatalf("command %d (%T) changed the state it was applied to", i, c.GetOp())
		}
	}
}

// Room state round-trips through a snapshot, and the FSM keeps one order
// for concurrent posts.
func TestRoomSnapshotRestore(t *testing.T) {
	f := NewFSM(discardLogger(), nil)
	cmds := append(roomSetup(),
		roomCmdAt(clock, &hubv1.BanRoom{Room: testRoom, Ban: &hubv1.RoomBan{Pattern: "*@spam.example", Reason: "x"}}),
		roomCmdAt(clock, post("sip:bob@b.example", "hello")),
		roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: 1, Owner: "n1", Done: 1}))
	for i, c := range cmds {
		if res := applyLog(t, f, uint64(i+1), c); res.Err != nil {
			t.Fatalf("command %d: %v", i, res.Err)
		}
	}
	data := snapshotBytes(t, f)
	g := NewFSM(discardLogger(), nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.State().Proto(), g.State().Proto()) {
		t.Fatal("restored room state differs")
	}
	r := g.State().Room(testRoom)
	if len(r.GetHistory()) != 1 || RoomFanoutFor(r, 1).GetDone() != 1 || len(r.GetBans()) != 1 {
		t.Fatalf("restored room = %v", r)
	}
}

func TestNormalizeUserURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@A.Example", "sip:alice@a.example"},
		{"SIP:Alice@a.example", "sip:Alice@a.example"},
		{"sips:bob@b.example", "sip:bob@b.example"},
		{"sip:bob@b.example;transport=tcp", ""},
		{"sip:b<ob@b.example", ""},
		{"@b.example", ""},
		{"bob@", ""},
		{"bob", ""},
	}
	for _, tc := range tests {
		got, err := NormalizeUserURI(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("NormalizeUserURI(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// BenchmarkRoomPostApply is what the FSM spends per room message in a
// 200-participant room with full history: the FSM goroutine's ceiling for
// room traffic. It also reports the command's size in the log.
func BenchmarkRoomPostApply(b *testing.B) {
	s := Empty()
	idx := uint64(0)
	apply := func(c *hubv1.Command) {
		idx++
		next, err := ApplyTo(s, idx, c)
		if err != nil {
			b.Fatal(err)
		}
		s = next
	}
	apply(addNet("a"))
	apply(roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: testRoom}}))
	for i := range 200 {
		apply(roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member(fmt.Sprintf("sip:user%03d@a.example", i), "a", fmt.Sprintf("u%03d", i))}))
	}
	c := roomCmdAt(clock, &hubv1.PostRoomMessage{Room: testRoom, Owner: "n1", Message: &hubv1.RoomMessage{
		Sender: "sip:user007@a.example", ContentType: "text/plain; charset=utf-8", Body: make([]byte, 100), CallId: "a84b4c76e66710@pc33.a.example",
	}})
	data, _ := proto.Marshal(c)
	b.ResetTimer()
	post := c.GetPostRoomMessage().GetMessage()
	n := 0
	for b.Loop() {
		// A new Call-ID each time: a repeated one is a retransmission.
		n++
		post.CallId = fmt.Sprintf("a84b4c76e%06d@pc33.a.example", n)
		apply(c)
		// Keep the fan-out list bounded as the owner would.
		r := s.Room(testRoom)
		apply(roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: r.GetLastSeq(), Owner: "n1", Done: uint32(len(RoomFanoutFor(r, r.GetLastSeq()).GetRecipients()))}))
	}
	b.ReportMetric(float64(len(data)), "log-bytes/msg")
}

// BenchmarkRoomPost3NodeTLS is the replicated log's capacity for room
// messages: 32 concurrent senders (hashicorp/raft batches what arrives
// together) into one 200-participant room on a three-node cluster over the
// real TLS transport with fsync'd bbolt logs. Every op is one message
// committed (durable on a quorum) plus its fan-out completion record.
func BenchmarkRoomPost3NodeTLS(b *testing.B) {
	ca := newTestCA(b, "hub ca")
	ctx := context.Background()
	var nodes []*Node
	b.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	for i := range 3 {
		cfg := DefaultConfig()
		cfg.ID, cfg.Dir = fmt.Sprintf("n%d", i), b.TempDir()
		cfg.BindAddr = "127.0.0.1:0"
		cfg.Logger = discardLogger()
		cfg.ServerTLS, cfg.ClientTLS = tlsConfigs(ca, ca.issue(b, "node", cfg.ID))
		cfg.Bootstrap = i == 0
		n, err := Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	leader := nodes[0]
	if err := leader.WaitForLeader(ctx); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := leader.AddVoter(ctx, n.ID(), n.Addr()); err != nil {
			b.Fatal(err)
		}
	}
	must := func(c *hubv1.Command) uint64 {
		idx, err := leader.Apply(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		return idx
	}
	must(addNet("a"))
	// A long history so a message is still there when its sender looks.
	must(roomCmdAt(clock, &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: testRoom, HistoryLen: MaxRoomHistory}}))
	for i := range 200 {
		must(roomCmdAt(clock, &hubv1.PutRoomMember{Room: testRoom, Member: member(fmt.Sprintf("sip:user%03d@a.example", i), "a", fmt.Sprintf("u%03d", i))}))
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16) // 2 cores x 16 = 32 senders
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := roomCmdAt(clock, &hubv1.PostRoomMessage{Room: testRoom, Owner: "n0", Message: &hubv1.RoomMessage{
				Sender: "sip:user007@a.example", ContentType: "text/plain", Body: make([]byte, 100),
			}})
			t0 := time.Now()
			idx, err := leader.Apply(ctx, c)
			if err != nil {
				b.Error(err)
				return
			}
			if err := leader.WaitForApplied(ctx, idx); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			lat = append(lat, time.Since(t0)) // what the sender's 200 waits for
			mu.Unlock()
			msg := RoomMessageAt(leader.State().Room(testRoom), idx)
			if msg == nil {
				b.Error("committed message not in history")
				return
			}
			if _, err := leader.Apply(ctx, roomCmdAt(clock, &hubv1.RoomFanoutProgress{Room: testRoom, Seq: msg.GetSeq(), Owner: "n0", Done: 199})); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ack-p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ack-p99-ms")
	}
}
