package chatroom

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// rawMSRP is a session participant written on the hub's frame reader and
// writer, for the requests msrptest does not send (NICKNAME).
type rawMSRP struct {
	t     *testing.T
	uri   string
	conn  net.Conn
	mu    sync.Mutex
	wait  map[string]chan *msrp.Frame
	sends chan *msrp.Frame
}

func newRawMSRP(t *testing.T) *rawMSRP {
	return &rawMSRP{t: t, uri: "msrp://127.0.0.1:9/" + randomHex(6) + ";tcp", wait: map[string]chan *msrp.Frame{}, sends: make(chan *msrp.Frame, 64)}
}

func (c *rawMSRP) sdp() []byte {
	return []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 9 TCP/MSRP *\r\n" +
		"a=accept-types:message/cpim\r\na=accept-wrapped-types:*\r\na=path:" + c.uri + "\r\na=setup:active\r\na=chatroom:nickname private-messages\r\n")
}

func (c *rawMSRP) connect(hub string) {
	u, err := msrp.ParseURI(hub)
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Addr())
	if err != nil {
		c.t.Fatal(err)
	}
	c.conn = conn
	c.t.Cleanup(func() { conn.Close() })
	go func() {
		rd := msrp.NewReader(conn, msrp.Limits{})
		for {
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			if !f.IsRequest() {
				c.mu.Lock()
				ch := c.wait[f.TID]
				c.mu.Unlock()
				if ch != nil {
					ch <- f
				}
				continue
			}
			if f.Method == "SEND" {
				cp := *f
				cp.Body = append([]byte(nil), f.Body...)
				c.sends <- &cp
				res := &msrp.Frame{TID: f.TID, Code: 200, Phrase: "OK", ToPath: f.FromPath[:1], FromPath: []string{c.uri}}
				_, _ = conn.Write(res.Append(nil))
			}
		}
	}()
}

func (c *rawMSRP) request(hub string, f *msrp.Frame) *msrp.Frame {
	c.t.Helper()
	f.TID, f.ToPath, f.FromPath = randomHex(6), []string{hub}, []string{c.uri}
	if f.Flag == 0 {
		f.Flag = msrp.FlagEnd
	}
	ch := make(chan *msrp.Frame, 1)
	c.mu.Lock()
	c.wait[f.TID] = ch
	c.mu.Unlock()
	if _, err := c.conn.Write(f.Append(nil)); err != nil {
		c.t.Fatal(err)
	}
	select {
	case res := <-ch:
		return res
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no answer to %s", f.Method)
		return nil
	}
}

func (c *rawMSRP) next(t *testing.T) *msrp.Frame {
	t.Helper()
	select {
	case f := <-c.sends:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no SEND from the focus")
		return nil
	}
}

func invite(from, callID string, sdp []byte) *sip.Request {
	req := msg(from, room, "application/sdp", string(sdp))
	req.Method = sip.INVITE
	req.CSeq().MethodName = sip.INVITE
	req.CallID()
	cid := sip.CallIDHeader(callID)
	req.RemoveHeader("Call-ID")
	req.AppendHeader(&cid)
	return req
}

func bye(from, callID string) *sip.Request {
	req := invite(from, callID, nil)
	req.Method = sip.BYE
	req.CSeq().MethodName, req.CSeq().SeqNo = sip.BYE, 2
	req.RemoveHeader("Content-Type")
	return req
}

func cpimBody(from, to, text string) []byte {
	return []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nDateTime: 2026-12-02T00:00:00Z\r\n\r\nContent-Type: text/plain\r\n\r\n" + text)
}

func answerPath(t *testing.T, res *sip.Response) string {
	t.Helper()
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("INVITE answered %v", res)
	}
	for _, m := range msrp.ParseSDP(res.Body()) {
		return m.Path[0]
	}
	t.Fatalf("answer without MSRP: %s", res.Body())
	return ""
}

const dave = "sip:dave@a.example"

// RFC 7701 in process: dave (new, msrptest endpoint) and bob (a pager
// participant opening a session, raw endpoint) are session participants;
// alice and carol stay in pager mode. Messages cross both ways, CPIM From
// is checked, NICKNAME and private messages work, the roster shows the
// session participants, BYE leaves.
func TestSessionModeRoom(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionAddr = "127.0.0.1:0" })

	// dave joins the public room by INVITE.
	dep := msrptest.New("127.0.0.1", nil)
	defer dep.Close()
	res := e.serve(invite(dave, "call-dave", dep.SDP("a=setup:active", "a=chatroom:nickname private-messages")), "a")
	davePath := answerPath(t, res)
	for _, want := range []string{"a=chatroom:nickname private-messages", "a=setup:passive", "a=accept-types:message/cpim", "TCP/MSRP"} {
		if !strings.Contains(string(res.Body()), want) {
			t.Fatalf("answer lacks %q:\n%s", want, res.Body())
		}
	}
	if c := res.GetHeader("Contact"); c == nil || !strings.Contains(c.Value(), ";isfocus") || !strings.Contains(c.Value(), "chsvc=") {
		t.Fatalf("Contact %v", c)
	}
	if err := dep.Connect([]string{davePath}, nil); err != nil {
		t.Fatal(err)
	}
	// bob, already a pager participant, opens a session.
	bep := newRawMSRP(t)
	bobPath := answerPath(t, e.serve(invite(bob, "call-bob", bep.sdp()), "b"))
	bep.connect(bobPath)
	if r := bep.request(bobPath, &msrp.Frame{Method: "SEND", MessageID: "bind", ByteRange: msrp.ByteRange{Start: 1, Total: 0}, HasByteRange: true}); r.Code != 200 {
		t.Fatalf("bind: %d", r.Code)
	}
	rm := e.store.State().Room(room)
	if m := raft.RoomMember(rm, dave); m.GetSessionNode() != "n1" || !m.GetJoinedBySession() || m.GetNetwork() != "a" {
		t.Fatalf("dave = %v", m)
	}
	if m := raft.RoomMember(rm, bob); m.GetSessionNode() != "n1" || m.GetJoinedBySession() {
		t.Fatalf("bob = %v", m)
	}

	// dave speaks: replicated, bob gets it over MSRP, alice and carol as
	// pager MESSAGEs, dave no echo.
	if code, err := dep.Send([]string{davePath}, "m1", "message/cpim", cpimBody(dave, room, "hello room"), 10, nil); err != nil || code != 200 {
		t.Fatalf("dave's SEND: %d %v", code, err)
	}
	f := bep.next(t)
	if f.ContentType != "message/cpim" || !strings.Contains(string(f.Body), "From: dave <sip:dave@a.example>\r\nTo: <"+room+">") || !strings.HasSuffix(string(f.Body), "hello room") {
		t.Fatalf("bob got %q %q", f.ContentType, f.Body)
	}
	waitFor(t, "pager copies", func() bool { return len(e.snd.to(alice)) == 1 && len(e.snd.to(carol)) == 1 })
	if got := string(e.snd.to(carol)[0].req.Body()); got != "dave (dave@a.example): hello room" {
		t.Fatalf("carol got %q", got)
	}
	if len(e.snd.to(bob)) != 0 || len(e.snd.to(dave)) != 0 {
		t.Fatal("a session participant got a pager copy")
	}
	if last := e.store.State().Room(room).GetLastSeq(); last != 1 {
		t.Fatalf("last_seq %d", last)
	}

	// carol (pager) speaks: both sessions get it.
	e.say(t, carol, "b", "hi from pager")
	if f := bep.next(t); !strings.Contains(string(f.Body), "From: carol <sip:carol@b.example>") {
		t.Fatalf("bob got %q", f.Body)
	}
	select {
	case f := <-dep.Sends:
		for f.ContentType == "" {
			f = <-dep.Sends
		}
		if !strings.Contains(string(f.Body), "hi from pager") {
			t.Fatalf("dave got %q", f.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dave got nothing")
	}

	tests := []struct {
		name string
		ct   string
		body []byte
		code int
	}{
		{"CPIM From someone else", "message/cpim", cpimBody(bob, room, "spoof"), 403},
		{"not CPIM", "text/plain", []byte("plain"), 415},
		{"bad CPIM", "message/cpim", []byte("nonsense"), 400},
		{"private to nobody", "message/cpim", cpimBody(dave, "sip:zed@b.example", "psst"), 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, err := dep.Send([]string{davePath}, "x"+randomHex(3), tc.ct, tc.body, 1000, nil); err != nil || code != tc.code {
				t.Fatalf("answer %d %v, want %d", code, err, tc.code)
			}
		})
	}

	// NICKNAME (RFC 7701 7).
	for _, tc := range []struct {
		nick string
		code int
	}{{"alice", 425}, {"ALICE", 425}, {"bad nick", 424}, {"", 424}, {"bobby", 200}} {
		r := bep.request(bobPath, &msrp.Frame{Method: "NICKNAME", Other: []msrp.Header{{Name: "Use-Nickname", Value: `"` + tc.nick + `"`}}})
		if r.Code != tc.code {
			t.Errorf("NICKNAME %q: %d, want %d", tc.nick, r.Code, tc.code)
		}
	}
	if n := raft.RoomMember(e.store.State().Room(room), bob).GetNickname(); n != "bobby" {
		t.Fatalf("bob's nickname %q", n)
	}

	// A private message (RFC 7701 8): only bob, not in the history.
	before := len(e.snd.sent)
	if code, _ := dep.Send([]string{davePath}, "p1", "message/cpim", cpimBody(dave, bob, "just you"), 1000, nil); code != 200 {
		t.Fatalf("private: %d", code)
	}
	if f := bep.next(t); !strings.Contains(string(f.Body), "To: <"+bob+">") || !strings.HasSuffix(string(f.Body), "just you") {
		t.Fatalf("bob's private copy %q", f.Body)
	}
	// dave to carol privately: a pager MESSAGE to carol only.
	if code, _ := dep.Send([]string{davePath}, "p2", "message/cpim", cpimBody(dave, carol, "carol only"), 1000, nil); code != 200 {
		t.Fatalf("private to pager: %d", code)
	}
	e.snd.mu.Lock()
	after := e.snd.sent[before:]
	e.snd.mu.Unlock()
	if len(after) != 1 || after[0].req.Recipient.User != "carol" || !strings.Contains(string(after[0].req.Body()), "carol only") {
		t.Fatalf("private message to carol went out as %d requests", len(after))
	}
	if last := e.store.State().Room(room).GetLastSeq(); last != 2 {
		t.Fatalf("a private message was posted: last_seq %d", last)
	}

	// Roster (RFC 4575): session participants dialed in with message media.
	doc := string(conferenceInfo(room, "Team", 1, true, nil, rosterOf(e.store.State().Room(room))))
	if !strings.Contains(doc, `entity="`+dave+`"`) || strings.Count(doc, "<type>message</type>") != 2 {
		t.Fatalf("roster:\n%s", doc)
	}

	// BYE: dave (made by the INVITE) leaves; bob returns to pager mode.
	if r := e.serve(bye(dave, "call-dave"), "a"); r.StatusCode != 200 {
		t.Fatalf("BYE %v", r)
	}
	if r := e.serve(bye(bob, "call-bob"), "b"); r.StatusCode != 200 {
		t.Fatalf("BYE %v", r)
	}
	if r := e.serve(bye(bob, "call-bob"), "b"); r.StatusCode != 481 {
		t.Fatalf("second BYE %v", r)
	}
	rm = e.store.State().Room(room)
	if raft.RoomMember(rm, dave) != nil {
		t.Fatal("dave still in the room after BYE")
	}
	if m := raft.RoomMember(rm, bob); m == nil || m.GetSessionNode() != "" || m.GetNickname() != "bobby" {
		t.Fatalf("bob after BYE = %v", m)
	}
	e.say(t, carol, "b", "after")
	waitFor(t, "bob back to pager copies", func() bool { return len(e.snd.to(bob)) == 1 })
}

// INVITE refusals, each with its own reason.
func TestSessionInviteRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionAddr = "127.0.0.1:0" })
	e.store.must(t, &hubv1.Command_BanRoom{BanRoom: &hubv1.BanRoom{Room: room, Ban: &hubv1.RoomBan{Pattern: "sip:eve@a.example"}}})
	good := newRawMSRP(t).sdp()
	tests := []struct {
		name, from, src string
		sdp             []byte
		code            int
		reason          string
	}{
		{"no SDP", dave, "a", nil, 488, "Room Session Needs An MSRP Offer"},
		{"audio only", dave, "a", []byte("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n"), 488, "Room Session Needs An MSRP Offer"},
		{"TLS", dave, "a", []byte(strings.Replace(string(good), "TCP/MSRP", "TCP/TLS/MSRP", 1)), 488, "Room Focus Takes TCP/MSRP Only"},
		{"passive offerer", dave, "a", []byte(strings.Replace(string(good), "a=setup:active", "a=setup:passive", 1)), 488, "Room Focus Does Not Connect Out"},
		{"banned", "sip:eve@a.example", "a", good, 403, "Banned From Room"},
		{"wrong network", bob, "a", good, 403, "Participant Belongs To Another Network"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.serve(invite(tc.from, "c-"+randomHex(4), tc.sdp), tc.src)
			if res == nil || res.StatusCode != tc.code || res.Reason != tc.reason {
				t.Fatalf("answer %v, want %d %s", res, tc.code, tc.reason)
			}
		})
	}
	// Members-only rooms need an invitation.
	e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, MembersOnly: true}}})
	if res := e.serve(invite(dave, "c-mo", good), "a"); res.StatusCode != 403 || res.Reason != "Not A Room Participant" {
		t.Fatalf("members-only: %v", res)
	}
	// Without a focus configured.
	e2 := newEnv(t, nil)
	if res := e2.serve(invite(dave, "c-off", good), "a"); res.StatusCode != 488 || res.Reason != "Room Session Mode Not Enabled" {
		t.Fatalf("no focus: %v", res)
	}
}

// A session record naming this node without a live session (the node
// restarted) is cleared: the INVITE's participant leaves, a pager one
// returns to pager mode.
func TestSessionRecordsClearedAfterRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: &hubv1.RoomMember{
		User: dave, Network: "a", Nickname: "dave", SessionNode: "n2", JoinedBySession: true}}})
	bm := cloneMember(raft.RoomMember(e.store.State().Room(room), bob))
	bm.SessionNode = "n2"
	e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: bm}})
	svc, err := New(Config{Domain: domain, NodeID: "n2", Store: e.store, Sender: e.snd, SessionAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start()
	defer svc.Stop()
	waitFor(t, "records cleared", func() bool {
		r := e.store.State().Room(room)
		b := raft.RoomMember(r, bob)
		return raft.RoomMember(r, dave) == nil && b != nil && b.GetSessionNode() == ""
	})

}

// The state watcher must not take a session whose participant record is
// still being committed for one whose participant left (before: a slow
// commit and a watcher tick in between ended the new session: 481 on
// connect).
func TestSessionSurvivesSlowJoinCommit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionAddr = "127.0.0.1:0" })
	e.store.mu.Lock()
	e.store.delay = 300 * time.Millisecond // the watcher ticks every 50 ms
	e.store.mu.Unlock()
	ep := msrptest.New("127.0.0.1", nil)
	defer ep.Close()
	path := answerPath(t, e.serve(invite(dave, "call-slow", ep.SDP("a=setup:active")), "a"))
	time.Sleep(100 * time.Millisecond) // a few ticks after the commit
	if err := ep.Connect([]string{path}, nil); err != nil {
		t.Fatalf("connect after a slow join commit: %v", err)
	}
}

// Stop does not wait for a participant's connection that never sent its
// first frame (before: up to the 30 s first-frame deadline).
func TestSessionStopWithIdleConnection(t *testing.T) {
	svc, err := New(Config{Domain: domain, NodeID: "n1", Store: newMemStore(), Sender: newFakeSender(), SessionAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start()
	c, err := net.Dial("tcp", svc.SessionAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // accepted, waiting for a frame
	done := make(chan struct{})
	go func() { svc.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for an idle MSRP connection")
	}
}
