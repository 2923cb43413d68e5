package intercept

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	t0  = time.Unix(1_800_000_000, 0)
	now = t0.Add(time.Minute).UnixNano()
)

func warrant(id string, kind hubv1.WarrantTargetKind, target string) *hubv1.Warrant {
	return &hubv1.Warrant{Id: id, Kind: kind, Target: target, StartUnixNano: t0.UnixNano(), EndUnixNano: t0.Add(time.Hour).UnixNano(),
		Signalling: true, Bodies: true}
}

func uri(s string) *sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		panic(err)
	}
	return &u
}

func TestWarrantMatches(t *testing.T) {
	user := warrant("w", hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@a.example")
	dom := warrant("w", hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN, "a.example")
	netw := warrant("w", hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK, "neta")
	for _, tc := range []struct {
		name           string
		w              *hubv1.Warrant
		at             int64
		srcNet, dstNet string
		from, to       string
		want           bool
	}{
		{"user as sender", user, now, "neta", "netb", "sip:alice@a.example", "sip:bob@b.example", true},
		{"user as recipient", user, now, "netb", "neta", "sip:bob@b.example", "sip:alice@a.example", true},
		{"host case and sips and port", user, now, "netb", "neta", "sip:bob@b.example", "sips:alice@A.EXAMPLE:5061", true},
		{"user part is exact", user, now, "neta", "netb", "sip:Alice@a.example", "sip:bob@b.example", false},
		{"other user", user, now, "neta", "netb", "sip:carol@a.example", "sip:bob@b.example", false},
		{"prefix user", user, now, "neta", "netb", "sip:alice2@a.example", "sip:bob@b.example", false},
		{"before start", user, t0.UnixNano() - 1, "neta", "netb", "sip:alice@a.example", "", false},
		{"at end", user, t0.Add(time.Hour).UnixNano(), "neta", "netb", "sip:alice@a.example", "", false},
		{"domain", dom, now, "netb", "neta", "sip:bob@b.example", "sip:x@A.example", true},
		{"other domain", dom, now, "netb", "neta", "sip:bob@b.example", "sip:x@aa.example", false},
		{"network as source", netw, now, "neta", "netb", "", "", true},
		{"network as destination", netw, now, "netb", "neta", "", "", true},
		{"other networks", netw, now, "netb", "netc", "sip:alice@a.example", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var from, to *sip.Uri
			if tc.from != "" {
				from = uri(tc.from)
			}
			if tc.to != "" {
				to = uri(tc.to)
			}
			if got := matches(tc.w, tc.at, tc.srcNet, tc.dstNet, from, to); got != tc.want {
				t.Fatalf("matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func stateWith(ws []*hubv1.Warrant, capture *hubv1.CaptureSettings) *raft.State {
	return raft.NewState(1, &hubv1.ClusterState{Warrants: ws, Capture: capture})
}

// The hot path's checks allocate nothing, with or without warrants.
func TestWantsAllocationFree(t *testing.T) {
	from, to := uri("sip:carol@c.example"), uri("sip:bob@b.example")
	li := &Interceptor{}
	cp := &Capturer{}
	w := warrant("w", hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@a.example")
	w.StartUnixNano, w.EndUnixNano = 1, 1<<62
	for _, st := range []*raft.State{raft.Empty(), stateWith([]*hubv1.Warrant{w}, &hubv1.CaptureSettings{Networks: []string{"neta"}})} {
		if n := testing.AllocsPerRun(1000, func() {
			_ = li.Wants(st, "netc", "netb", from, to)
			_ = li.WantsMSRP(st, "netc", "netb", from, to)
			_ = cp.Wants(st, "netc", "netb", from, to)
		}); n != 0 {
			t.Errorf("%d warrants: %.1f allocations per check", len(st.Warrants()), n)
		}
	}
}

func TestCaptureWants(t *testing.T) {
	cp := &Capturer{}
	for _, tc := range []struct {
		name     string
		settings *hubv1.CaptureSettings
		src, dst string
		want     bool
	}{
		{"off", nil, "neta", "netb", false},
		{"source on", &hubv1.CaptureSettings{Networks: []string{"neta"}}, "neta", "netb", true},
		{"destination on", &hubv1.CaptureSettings{Networks: []string{"netb"}}, "neta", "netb", true},
		{"others on", &hubv1.CaptureSettings{Networks: []string{"netc"}}, "neta", "netb", false},
		{"all", &hubv1.CaptureSettings{All: true}, "neta", "", true},
	} {
		if got := cp.Wants(stateWith(nil, tc.settings), tc.src, tc.dst, nil, nil); got != tc.want {
			t.Errorf("%s: Wants = %v", tc.name, got)
		}
	}
}

func TestDeliverable(t *testing.T) {
	wire := []byte("MESSAGE sip:b SIP/2.0\r\n\r\nhello")
	off := len(wire) - len("hello")
	for _, tc := range []struct {
		sig, bodies bool
		want        string
	}{
		{true, true, string(wire)},
		{true, false, string(wire[:off])},
		{false, true, "hello"},
		{false, false, ""},
	} {
		w := &hubv1.Warrant{Signalling: tc.sig, Bodies: tc.bodies}
		if got := string(deliverable(w, wire, off)); got != tc.want {
			t.Errorf("signalling %v bodies %v: %q, want %q", tc.sig, tc.bodies, got, tc.want)
		}
	}
}

// memLedger is the interception ledger.
type memLedger struct {
	mu sync.Mutex
	es []ledger.Entry
}

func (m *memLedger) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es = append(m.es, *e)
	return uint64(len(m.es)), nil
}

func (m *memLedger) find(method string) []ledger.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ledger.Entry
	for _, e := range m.es {
		if e.Method == method {
			out = append(out, e)
		}
	}
	return out
}

// tlsCollector is a HEP collector over TLS with a self-signed certificate.
type tlsCollector struct {
	ln     net.Listener
	frames chan *Packet
	wg     sync.WaitGroup
	roots  *x509.CertPool
}

func newTLSCollector(t *testing.T) *tlsCollector {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mediation.test"}, DNSNames: []string{"mediation.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	c := &tlsCollector{frames: make(chan *Packet, 100), roots: x509.NewCertPool()}
	c.roots.AddCert(cert)
	c.ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13})
	if err != nil {
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
					n, err := FrameLen(hdr)
					if err != nil {
						t.Errorf("collector: %v", err)
						return
					}
					b := make([]byte, n)
					if _, err := io.ReadFull(r, b); err != nil {
						return
					}
					p, _, err := Decode(b)
					if err != nil {
						t.Errorf("collector: %v", err)
						return
					}
					c.frames <- p
				}
			}()
		}
	}()
	t.Cleanup(func() { c.ln.Close(); c.wg.Wait() })
	return c
}

func (c *tlsCollector) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: c.roots, ServerName: "mediation.test", MinVersion: tls.VersionTLS13}
}

func TestInterceptorDeliversOverTLSAndAudits(t *testing.T) {
	col := newTLSCollector(t)
	led := &memLedger{}
	w := warrant("w1", hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@a.example")
	w.StartUnixNano, w.EndUnixNano = time.Now().Add(-time.Minute).UnixNano(), time.Now().Add(time.Hour).UnixNano()
	w.Bodies = false // signalling only
	st := stateWith([]*hubv1.Warrant{w}, nil)
	var li *Interceptor
	snd, err := NewSender(SenderConfig{Addr: col.ln.Addr().String(), Transport: "tls", TLS: col.clientTLS(),
		OnResult: func(tag string, n int, ok bool) { li.result(tag, n, ok) }})
	if err != nil {
		t.Fatal(err)
	}
	li, err = NewInterceptor(Config{Sender: snd, AgentID: 42, Ledger: led, State: func() *raft.State { return st }, AuditEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wire := "MESSAGE sip:bob@b.example SIP/2.0\r\nCall-ID: c1\r\n\r\nsecret body"
	ev := Event{State: st, Time: time.Now(), Wire: []byte(wire), BodyOffset: len(wire) - len("secret body"), Src: "192.0.2.1:5060", Dst: "192.0.2.9:5061",
		Transport: "tls", SrcNet: "neta", DstNet: "netb", Method: "MESSAGE", CallID: "c1", From: uri("sip:alice@a.example"), To: uri("sip:bob@b.example")}
	if !li.Wants(st, ev.SrcNet, ev.DstNet, ev.From, ev.To) {
		t.Fatal("warrant target not wanted")
	}
	li.Tap(ev)
	select {
	case p := <-col.frames:
		if p.GroupID != "warrant:w1" || p.CorrelationID != "c1" || p.AgentID != 42 || p.Proto != ProtoTCP || p.SrcPort != 5060 || p.DstPort != 5061 ||
			p.SrcIP.String() != "192.0.2.1" || string(p.Payload) != wire[:ev.BodyOffset] || p.ProtoType != ProtoTypeSIP {
			t.Fatalf("frame %+v payload %q", p, p.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("collector got nothing")
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(led.find("InterceptDelivery")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	li.Close()
	snd.Close()
	d := led.find("InterceptDelivery")
	if len(d) != 1 || !strings.Contains(d[0].Reason, "1 copied, 1 delivered") || d[0].CallID != "c1" || d[0].To != "w1" {
		t.Fatalf("delivery entries %+v", d)
	}
	if s := led.find("WarrantSeen"); len(s) != 1 || !strings.Contains(s[0].Reason, "sip:alice@a.example") {
		t.Fatalf("warrant entries %+v", s)
	}
}

// A full queue drops (counted) instead of blocking the caller; an
// unreachable collector drops too, and Close returns.
func TestSenderDropsWhenFullOrDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every dial fails
	var mu sync.Mutex
	results := map[bool]int{}
	s, err := NewSender(SenderConfig{Addr: addr, Transport: "tcp", Queue: 2, WriteTimeout: 200 * time.Millisecond,
		OnResult: func(_ string, _ int, ok bool) { mu.Lock(); results[ok]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	queued := 0
	for i := 0; i < 100; i++ {
		if s.Enqueue([]byte("HEP3"), "t") {
			queued++
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("100 enqueues took %v: Enqueue blocks", d)
	}
	s.Close()
	sent, dropped := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	if sent != 0 || dropped != 100 || results[false] != queued || results[true] != 0 {
		t.Fatalf("sent %d dropped %d, results %v (queued %d)", sent, dropped, results, queued)
	}
	for _, bad := range []SenderConfig{{Addr: "nope", Transport: "udp"}, {Addr: addr, Transport: "sctp"}, {Addr: addr, Transport: "tls"}} {
		if _, err := NewSender(bad); err == nil {
			t.Errorf("NewSender(%+v) accepted", bad)
		}
	}
}

func TestCapturerOverUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := NewSender(SenderConfig{Addr: pc.LocalAddr().String(), Transport: "udp"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cp := NewCapturer(s, 9)
	wire := "SIP/2.0 200 OK\r\nCall-ID: c2\r\n\r\n"
	cp.Tap(Event{Time: time.Now(), Wire: []byte(wire), BodyOffset: len(wire), Src: "[2001:db8::1]:5060", Dst: "[2001:db8::2]:5060", Transport: "udp", CallID: "c2"})
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := Decode(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != FamilyIPv6 || p.Proto != ProtoUDP || p.AgentID != 9 || p.CorrelationID != "c2" || string(p.Payload) != wire || p.GroupID != "" {
		t.Fatalf("captured %+v", p)
	}
}

// An msrp-only warrant delivers MSRP content (TapMSRP, hub/msrp's hook)
// and no SIP; a signalling warrant no MSRP.
func TestInterceptMSRP(t *testing.T) {
	col := newTLSCollector(t)
	led := &memLedger{}
	w := warrant("m1", hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@a.example")
	w.StartUnixNano, w.EndUnixNano = time.Now().Add(-time.Minute).UnixNano(), time.Now().Add(time.Hour).UnixNano()
	w.Signalling, w.Bodies, w.Msrp = false, false, true
	sig := warrant("s1", hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK, "neta")
	sig.StartUnixNano, sig.EndUnixNano = w.StartUnixNano, w.EndUnixNano
	st := stateWith([]*hubv1.Warrant{w, sig}, nil)
	snd, err := NewSender(SenderConfig{Addr: col.ln.Addr().String(), Transport: "tls", TLS: col.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	li, err := NewInterceptor(Config{Sender: snd, Ledger: led, State: func() *raft.State { return st }})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	defer li.Close()
	from, to := uri("sip:alice@a.example"), uri("sip:bob@b.example")
	if !li.WantsMSRP(st, "neta", "netb", from, to) || li.WantsMSRP(st, "netc", "netb", uri("sip:carol@c.example"), to) {
		t.Fatal("WantsMSRP")
	}
	chunk := "MSRP a786hjs2 SEND\r\nTo-Path: msrp://x\r\n\r\nhello\r\n-------a786hjs2$\r\n"
	li.TapMSRP(Event{State: st, Time: time.Now(), Wire: []byte(chunk), Src: "192.0.2.1:2855", Dst: "192.0.2.9:2855", Transport: "tcp",
		SrcNet: "neta", DstNet: "netb", CallID: "sess-1", From: from, To: to})
	select {
	case p := <-col.frames:
		if p.GroupID != "warrant:m1" || p.ProtoType != ProtoTypeMSRP || string(p.Payload) != chunk || p.CorrelationID != "sess-1" {
			t.Fatalf("MSRP frame %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no MSRP frame")
	}
	select {
	case p := <-col.frames:
		t.Fatalf("second frame %+v: the signalling warrant took MSRP", p)
	case <-time.After(200 * time.Millisecond):
	}
}
