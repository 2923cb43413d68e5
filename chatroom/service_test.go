package chatroom

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestMessageChecks(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, e *env)
		from   string
		src    string
		to     string
		ct     string
		body   string
		code   int
		reason string
	}{
		{name: "participant", from: bob, src: "b", code: 200},
		{name: "unknown room", from: bob, src: "b", to: "sip:nope@" + domain, code: 404, reason: "Room Not Found"},
		{name: "not a participant", from: "sip:dave@a.example", src: "a", code: 403, reason: "Not A Room Participant"},
		{name: "banned", from: "sip:dave@a.example", src: "a", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: "*@a.example"}}})
		}, code: 403, reason: "Banned From Room"},
		{name: "invited", from: "sip:dave@a.example", src: "a", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: "sip:dave@a.example", Network: "a", Nickname: "dave", State: hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED}}})
		}, code: 403, reason: "Invitation Not Accepted"},
		{name: "visitor in moderated room", from: bob, src: "b", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, Moderated: true}}})
			e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: bob, Network: "b", Nickname: "bob", Role: hubv1.RoomRole_ROOM_ROLE_VISITOR}}})
		}, code: 403, reason: "Visitors May Not Speak"},
		{name: "participant of another network", from: bob, src: "a", code: 403, reason: "Participant Belongs To Another Network"},
		{name: "too large", from: bob, src: "b", body: strings.Repeat("x", raft.MaxRoomBody+1), code: 413},
		{name: "body without content type", from: bob, src: "b", ct: "-", code: 400, reason: "Missing Content-Type"},
		{name: "cluster down", from: bob, src: "b", setup: func(t *testing.T, e *env) { e.store.fail = raft.ErrNoLeader }, code: 503, reason: "Room Not Available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			to, ct, body := room, "text/plain", "hello"
			if tc.to != "" {
				to = tc.to
			}
			if tc.ct == "-" {
				ct = ""
			}
			if tc.body != "" {
				body = tc.body
			}
			res := e.serve(msg(tc.from, to, ct, body), tc.src)
			if res == nil || res.StatusCode != tc.code || (tc.reason != "" && res.Reason != tc.reason) {
				t.Fatalf("answer = %v, want %d %s", res, tc.code, tc.reason)
			}
			if tc.code == 200 && e.store.State().Room(room).GetLastSeq() != 1 {
				t.Fatal("accepted message not committed before the 200")
			}
			if tc.code != 200 && e.store.State().Room(room).GetLastSeq() != 0 {
				t.Fatal("refused message committed")
			}
		})
	}
}

func TestRateLimitPerSender(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Rate, c.Burst = 0.001, 2 })
	codes := []int{}
	for range 3 {
		codes = append(codes, e.serve(msg(bob, room, "text/plain", "x"), "b").StatusCode)
	}
	// alice has her own bucket.
	codes = append(codes, e.serve(msg(alice, room, "text/plain", "x"), "a").StatusCode)
	if fmt.Sprint(codes) != "[200 200 503 200]" {
		t.Fatalf("codes = %v", codes)
	}
}

func TestFanoutPlainAndCPIM(t *testing.T) {
	e := newEnv(t, nil)
	// carol announced CPIM.
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: carol, Network: "b", Nickname: "carol", Delivery: hubv1.RoomDelivery_ROOM_DELIVERY_CPIM}}})
	e.say(t, alice, "a", "héllo\r\nsecond line")
	waitFor(t, "two deliveries", func() bool { return len(e.snd.to(bob)) == 1 && len(e.snd.to(carol)) == 1 })
	b := e.snd.to(bob)[0]
	if got := string(b.req.Body()); got != "alice (alice@a.example): héllo\r\nsecond line" {
		t.Fatalf("plain body = %q", got)
	}
	if ct := b.req.ContentType().Value(); ct != "text/plain" {
		t.Fatalf("plain Content-Type = %q", ct)
	}
	if f := b.req.From().Address; f.User != "team" || f.Host != domain {
		t.Fatalf("From = %v", f)
	}
	if b.dst != "b" || b.o.Source != "a" {
		t.Fatalf("sent to %q as %q", b.dst, b.o.Source)
	}
	c := e.snd.to(carol)[0]
	if c.req.ContentType().Value() != "message/cpim" {
		t.Fatalf("CPIM Content-Type = %q", c.req.ContentType().Value())
	}
	cp, err := ParseCPIM(c.req.Body())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Get("From") != "alice <sip:alice@a.example>" || cp.Get("To") != "<"+room+">" || cp.ContentType != "text/plain" || string(cp.Body) != "héllo\r\nsecond line" {
		t.Fatalf("CPIM = %+v", cp)
	}
	if len(e.snd.to(alice)) != 0 {
		t.Fatal("the sender got an echo")
	}
	waitFor(t, "fan-out record gone", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	if rs := e.aud.reasons(); !slices.Contains(rs, "room "+room+" seq 1") {
		t.Fatalf("audit = %q", rs)
	}
	// Non-text content goes unchanged, the sender in Subject.
	e.say(t, alice, "a", "")
	req := msg(alice, room, "application/vnd.test+json", `{"a":1}`)
	if res := e.serve(req, "a"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	waitFor(t, "json copy", func() bool { return len(e.snd.to(bob)) == 3 })
	j := e.snd.to(bob)[2]
	if string(j.req.Body()) != `{"a":1}` || j.req.GetHeader("Subject").Value() != "alice (alice@a.example)" {
		t.Fatalf("json copy = %q, Subject %v", j.req.Body(), j.req.GetHeader("Subject"))
	}
}

func TestCPIMDowngrade(t *testing.T) {
	e := newEnv(t, nil)
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: carol, Network: "b", Nickname: "carol", Delivery: hubv1.RoomDelivery_ROOM_DELIVERY_CPIM}}})
	e.snd.answer = func(req *sip.Request) int {
		if req.Recipient.User == "carol" && req.ContentType().Value() == "message/cpim" {
			return 488 // linphone basic chat
		}
		return 200
	}
	e.say(t, alice, "a", "one")
	waitFor(t, "re-sent plain", func() bool { return len(e.snd.to(carol)) == 2 })
	got := e.snd.to(carol)
	if got[0].req.ContentType().Value() != "message/cpim" || string(got[1].req.Body()) != "alice (alice@a.example): one" {
		t.Fatalf("copies = %q", bodies(got))
	}
	if got[0].req.CallID().Value() != got[1].req.CallID().Value() || got[1].req.CSeq().SeqNo != 2 {
		t.Fatal("the plain re-send is not the same dialog-less transaction sequence")
	}
	waitFor(t, "switched to plain", func() bool {
		return raft.RoomMember(e.store.State().Room(room), carol).GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_PLAIN
	})
	e.say(t, alice, "a", "two")
	waitFor(t, "next copy", func() bool { return len(e.snd.to(carol)) == 3 })
	if string(e.snd.to(carol)[2].req.Body()) != "alice (alice@a.example): two" {
		t.Fatalf("after downgrade = %q", bodies(e.snd.to(carol)))
	}
}

// Senders on many goroutines (as on different nodes: the FSM is the one
// ordering point): every participant receives every other sender's
// messages, in the room's order.
func TestOrderUnderConcurrentSenders(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BatchSize = 2 })
	var wg sync.WaitGroup
	for _, who := range []struct{ u, n string }{{alice, "a"}, {bob, "b"}, {carol, "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				if res := e.serve(msg(who.u, room, "text/plain", fmt.Sprintf("%s-%d", who.u, i)), who.n); res.StatusCode != 200 {
					t.Errorf("%s: %v", who.u, res)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "all delivered", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	order := map[string]uint64{}
	r := e.store.State().Room(room)
	if r.GetLastSeq() != 45 {
		t.Fatalf("last seq = %d", r.GetLastSeq())
	}
	for _, m := range r.GetHistory() {
		order[string(m.GetBody())] = m.GetSeq()
	}
	for _, u := range []string{alice, bob, carol} {
		got := e.snd.to(u)
		if len(got) != 30 {
			t.Fatalf("%s got %d copies, want 30", u, len(got))
		}
		last := uint64(0)
		for _, s := range got {
			_, text, _ := strings.Cut(string(s.req.Body()), "): ")
			seq, ok := order[text]
			if !ok {
				continue // older than the kept history
			}
			if seq <= last {
				t.Fatalf("%s got seq %d after %d", u, seq, last)
			}
			last = seq
		}
	}
}

// A fan-out whose owner died is claimed by the leader after TakeoverAfter
// and resumed at the committed cursor: recipients before it get nothing
// again.
func TestFanoutTakeoverResumesAtCursor(t *testing.T) {
	e := newEnv(t, nil)
	// Node n9 committed a message and delivered to alice (cursor 1), then died.
	e.store.must(t, &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{Room: room, Owner: "n9",
		Message: &hubv1.RoomMessage{Sender: carol, ContentType: "text/plain", Body: []byte("from the dead node")}}})
	e.store.must(t, &hubv1.Command_RoomFanoutProgress{RoomFanoutProgress: &hubv1.RoomFanoutProgress{Room: room, Seq: 1, Owner: "n9", Done: 1}})
	waitFor(t, "bob's copy", func() bool { return len(e.snd.to(bob)) == 1 })
	if len(e.snd.to(alice)) != 0 {
		t.Fatal("a recipient before the cursor got the message again")
	}
	if string(e.snd.to(bob)[0].req.Body()) != "carol (carol@b.example): from the dead node" {
		t.Fatalf("body = %q", e.snd.to(bob)[0].req.Body())
	}
	waitFor(t, "fan-out finished", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	if !slices.ContainsFunc(e.aud.reasons(), func(r string) bool { return strings.Contains(r, "taken over from node n9") }) {
		t.Fatalf("takeover not audited: %q", e.aud.reasons())
	}
}

// A follower never claims; a node restarting resumes its own fan-outs.
func TestFanoutResumedAtStartNotClaimedByFollower(t *testing.T) {
	store := newMemStore()
	e := &env{store: store}
	_ = e
	store.must(t, &hubv1.AddNetwork{Network: testNet("a", true)})
	store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: room},
		FirstMember: &hubv1.RoomMember{User: alice, Network: "a", Nickname: "alice"}}})
	store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: "sip:dave@a.example", Network: "a", Nickname: "dave"}}})
	for _, owner := range []string{"n1", "n9"} {
		store.must(t, &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{Room: room, Owner: owner,
			Message: &hubv1.RoomMessage{Sender: alice, ContentType: "text/plain", Body: []byte(owner)}}})
	}
	store.leader = false
	snd := newFakeSender()
	svc, err := New(Config{Domain: domain, NodeID: "n1", Store: store, Sender: snd, TakeoverAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start()
	defer svc.Stop()
	waitFor(t, "own fan-out resumed", func() bool { return len(snd.to("sip:dave@a.example")) == 1 })
	time.Sleep(200 * time.Millisecond)
	if got := bodies(snd.to("sip:dave@a.example")); fmt.Sprint(got) != "[alice (alice@a.example): n1]" {
		t.Fatalf("follower delivered %q", got)
	}
	if f := raft.RoomFanoutFor(store.State().Room(room), 2); f.GetOwner() != "n9" {
		t.Fatalf("follower claimed: %v", f)
	}
}

func TestFailedDeliveryAuditedAndRetried(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetryDelays = []time.Duration{10 * time.Millisecond} })
	var mu sync.Mutex
	calls := 0
	e.snd.answer = func(req *sip.Request) int {
		if req.Recipient.User != "bob" {
			return 200
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return 503
		}
		return 200
	}
	e.say(t, alice, "a", "hi")
	waitFor(t, "retry", func() bool { return len(e.snd.to(bob)) == 2 })
	s := e.snd.to(bob)
	if s[0].req.CallID().Value() != s[1].req.CallID().Value() {
		t.Fatal("retry is not the same request")
	}
	if !slices.ContainsFunc(e.aud.reasons(), func(r string) bool { return strings.Contains(r, "failed (503 test), retrying") }) {
		t.Fatalf("failure not audited: %q", e.aud.reasons())
	}
}

type fakeDeferrer struct {
	mu  sync.Mutex
	got []string
}

func (d *fakeDeferrer) Defer(_ context.Context, req *sip.Request, src, dst, note string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, src+">"+dst+" "+req.Recipient.User)
	return nil
}

func TestFailedDeliveryHandedToQueue(t *testing.T) {
	d := &fakeDeferrer{}
	e := newEnv(t, func(c *Config) { c.Deferrer = d })
	e.snd.answer = func(req *sip.Request) int {
		if req.Recipient.User == "bob" {
			return 408
		}
		if req.Recipient.User == "carol" {
			return 404 // permanent: audited, not queued
		}
		return 200
	}
	e.say(t, alice, "a", "hi")
	waitFor(t, "fan-out finished", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	d.mu.Lock()
	defer d.mu.Unlock()
	if fmt.Sprint(d.got) != "[a>b bob]" {
		t.Fatalf("deferred = %v", d.got)
	}
	if !slices.ContainsFunc(e.aud.reasons(), func(r string) bool { return strings.Contains(r, "carol@b.example refused (404 test), not retried") }) {
		t.Fatalf("audit = %q", e.aud.reasons())
	}
}

func TestSuspensionEvicts(t *testing.T) {
	e := newEnv(t, nil)
	e.store.must(t, &hubv1.SetNetworkStatus{Id: "b", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED})
	ms := e.store.State().Room(room).GetMembers()
	if len(ms) != 1 || ms[0].GetUser() != alice {
		t.Fatalf("members = %v", ms)
	}
	if res := e.serve(msg(bob, room, "text/plain", "x"), "b"); res.StatusCode != 403 {
		t.Fatalf("evicted sender: %v", res)
	}
	e.say(t, alice, "a", "anyone?")
	time.Sleep(50 * time.Millisecond)
	if len(e.snd.to(bob)) != 0 {
		t.Fatal("delivered to a suspended network")
	}
}

func TestHistoryReplayOnJoin(t *testing.T) {
	e := newEnv(t, nil)
	e.say(t, alice, "a", "first")
	e.say(t, bob, "b", "second")
	waitFor(t, "delivered", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	h := e.store.State().Room(room).GetHistory()
	res := e.serve(msg("sip:dave@a.example", room, "text/plain", "#join", sip.NewHeader("Accept", "text/plain, message/cpim")), "a")
	if res.StatusCode != 200 {
		t.Fatal(res)
	}
	dave := "sip:dave@a.example"
	waitFor(t, "replay", func() bool { return len(e.snd.to(dave)) == 3 })
	got := e.snd.to(dave)
	if !strings.HasPrefix(string(got[0].req.Body()), "*** you joined "+room+" as dave") {
		t.Fatalf("join reply = %q", got[0].req.Body())
	}
	// dave announced CPIM: the replay carries the original DateTime.
	for i, s := range got[1:] {
		cp, err := ParseCPIM(s.req.Body())
		if err != nil {
			t.Fatal(err)
		}
		want := time.Unix(0, h[i].GetUnixNano()).UTC().Format(time.RFC3339)
		if cp.Get("DateTime") != want || string(cp.Body) != string(h[i].GetBody()) {
			t.Fatalf("replay %d = %+v, want DateTime %s", i, cp, want)
		}
	}
	if m := raft.RoomMember(e.store.State().Room(room), dave); m.GetDelivery() != hubv1.RoomDelivery_ROOM_DELIVERY_CPIM {
		t.Fatalf("dave = %v", m)
	}
	// #history 1 in plain text shows the time in the prefix.
	if res := e.serve(msg(bob, room, "text/plain", "#history 1"), "b"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	waitFor(t, "history", func() bool { return len(e.snd.to(bob)) == 2 })
	want := "[" + time.Unix(0, h[1].GetUnixNano()).UTC().Format("2006-01-02 15:04:05Z") + "] bob (bob@b.example): second"
	if got := string(e.snd.to(bob)[1].req.Body()); got != want {
		t.Fatalf("history line = %q, want %q", got, want)
	}
}

func TestDeliveryCallIDStable(t *testing.T) {
	a := deliveryCallID(room, 7, bob, false, domain)
	if a != deliveryCallID(room, 7, bob, false, domain) || a == deliveryCallID(room, 8, bob, false, domain) || a == deliveryCallID(room, 7, carol, false, domain) {
		t.Fatal("Call-ID not a function of room, seq and recipient")
	}
}

// A sender retrying a message whose 200 was lost (same Call-ID, perhaps
// through another node) gets 200 and the room posts it once.
func TestSenderRetransmissionPostedOnce(t *testing.T) {
	e := newEnv(t, nil)
	req := msg(bob, room, "text/plain", "once")
	for range 2 {
		if res := e.serve(req, "b"); res.StatusCode != 200 {
			t.Fatal(res)
		}
	}
	if seq := e.store.State().Room(room).GetLastSeq(); seq != 1 {
		t.Fatalf("posted %d times", seq)
	}
}

// Requests missing what the service reads get an answer, never a panic.
func TestMalformedRequestsAnswered(t *testing.T) {
	e := newEnv(t, nil)
	strip := func(req *sip.Request, names ...string) *sip.Request {
		for _, n := range names {
			req.RemoveHeader(n)
		}
		return req
	}
	tests := []struct {
		name string
		req  *sip.Request
		code int
	}{
		{"MESSAGE without From", strip(msg(bob, room, "text/plain", "x"), "From"), 400},
		{"MESSAGE without Call-ID", strip(msg(bob, room, "text/plain", "x"), "Call-ID"), 200},
		{"command without From", strip(msg(bob, room, "text/plain", "#join"), "From"), 400},
		{"SUBSCRIBE without To", strip(subscribe(bob, room, ""), "To"), 400},
		{"SUBSCRIBE without From", strip(subscribe(bob, room, ""), "From"), 400},
		{"SUBSCRIBE without Contact", strip(subscribe(bob, room, ""), "Contact"), 400},
		{"SUBSCRIBE without Event", strip(subscribe(bob, room, ""), "Event"), 489},
		{"SUBSCRIBE bad Expires", subscribe(bob, room, "soon"), 400},
		{"INVITE without a focus", func() *sip.Request { r := msg(bob, room, "", ""); r.Method = sip.INVITE; return r }(), 488},
		{"PUBLISH", func() *sip.Request { r := msg(bob, room, "", ""); r.Method = sip.PUBLISH; return r }(), 405},
		{"MESSAGE to the bare domain", msg(bob, "sip:"+domain, "text/plain", "x"), 404},
		{"CPIM garbage", msg(bob, room, "message/cpim", "\x00\xff\r\n\r\n"), 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.serve(tc.req, "b")
			if res == nil || res.StatusCode != tc.code {
				t.Fatalf("answer %v, want %d", res, tc.code)
			}
		})
	}
}
