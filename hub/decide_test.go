package hub

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"

	"clearhub/hub/routing"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// TestDecideMatchesProxy sends the same request through the SIP plane and
// through routing.Decide (what `hubctl route check` runs) and checks both
// say the same: refusal code, phrase, audited detail and metric label, or
// forwarded to the first edge Decide names.
func TestDecideMatchesProxy(t *testing.T) {
	l := newLab(t, "udp")
	const fileSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=message 7 TCP/MSRP *\r\na=file-selector:name:\"a.txt\" type:text/plain size:3\r\n"
	cases := []struct {
		name   string
		edit   func(cs *hubv1.ClusterState) // on labState
		method sip.RequestMethod
		ruri   string
		event  string
		sdp    string
		want   int // the proxy's final status
	}{
		{"message allowed", nil, sip.MESSAGE, "sip:bob@b.example", "", "", 200},
		{"subscribe presence allowed", nil, sip.SUBSCRIBE, "sip:bob@b.example", "presence", "", 200},
		{"options rides on a shared service", nil, sip.OPTIONS, "sip:bob@b.example", "", "", 200},
		{"domain nobody owns", nil, sip.MESSAGE, "sip:bob@nowhere.example", "", "", 404},
		{"destination suspended", func(cs *hubv1.ClusterState) {
			cs.Networks[1].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
		}, sip.MESSAGE, "sip:bob@b.example", "", "", 403},
		{"event package not carried", nil, sip.SUBSCRIBE, "sip:bob@b.example", "dialog", "", 489},
		{"peering policy denies", nil, sip.MESSAGE, "sip:carol@c.example", "", "", 403},
		{"file transfer not in the policy", nil, sip.INVITE, "sip:bob@b.example", "", fileSDP, 403},
		{"source services exclude im", func(cs *hubv1.ClusterState) {
			cs.Networks[0].Services = []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}
		}, sip.MESSAGE, "sip:bob@b.example", "", "", 403},
		{"destination services exclude presence", func(cs *hubv1.ClusterState) {
			cs.Networks[1].Services = []hubv1.Service{hubv1.Service_SERVICE_IM}
		}, sip.PUBLISH, "sip:bob@b.example", "presence", "", 403},
		{"options with nothing shared", func(cs *hubv1.ClusterState) {
			cs.Networks[0].Services = []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}
			cs.Networks[1].Services = []hubv1.Service{hubv1.Service_SERVICE_IM}
		}, sip.OPTIONS, "sip:bob@b.example", "", "", 403},
		{"no edge configured", func(cs *hubv1.ClusterState) {
			cs.Networks[1].Edges = nil
		}, sip.MESSAGE, "sip:bob@b.example", "", "", 503},
		{"edges that do not parse are skipped", func(cs *hubv1.ClusterState) {
			cs.Networks[1].Edges = []string{"sip:", "sip:x.example;transport=sctp", cs.Networks[1].Edges[0]}
		}, sip.MESSAGE, "sip:bob@b.example", "", "", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := labState(l.a, l.b)
			if tc.edit != nil {
				tc.edit(cs)
			}
			l.state.set(cs)
			st := l.state.State()
			req := l.a.newRequest(tc.method, tc.ruri, l.udp)
			if tc.event != "" {
				req.AppendHeader(sip.NewHeader("Event", tc.event))
			}
			if tc.sdp != "" {
				req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				req.SetBody([]byte(tc.sdp))
			}
			d := routing.Decide(st, st.Network("neta"), routing.Request{
				Method: string(tc.method), Host: req.Recipient.Host, Event: tc.event, FileTransfer: tc.sdp != "",
			})
			var before float64
			if d.Code != 0 {
				before = refusalCount(t, l.hub, d.Label, d.Code)
			}

			res := l.a.do(req)
			if res.StatusCode != tc.want {
				t.Fatalf("proxy answered %d %q, want %d", res.StatusCode, res.Reason, tc.want)
			}
			switch {
			case d.Code != 0:
				if res.StatusCode != d.Code || res.Reason != d.Phrase {
					t.Fatalf("proxy %d %q, Decide %d %q", res.StatusCode, res.Reason, d.Code, d.Phrase)
				}
				e := l.audit.waitAudit(t, ledger.KindRequest, string(tc.method), d.Code, req.CallID().Value())
				if e.Reason != d.Detail {
					t.Errorf("audited %q, Decide's detail %q", e.Reason, d.Detail)
				}
				if got := refusalCount(t, l.hub, d.Label, d.Code); got != before+1 {
					t.Errorf("refusals{reason=%q} went %v -> %v, want +1", d.Label, before, got)
				}
			case !d.Forwardable():
				if res.StatusCode != 503 {
					t.Fatalf("Decide: no usable edge; proxy answered %d", res.StatusCode)
				}
			default:
				got := l.b.expect(tc.method)
				if hp := d.Order(len(got.Body()))[0]; hp.Addr != l.b.addr || hp.Transport != "UDP" {
					t.Errorf("Decide's first edge %+v; the request reached %s", hp, l.b.addr)
				}
			}
			if d.Code == 0 && d.Dst.GetId() != "netb" {
				t.Errorf("Decide's destination %q", d.Dst.GetId())
			}
		})
	}
	// Drain what b received so nothing leaks into later tests' channels.
	for len(l.b.reqs) > 0 {
		<-l.b.reqs
	}
}

// TestPreferStreamsThroughHub: the proxy's hop ordering is routing's.
func TestPreferStreamsThroughHub(t *testing.T) {
	hops := []hop{{addr: "u:1", transport: "UDP"}, {addr: "t:1", transport: "TLS"}, {addr: "c:1", transport: "TCP"}}
	cases := []struct {
		size int
		want []string
	}{
		{500, []string{"u:1", "t:1", "c:1"}},
		{1300, []string{"u:1", "t:1", "c:1"}},
		{1301, []string{"t:1", "c:1", "u:1"}},
	}
	for _, tc := range cases {
		var got []string
		for _, hp := range preferStreams(hops, tc.size) {
			got = append(got, hp.addr)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("size %d: %v, want %v", tc.size, got, tc.want)
		}
	}
}

// counterValue reads clearhub_sip_refusals_total{reason,status}.
func refusalCount(t *testing.T, h *Hub, reason string, status int) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.om.refusals.WithLabelValues(reason, statusLabel(status)).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestCarriedFromRouting: the Allow header and the 405 check read the same
// list hubctl route check does, unchanged by the move to routing.
func TestCarriedFromRouting(t *testing.T) {
	if want := "INVITE, ACK, CANCEL, BYE, OPTIONS, SUBSCRIBE, NOTIFY, PUBLISH, MESSAGE, UPDATE, INFO, REFER, PRACK"; allowHeader != want {
		t.Errorf("Allow %q, want %q", allowHeader, want)
	}
	for _, m := range []sip.RequestMethod{sip.REGISTER, "FOO"} {
		if carried[m] {
			t.Errorf("%s carried", m)
		}
	}
	if len(carried) != 13 || !carried[sip.MESSAGE] || !carried[sip.PRACK] {
		t.Errorf("carried %v", carried)
	}
}
