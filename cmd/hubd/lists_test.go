package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"clearhub/hub"
	"clearhub/hub/lists"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

type staticState struct{ st *raft.State }

func (s staticState) State() *raft.State { return s.st }

type countAudit struct {
	mu      sync.Mutex
	entries []ledger.Entry
}

func (a *countAudit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, *e)
	return uint64(len(a.entries)), nil
}

// udpMember is a member network's edge on one loopback address.
type udpMember struct {
	addr    string
	cl      *sipgo.Client
	handler atomic.Pointer[func(*sip.Request, sip.ServerTransaction)]
}

func newUDPMember(t *testing.T, ip, domain string) *udpMember {
	t.Helper()
	m := &udpMember{}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(domain))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		if f := m.handler.Load(); f != nil {
			(*f)(req, tx)
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	m.addr = c.LocalAddr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeUDP(c) }()
	if m.cl, err = sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(m.addr), sipgo.WithClientLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); <-done; ua.Close() })
	for i := 0; i < 200; i++ {
		if conn, err := ua.TransportLayer().GetConnection("udp", m.addr); err == nil && conn != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return m
}

func (m *udpMember) on(f func(*sip.Request, sip.ServerTransaction)) { m.handler.Store(&f) }

func (m *udpMember) do(t *testing.T, req *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := m.cl.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

func hostPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// The wiring end to end through the real proxy core: a's watcher
// subscribes to a hub list; the core attributes and audits it and hands it
// to the list server; the back-end SUBSCRIBE leaves through hub.Originate
// to b's edge in the watcher's name; b's NOTIFY comes back to the hub's
// Contact (chsvc) and reaches the list server; the watcher gets an RLMI
// NOTIFY through Originate with b's PIDF in it.
func TestListsThroughTheHub(t *testing.T) {
	a := newUDPMember(t, "127.0.0.2", "a.example")
	b := newUDPMember(t, "127.0.0.3", "b.example")
	pres := []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}
	st := raft.NewState(1, &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "a", Domains: []string{"a.example"}, Edges: []string{"sip:" + a.addr + ";transport=udp"}, Services: pres,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "b", Domains: []string{"b.example"}, Edges: []string{"sip:" + b.addr + ";transport=udp"}, Services: pres,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a", Services: pres}}}},
		Lists: []*hubv1.ResourceList{{Uri: "sip:alice-buddies@lists.hub.example", Owner: "sip:alice@a.example", Revision: 1,
			Entries: []*hubv1.ListEntry{{Uri: "sip:bob@b.example", DisplayName: "Bob"}}}},
	})
	const domain = "lists.hub.example"
	w := &listsWiring{domain: domain}
	audit := &countAudit{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := hub.New(hub.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Hostname: "127.0.0.1", RouteSecret: []byte("s"),
		TransactionTimeout: time.Second, Logger: quiet, Hosted: map[string]hub.HostedService{domain: w}}, staticState{st}, audit)
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(context.Background()) }()
	t.Cleanup(func() { _ = h.Close(); <-runDone })
	hubAddr := h.Addrs()[0].String()

	svc, err := lists.New(lists.Config{Domain: domain, Sender: w, State: func() *raft.State { return st }, Log: quiet,
		Contact: func(user, dst string) sip.Uri { return h.HostedContact(domain, user, edgeTransport(st, dst)) }})
	if err != nil {
		t.Fatal(err)
	}
	w.sip.Store(h)
	w.svc.Store(svc)
	t.Cleanup(svc.Close)

	// b's edge: 200 to the back-end SUBSCRIBE, then a NOTIFY with bob's
	// PIDF to the Contact the hub gave, from b's own address.
	doc := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@b.example"><tuple id="t"><status><basic>open</basic></status><note>in</note></tuple></presence>`
	backend := make(chan *sip.Request, 4)
	b.on(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Expires", "600"))
		bh, bp := hostPort(b.addr)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ps", Host: bh, Port: bp}})
		_ = tx.Respond(res)
		if req.Method == sip.SUBSCRIBE {
			backend <- req
		}
	})
	watcher := make(chan *sip.Request, 4)
	a.on(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if req.Method == sip.NOTIFY {
			watcher <- req
		}
	})

	var ru sip.Uri
	_ = sip.ParseUri("sip:alice-buddies@lists.hub.example", &ru)
	req := sip.NewRequest(sip.SUBSCRIBE, ru)
	fp := sip.NewParams()
	fp.Add("tag", "atag")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: ru, Params: sip.NewParams()})
	cid := sip.CallIDHeader("list-call-1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	ah, ap := hostPort(a.addr)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: ah, Port: ap}})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Supported", "eventlist"))
	req.SetDestination(hubAddr)
	res := a.do(t, req)
	if res.StatusCode != 200 || res.GetHeader("Require") == nil || res.GetHeader("Require").Value() != "eventlist" {
		t.Fatalf("list SUBSCRIBE through the hub: %s", res.String())
	}

	var be *sip.Request
	select {
	case be = <-backend:
	case <-time.After(5 * time.Second):
		t.Fatal("no back-end SUBSCRIBE reached b")
	}
	if be.From().Address.User != "alice" || be.Recipient.User != "bob" {
		t.Fatalf("back-end SUBSCRIBE: %s", be.String())
	}
	contact := be.Contact().Address
	if v, _ := contact.UriParams.Get(hub.ParamService); v != domain {
		t.Fatalf("back-end Contact lacks chsvc: %s", contact.String())
	}

	notify := sip.NewRequest(sip.NOTIFY, contact)
	ft := sip.NewParams()
	ft.Add("tag", "btag")
	notify.AppendHeader(&sip.FromHeader{Address: be.To().Address, Params: ft})
	tt := sip.NewParams()
	tag, _ := be.From().Params.Get("tag")
	tt.Add("tag", tag)
	notify.AppendHeader(&sip.ToHeader{Address: be.From().Address, Params: tt})
	ncid := sip.CallIDHeader(be.CallID().Value())
	notify.AppendHeader(&ncid)
	notify.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	bh, bp := hostPort(b.addr)
	notify.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ps", Host: bh, Port: bp}})
	notify.AppendHeader(sip.NewHeader("Event", "presence"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	notify.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
	notify.SetBody([]byte(doc))
	notify.SetDestination(hubAddr)
	if r := b.do(t, notify); r.StatusCode != 200 {
		t.Fatalf("b's NOTIFY to the hub: %d %s", r.StatusCode, r.Reason)
	}

	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-watcher:
			ct := n.GetHeader("Content-Type").Value()
			parsed, err := lists.ParseNotify(ct, n.Body())
			if err != nil {
				t.Fatalf("watcher NOTIFY: %v", err)
			}
			in := parsed.RLMI.Resources[0].Instances[0]
			if in.State != "active" {
				continue // the first NOTIFY (pending) may come first
			}
			if string(parsed.Parts[in.CID].Body) != doc || !strings.Contains(ct, ";boundary=") {
				t.Fatalf("watcher NOTIFY part: %q", parsed.Parts[in.CID].Body)
			}
			audit.mu.Lock()
			defer audit.mu.Unlock()
			var hosted, originated int
			for _, e := range audit.entries {
				if e.Kind == ledger.KindRequest && strings.HasPrefix(e.Reason, "hosted: ") {
					hosted++
				}
				if e.Kind == ledger.KindRequest && strings.HasPrefix(e.Reason, "list ") {
					originated++
				}
			}
			if hosted < 2 || originated < 2 {
				t.Errorf("audit: %d hosted and %d originated request entries", hosted, originated)
			}
			return
		case <-deadline:
			t.Fatal("the watcher never got bob's state")
		}
	}
}

// The back-end Contact names the transport of the member's edge, not the
// hub's best listener: found by the interop suite, where Kamailio B (a UDP
// edge) could not send its NOTIFYs to a transport=tls Contact.
func TestEdgeTransport(t *testing.T) {
	st := raft.NewState(1, &hubv1.ClusterState{Networks: []*hubv1.Network{
		{Id: "u", Edges: []string{"sip:127.0.0.3:5060"}},
		{Id: "t", Edges: []string{"sips:edge.t.example:5061"}},
		{Id: "l", Edges: []string{"sip:edge.l.example:5061;transport=TLS"}},
		{Id: "c", Edges: []string{"sip:edge.c.example;transport=tcp", "sips:x"}},
		{Id: "none"},
	}})
	for net, want := range map[string]string{"u": "udp", "t": "tls", "l": "tls", "c": "tcp", "none": "udp", "missing": "udp"} {
		if got := edgeTransport(st, net); got != want {
			t.Errorf("%s: %s, want %s", net, got, want)
		}
	}
}
