package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func init() {
	// Short SIP timers for the whole test binary (they are global in sipgo):
	// Timer F/B/J = 64*T1 = 3.2 s.
	sip.SetTimers(50*time.Millisecond, 200*time.Millisecond, 250*time.Millisecond)
}

// fakeState is a StateSource whose snapshot tests can swap.
type fakeState struct{ p atomic.Pointer[raft.State] }

func (f *fakeState) State() *raft.State { return f.p.Load() }
func (f *fakeState) set(cs *hubv1.ClusterState) {
	idx := uint64(1)
	if old := f.p.Load(); old != nil {
		idx = old.Index + 1
	}
	f.p.Store(raft.NewState(idx, cs))
}

// memAudit is an in-memory Auditor.
type memAudit struct {
	mu      sync.Mutex
	entries []*ledger.Entry
	fail    atomic.Bool
}

func (m *memAudit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	if m.fail.Load() {
		return 0, errors.New("ledger down")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e.Seq = uint64(len(m.entries) + 1)
	m.entries = append(m.entries, e)
	return e.Seq, nil
}

func (m *memAudit) all() []*ledger.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*ledger.Entry(nil), m.entries...)
}

// find returns the entries matching kind, method and status (status -1:
// any) whose Call-ID is callID ("" any).
func (m *memAudit) find(kind ledger.Kind, method string, status int, callID string) []*ledger.Entry {
	var out []*ledger.Entry
	for _, e := range m.all() {
		if e.Kind == kind && (method == "" || e.Method == method) && (status < 0 || e.Status == status) && (callID == "" || e.CallID == callID) {
			out = append(out, e)
		}
	}
	return out
}

// waitAudit polls for a matching entry (responses are audited just before
// they are sent, so a test may look a moment early).
func (m *memAudit) waitAudit(t *testing.T, kind ledger.Kind, method string, status int, callID string) *ledger.Entry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if es := m.find(kind, method, status, callID); len(es) > 0 {
			return es[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s %s %d audit entry for call %q; have %d entries", kind, method, status, callID, len(m.all()))
	return nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// member is a fake member network edge: a sipgo UA on its own loopback
// address, answering what it receives with a configurable handler.
type member struct {
	t       *testing.T
	name    string
	domain  string
	ip      string
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cl      *sipgo.Client
	addr    string // ip:port of its listener
	network string // "udp", "tcp" or "tls"
	reqs    chan *sip.Request

	mu      sync.Mutex
	handler func(req *sip.Request, tx sip.ServerTransaction)
}

type memberOpts struct {
	network string      // default udp
	tlsConf *tls.Config // for tls: server config (cert) used also as client config
}

func newMember(t *testing.T, name, domain, ip string, o memberOpts) *member {
	t.Helper()
	if o.network == "" {
		o.network = "udp"
	}
	m := &member{t: t, name: name, domain: domain, ip: ip, network: o.network, reqs: make(chan *sip.Request, 100)}
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgentHostname(domain)}
	if o.tlsConf != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(o.tlsConf))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.ua = ua
	m.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(quietLogger()))
	m.srv.OnNoRoute(m.serve)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	switch o.network {
	case "udp":
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		m.addr = c.LocalAddr().String()
		go func() { defer close(done); _ = m.srv.ServeUDP(c) }()
		go func() { <-ctx.Done(); c.Close() }()
	case "tcp", "tls":
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		m.addr = l.Addr().String()
		if o.network == "tls" {
			l = tls.NewListener(l, o.tlsConf)
			go func() { defer close(done); _ = m.srv.ServeTLS(l) }()
		} else {
			go func() { defer close(done); _ = m.srv.ServeTCP(l) }()
		}
		go func() { <-ctx.Done(); l.Close() }()
	}
	// Send from the listener's address so the hub attributes by source IP.
	local := m.addr
	if o.network != "udp" {
		local = net.JoinHostPort(ip, "0") // dial out from the member's IP
	}
	m.cl, err = sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(local), sipgo.WithClientLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		ua.Close()
		closeAfterSIPGoIdle(t, ua)
	})
	// ServeUDP registers the listener asynchronously; requests sent from it
	// need it registered.
	for i := 0; o.network == "udp" && i < 200; i++ {
		if c, err := ua.TransportLayer().GetConnection("udp", m.addr); err == nil && c != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return m
}

// edge is the member's edge URI for the cluster state.
func (m *member) edge() string {
	scheme := "sip"
	if m.network == "tls" {
		scheme = "sips"
	}
	return fmt.Sprintf("%s:%s;transport=%s", scheme, m.addr, m.network)
}

func (m *member) setHandler(f func(req *sip.Request, tx sip.ServerTransaction)) {
	m.mu.Lock()
	m.handler = f
	m.mu.Unlock()
}

func (m *member) serve(req *sip.Request, tx sip.ServerTransaction) {
	select {
	case m.reqs <- req:
	default:
	}
	m.mu.Lock()
	f := m.handler
	m.mu.Unlock()
	if f != nil {
		f(req, tx)
		return
	}
	if req.IsAck() {
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: hostOf(m.addr), Port: portOf(m.addr), UriParams: transportParam(m.network)}})
	_ = tx.Respond(res)
}

// expect waits for the next request of method that reached the member.
func (m *member) expect(method sip.RequestMethod) *sip.Request {
	m.t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case r := <-m.reqs:
			if r.Method == method {
				return r
			}
		case <-timeout:
			m.t.Fatalf("%s: no %s arrived", m.name, method)
			return nil
		}
	}
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
func transportParam(network string) sip.HeaderParams {
	p := sip.NewParams()
	p.Add("transport", network)
	return p
}

// newRequest builds an out-of-dialog request from user@m.domain to ruri,
// sent to the hub at hubAddr.
func (m *member) newRequest(method sip.RequestMethod, ruri string, hubAddr string) *sip.Request {
	m.t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		m.t.Fatal(err)
	}
	req := sip.NewRequest(method, u)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: m.domain}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: u.User, Host: u.Host}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: hostOf(m.addr), Port: portOf(m.addr), UriParams: transportParam(m.network)}})
	req.SetTransport(strings.ToUpper(m.network))
	req.SetDestination(hubAddr)
	return req
}

// do sends req and returns its final response.
func (m *member) do(req *sip.Request) *sip.Response {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := m.cl.Do(ctx, req)
	if err != nil {
		m.t.Fatalf("%s: %s failed: %v", m.name, req.Method, err)
	}
	return res
}

// inDialog builds a request inside a dialog the hub record-routed: route
// is the route set (already in the order to use), target the remote
// Contact.
func (m *member) inDialog(method sip.RequestMethod, target sip.Uri, route []sip.Uri, from *sip.FromHeader, to *sip.ToHeader, callID string, cseq uint32) *sip.Request {
	req := sip.NewRequest(method, target)
	for _, r := range route {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.SetTransport(strings.ToUpper(m.network))
	return req
}

func recordRoutes(msg interface{ GetHeaders(string) []sip.Header }) []sip.Uri {
	var out []sip.Uri
	for _, h := range msg.GetHeaders("Record-Route") {
		out = append(out, h.(*sip.RecordRouteHeader).Address)
	}
	return out
}

func reversed(u []sip.Uri) []sip.Uri {
	out := make([]sip.Uri, len(u))
	for i := range u {
		out[len(u)-1-i] = u[i]
	}
	return out
}

// lab is two UDP members (neta at 127.0.0.2, netb at 127.0.0.3) and a hub
// on 127.0.0.1 peering them for presence, IM and sessions.
type lab struct {
	hub   *Hub
	state *fakeState
	audit *memAudit
	a, b  *member
	cs    func() *hubv1.ClusterState
	udp   string
	tcp   string
}

func labState(a, b *member, extraB ...string) *hubv1.ClusterState {
	all := []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_SESSION}
	return &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{a.edge()}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
				Identity: &hubv1.Identity{Cidrs: []string{a.ip + "/32"}}, KeepBodies: true},
			{Id: "netb", Domains: []string{"b.example"}, Edges: append(extraB, b.edge()), Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
				Identity: &hubv1.Identity{Cidrs: []string{b.ip + "/32"}}},
			{Id: "netc", Domains: []string{"c.example"}, Edges: []string{"sip:127.0.0.4:5999"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
				Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.4/32"}}},
		},
		Policies: []*hubv1.Policy{
			{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}},
			{Destination: "neta", Rules: []*hubv1.PolicyRule{{Source: "netb", Services: all}}},
			// netc admits nobody.
		},
	}
}

func startHub(t *testing.T, cfg Config, st StateSource, au Auditor) *Hub {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.TransactionTimeout == 0 {
		cfg.TransactionTimeout = 300 * time.Millisecond
	}
	h, err := New(cfg, st, au)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
		closeAfterSIPGoIdle(t, h.ua)
	})
	return h
}

// closeAfterSIPGoIdle waits until no sipgo per-message goroutine is left,
// then closes ua's transports again. sipgo (v1.7.2) handles every received
// message on a goroutine of its own that nothing owns or waits for
// (TransactionLayer.handleMessage). One that runs late, after the listener
// was closed and ua.Close cleared the connection pool (a retransmission
// the hub sent just before it closed, say), finds no connection to answer
// on and opens a fresh UDP socket with its own read loop
// (serverRequestConnection -> createConnection) that nobody would ever
// close: goleak caught it about one run in five under load. Call this
// once the listeners are closed and their read loops have returned, so no
// new such goroutine can start for ua.
func closeAfterSIPGoIdle(t *testing.T, ua *sipgo.UserAgent) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) { // truncated: a frame looked for may be cut off
			buf = make([]byte, 2*len(buf))
			continue
		}
		st := buf[:n]
		if !bytes.Contains(st, []byte("sip.(*TransactionLayer).handleRequestBackground")) &&
			!bytes.Contains(st, []byte("sip.(*TransactionLayer).handleResponseBackground")) {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("sipgo message goroutines still running after 5 s")
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	ua.Close() // closes what a late goroutine opened (the pool only holds those now)
}

func newLab(t *testing.T, network string, extraB ...string) *lab {
	t.Helper()
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: network})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: network})
	l.state.set(labState(l.a, l.b, extraB...))
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RouteSecret: []byte("test-secret")}, l.state, l.audit)
	addrs := l.hub.Addrs()
	l.udp, l.tcp = addrs[0].String(), addrs[1].String()
	return l
}

func (l *lab) hubAddr(network string) string {
	if network == "tcp" {
		return l.tcp
	}
	return l.udp
}
