package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The echo user through the real proxy core: a member's MESSAGE gets 200
// and a MESSAGE back saying what the hub saw; OPTIONS gets it as the body.
func TestEchoThroughTheHub(t *testing.T) {
	a := newUDPMember(t, "127.0.0.2", "a.example")
	b := newUDPMember(t, "127.0.0.3", "b.example")
	im := []hubv1.Service{hubv1.Service_SERVICE_IM}
	st := raft.NewState(1, &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:" + a.addr + ";transport=udp"}, Services: im,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:" + b.addr + ";transport=udp"}, Services: im,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: im}}}},
	})
	const domain = "hub.localhost"
	w := newEchoWiring(domain, "n1")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := hub.New(hub.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Hostname: "127.0.0.1", RouteSecret: []byte("s"),
		TransactionTimeout: time.Second, Logger: quiet, Hosted: map[string]hub.HostedService{domain: w}}, staticState{st}, &countAudit{})
	if err != nil {
		t.Fatal(err)
	}
	w.sip.Store(h)
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(context.Background()) }()
	t.Cleanup(func() { _ = h.Close(); <-runDone; w.close() })
	hubAddr := h.Addrs()[0].String()

	got := make(chan *sip.Request, 2)
	a.on(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		got <- req
	})
	build := func(method sip.RequestMethod) *sip.Request {
		var u sip.Uri
		_ = sip.ParseUri("sip:echo@hub.localhost", &u)
		req := sip.NewRequest(method, u)
		fp := sip.NewParams()
		fp.Add("tag", "t1")
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: fp})
		req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
		cid := sip.CallIDHeader("echo-" + string(method))
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
		req.SetDestination(hubAddr)
		return req
	}
	wantIn := func(what, text string) {
		t.Helper()
		for _, s := range []string{"source network: neta", "authenticated by: source address 127.0.0.2:", "in lab prefix 127.0.0.2/32",
			"from: sip:alice@a.example", "to: sip:echo@hub.localhost", "via: SIP/2.0/UDP 127.0.0.2:", "from your configured edge sip:" + a.addr,
			"you may reach: netb (im)", "may reach you: nobody", "arrived: udp from 127.0.0.2:"} {
			if !strings.Contains(text, s) {
				t.Errorf("%s lacks %q:\n%s", what, s, text)
			}
		}
	}

	if res := a.do(t, build(sip.MESSAGE)); res.StatusCode != 200 {
		t.Fatalf("MESSAGE to echo: %d %s", res.StatusCode, res.Reason)
	}
	select {
	case back := <-got:
		if back.Method != sip.MESSAGE || back.From().Address.String() != "sip:echo@hub.localhost" || back.Recipient.User != "alice" {
			t.Fatalf("echo sent %s", back.String())
		}
		wantIn("echo MESSAGE", string(back.Body()))
	case <-time.After(5 * time.Second):
		t.Fatal("no MESSAGE back from the echo user")
	}

	res := a.do(t, build(sip.OPTIONS))
	if res.StatusCode != 200 {
		t.Fatalf("OPTIONS to echo: %d", res.StatusCode)
	}
	wantIn("OPTIONS body", string(res.Body()))

	other := build(sip.MESSAGE)
	other.Recipient.User = "nobody"
	if res := a.do(t, other); res.StatusCode != 404 {
		t.Fatalf("MESSAGE to another hub user: %d", res.StatusCode)
	}
}
