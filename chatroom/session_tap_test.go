package chatroom

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// tapRecorder is a ContentTap that wants the sessions of one user.
type tapRecorder struct {
	user string
	mu   sync.Mutex
	got  []msrp.TapChunk
}

func (r *tapRecorder) WantsMSRP(srcNet, dstNet string, from, to *sip.Uri) bool {
	is := func(u *sip.Uri) bool { return u != nil && u.User+"@"+u.Host == r.user }
	return is(from) || is(to)
}

func (r *tapRecorder) TapMSRP(c msrp.TapChunk) {
	r.mu.Lock()
	r.got = append(r.got, c)
	r.mu.Unlock()
}

func (r *tapRecorder) chunks() []msrp.TapChunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]msrp.TapChunk(nil), r.got...)
}

// A session-mode room's MSRP reaches lawful interception: what the
// watched participant sends the focus and what the focus sends it; nothing
// of another participant's own session.
func TestSessionModeTapped(t *testing.T) {
	tap := &tapRecorder{user: "dave@a.example"}
	e := newEnv(t, func(c *Config) { c.SessionAddr = "127.0.0.1:0"; c.Tap = tap })

	dep := msrptest.New("127.0.0.1", nil)
	defer dep.Close()
	davePath := answerPath(t, e.serve(invite(dave, "call-dave", dep.SDP("a=setup:active")), "a"))
	if err := dep.Connect([]string{davePath}, nil); err != nil {
		t.Fatal(err)
	}
	bep := newRawMSRP(t)
	bobPath := answerPath(t, e.serve(invite(bob, "call-bob", bep.sdp()), "b"))
	bep.connect(bobPath)
	if r := bep.request(bobPath, &msrp.Frame{Method: "SEND", MessageID: "bind", ByteRange: msrp.ByteRange{Start: 1, Total: 0}, HasByteRange: true}); r.Code != 200 {
		t.Fatalf("bind: %d", r.Code)
	}

	if code, err := dep.Send([]string{davePath}, "m1", "message/cpim", cpimBody(dave, room, "from dave"), 10, nil); err != nil || code != 200 {
		t.Fatalf("dave's SEND: %d %v", code, err)
	}
	bep.next(t) // bob has dave's message
	if r := bep.request(bobPath, &msrp.Frame{Method: "SEND", MessageID: "b1", ByteRange: msrp.ByteRange{Start: 1, End: -1, Total: -1}, HasByteRange: true,
		ContentType: "message/cpim", Body: cpimBody(bob, room, "from bob"), Flag: msrp.FlagEnd}); r.Code != 200 {
		t.Fatalf("bob's SEND: %d", r.Code)
	}
	<-dep.Sends // dave has bob's message

	var in, out bool
	deadline := time.Now().Add(5 * time.Second)
	for cond := func() bool {
		in, out = false, false
		for _, c := range tap.chunks() {
			w := string(c.Wire)
			switch {
			case c.SrcNet == "a" && c.CallID == "call-dave" && strings.Contains(w, "Message-ID: m1\r\n") && strings.HasPrefix(w, "MSRP "):
				// dave's message, chunk by chunk as sent (10-byte chunks)
				in = true
			case c.DstNet == "a" && c.CallID == "call-dave" && strings.Contains(w, "from bob") && c.To != nil && c.To.User == "dave":
				out = true
			}
		}
		return in && out
	}; !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !in || !out {
		for _, c := range tap.chunks() {
			t.Logf("chunk %s->%s call %s from %v to %v: %q", c.SrcNet, c.DstNet, c.CallID, c.From, c.To, c.Wire)
		}
		t.Fatalf("tapped: participant's SEND %v, focus's SEND to it %v", in, out)
	}
	for _, c := range tap.chunks() {
		if c.CallID == "call-bob" {
			t.Fatalf("bob's own session was tapped: %+v", c)
		}
		if c.Src == "" || c.Dst == "" || c.Transport != "tcp" {
			t.Fatalf("chunk without addresses: %+v", c)
		}
	}
}
