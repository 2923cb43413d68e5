package chatroom

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
)

// confInfo is enough of RFC 4575 to check what the hub sends.
type confInfo struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:conference-info conference-info"`
	Entity  string   `xml:"entity,attr"`
	State   string   `xml:"state,attr"`
	Version int      `xml:"version,attr"`
	Subject string   `xml:"conference-description>subject"`
	Users   []struct {
		Entity  string   `xml:"entity,attr"`
		State   string   `xml:"state,attr"`
		Display string   `xml:"display-text"`
		Roles   []string `xml:"roles>entry"`
		Status  string   `xml:"endpoint>status"`
	} `xml:"users>user"`
}

func subscribe(from, to string, expires string, hdrs ...sip.Header) *sip.Request {
	var ru, fu sip.Uri
	_ = sip.ParseUri(to, &ru)
	_ = sip.ParseUri(from, &fu)
	req := sip.NewRequest(sip.SUBSCRIBE, ru)
	fp := sip.NewParams()
	fp.Add("tag", "w1")
	req.AppendHeader(&sip.FromHeader{Address: fu, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: ru, Params: sip.NewParams()})
	cid := sip.CallIDHeader("sub-" + sip.GenerateTagN(8))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKs"+sip.GenerateTagN(8)))
	req.AppendHeader(sip.NewHeader("Event", "conference"))
	req.AppendHeader(sip.NewHeader("Accept", "application/conference-info+xml"))
	req.AppendHeader(sip.NewHeader("Contact", "<sip:watcher@10.0.0.1:5070>"))
	req.AppendHeader(sip.NewHeader("Record-Route", "<sip:edge.b.example;lr>"))
	if expires != "" {
		req.AppendHeader(sip.NewHeader("Expires", expires))
	}
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	return req
}

func notifies(e *env, to string) []sent {
	var out []sent
	for _, s := range e.snd.to(to) {
		if s.req.Method == sip.NOTIFY {
			out = append(out, s)
		}
	}
	return out
}

func parseInfo(t *testing.T, s sent) confInfo {
	t.Helper()
	var ci confInfo
	if err := xml.Unmarshal(s.req.Body(), &ci); err != nil {
		t.Fatalf("conference-info: %v\n%s", err, s.req.Body())
	}
	return ci
}

func TestRosterFullThenPartial(t *testing.T) {
	e := newEnv(t, nil)
	watcher := "sip:watcher@10.0.0.1"
	res := e.serve(subscribe(bob, room, "600"), "b")
	if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "600" {
		t.Fatalf("SUBSCRIBE answer = %v", res)
	}
	toTag, _ := res.To().Params.Get("tag")
	waitFor(t, "full NOTIFY", func() bool { return len(notifies(e, watcher)) == 1 })
	n := notifies(e, watcher)[0]
	if n.dst != "b" || n.o.Source != "" {
		t.Fatalf("NOTIFY sent to %q as %q", n.dst, n.o.Source)
	}
	if rt := n.req.GetHeader("Route"); rt == nil || rt.Value() != "<sip:edge.b.example;lr>" {
		t.Fatalf("Route = %v", rt)
	}
	if ft, _ := n.req.From().Params.Get("tag"); ft != toTag {
		t.Fatalf("NOTIFY From tag %q, 200 To tag %q", ft, toTag)
	}
	if ss := n.req.GetHeader("Subscription-State").Value(); !strings.HasPrefix(ss, "active;expires=") {
		t.Fatalf("Subscription-State = %q", ss)
	}
	ci := parseInfo(t, n)
	if ci.State != "full" || ci.Version != 1 || ci.Entity != room || ci.Subject != "Team" || len(ci.Users) != 3 {
		t.Fatalf("full = %+v", ci)
	}
	if u := ci.Users[0]; u.Entity != alice || u.Display != "alice" || u.Roles[0] != "owner" || u.Status != "connected" {
		t.Fatalf("alice = %+v", u)
	}
	// A join and a role change in one burst: one partial NOTIFY.
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: "sip:dave@a.example", Network: "a", Nickname: "dave"}}})
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{User: carol, Network: "b", Nickname: "carol", Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR}}})
	waitFor(t, "partial NOTIFY", func() bool { return len(notifies(e, watcher)) >= 2 })
	waitFor(t, "both changes told", func() bool {
		n := 0
		for _, s := range notifies(e, watcher)[1:] {
			n += len(parseInfo(t, s).Users)
		}
		return n == 2
	})
	ns := notifies(e, watcher)
	p := parseInfo(t, ns[1])
	if p.State != "partial" || p.Version != 2 || p.Users[0].State != "full" {
		t.Fatalf("partial = %+v", p)
	}
	if len(ns) > 3 {
		t.Fatalf("%d NOTIFYs for one burst", len(ns))
	}
	if ns[1].req.CSeq().SeqNo <= ns[0].req.CSeq().SeqNo {
		t.Fatal("CSeq did not grow")
	}
	// A ban shows the user deleted.
	before := len(ns)
	e.store.must(t, &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: "sip:dave@a.example"}}})
	waitFor(t, "deleted NOTIFY", func() bool { return len(notifies(e, watcher)) > before })
	d := parseInfo(t, notifies(e, watcher)[before])
	if len(d.Users) != 1 || d.Users[0].Entity != "sip:dave@a.example" || d.Users[0].State != "deleted" || d.Version != before+1 {
		t.Fatalf("after ban = %+v", d)
	}
	// Refresh in the dialog, then unsubscribe.
	ref := subscribe(bob, room, "0")
	*ref.CallID() = sip.CallIDHeader(n.req.CallID().Value())
	ref.To().Params.Add("tag", toTag)
	if res := e.serve(ref, "b"); res.StatusCode != 200 {
		t.Fatalf("unsubscribe = %v", res)
	}
	waitFor(t, "terminated NOTIFY", func() bool {
		ns := notifies(e, watcher)
		return strings.HasPrefix(ns[len(ns)-1].req.GetHeader("Subscription-State").Value(), "terminated")
	})
}

func TestRosterRefusals(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, e *env)
		req    func() *sip.Request
		src    string
		code   int
		reason string
	}{
		{name: "banned watcher", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: "*@x.example"}}})
		}, req: func() *sip.Request { return subscribe("sip:eve@x.example", room, "") }, src: "x", code: 403, reason: "Banned From Room"},
		{name: "members-only non-member", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, MembersOnly: true}}})
		}, req: func() *sip.Request { return subscribe("sip:dave@a.example", room, "") }, src: "a", code: 403, reason: "Members-Only Room"},
		{name: "members-only participant", setup: func(t *testing.T, e *env) {
			e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, MembersOnly: true}}})
		}, req: func() *sip.Request { return subscribe(bob, room, "") }, src: "b", code: 200},
		{name: "unknown room", req: func() *sip.Request { return subscribe(bob, "sip:nope@"+domain, "") }, src: "b", code: 404},
		{name: "wrong event", req: func() *sip.Request {
			r := subscribe(bob, room, "")
			r.ReplaceHeader(sip.NewHeader("Event", "presence"))
			return r
		}, src: "b", code: 489},
		{name: "too brief", req: func() *sip.Request { return subscribe(bob, room, "10") }, src: "b", code: 423},
		{name: "refresh of unknown dialog", req: func() *sip.Request {
			r := subscribe(bob, room, "600")
			r.To().Params.Add("tag", "gone")
			return r
		}, src: "b", code: 481},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			res := e.serve(tc.req(), tc.src)
			if res.StatusCode != tc.code || (tc.reason != "" && res.Reason != tc.reason) {
				t.Fatalf("answer = %d %s, want %d %s", res.StatusCode, res.Reason, tc.code, tc.reason)
			}
		})
	}
}

// A watcher whose network is suspended is evicted: its subscription ends,
// and other watchers see the users deleted.
func TestRosterEvictionOnSuspension(t *testing.T) {
	e := newEnv(t, nil)
	if res := e.serve(subscribe(alice, room, ""), "a"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	watcher := "sip:watcher@10.0.0.1"
	waitFor(t, "full", func() bool { return len(notifies(e, watcher)) == 1 })
	e.store.must(t, &hubv1.SetNetworkStatus{Id: "b", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED})
	waitFor(t, "partial", func() bool { return len(notifies(e, watcher)) == 2 })
	p := parseInfo(t, notifies(e, watcher)[1])
	if len(p.Users) != 2 || p.Users[0].State != "deleted" || p.Users[1].State != "deleted" {
		t.Fatalf("after suspension = %+v", p)
	}
}

// Room messages and other rooms' changes leave the roster alone: no
// NOTIFY for them.
func TestRosterQuietOnMessages(t *testing.T) {
	e := newEnv(t, nil)
	if res := e.serve(subscribe(bob, room, ""), "b"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	watcher := "sip:watcher@10.0.0.1"
	waitFor(t, "full", func() bool { return len(notifies(e, watcher)) == 1 })
	for range 3 {
		e.say(t, alice, "a", "chatter")
	}
	e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: "sip:other@" + domain}}})
	waitFor(t, "deliveries", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	time.Sleep(100 * time.Millisecond) // > RosterCoalesce
	if n := len(notifies(e, watcher)); n != 1 {
		t.Fatalf("%d NOTIFYs, want only the first", n)
	}
}
