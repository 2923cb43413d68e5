package hub

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// Issue 9 item 2: Network.services (hubctl network --services) limits what a
// network sends and receives, whatever the peering policy grants. Empty
// means every service. Before the fix the list was stored and ignored.
func TestNetworkServicesEnforced(t *testing.T) {
	cases := []struct {
		name       string
		aSvcs      []hubv1.Service
		bSvcs      []hubv1.Service
		method     sip.RequestMethod
		event      string
		wantCode   int
		wantReason string
	}{
		{"no lists: every service", nil, nil, sip.MESSAGE, "", 200, "OK"},
		{"source limited to presence sends MESSAGE", []hubv1.Service{svcPresence}, nil, sip.MESSAGE, "", 403, "Source network not enabled for im"},
		{"destination limited to presence gets MESSAGE", nil, []hubv1.Service{svcPresence}, sip.MESSAGE, "", 403, "Destination network not enabled for im"},
		{"source limited to presence subscribes", []hubv1.Service{svcPresence}, nil, sip.SUBSCRIBE, "presence", 200, "OK"},
		{"destination limited to im refuses SUBSCRIBE", nil, []hubv1.Service{svcIM}, sip.SUBSCRIBE, "presence", 403, "Destination network not enabled for presence"},
		{"source limited to im refuses PUBLISH", []hubv1.Service{svcIM}, nil, sip.PUBLISH, "presence", 403, "Source network not enabled for presence"},
		{"source limited to im refuses INVITE", []hubv1.Service{svcIM}, nil, sip.INVITE, "", 403, "Source network not enabled for session"},
		{"both list im", []hubv1.Service{svcIM}, []hubv1.Service{svcIM, svcSession}, sip.MESSAGE, "", 200, "OK"},
		{"OPTIONS rides on a shared service", []hubv1.Service{svcPresence}, []hubv1.Service{svcPresence}, sip.OPTIONS, "", 200, "OK"},
		{"OPTIONS with nothing shared", []hubv1.Service{svcPresence}, []hubv1.Service{svcIM}, sip.OPTIONS, "", 403, "Networks share no enabled service"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, "udp")
			cs := labState(l.a, l.b)
			cs.Networks[0].Services = tc.aSvcs
			cs.Networks[1].Services = tc.bSvcs
			l.state.set(cs)
			req := l.a.newRequest(tc.method, "sip:bob@b.example", l.udp)
			if tc.event != "" {
				req.AppendHeader(sip.NewHeader("Event", tc.event))
			}
			res := l.a.do(req)
			if res.StatusCode != tc.wantCode || res.Reason != tc.wantReason {
				t.Fatalf("%s: %d %q, want %d %q", tc.method, res.StatusCode, res.Reason, tc.wantCode, tc.wantReason)
			}
			if tc.wantCode == 403 {
				e := l.audit.waitAudit(t, ledger.KindRequest, string(tc.method), 403, req.CallID().Value())
				if e.Reason != tc.wantReason || e.SrcNet != "neta" || e.DstNet != "netb" {
					t.Errorf("audit entry %q %s -> %s", e.Reason, e.SrcNet, e.DstNet)
				}
				select {
				case r := <-l.b.reqs:
					t.Errorf("b received the refused %s", r.Method)
				default:
				}
			} else if tc.method == sip.INVITE {
				l.b.expect(sip.INVITE)
			}
		})
	}
}
