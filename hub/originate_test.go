package hub

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// originReq is a MESSAGE as a stored or hub-built request: no Via, the
// hub sends it as a UAC.
func originReq(t *testing.T, ruri string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.MESSAGE, u)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: sip.NewParams()}
	from.Params.Add("tag", "ftag1")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
	cid := sip.CallIDHeader("orig-" + sip.GenerateTagN(10))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(10)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	req.SetBody([]byte("hello, later"))
	return req
}

// Originate delivers through the destination's edges in failover order,
// audits both ends, and leaves the caller's request untouched.
func TestOriginateDelivered(t *testing.T) {
	cases := []struct {
		name   string
		extraB []string // edges tried before b's own
	}{
		{"first edge", nil},
		{"failover past refused and silent edges", []string{deadTCPEdge, deadUDPEdge}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, "udp", tc.extraB...)
			req := originReq(t, "sip:bob@b.example")
			before := req.String()
			res, err := l.hub.Originate(context.Background(), req, "netb", OriginateOptions{Source: "neta", Note: "test delivery"})
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 200 {
				t.Fatalf("got %d %s", res.StatusCode, res.Reason)
			}
			if req.String() != before {
				t.Errorf("request mutated:\n%s\nwas\n%s", req.String(), before)
			}
			got := l.b.expect(sip.MESSAGE)
			if got.CallID().Value() != req.CallID().Value() || string(got.Body()) != "hello, later" {
				t.Errorf("delivered Call-ID %q body %q", got.CallID().Value(), got.Body())
			}
			if tag, _ := got.From().Params.Get("tag"); tag != "ftag1" {
				t.Errorf("From tag %q", tag)
			}
			if mf := got.MaxForwards(); mf == nil || mf.Val() != 9 {
				t.Errorf("Max-Forwards %v, want 9", mf)
			}
			via := got.Via()
			if b, _ := via.Params.Get("branch"); via == nil || !strings.HasPrefix(b, branchPrefix) {
				t.Errorf("top Via %v is not the hub's", via)
			}
			if res.Via() != nil {
				t.Errorf("returned response still carries Via %v", res.Via())
			}
			cid := req.CallID().Value()
			re := l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 0, cid)
			if re.SrcNet != "neta" || re.DstNet != "netb" || re.Reason != "test delivery" {
				t.Errorf("request entry %+v", re)
			}
			rs := l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", 200, cid)
			if rs.SrcNet != "neta" || rs.DstNet != "netb" {
				t.Errorf("response entry %+v", rs)
			}
		})
	}
}

// Every way Originate fails is a distinct error, audited.
func TestOriginateFailures(t *testing.T) {
	cases := []struct {
		name   string
		edges  []string // netb's edges (nil: as the lab has them)
		dst    string
		opts   OriginateOptions
		mod    func(cs *hubv1.ClusterState)
		req    func(r *sip.Request)
		want   error
		status int // audited status of the request (0) or the response
	}{
		{name: "refused edge", edges: []string{deadTCPEdge}, dst: "netb", opts: OriginateOptions{Source: "neta"}, want: ErrOriginateFailed, status: 503},
		{name: "silent edge", edges: []string{deadUDPEdge}, dst: "netb", opts: OriginateOptions{Source: "neta"}, want: ErrOriginateTimeout, status: 408},
		{name: "no edge", edges: []string{}, dst: "netb", opts: OriginateOptions{Source: "neta"}, want: ErrOriginateNoEdge, status: 503},
		{name: "streams only, UDP edge refuses TCP", dst: "netb", opts: OriginateOptions{Source: "neta", StreamsOnly: true}, want: ErrOriginateFailed, status: 503},
		{name: "peering policy", dst: "netc", opts: OriginateOptions{Source: "neta"}, want: ErrOriginateRefused, status: 403},
		{name: "unknown network", dst: "nope", want: ErrOriginateRefused, status: 404},
		{name: "hub service not enabled at destination", dst: "netb",
			mod: func(cs *hubv1.ClusterState) {
				cs.Networks[1].Services = []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}
			},
			want: ErrOriginateRefused, status: 403},
		{name: "suspended", dst: "netb", opts: OriginateOptions{Source: "neta"},
			mod:  func(cs *hubv1.ClusterState) { cs.Networks[1].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED },
			want: ErrOriginateRefused, status: 403},
		{name: "max-forwards 0", dst: "netb", req: func(r *sip.Request) {
			mf := sip.MaxForwardsHeader(0)
			r.ReplaceHeader(&mf)
		}, want: ErrOriginateRefused, status: 483},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, "udp")
			cs := labState(l.a, l.b)
			if tc.edges != nil {
				cs.Networks[1].Edges = tc.edges
			}
			if tc.mod != nil {
				tc.mod(cs)
			}
			l.state.set(cs)
			req := originReq(t, "sip:bob@b.example")
			if tc.req != nil {
				tc.req(req)
			}
			start := time.Now()
			res, err := l.hub.Originate(context.Background(), req, tc.dst, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, %v; want %v", res, err, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
			cid := req.CallID().Value()
			if es := l.audit.find(ledger.KindRequest, "MESSAGE", -1, cid); len(es) != 1 {
				t.Fatalf("%d request entries, want 1", len(es))
			} else if es[0].DstNet != tc.dst || es[0].SrcNet != tc.opts.Source {
				t.Errorf("entry %+v", es[0])
			}
			switch tc.want {
			case ErrOriginateFailed, ErrOriginateTimeout:
				l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", tc.status, cid)
			default:
				l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", tc.status, cid)
			}
		})
	}
}

// The hub's own services reach a network whose services list admits them
// without a peering rule; a hub that is closing refuses at once.
func TestOriginateHubSourceAndShutdown(t *testing.T) {
	l := newLab(t, "udp")
	cs := labState(l.a, l.b)
	cs.Policies = nil // no peering at all
	l.state.set(cs)
	res, err := l.hub.Originate(context.Background(), originReq(t, "sip:bob@b.example"), "netb", OriginateOptions{})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("hub-sourced MESSAGE: %v %v", res, err)
	}
	if _, err := l.hub.Originate(context.Background(), originReq(t, "sip:bob@b.example"), "netb", OriginateOptions{Source: "neta"}); !errors.Is(err, ErrOriginateRefused) {
		t.Fatalf("member-sourced without policy: %v, want refused", err)
	}
	if err := l.hub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.hub.Originate(context.Background(), originReq(t, "sip:bob@b.example"), "netb", OriginateOptions{}); !errors.Is(err, ErrOriginateShutdown) {
		t.Fatalf("after Close: %v", err)
	}
}
