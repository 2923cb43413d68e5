package hub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// Pager-mode MESSAGE crosses the hub in both directions, over UDP and TCP,
// with the body untouched, Max-Forwards decremented, the hub's Via added,
// and request and response audited (body kept only for neta, which asks).
func TestMessageBothWays(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			l := newLab(t, network)
			body := []byte("hello bob")
			req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.hubAddr(network))
			req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			req.SetBody(body)
			res := l.a.do(req)
			if res.StatusCode != 200 {
				t.Fatalf("a->b MESSAGE: got %d %s", res.StatusCode, res.Reason)
			}
			if n := len(res.GetHeaders("Via")); n != 1 {
				t.Errorf("response reached a with %d Via headers, want 1", n)
			}
			got := l.b.expect(sip.MESSAGE)
			if !bytes.Equal(got.Body(), body) {
				t.Errorf("body changed: %q", got.Body())
			}
			if mf := got.MaxForwards(); mf == nil || mf.Val() != 69 {
				t.Errorf("Max-Forwards at b = %v, want 69", mf)
			}
			if v := got.Via(); v == nil || !strings.HasPrefix(v.Params.GetOr("branch", ""), branchPrefix) {
				t.Errorf("top Via at b is not the hub's: %v", v)
			}
			cid := req.CallID().Value()
			e := l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 0, cid)
			if e.SrcNet != "neta" || e.DstNet != "netb" || !e.BodyKept || !bytes.Equal(e.Body, body) || len(e.BodySHA256) != 32 || e.BodyType != "text/plain" {
				t.Errorf("request entry = %+v", e)
			}
			if e.Transport != network || !strings.HasPrefix(e.Src, "127.0.0.2:") {
				t.Errorf("request entry source = %q %q", e.Transport, e.Src)
			}
			l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", 200, cid)

			back := l.b.newRequest(sip.MESSAGE, "sip:alice@a.example", l.hubAddr(network))
			back.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			back.SetBody([]byte("hi alice"))
			if res := l.b.do(back); res.StatusCode != 200 {
				t.Fatalf("b->a MESSAGE: got %d", res.StatusCode)
			}
			l.a.expect(sip.MESSAGE)
			e = l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 0, back.CallID().Value())
			if e.SrcNet != "netb" || e.DstNet != "neta" || e.BodyKept || len(e.Body) != 0 || len(e.BodySHA256) != 32 {
				t.Errorf("b->a entry must hold a digest only: %+v", e)
			}
		})
	}
}

// Presence: SUBSCRIBE is record-routed; the NOTIFY comes back through the
// hub by the Route set (also before the 200 reaches the subscriber, RFC
// 6665); refresh and unsubscribe are in-dialog requests routed without
// hub state.
func TestPresenceSubscribeNotify(t *testing.T) {
	l := newLab(t, "udp")
	notifyReady := make(chan *sip.Request, 1)
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.Method == sip.SUBSCRIBE {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: hostOf(l.b.addr), Port: portOf(l.b.addr)}})
			res.AppendHeader(sip.NewHeader("Expires", "600"))
			_ = tx.Respond(res)
			select {
			case notifyReady <- req:
			default:
			}
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	l.a.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})

	sub := l.a.newRequest(sip.SUBSCRIBE, "sip:bob@b.example", l.udp)
	sub.AppendHeader(sip.NewHeader("Event", "presence"))
	sub.AppendHeader(sip.NewHeader("Expires", "600"))
	res := l.a.do(sub)
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
	}
	rrs := recordRoutes(res)
	if len(rrs) != 1 || rrs[0].UriParams.GetOr(paramSrc, "") != "neta" || rrs[0].UriParams.GetOr(paramDst, "") != "netb" {
		t.Fatalf("200 Record-Route = %v", rrs)
	}

	// b notifies, with the route set learnt from the SUBSCRIBE it got.
	got := <-notifyReady
	l.b.expect(sip.SUBSCRIBE)
	bRoute := recordRoutes(got)
	toTag := res.To().Params.GetOr("tag", "")
	fromB := &sip.FromHeader{Address: got.To().Address, Params: sip.NewParams()}
	fromB.Params.Add("tag", toTag)
	toA := &sip.ToHeader{Address: got.From().Address, Params: got.From().Params.Clone()}
	notify := l.b.inDialog(sip.NOTIFY, got.Contact().Address, bRoute, fromB, toA, sub.CallID().Value(), 1)
	notify.AppendHeader(sip.NewHeader("Event", "presence"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	notify.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
	notify.SetBody([]byte("<presence/>"))
	if res := l.b.do(notify); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d %s", res.StatusCode, res.Reason)
	}
	n := l.a.expect(sip.NOTIFY)
	if len(n.GetHeaders("Route")) != 0 {
		t.Errorf("hub did not pop its Route: %v", n.GetHeaders("Route"))
	}
	e := l.audit.waitAudit(t, ledger.KindRequest, "NOTIFY", 0, sub.CallID().Value())
	if e.SrcNet != "netb" || e.DstNet != "neta" {
		t.Errorf("NOTIFY entry networks %q -> %q", e.SrcNet, e.DstNet)
	}

	// a refreshes, then unsubscribes, in-dialog.
	aRoute := reversed(rrs)
	fromA := &sip.FromHeader{Address: sub.From().Address, Params: sub.From().Params.Clone()}
	toB := &sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}
	for i, exp := range []string{"600", "0"} {
		r := l.a.inDialog(sip.SUBSCRIBE, res.Contact().Address, aRoute, fromA, toB, sub.CallID().Value(), uint32(2+i))
		r.AppendHeader(sip.NewHeader("Event", "presence"))
		r.AppendHeader(sip.NewHeader("Expires", exp))
		if res := l.a.do(r); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE Expires %s: %d %s", exp, res.StatusCode, res.Reason)
		}
		if g := l.b.expect(sip.SUBSCRIBE); g.GetHeader("Expires").Value() != exp {
			t.Errorf("b got Expires %s", g.GetHeader("Expires").Value())
		}
	}

	// A forged route (MAC does not match) is refused.
	forged := aRoute[0]
	forged.UriParams = forged.UriParams.Clone()
	forged.UriParams.Add(paramDst, "netc")
	r := l.a.inDialog(sip.SUBSCRIBE, res.Contact().Address, []sip.Uri{forged}, fromA, toB, sub.CallID().Value(), 9)
	r.AppendHeader(sip.NewHeader("Event", "presence"))
	if res := l.a.do(r); res.StatusCode != 403 {
		t.Errorf("forged route: got %d, want 403", res.StatusCode)
	}
}

// An MSRP session: INVITE with SDP, 180 and 200 relayed, the ACK for the
// 2xx and the BYE routed through the hub by the Route set.
func TestInviteAckBye(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			l := newLab(t, network)
			sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:msrp://127.0.0.2:7394/abc;tcp\r\n"
			l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
				switch req.Method {
				case sip.INVITE:
					_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
					res := sip.NewSDPResponseFromRequest(req, req.Body())
					res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: hostOf(l.b.addr), Port: portOf(l.b.addr), UriParams: transportParam(network)}})
					_ = tx.Respond(res)
				case sip.ACK:
				default:
					_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
				}
			})
			inv := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.hubAddr(network))
			inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			inv.SetBody([]byte(sdp))
			res := l.a.do(inv)
			if res.StatusCode != 200 {
				t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
			}
			if string(res.Body()) != sdp {
				t.Errorf("SDP answer changed")
			}
			rrs := recordRoutes(res)
			if len(rrs) != 1 {
				t.Fatalf("Record-Route in 200: %v", rrs)
			}
			route := reversed(rrs)
			fromA := &sip.FromHeader{Address: inv.From().Address, Params: inv.From().Params.Clone()}
			toB := &sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}
			ack := l.a.inDialog(sip.ACK, res.Contact().Address, route, fromA, toB, inv.CallID().Value(), 1)
			if err := l.a.cl.WriteRequest(ack); err != nil {
				t.Fatal(err)
			}
			if g := l.b.expect(sip.ACK); g.CallID().Value() != inv.CallID().Value() {
				t.Errorf("ACK for another call")
			}
			bye := l.a.inDialog(sip.BYE, res.Contact().Address, route, fromA, toB, inv.CallID().Value(), 2)
			if res := l.a.do(bye); res.StatusCode != 200 {
				t.Fatalf("BYE: %d %s", res.StatusCode, res.Reason)
			}
			l.b.expect(sip.BYE)
			for _, m := range []string{"INVITE", "ACK", "BYE"} {
				e := l.audit.waitAudit(t, ledger.KindRequest, m, 0, inv.CallID().Value())
				if e.SrcNet != "neta" || e.DstNet != "netb" {
					t.Errorf("%s entry networks %q -> %q", m, e.SrcNet, e.DstNet)
				}
			}
			l.audit.waitAudit(t, ledger.KindResponse, "INVITE", 200, inv.CallID().Value())
			l.audit.waitAudit(t, ledger.KindResponse, "BYE", 200, inv.CallID().Value())
		})
	}
}
