package chatroom

import (
	"strings"
	"testing"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		ct, body string
		ok       bool
		name     string
		args     string
	}{
		{"text/plain", "#join", true, "join", ""},
		{"text/plain; charset=utf-8", "#JOIN  other ", true, "join", "other"},
		{"text/plain", "#ban bob@b.example spamming   a lot\r\nignored", true, "ban", "bob@b.example spamming a lot"},
		{"text/plain", "#1 in the charts", false, "", ""},
		{"text/plain", "#unknowncmd", false, "", ""},
		{"text/plain", "hello #join", false, "", ""},
		{"message/cpim", "#join", false, "", ""},
		{"text/plain", "#", false, "", ""},
	}
	for _, tc := range tests {
		c, ok := ParseCommand(tc.ct, []byte(tc.body))
		if ok != tc.ok || c.Name != tc.name || strings.Join(c.Args, " ") != tc.args {
			t.Errorf("ParseCommand(%q, %q) = %+v, %v", tc.ct, tc.body, c, ok)
		}
	}
}

func TestCommands(t *testing.T) {
	dave := "sip:dave@a.example"
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
		from  string
		src   string
		to    string // room addressed; default team
		body  string
		reply string // prefix of the "*** " reply to the sender
		check func(t *testing.T, e *env, r *hubv1.Room)
	}{
		{name: "help", from: bob, src: "b", body: "#help", reply: "*** commands:"},
		{name: "join public room", from: dave, src: "a", body: "#join", reply: "*** you joined " + room + " as dave", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if !raft.Joined(raft.RoomMember(r, dave)) {
				t.Fatal("dave not joined")
			}
		}},
		{name: "join picks a free nickname", from: "sip:bob@a.example", src: "a", body: "#join", reply: "*** you joined " + room + " as bob-a"},
		{name: "join members-only refused", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, MembersOnly: true}}})
		}, from: dave, src: "a", body: "#join", reply: "*** error: " + room + " is members-only"},
		{name: "create allowed for network a", from: dave, src: "a", to: "sip:new@" + domain, body: "#create", reply: "*** room sip:new@" + domain + " created", check: func(t *testing.T, e *env, _ *hubv1.Room) {
			r := e.store.State().Room("sip:new@" + domain)
			if r == nil || r.GetOwner() != dave || raft.RoleOf(raft.RoomMember(r, dave)) != hubv1.RoomRole_ROOM_ROLE_OWNER {
				t.Fatalf("new room = %v", r)
			}
		}},
		{name: "create named private", from: dave, src: "a", body: "#create side private", reply: "*** room sip:side@" + domain + " created", check: func(t *testing.T, e *env, _ *hubv1.Room) {
			if !e.store.State().Room("sip:side@" + domain).GetMembersOnly() {
				t.Fatal("not members-only")
			}
		}},
		{name: "create refused for network b", from: bob, src: "b", body: "#create other", reply: "*** error: your network does not allow"},
		{name: "invite then accept", from: alice, src: "a", body: "#invite dave@a.example", reply: "*** invited " + dave, check: func(t *testing.T, e *env, r *hubv1.Room) {
			if m := raft.RoomMember(r, dave); m == nil || raft.Joined(m) {
				t.Fatalf("dave = %v", m)
			}
			if got := e.snd.to(dave); len(got) != 1 || !strings.Contains(string(got[0].req.Body()), "invites you to "+room) {
				t.Fatalf("invitation = %q", bodies(got))
			}
			if res := e.serve(msg(dave, room, "text/plain", "#accept"), "a"); res.StatusCode != 200 {
				t.Fatal(res)
			}
			waitFor(t, "accepted", func() bool { return raft.Joined(raft.RoomMember(e.store.State().Room(room), dave)) })
		}},
		{name: "invite needs moderator", from: bob, src: "b", body: "#invite dave@a.example", reply: "*** error: needs role moderator"},
		{name: "reject", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: dave, Network: "a", Nickname: "dave", State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED}}})
		}, from: dave, src: "a", body: "#reject", reply: "*** invitation to " + room + " declined", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoomMember(r, dave) != nil {
				t.Fatal("still invited")
			}
		}},
		{name: "leave", from: bob, src: "b", body: "#leave", reply: "*** you left", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoomMember(r, bob) != nil {
				t.Fatal("bob still in")
			}
		}},
		{name: "destroy by owner", from: alice, src: "a", body: "#destroy", reply: "*** room " + room + " destroyed", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if r != nil {
				t.Fatal("room still there")
			}
		}},
		{name: "destroy by member refused", from: bob, src: "b", body: "#destroy", reply: "*** error: needs role owner"},
		{name: "members", from: bob, src: "b", body: "#members", reply: "*** 3 in " + room + ":\nalice (alice@a.example) owner\nbob (bob@b.example) member\ncarol (carol@b.example) member"},
		{name: "add", from: alice, src: "a", body: "#add dave@a.example", reply: "*** added " + dave + " as dave", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if !raft.Joined(raft.RoomMember(r, dave)) {
				t.Fatal("dave not in")
			}
		}},
		{name: "add unknown domain", from: alice, src: "a", body: "#add x@nowhere.example", reply: "*** error: no member network owns nowhere.example"},
		{name: "remove by nick", from: alice, src: "a", body: "#remove bob", reply: "*** removed bob", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoomMember(r, bob) != nil {
				t.Fatal("bob still in")
			}
		}},
		{name: "kick an equal refused", setup: func(t *testing.T, e *env) {
			for _, u := range []struct{ u, n, nick string }{{bob, "b", "bob"}, {carol, "b", "carol"}} {
				e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: u.u, Network: u.n, Nickname: u.nick, Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR}}})
			}
		}, from: bob, src: "b", body: "#kick carol", reply: "*** error: you may not remove a moderator"},
		{name: "ban by nick with reason", from: alice, src: "a", body: "#ban carol too loud", reply: "*** banned " + carol, check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoomMember(r, carol) != nil || len(r.GetBans()) != 1 || r.GetBans()[0].GetReason() != "too loud" || r.GetBans()[0].GetBy() != alice {
				t.Fatalf("room = %v", r)
			}
		}},
		{name: "ban covering yourself refused", from: alice, src: "a", body: "#ban *@a.example", reply: "*** error: that ban would cover you"},
		{name: "unban", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: "network:b"}}})
		}, from: alice, src: "a", body: "#unban network:b", reply: "*** unbanned network:b"},
		{name: "nick", from: bob, src: "b", body: "#nick Bobby", reply: "*** you are now Bobby", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoomMember(r, bob).GetNickname() != "Bobby" {
				t.Fatal("nick unchanged")
			}
		}},
		{name: "nick taken", from: bob, src: "b", body: "#nick CAROL", reply: "*** error: already exists"},
		{name: "topic", from: alice, src: "a", body: "#topic Release on Friday", reply: "*** subject set to: Release on Friday", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if r.GetSubject() != "Release on Friday" || len(r.GetMembers()) != 3 {
				t.Fatalf("room = %v", r)
			}
		}},
		{name: "role", from: alice, src: "a", body: "#role bob moderator", reply: "*** bob is now moderator", check: func(t *testing.T, e *env, r *hubv1.Room) {
			if raft.RoleOf(raft.RoomMember(r, bob)) != hubv1.RoomRole_ROOM_ROLE_MODERATOR {
				t.Fatal("role unchanged")
			}
		}},
		{name: "role by member refused", from: bob, src: "b", body: "#role carol owner", reply: "*** error: needs role owner"},
		{name: "join beyond the hub's cap", from: dave, src: "a", body: "#join", reply: "*** error: " + room + " is full (the hub's cap is 3)"},
		{name: "history of non-member refused", from: dave, src: "a", body: "#history", reply: "*** error: you are not in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if strings.Contains(tc.name, "cap") {
					c.MaxMembersCap = 3
				}
			})
			if tc.setup != nil {
				tc.setup(t, e)
			}
			to := room
			if tc.to != "" {
				to = tc.to
			}
			before := len(e.snd.to(tc.from))
			if res := e.serve(msg(tc.from, to, "text/plain", tc.body), tc.src); res.StatusCode != 200 {
				t.Fatalf("answer = %v", res)
			}
			waitFor(t, "reply", func() bool { return len(e.snd.to(tc.from)) > before })
			got := e.snd.to(tc.from)[before]
			if !strings.HasPrefix(string(got.req.Body()), tc.reply) {
				t.Fatalf("reply = %q, want prefix %q", got.req.Body(), tc.reply)
			}
			if f := got.req.From().Address; f.Host != domain || got.o.Source != "" {
				t.Fatalf("reply From %v Source %q", f, got.o.Source)
			}
			if tc.check != nil {
				tc.check(t, e, e.store.State().Room(room))
			}
		})
	}
}
