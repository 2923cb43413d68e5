package hub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// relayAnchor adapts *msrp.Relay to SessionAnchor, as cmd/hubd does.
type relayAnchor struct{ r *msrp.Relay }

func (a relayAnchor) Offer(d AnchorDialog, sdp []byte) ([]byte, error) {
	return a.r.Offer(msrp.Dialog(d), sdp)
}
func (a relayAnchor) Answer(d AnchorDialog, sdp []byte) ([]byte, error) {
	return a.r.Answer(msrp.Dialog(d), sdp)
}
func (a relayAnchor) End(callID string) { a.r.End(callID) }

// anchorLab is the two-member UDP lab with an MSRP relay anchoring
// sessions; b's member answers INVITEs with the SDP of a Go MSRP endpoint.
type anchorLab struct {
	*lab
	relay *msrp.Relay

	mu      sync.Mutex
	atB     map[string][]byte // Call-ID -> SDP of the INVITE as b received it
	answers map[string]*msrptest.Endpoint
}

func newAnchorLab(t *testing.T) *anchorLab {
	t.Helper()
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	cs := labState(l.a, l.b)
	for _, p := range cs.Policies {
		for _, r := range p.Rules {
			r.Services = append(r.Services, hubv1.Service_SERVICE_FILE) // RFC 5547 offers
		}
	}
	l.state.set(cs)
	relay, err := msrp.New(msrp.Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0", Audit: l.audit, Logger: quietLogger(),
		KeepBodies: func(n string) bool { return n == "neta" }, TransactionTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(context.Background()) }()
	t.Cleanup(func() { relay.Close(); <-done })
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RouteSecret: []byte("test-secret"),
		Anchor: relayAnchor{relay}}, l.state, l.audit)
	addrs := l.hub.Addrs()
	l.udp, l.tcp = addrs[0].String(), addrs[1].String()
	al := &anchorLab{lab: l, relay: relay, atB: map[string][]byte{}, answers: map[string]*msrptest.Endpoint{}}
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() || req.Method == sip.BYE {
			if req.Method == sip.BYE {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			}
			return
		}
		ep, err := msrptest.Listen("127.0.0.3", nil)
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "No endpoint", nil))
			return
		}
		t.Cleanup(ep.Close)
		al.mu.Lock()
		al.atB[req.CallID().Value()] = append([]byte(nil), req.Body()...)
		al.answers[req.CallID().Value()] = ep
		al.mu.Unlock()
		res := sip.NewResponseFromRequest(req, 200, "OK", ep.SDP("a=recvonly"))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: hostOf(l.b.addr), Port: portOf(l.b.addr)}})
		_ = tx.Respond(res)
	})
	return al
}

type anchoredCall struct {
	req   *sip.Request
	res   *sip.Response
	a     *msrptest.Endpoint
	b     *msrptest.Endpoint
	toHub []string // a's To-Path: the hub's A-leg path from the 200
}

// invite sends an INVITE with a's MSRP offer through the hub, ACKs the 200
// and connects a to the hub's path.
func (l *anchorLab) invite(t *testing.T, extra ...string) *anchoredCall {
	t.Helper()
	a := msrptest.New("127.0.0.2", nil)
	t.Cleanup(a.Close)
	req := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)
	req.SetBody(a.SDP(extra...))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res := l.a.do(req)
	if res.StatusCode != 200 {
		t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	ack := l.a.inDialog(sip.ACK, res.Contact().Address, reversed(recordRoutes(res)),
		&sip.FromHeader{Address: req.From().Address, Params: req.From().Params.Clone()},
		&sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}, req.CallID().Value(), 1)
	if err := l.a.cl.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(res.Body())
	if len(am) != 1 {
		t.Fatalf("200 without an MSRP answer: %q", res.Body())
	}
	l.mu.Lock()
	b := l.answers[req.CallID().Value()]
	l.mu.Unlock()
	c := &anchoredCall{req: req, res: res, a: a, b: b, toHub: am[0].Path}
	if err := a.Connect(c.toHub, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// The acceptance case of issue 14's anchoring part: an INVITE with an MSRP
// offer crosses the hub with the hub's paths on both sides (every other
// SDP line unchanged), a 100 KB message in chunks goes from a to b through
// the hub's MSRP legs, and its audit entry is there next to the INVITE's;
// the BYE closes both legs.
func TestAnchorMSRPSessionThroughHub(t *testing.T) {
	l := newAnchorLab(t)
	c := l.invite(t)
	callID := c.req.CallID().Value()
	tcpAddr, _ := l.relay.Addrs()

	l.mu.Lock()
	atB := l.atB[callID]
	l.mu.Unlock()
	offerAtB := msrp.ParseSDP(atB)
	if len(offerAtB) != 1 || !strings.HasPrefix(offerAtB[0].Path[0], "msrp://"+tcpAddr.String()+"/") {
		t.Fatalf("INVITE at b carries path %v, want the hub's %s", offerAtB, tcpAddr)
	}
	if !strings.HasPrefix(c.toHub[0], "msrp://"+tcpAddr.String()+"/") || c.toHub[0] == offerAtB[0].Path[0] {
		t.Fatalf("200 at a carries path %v", c.toHub)
	}
	// Only m=, c= and a=path differ between what a sent and what b got.
	sent, got := strings.Split(string(c.req.Body()), "\r\n"), strings.Split(string(atB), "\r\n")
	if len(sent) != len(got) {
		t.Fatalf("offer had %d lines, b got %d", len(sent), len(got))
	}
	for i := range sent {
		if sent[i] != got[i] && !strings.HasPrefix(sent[i], "m=") && !strings.HasPrefix(sent[i], "c=") && !strings.HasPrefix(sent[i], "a=path:") {
			t.Errorf("offer line changed: %q -> %q", sent[i], got[i])
		}
	}

	body := bytes.Repeat([]byte("0123456789abcdef"), 100*1024/16)
	if code, err := c.a.Send(c.toHub, "m100k", "text/plain", body, 10*1024, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	m, err := c.b.Wait("m100k", 5*time.Second)
	if err != nil || !bytes.Equal(m.Body, body) {
		t.Fatalf("b: %v (%d bytes)", err, len(m.Body))
	}
	if m.ToPath[0] != c.b.Path() || m.FromPath[0] != offerAtB[0].Path[0] {
		t.Fatalf("b saw To-Path %v From-Path %v", m.ToPath, m.FromPath)
	}
	// And back: b sends to the hub's B-leg URI it got in the INVITE.
	if code, err := c.b.Send(offerAtB[0].Path, "reply", "text/plain", []byte("got it"), 100, nil); err != nil || code != 200 {
		t.Fatalf("b's send: %d %v", code, err)
	}
	if r, err := c.a.Wait("reply", 5*time.Second); err != nil || string(r.Body) != "got it" || r.FromPath[0] != c.toHub[0] {
		t.Fatalf("a: %v %+v", err, r)
	}
	e := waitMSRP(t, l.audit, msrp.MethodMessage, "m100k")
	if e.Status != 200 || e.CallID != callID || e.SrcNet != "neta" || e.DstNet != "netb" || !strings.Contains(e.Reason, "bytes=102400") {
		t.Fatalf("audit %+v", e)
	}
	if len(l.audit.find(ledger.KindRequest, "INVITE", -1, callID)) != 1 {
		t.Fatal("the INVITE's own audit entry is missing")
	}

	// BYE from a through the hub closes both legs.
	bye := l.a.inDialog(sip.BYE, c.res.Contact().Address, reversed(recordRoutes(c.res)),
		&sip.FromHeader{Address: c.req.From().Address, Params: c.req.From().Params.Clone()},
		&sip.ToHeader{Address: c.res.To().Address, Params: c.res.To().Params.Clone()}, callID, 2)
	if res := l.a.do(bye); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	if n := l.relay.Sessions(); n != 0 {
		t.Fatalf("%d sessions after the BYE", n)
	}
	if _, err := c.a.Send(c.toHub, "after-bye", "text/plain", []byte("x"), 10, nil); err == nil {
		t.Fatal("a's leg still carries messages after the BYE")
	}
}

// A 1 MB file (RFC 5547 push) crosses the hub; the hub's SHA-1 over the
// reassembled bytes matches the offer's hash.
func TestAnchorFileTransferThroughHub(t *testing.T) {
	l := newAnchorLab(t)
	file := make([]byte, 1<<20)
	for i := range file {
		file[i] = byte(i * 7)
	}
	sum := sha1.Sum(file)
	var hx []string
	for _, b := range sum {
		hx = append(hx, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	sel := `a=file-selector:name:"big.bin" type:application/octet-stream size:1048576 hash:sha-1:` + strings.Join(hx, ":")
	c := l.invite(t, "a=sendonly", sel, "a=file-transfer-id:ft-1m")
	if code, err := c.a.Send(c.toHub, "file-1m", "application/octet-stream", file, 64*1024, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	m, err := c.b.Wait("file-1m", 10*time.Second)
	if err != nil || !bytes.Equal(m.Body, file) {
		t.Fatalf("b: %v", err)
	}
	if m.Chunks != 128 {
		t.Fatalf("b got %d chunks, want 128 (1 MiB in 8 KiB pieces)", m.Chunks)
	}
	e := waitMSRP(t, l.audit, msrp.MethodFile, "file-1m")
	if e.Status != 200 || !strings.Contains(e.Reason, "sha1=verified") || !strings.Contains(e.Reason, "file-transfer-id=ft-1m") ||
		!strings.Contains(e.Reason, `name="big.bin"`) || !strings.Contains(e.Reason, "received=1048576") {
		t.Fatalf("file audit %d %s", e.Status, e.Reason)
	}
}

// With no anchor configured the SDP crosses the hub byte for byte (today's
// behaviour).
func TestAnchorNilLeavesSDP(t *testing.T) {
	l := newLab(t, "udp")
	got := make(chan []byte, 1)
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() {
			return
		}
		got <- append([]byte(nil), req.Body()...)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
	})
	a := msrptest.New("127.0.0.2", nil)
	req := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)
	req.SetBody(a.SDP())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	if res := l.a.do(req); res.StatusCode != 486 {
		t.Fatalf("INVITE: %d", res.StatusCode)
	}
	if sdp := <-got; !bytes.Equal(sdp, a.SDP()) {
		t.Fatalf("SDP changed without an anchor:\n%s", sdp)
	}
}

// An offer the anchor cannot take (no a=path) is refused with 488 and
// audited, not forwarded around the hub.
func TestAnchorRefusesUnanchorableOffer(t *testing.T) {
	l := newAnchorLab(t)
	req := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)
	req.SetBody([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=message 7 TCP/MSRP *\r\na=accept-types:*\r\n"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res := l.a.do(req)
	if res.StatusCode != 488 || res.Reason != "Session media cannot be anchored" {
		t.Fatalf("INVITE without a=path: %d %s", res.StatusCode, res.Reason)
	}
	l.audit.waitAudit(t, ledger.KindRequest, "INVITE", 488, req.CallID().Value())
}

func waitMSRP(t *testing.T, a *memAudit, method, sub string) *ledger.Entry {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, e := range a.all() {
			if e.Method == method && strings.Contains(e.Reason, sub) {
				return e
			}
		}
	}
	t.Fatalf("no %s audit entry with %q", method, sub)
	return nil
}
