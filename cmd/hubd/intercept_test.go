package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"clearhub/hub"
	"clearhub/hub/intercept"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// hepTLSCollector is a mediation endpoint: HEP v3 over TLS, every frame
// decoded.
type hepTLSCollector struct {
	ln     net.Listener
	caFile string
	cert   tls.Certificate
	mu     sync.Mutex
	frames []*intercept.Packet
	wg     sync.WaitGroup
}

func newHEPTLSCollector(t *testing.T) *hepTLSCollector {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "mediation.test"}, DNSNames: []string{"mediation.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c := &hepTLSCollector{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(c.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{c.cert}}); err != nil {
		t.Fatal(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := c.ln.Accept()
			if err != nil {
				return
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					hdr, err := r.Peek(6)
					if err != nil {
						return
					}
					n, err := intercept.FrameLen(hdr)
					if err != nil {
						t.Errorf("collector: %v", err)
						return
					}
					b := make([]byte, n)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					p, _, err := intercept.Decode(b)
					if err != nil {
						t.Errorf("collector: %v", err)
						return
					}
					c.mu.Lock()
					c.frames = append(c.frames, p)
					c.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { c.ln.Close(); c.wg.Wait() })
	return c
}

func (c *hepTLSCollector) take() []*intercept.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.frames
	c.frames = nil
	return out
}

// firstLines is what the collector saw: the start line of each payload.
func firstLines(ps []*intercept.Packet) []string {
	var out []string
	for _, p := range ps {
		l, _, _ := strings.Cut(string(p.Payload), "\r\n")
		out = append(out, l)
	}
	return out
}

// A warrant for alice copies exactly alice's traffic — her MESSAGE and the
// 200 to it, bob's MESSAGE to her and its 200, her SUBSCRIBE to bob and
// bob's in-dialog NOTIFY back — and nothing of carol's, to a real TLS
// collector in HEP v3; it stops at its end time; the interception ledger
// records the warrant and the deliveries.
func TestInterceptThroughTheHub(t *testing.T) {
	col := newHEPTLSCollector(t)
	a := newUDPMember(t, "127.0.0.2", "a.example")
	b := newUDPMember(t, "127.0.0.3", "b.example")
	svcs := []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM}
	end := time.Now().Add(3 * time.Second)
	st := raft.NewState(1, &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:" + a.addr + ";transport=udp"}, Services: svcs,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:" + b.addr + ";transport=udp"}, Services: svcs,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{
			{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: svcs}}},
			{Destination: "neta", Rules: []*hubv1.PolicyRule{{Source: "netb", Services: svcs}}},
		},
		Warrants: []*hubv1.Warrant{{Id: "w1", Kind: hubv1.WarrantTargetKind_WARRANT_TARGET_USER, Target: "sip:alice@a.example",
			StartUnixNano: time.Now().Add(-time.Minute).UnixNano(), EndUnixNano: end.UnixNano(), Signalling: true, Bodies: true, CreatedBy: "lea"}},
	})
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Intercept.Address = col.ln.Addr().String()
	cfg.Intercept.CAFile = col.caFile
	cfg.Intercept.ServerName = "mediation.test"
	cfg.Intercept.AgentID = 77
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	signer := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	w, err := startIntercept(context.Background(), cfg, "n1", signer, col.cert, func() *raft.State { return st }, quiet)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Hostname: "127.0.0.1", RouteSecret: []byte("s"),
		TransactionTimeout: time.Second, Logger: quiet, Tap: w}, staticState{st}, &countAudit{})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(context.Background()) }()
	hubAddr := h.Addrs()[0].String()
	closed := false
	closeAll := func() {
		if !closed {
			closed = true
			_ = h.Close()
			<-runDone
			if err := w.close(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(closeAll)

	// Each edge answers 200 with a To tag and a Contact; b remembers
	// alice's SUBSCRIBE to NOTIFY her in its dialog.
	answer := func(m *udpMember, subs chan *sip.Request) func(*sip.Request, sip.ServerTransaction) {
		return func(req *sip.Request, tx sip.ServerTransaction) {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if to := res.To(); to != nil && !to.Params.Has("tag") {
				to.Params.Add("tag", "uas-tag")
			}
			mh, mp := hostPort(m.addr)
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: mh, Port: mp}})
			if req.Method == sip.SUBSCRIBE {
				res.AppendHeader(sip.NewHeader("Expires", "600"))
			}
			_ = tx.Respond(res)
			if subs != nil && req.Method == sip.SUBSCRIBE {
				subs <- req
			}
		}
	}
	subs := make(chan *sip.Request, 1)
	a.on(answer(a, nil))
	b.on(answer(b, subs))

	send := func(m *udpMember, method sip.RequestMethod, fromUser, fromHost, to, callID string) *sip.Response {
		t.Helper()
		var u sip.Uri
		_ = sip.ParseUri(to, &u)
		req := sip.NewRequest(method, u)
		fp := sip.NewParams()
		fp.Add("tag", "ftag-"+callID)
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: fromUser, Host: fromHost}, Params: fp})
		req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
		mh, mp := hostPort(m.addr)
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: fromUser, Host: mh, Port: mp}})
		if method == sip.SUBSCRIBE {
			req.AppendHeader(sip.NewHeader("Event", "presence"))
			req.AppendHeader(sip.NewHeader("Expires", "600"))
		} else {
			req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			req.SetBody([]byte("hi from " + fromUser))
		}
		req.SetDestination(hubAddr)
		return m.do(t, req)
	}
	waitFrames := func(n int) []*intercept.Packet {
		t.Helper()
		var got []*intercept.Packet
		deadline := time.Now().Add(5 * time.Second)
		for len(got) < n && time.Now().Before(deadline) {
			got = append(got, col.take()...)
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // anything extra would show now
		return append(got, col.take()...)
	}

	if res := send(a, sip.MESSAGE, "carol", "a.example", "sip:bob@b.example", "c-carol"); res.StatusCode != 200 {
		t.Fatalf("carol: %d", res.StatusCode)
	}
	if res := send(a, sip.MESSAGE, "alice", "a.example", "sip:bob@b.example", "c-out"); res.StatusCode != 200 {
		t.Fatalf("alice: %d", res.StatusCode)
	}
	if res := send(b, sip.MESSAGE, "bob", "b.example", "sip:alice@a.example", "c-in"); res.StatusCode != 200 {
		t.Fatalf("bob: %d", res.StatusCode)
	}
	sres := send(a, sip.SUBSCRIBE, "alice", "a.example", "sip:bob@b.example", "c-sub")
	if sres.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", sres.StatusCode)
	}
	// bob's NOTIFY in the dialog: to alice's Contact through the hub's
	// Record-Route (RFC 3261 12.1.1: the UAS keeps the route set in order).
	sub := <-subs
	var route []sip.Uri
	for _, hd := range sub.GetHeaders("Record-Route") {
		route = append(route, hd.(*sip.RecordRouteHeader).Address)
	}
	notify := sip.NewRequest(sip.NOTIFY, sub.Contact().Address)
	for _, r := range route {
		notify.AppendHeader(&sip.RouteHeader{Address: r})
	}
	nf := sip.NewParams()
	nf.Add("tag", "uas-tag")
	notify.AppendHeader(&sip.FromHeader{Address: sub.To().Address, Params: nf})
	notify.AppendHeader(&sip.ToHeader{Address: sub.From().Address, Params: sub.From().Params})
	cid := sip.CallIDHeader("c-sub")
	notify.AppendHeader(&cid)
	notify.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	notify.AppendHeader(sip.NewHeader("Event", "presence"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	bh, bp := hostPort(b.addr)
	notify.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: bh, Port: bp}})
	notify.SetDestination(hubAddr)
	if res := b.do(t, notify); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d %s", res.StatusCode, res.Reason)
	}

	frames := waitFrames(8)
	lines := firstLines(frames)
	want := map[string]string{ // Call-ID -> start lines, in order
		"c-out": "MESSAGE sip:bob@b.example SIP/2.0|SIP/2.0 200 OK",
		"c-in":  "MESSAGE sip:alice@a.example SIP/2.0|SIP/2.0 200 OK",
		"c-sub": "SUBSCRIBE sip:bob@b.example SIP/2.0|SIP/2.0 200 OK|NOTIFY " + sub.Contact().Address.String() + " SIP/2.0|SIP/2.0 200 OK",
	}
	got := map[string][]string{}
	for i, p := range frames {
		if p.GroupID != "warrant:w1" || p.AgentID != 77 || p.ProtoType != intercept.ProtoTypeSIP || p.Proto != intercept.ProtoUDP {
			t.Errorf("frame %d: %+v", i, p)
		}
		got[p.CorrelationID] = append(got[p.CorrelationID], lines[i])
	}
	if len(frames) != 8 {
		t.Errorf("%d frames, want 8: %q", len(frames), lines)
	}
	for cid, w := range want {
		if g := strings.Join(got[cid], "|"); g != w {
			t.Errorf("call %s: copied %q, want %q", cid, g, w)
		}
	}
	if _, leaked := got["c-carol"]; leaked {
		t.Error("carol's traffic was copied")
	}
	// The request copy is as received: from a's edge to the hub, body kept.
	for _, p := range frames {
		if p.CorrelationID == "c-out" && strings.HasPrefix(string(p.Payload), "MESSAGE") {
			if p.SrcIP.String() != "127.0.0.2" || p.DstIP.String() != "127.0.0.1" || !strings.HasSuffix(string(p.Payload), "hi from alice") {
				t.Errorf("alice's MESSAGE copy: %s -> %s %q", p.SrcIP, p.DstIP, p.Payload)
			}
		}
	}

	// After the end time: nothing.
	time.Sleep(time.Until(end) + 50*time.Millisecond)
	if res := send(a, sip.MESSAGE, "alice", "a.example", "sip:bob@b.example", "c-late"); res.StatusCode != 200 {
		t.Fatalf("late: %d", res.StatusCode)
	}
	if late := waitFrames(1); len(late) != 0 {
		t.Errorf("copied after the warrant's end: %q", firstLines(late))
	}

	// The interception ledger holds the warrant and the deliveries.
	closeAll()
	l, err := ledger.Open(context.Background(), ledger.Options{Path: filepath.Join(cfg.DataDir, interceptLedgerFile), NodeID: "n1", Signer: signer,
		Origin: "clearhub-intercept/n1", CheckpointEvery: -1, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var methods []string
	delivered := 0
	if err := l.Export(context.Background(), ledger.Filter{}, func(e *ledger.Entry) error {
		methods = append(methods, e.Method)
		if e.Method == "InterceptDelivery" {
			var n int
			if i := strings.Index(e.Reason, " delivered"); i > 0 {
				f := strings.Fields(e.Reason[:i])
				_, _ = fmt.Sscan(f[len(f)-1], &n)
			}
			delivered += n
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(methods) == 0 || methods[0] != "WarrantSeen" || delivered != 8 {
		t.Fatalf("interception ledger: %v, %d delivered", methods, delivered)
	}
	if cp, err := l.LatestCheckpoint(); err != nil || cp.Origin != "clearhub-intercept/n1" {
		t.Fatalf("interception ledger checkpoint %v, %v", cp, err)
	}
}

type swapState struct{ p atomic.Pointer[raft.State] }

func (s *swapState) State() *raft.State { return s.p.Load() }

// SIP capture mirrors whole messages of a switched-on network to a real UDP
// HEP listener, whoever the users are, and stops when switched off.
func TestCaptureThroughTheHub(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	a := newUDPMember(t, "127.0.0.2", "a.example")
	b := newUDPMember(t, "127.0.0.3", "b.example")
	im := []hubv1.Service{hubv1.Service_SERVICE_IM}
	cs := &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:" + a.addr + ";transport=udp"}, Services: im,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:" + b.addr + ";transport=udp"}, Services: im,
				Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: im}}}},
		Capture:  &hubv1.CaptureSettings{Networks: []string{"netb"}},
	}
	ss := &swapState{}
	ss.p.Store(raft.NewState(1, cs))
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Capture.Address = pc.LocalAddr().String()
	cfg.Capture.AgentID = 5
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := startIntercept(context.Background(), cfg, "n1", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), tls.Certificate{}, ss.State, quiet)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Hostname: "127.0.0.1", RouteSecret: []byte("s"),
		TransactionTimeout: time.Second, Logger: quiet, Tap: w}, ss, &countAudit{})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(context.Background()) }()
	t.Cleanup(func() { _ = h.Close(); <-runDone; _ = w.close() })
	hubAddr := h.Addrs()[0].String()

	message := func(callID string) {
		t.Helper()
		var u sip.Uri
		_ = sip.ParseUri("sip:bob@b.example", &u)
		req := sip.NewRequest(sip.MESSAGE, u)
		fp := sip.NewParams()
		fp.Add("tag", "t")
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "carol", Host: "a.example"}, Params: fp})
		req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
		req.SetBody([]byte("captured body"))
		req.SetDestination(hubAddr)
		if res := a.do(t, req); res.StatusCode != 200 {
			t.Fatalf("MESSAGE: %d", res.StatusCode)
		}
	}
	read := func(wait time.Duration) []*intercept.Packet {
		var out []*intercept.Packet
		buf := make([]byte, 65536)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(wait))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return out
			}
			p, _, err := intercept.Decode(buf[:n])
			if err != nil {
				t.Fatalf("collector: %v", err)
			}
			out = append(out, p)
		}
	}
	message("cap-1")
	got := read(time.Second)
	if len(got) != 2 {
		t.Fatalf("captured %d frames, want the MESSAGE and its 200: %q", len(got), firstLines(got))
	}
	if p := got[0]; p.CorrelationID != "cap-1" || p.AgentID != 5 || p.GroupID != "" || !strings.HasSuffix(string(p.Payload), "captured body") ||
		p.SrcIP.String() != "127.0.0.2" || p.Proto != intercept.ProtoUDP {
		t.Errorf("captured request %+v", p)
	}
	if p := got[1]; !strings.HasPrefix(string(p.Payload), "SIP/2.0 200") || p.SrcIP.String() != "127.0.0.3" {
		t.Errorf("captured response from %s: %q", p.SrcIP, p.Payload)
	}
	off := proto.Clone(cs).(*hubv1.ClusterState)
	off.Capture = nil
	ss.p.Store(raft.NewState(2, off))
	message("cap-2")
	if got := read(300 * time.Millisecond); len(got) != 0 {
		t.Fatalf("captured with capture off: %q", firstLines(got))
	}
	if c := w.captureCollector(); c == nil || c.Transport() != "udp" {
		t.Fatal("no capture collector reported")
	} else if sent, dropped := c.Stats(); sent != 2 || dropped != 0 {
		t.Errorf("collector stats: %d sent, %d dropped", sent, dropped)
	}
}
