package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"clearhub/hub/intercept"
	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

type memInterceptLedger struct {
	mu sync.Mutex
	es []*ledger.Entry
}

func (m *memInterceptLedger) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es = append(m.es, e)
	return uint64(len(m.es)), nil
}

// hepCollector is a mediation endpoint over TCP that decodes HEP frames.
func hepCollector(t *testing.T) (addr string, frames chan *intercept.Packet) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frames = make(chan *intercept.Packet, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
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
					frames <- p
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), frames
}

// A warrant with msrp delivery for alice: the MSRP chunks of alice's
// session, both directions, reach the mediation endpoint as HEP (protocol
// type intercept.ProtoTypeMSRP, the warrant in the Group ID, the session's
// Call-ID as correlation) exactly as the sender sent them; the chunks of
// carol's session, crossing the same relay, do not.
func TestMSRPContentIntercepted(t *testing.T) {
	addr, frames := hepCollector(t)
	w := &hubv1.Warrant{Id: "w-alice", Kind: hubv1.WarrantTargetKind_WARRANT_TARGET_USER, Target: "sip:alice@a.example",
		StartUnixNano: time.Now().Add(-time.Minute).UnixNano(), EndUnixNano: time.Now().Add(time.Hour).UnixNano(), Msrp: true}
	st := raft.NewState(1, &hubv1.ClusterState{Warrants: []*hubv1.Warrant{w}})
	state := func() *raft.State { return st }
	snd, err := intercept.NewSender(intercept.SenderConfig{Addr: addr, Transport: "tcp"})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	li, err := intercept.NewInterceptor(intercept.Config{Sender: snd, AgentID: 9, Ledger: &memInterceptLedger{}, State: state})
	if err != nil {
		t.Fatal(err)
	}
	defer li.Close()
	n := &hubNode{intercept: &interceptWiring{li: li}}
	if (&hubNode{}).msrpTap(state) != nil {
		t.Fatal("a node without interception has an MSRP tap")
	}
	r, err := msrp.New(msrp.Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0", Tap: n.msrpTap(state),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(context.Background()) }()
	defer func() { r.Close(); <-done }()

	type sess struct {
		a, b           *msrptest.Endpoint
		toHubA, toHubB []string
	}
	open := func(d msrp.Dialog, ipA, ipB string) sess {
		a := msrptest.New(ipA, nil)
		b, err := msrptest.Listen(ipB, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		offer, err := r.Offer(d, a.SDP())
		if err != nil {
			t.Fatal(err)
		}
		answer, err := r.Answer(d, b.SDP())
		if err != nil {
			t.Fatal(err)
		}
		om, am := msrp.ParseSDP(offer), msrp.ParseSDP(answer)
		if len(om) != 1 || len(am) != 1 {
			t.Fatalf("offer %q answer %q", offer, answer)
		}
		if err := a.Connect(am[0].Path, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitConnected(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		return sess{a: a, b: b, toHubA: am[0].Path, toHubB: om[0].Path}
	}
	alice := open(msrp.Dialog{CallID: "call-alice", OffererNet: "neta", AnswererNet: "netb", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"},
		"127.0.0.2", "127.0.0.3")
	carol := open(msrp.Dialog{CallID: "call-carol", OffererNet: "netc", AnswererNet: "netb", Offerer: "sip:carol@c.example", Answerer: "sip:dave@b.example"},
		"127.0.0.4", "127.0.0.5")

	send := func(from *msrptest.Endpoint, to *msrptest.Endpoint, path []string, id, body string) {
		t.Helper()
		if code, err := from.Send(path, id, "text/plain", []byte(body), 1<<20, nil); err != nil || code != 200 {
			t.Fatalf("send %s: %d %v", id, code, err)
		}
		if _, err := to.Wait(id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	send(carol.a, carol.b, carol.toHubA, "carol-1", "not for the warrant")
	send(alice.a, alice.b, alice.toHubA, "alice-1", "hello bob")
	send(alice.b, alice.a, alice.toHubB, "bob-1", "hello alice")
	send(carol.b, carol.a, carol.toHubB, "dave-1", "not for the warrant either")

	tcpAddr, _ := r.Addrs()
	hubPort := uint16(tcpAddr.(*net.TCPAddr).Port)
	for _, want := range []struct {
		id, body, src, to, from string
		srcPort, dstPort        uint16 // 0: any
	}{
		// alice connected to the hub's listener (from the default
		// loopback source); the hub connected to bob's.
		{"alice-1", "hello bob", "127.0.0.1", alice.toHubA[0], alice.a.Path(), 0, hubPort},
		{"bob-1", "hello alice", "127.0.0.3", alice.toHubB[0], alice.b.Path(), uint16(alice.b.URI.Port), 0},
	} {
		var p *intercept.Packet
		select {
		case p = <-frames:
		case <-time.After(5 * time.Second):
			t.Fatalf("no HEP frame for %s", want.id)
		}
		if p.ProtoType != intercept.ProtoTypeMSRP || p.GroupID != "warrant:w-alice" || p.CorrelationID != "call-alice" || p.AgentID != 9 ||
			p.Proto != intercept.ProtoTCP || p.SrcIP.String() != want.src || p.DstIP.String() != "127.0.0.1" ||
			want.srcPort != 0 && p.SrcPort != want.srcPort || want.dstPort != 0 && p.DstPort != want.dstPort {
			t.Fatalf("%s: HEP frame %+v", want.id, p)
		}
		// The payload is the chunk the endpoint sent (its To-Path the
		// hub, its From-Path the endpoint), not the hub's copy onward.
		rd := msrp.NewReader(strings.NewReader(string(p.Payload)), msrp.Limits{})
		f, err := rd.ReadFrame()
		if err != nil || f.Method != "SEND" || f.MessageID != want.id || string(f.Body) != want.body ||
			f.ToPath[0] != want.to || f.FromPath[len(f.FromPath)-1] != want.from || string(f.Append(nil)) != string(p.Payload) {
			t.Fatalf("%s: payload %q (%v)", want.id, p.Payload, err)
		}
	}
	select {
	case p := <-frames:
		t.Fatalf("unexpected HEP frame (carol's session?) %+v payload %q", p, p.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}
