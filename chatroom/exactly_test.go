package chatroom

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func addUsers(t *testing.T, e *env, names ...string) {
	t.Helper()
	for _, n := range names {
		e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room,
			Member: &hubv1.RoomMember{User: "sip:" + n + "@b.example", Network: "b", Nickname: n}}})
	}
}

// A takeover skips the recipients the dead owner recorded as answered
// beyond its cursor: only the ones neither before the cursor nor acked get
// a copy from the new owner.
func TestFanoutTakeoverSkipsAcked(t *testing.T) {
	e := newEnv(t, nil)
	addUsers(t, e, "u1", "u2")
	// Recipients (sorted, sender carol excluded): alice, bob, u1, u2.
	e.store.must(t, &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{Room: room, Owner: "n9",
		Message: &hubv1.RoomMessage{Sender: carol, ContentType: "text/plain", Body: []byte("x")}}})
	// n9 had answers from bob and u2 while alice's copy was still out.
	e.store.must(t, &hubv1.Command_RoomFanoutProgress{RoomFanoutProgress: &hubv1.RoomFanoutProgress{Room: room, Seq: 1, Owner: "n9", Done: 0, Acked: []uint32{1, 3}}})
	waitFor(t, "fan-out finished", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	got := map[string]int{}
	for _, u := range []string{alice, bob, "sip:u1@b.example", "sip:u2@b.example"} {
		got[u] = len(e.snd.to(u))
	}
	want := map[string]int{alice: 1, bob: 0, "sip:u1@b.example": 1, "sip:u2@b.example": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("copies per recipient = %v, want %v", got, want)
	}
}

// Answers beyond a slow recipient are recorded while it is still out, so a
// crash then re-sends only the slow one's copy (before: the whole batch).
func TestFanoutRecordsAnswersBeyondSlowRecipient(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, nil)
	addUsers(t, e, "u1", "u2", "u3")
	e.snd.answer = func(req *sip.Request) int {
		if req.Recipient.User == "bob" {
			<-release
		}
		return 200
	}
	defer close(release)
	e.say(t, alice, "a", "hello")
	// Recipients: bob, carol, u1, u2, u3; bob (index 0) hangs.
	waitFor(t, "answers beyond bob recorded", func() bool {
		f := raft.RoomFanoutFor(e.store.State().Room(room), 1)
		return f != nil && f.GetDone() == 0 && slices.Equal(f.GetAcked(), []uint32{1, 2, 3, 4})
	})
}

// A re-sent copy is byte-identical (Call-ID, From tag, CSeq, body, IMDN
// Message-ID) and a 482 to it (RFC 3261 8.2.2.2 merged request) counts as
// delivered: audited as such, never retried.
func TestResentCopyIdenticalAnd482Delivered(t *testing.T) {
	e := newEnv(t, nil)
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room,
		Member: &hubv1.RoomMember{User: bob, Network: "b", Nickname: "bob", Delivery: hubv1.RoomDelivery_ROOM_DELIVERY_CPIM}}})
	m := &hubv1.RoomMessage{Seq: 7, Sender: alice, Nickname: "alice", Network: "a", ContentType: "text/plain", Body: []byte("hi"), UnixNano: 1}
	bm := raft.RoomMember(e.store.State().Room(room), bob)
	var reqs []string
	e.snd.answer = func(req *sip.Request) int {
		reqs = append(reqs, req.String())
		if len(reqs) == 2 {
			return 482
		}
		return 200
	}
	e.svc.fan.deliver(room, m, bm, false)
	e.svc.fan.deliver(room, m, bm, false) // the same copy after a takeover
	if len(reqs) != 2 || reqs[0] != reqs[1] {
		t.Fatalf("re-sent copy differs:\n%s\n---\n%s", reqs[0], reqs[1])
	}
	if !strings.Contains(reqs[0], "imdn.Message-ID: "+RoomMessageID(room, 7)) {
		t.Fatalf("no IMDN Message-ID in the CPIM copy:\n%s", reqs[0])
	}
	rs := e.aud.reasons()
	if !slices.ContainsFunc(rs, func(r string) bool { return strings.Contains(r, "already had this copy") }) {
		t.Fatalf("482 not audited as delivered: %q", rs)
	}
	if slices.ContainsFunc(rs, func(r string) bool { return strings.Contains(r, "refused") || strings.Contains(r, "retry") }) {
		t.Fatalf("482 treated as a failure: %q", rs)
	}
}

// The rate limit holds cluster-wide: a sender spraying two nodes gets the
// burst once, not once per node (the bucket is in the replicated state).
func TestRateLimitClusterWide(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Rate, c.Burst = 0.001, 2 })
	n2, err := New(Config{Domain: domain, NodeID: "n2", Store: e.store, Sender: e.snd, Rate: 0.001, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	n2.Start()
	defer n2.Stop()
	serve := func(svc *Service) int {
		var code int
		svc.Serve(&Request{Req: msg(bob, room, "text/plain", "x"), Source: "b", Transport: "udp",
			Respond: func(r *sip.Response) {
				if code == 0 && r.StatusCode >= 200 {
					code = r.StatusCode
					if code == 503 && (r.Reason != "Room Rate Limit Exceeded" || r.GetHeader("Retry-After") == nil) {
						t.Errorf("refusal %d %s", r.StatusCode, r.Reason)
					}
				}
			}})
		return code
	}
	codes := []int{serve(e.svc), serve(n2), serve(n2), serve(e.svc)}
	if fmt.Sprint(codes) != "[200 200 503 503]" {
		t.Fatalf("codes = %v (node-local buckets would give 200 200 200 503)", codes)
	}
}

// An IMDN notification sent to the room (linphonec answers every copy with
// one) is accepted and never posted: before, it became room message
// seq N+1 and was fanned out to everyone (found by the linphonec interop
// case).
func TestIMDNToRoomNotPosted(t *testing.T) {
	e := newEnv(t, nil)
	imdn := `<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>x</message-id><delivery-notification><status><delivered/></status></delivery-notification></imdn>`
	tests := []struct {
		name, ct, body string
	}{
		{"bare", "message/imdn+xml", imdn},
		{"in CPIM", "message/cpim", "From: <sip:bob@b.example>\r\nTo: <" + room + ">\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: y\r\n\r\nContent-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n\r\n" + imdn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if res := e.serve(msg(bob, room, tc.ct, tc.body), "b"); res == nil || res.StatusCode != 200 {
				t.Fatalf("answer %v", res)
			}
			if last := e.store.State().Room(room).GetLastSeq(); last != 0 {
				t.Fatalf("IMDN posted as seq %d", last)
			}
		})
	}
}
