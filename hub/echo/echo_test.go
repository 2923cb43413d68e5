package echo

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sent struct {
	req *sip.Request
	dst string
}

type fakeOut struct {
	mu   sync.Mutex
	sent []sent
}

func (f *fakeOut) Send(_ context.Context, req *sip.Request, dst string) (*sip.Response, error) {
	f.mu.Lock()
	f.sent = append(f.sent, sent{req, dst})
	f.mu.Unlock()
	return sip.NewResponseFromRequest(req, 200, "OK", nil), nil
}

func testState() *raft.State {
	return raft.NewState(1, &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:127.0.0.2:5060"}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:127.0.0.3:5060"}, Services: []hubv1.Service{hubv1.Service_SERVICE_IM}},
		},
		Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE}}}}},
	})
}

func request(t *testing.T, method sip.RequestMethod, ruri string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(method, u)
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKabc"))
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: sip.NewParams()}
	from.Params.Add("tag", "t1")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
	cid := sip.CallIDHeader("cid-1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
	return req
}

func TestEcho(t *testing.T) {
	out := &fakeOut{}
	s := New("hub.localhost", out, nil)
	for _, tc := range []struct {
		method   sip.RequestMethod
		ruri     string
		code     int
		bodyHas  []string
		replyFor string
	}{
		{sip.MESSAGE, "sip:echo@hub.localhost", 200, nil, "sip:alice@a.example"},
		{sip.OPTIONS, "sip:echo@hub.localhost", 200, []string{"source network: neta", "lab prefix 127.0.0.2/32", "via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKabc",
			"you may reach: netb (im)", "may reach you: nobody", "from your configured edge sip:127.0.0.2:5060"}, ""},
		{sip.MESSAGE, "sip:someone@hub.localhost", 404, nil, ""},
		{sip.SUBSCRIBE, "sip:echo@hub.localhost", 405, nil, ""},
	} {
		t.Run(string(tc.method)+" "+tc.ruri, func(t *testing.T) {
			var got *sip.Response
			r := &Request{Req: request(t, tc.method, tc.ruri), Source: "neta", State: testState(), Transport: "udp", Src: "127.0.0.2:5060",
				Local: "127.0.0.1:5060", LabPrefix: "127.0.0.2/32", Node: "n1", Respond: func(res *sip.Response) { got = res }}
			before := len(out.sent)
			s.Serve(r)
			if got == nil || got.StatusCode != tc.code {
				t.Fatalf("response %v, want %d", got, tc.code)
			}
			for _, want := range tc.bodyHas {
				if !strings.Contains(string(got.Body()), want) {
					t.Errorf("body lacks %q:\n%s", want, got.Body())
				}
			}
			s.wg.Wait()
			out.mu.Lock()
			defer out.mu.Unlock()
			if tc.replyFor == "" {
				if len(out.sent) != before {
					t.Fatal("unexpected reply sent")
				}
				return
			}
			if len(out.sent) != before+1 {
				t.Fatal("no reply sent")
			}
			back := out.sent[before]
			if back.dst != "neta" || back.req.Recipient.String() != tc.replyFor || back.req.From().Address.String() != "sip:echo@hub.localhost" ||
				!strings.Contains(string(back.req.Body()), "call-id: cid-1") || back.req.ContentType().Value() != "text/plain;charset=utf-8" {
				t.Fatalf("reply to %s: %s", back.dst, back.req.String())
			}
		})
	}
	s.Close()
}

// Header text an attacker controls never breaks the report's lines.
func TestReportKeepsLines(t *testing.T) {
	req := request(t, sip.OPTIONS, "sip:echo@hub.localhost")
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP evil\r\nforged: yes"))
	rep := Report(&Request{Req: req, Source: "neta", State: testState(), Src: "127.0.0.2:5060", Certificate: "CN=edge.a.example"})
	if strings.Contains(rep, "\r\nforged") {
		t.Fatalf("report carries an injected line:\n%s", rep)
	}
	if !strings.Contains(rep, "TLS client certificate CN=edge.a.example") {
		t.Fatalf("certificate not reported:\n%s", rep)
	}
}
