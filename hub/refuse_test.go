package hub

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// Every refusal has its status, reaches nobody, and is audited as a refused
// request plus a generated response.
func TestRefusals(t *testing.T) {
	l := newLab(t, "udp")
	stranger := newMember(t, "x", "a.example", "127.0.0.9", memberOpts{})
	cases := []struct {
		name   string
		from   *member
		build  func() *sip.Request
		status int
		reason string // in the audit entry
	}{
		{"unattributable source", stranger, func() *sip.Request {
			return stranger.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
		}, 403, "unattributable"},
		{"spoofed From", l.a, func() *sip.Request {
			r := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
			r.From().Address.Host = "b.example"
			return r
		}, 403, "From domain not owned by sender"},
		{"unknown domain", l.a, func() *sip.Request {
			return l.a.newRequest(sip.MESSAGE, "sip:bob@nowhere.example", l.udp)
		}, 404, "no member network owns"},
		{"policy deny", l.a, func() *sip.Request {
			return l.a.newRequest(sip.MESSAGE, "sip:carol@c.example", l.udp)
		}, 403, "Peering policy denies im"},
		{"Max-Forwards 0", l.a, func() *sip.Request {
			r := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
			mf := sip.MaxForwardsHeader(0)
			r.AppendHeader(&mf)
			return r
		}, 483, "Max-Forwards"},
		{"REGISTER", l.a, func() *sip.Request {
			return l.a.newRequest(sip.REGISTER, "sip:b.example", l.udp)
		}, 405, "not carried"},
		{"unknown event package", l.a, func() *sip.Request {
			r := l.a.newRequest(sip.SUBSCRIBE, "sip:bob@b.example", l.udp)
			r.AppendHeader(sip.NewHeader("Event", "message-summary"))
			return r
		}, 489, "event package"},
		{"stray CANCEL", l.a, func() *sip.Request {
			return l.a.newRequest(sip.CANCEL, "sip:bob@b.example", l.udp)
		}, 481, "CANCEL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.build()
			res := tc.from.do(req)
			if res.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.status)
			}
			if tc.status == 405 && res.GetHeader("Allow") == nil {
				t.Error("405 without Allow")
			}
			cid := req.CallID().Value()
			e := l.audit.waitAudit(t, ledger.KindRequest, string(req.Method), tc.status, cid)
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("audit reason %q lacks %q", e.Reason, tc.reason)
			}
			l.audit.waitAudit(t, ledger.KindResponse, string(req.Method), tc.status, cid)
		})
	}
	select {
	case r := <-l.b.reqs:
		t.Errorf("a refused request reached b: %s", r.Short())
	default:
	}
}

// OPTIONS to the hub itself (a member keep-alive), and OPTIONS with
// Max-Forwards 0, are answered by the hub (RFC 3261 11).
func TestOptionsAnsweredByHub(t *testing.T) {
	l := newLab(t, "udp")
	hubURI := "sip:" + l.udp
	if res := l.a.do(l.a.newRequest(sip.OPTIONS, hubURI, l.udp)); res.StatusCode != 200 || res.GetHeader("Allow") == nil {
		t.Fatalf("OPTIONS to hub: %d", res.StatusCode)
	}
	r := l.a.newRequest(sip.OPTIONS, "sip:bob@b.example", l.udp)
	mf := sip.MaxForwardsHeader(0)
	r.AppendHeader(&mf)
	if res := l.a.do(r); res.StatusCode != 200 {
		t.Fatalf("OPTIONS Max-Forwards 0: %d", res.StatusCode)
	}
	// An ordinary OPTIONS to a user is proxied.
	if res := l.a.do(l.a.newRequest(sip.OPTIONS, "sip:bob@b.example", l.udp)); res.StatusCode != 200 {
		t.Fatalf("OPTIONS to bob: %d", res.StatusCode)
	}
	l.b.expect(sip.OPTIONS)
}

// A suspended network can neither send nor receive.
func TestSuspendedNetwork(t *testing.T) {
	l := newLab(t, "udp")
	cs := labState(l.a, l.b)
	cs.Networks[1].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED // netb
	l.state.set(cs)
	if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 403 {
		t.Errorf("to suspended: got %d", res.StatusCode)
	}
	if res := l.b.do(l.b.newRequest(sip.MESSAGE, "sip:alice@a.example", l.udp)); res.StatusCode != 403 {
		t.Errorf("from suspended: got %d", res.StatusCode)
	}
	if es := l.audit.find(ledger.KindRequest, "MESSAGE", 403, ""); len(es) != 2 {
		t.Errorf("want 2 audited refusals, have %d", len(es))
	}
}

// When the ledger cannot make the entry durable the request is refused
// with 500 and never forwarded.
func TestLedgerFailureRefuses(t *testing.T) {
	l := newLab(t, "udp")
	l.audit.fail.Store(true)
	if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 500 {
		t.Fatalf("got %d, want 500", res.StatusCode)
	}
	select {
	case r := <-l.b.reqs:
		t.Fatalf("unaudited request forwarded: %s", r.Short())
	case <-time.After(100 * time.Millisecond):
	}
}

// A request that loops back through the hub is refused with 482.
func TestLoopDetected(t *testing.T) {
	l := newLab(t, "udp")
	// b "forwards" the request straight back to the hub, unchanged but for
	// its own Via, as a misconfigured edge would.
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		fwd := req.Clone()
		mf := sip.MaxForwardsHeader(req.MaxForwards().Val() - 1)
		fwd.ReplaceHeader(&mf)
		fwd.SetDestination(l.udp)
		fwd.RemoveHeader("Via")
		for _, v := range req.GetHeaders("Via") {
			fwd.AppendHeader(sip.HeaderClone(v))
		}
		fwd.Laddr = sip.Addr{IP: net.ParseIP("127.0.0.3"), Port: portOf(l.b.addr)}
		res, err := l.b.cl.Do(t.Context(), fwd, sipgo.ClientRequestAddVia)
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "x", nil))
			return
		}
		out := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
		_ = tx.Respond(out)
	})
	res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp))
	if res.StatusCode != 482 {
		t.Fatalf("got %d %s, want 482 relayed back", res.StatusCode, res.Reason)
	}
	l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 482, "")
}

// An unparsable datagram gets a 400 (sipgo alone would drop it) and is
// audited; an oversized one is refused too.
func TestMalformedDatagram(t *testing.T) {
	l := newLab(t, "udp")
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, mustUDPAddr(t, l.udp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "MESSAGE sip:bob@b.example SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5555;branch=z9hG4bKbad1\r\n" +
		"From: <sip:alice@a.example>;tag=1\r\n" +
		"To: <sip:bob@b.example>\r\n" +
		"Call-ID: malformed-1\r\n" +
		"CSeq: notanumber MESSAGE\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to a malformed request: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 400 ") || !strings.Contains(string(buf[:n]), "Call-ID: malformed-1") {
		t.Fatalf("answer = %q", buf[:n])
	}
	e := l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 400, "malformed-1")
	if e.SrcNet != "neta" || !strings.Contains(e.Reason, "malformed") {
		t.Errorf("entry = %+v", e)
	}
}

func mustUDPAddr(t *testing.T, s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
