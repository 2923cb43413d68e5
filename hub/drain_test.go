package hub

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// A draining node answers new out-of-dialog requests 503 with Retry-After
// (keep-alive OPTIONS included, so members' probes move them to another
// node) and still routes requests inside a dialog it record-routed before;
// undrained, it serves again.
func TestDrainRefusesNewRequestsKeepsDialogs(t *testing.T) {
	l := newRouteLab(t, nil)
	d := l.open(t, sip.SUBSCRIBE)
	l.hub.SetDraining(true)
	if !l.hub.Draining() {
		t.Fatal("Draining() false after SetDraining(true)")
	}
	subscribe := func() *sip.Request {
		r := l.a.newRequest(sip.SUBSCRIBE, "sip:bob@b.example", l.udp)
		r.AppendHeader(sip.NewHeader("Event", "presence"))
		return r
	}
	cases := []struct {
		name string
		by   *member
		req  *sip.Request
		code int
	}{
		{"MESSAGE out of dialog", l.a, l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp), 503},
		{"new SUBSCRIBE", l.a, subscribe(), 503},
		{"INVITE out of dialog", l.a, l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp), 503},
		{"keep-alive OPTIONS", l.a, l.a.newRequest(sip.OPTIONS, "sip:"+l.udp, l.udp), 503},
		{"NOTIFY in the dialog", l.b, withEvent(d.fromB(l.b, sip.NOTIFY, 2), "presence"), 200},
		{"SUBSCRIBE refresh in the dialog", l.a, withEvent(d.fromAReq(l.a, sip.SUBSCRIBE, 2), "presence"), 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := sendVia(l, tc.by, tc.req)
			if res.StatusCode != tc.code {
				t.Fatalf("%s: %d %s, want %d", tc.req.Method, res.StatusCode, res.Reason, tc.code)
			}
			if tc.code != 503 {
				return
			}
			if ra := res.GetHeader("Retry-After"); ra == nil || ra.Value() != drainRetryAfter {
				t.Errorf("503 Retry-After = %v, want %s", ra, drainRetryAfter)
			}
			if res.Reason != "Draining for Maintenance" {
				t.Errorf("reason phrase %q", res.Reason)
			}
			e := l.audit.waitAudit(t, ledger.KindRequest, string(tc.req.Method), 503, tc.req.CallID().Value())
			if e.Reason == "" {
				t.Error("refusal audited without a reason")
			}
		})
	}
	// The in-dialog NOTIFY reached a; nothing refused reached b.
	l.a.expect(sip.NOTIFY)
	for len(l.b.reqs) > 0 {
		if r := <-l.b.reqs; r.Method != sip.SUBSCRIBE || r.CallID().Value() != d.callID {
			t.Errorf("b received %s %s while draining", r.Method, r.CallID().Value())
		}
	}

	l.hub.SetDraining(false)
	if res := sendVia(l, l.a, l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 200 {
		t.Fatalf("MESSAGE after undrain: %d %s", res.StatusCode, res.Reason)
	}
}
