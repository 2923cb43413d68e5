package msrp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
	"clearhub/ledger"
)

type memAudit struct {
	mu sync.Mutex
	es []*ledger.Entry
}

func (m *memAudit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es = append(m.es, e)
	return uint64(len(m.es)), nil
}

// wait returns the first entry of method whose Reason contains sub.
func (m *memAudit) wait(t testing.TB, method, sub string) *ledger.Entry {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		for _, e := range m.es {
			if e.Method == method && strings.Contains(e.Reason, sub) {
				m.mu.Unlock()
				return e
			}
		}
		m.mu.Unlock()
	}
	t.Fatalf("no %s audit entry with %q", method, sub)
	return nil
}

func selfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func fingerprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	var parts []string
	for _, b := range sum {
		parts = append(parts, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	return "sha-256 " + strings.Join(parts, ":")
}

type relayLab struct {
	r     *msrp.Relay
	audit *memAudit
	cert  tls.Certificate
}

func newRelay(t testing.TB, mod func(*msrp.Config)) *relayLab {
	t.Helper()
	l := &relayLab{audit: &memAudit{}, cert: selfSigned(t, "hub.example")}
	cfg := msrp.Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0",
		TLS:   &tls.Config{Certificates: []tls.Certificate{l.cert}},
		Audit: l.audit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		KeepBodies: func(n string) bool { return n == "neta" }, TransactionTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	r, err := msrp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(context.Background()) }()
	t.Cleanup(func() { r.Close(); <-done })
	l.r = r
	return l
}

// call sets up one session: a offers (active, connects to the hub), b
// answers (passive, the hub connects to it). It returns the paths each
// endpoint got from the hub.
type call struct {
	a, b          *msrptest.Endpoint
	toHubA        []string // what a puts in To-Path (the hub's A-leg URI)
	hubB          string   // the hub's B-leg URI in the offer b received
	offer, answer []byte   // as rewritten by the hub
}

func (l *relayLab) call(t testing.TB, callID string, offerExtra []string, answerExtra []string, conf *tls.Config) *call {
	t.Helper()
	a := msrptest.New("127.0.0.2", conf)
	b, err := msrptest.Listen("127.0.0.3", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	d := msrp.Dialog{CallID: callID, OffererNet: "neta", AnswererNet: "netb", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"}
	offer, err := l.r.Offer(d, a.SDP(offerExtra...))
	if err != nil {
		t.Fatal(err)
	}
	om := msrp.ParseSDP(offer)
	if len(om) != 1 || len(om[0].Path) != 1 {
		t.Fatalf("rewritten offer: %q", offer)
	}
	answer, err := l.r.Answer(d, b.SDP(answerExtra...))
	if err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(answer)
	if len(am) != 1 {
		t.Fatalf("rewritten answer: %q", answer)
	}
	return &call{a: a, b: b, toHubA: am[0].Path, hubB: om[0].Path[0], offer: offer, answer: answer}
}

// dropMidMessage makes b go silent, has a send the first chunk of message
// id (answered 200 by the hub), and closes b's connection once the hub
// forwarded that chunk: a leg that dies with a message in flight.
func (c *call) dropMidMessage(t testing.TB, id string) {
	t.Helper()
	got := make(chan struct{}, 1)
	c.b.SetReply(func(*msrp.Frame) int {
		select {
		case got <- struct{}{}:
		default:
		}
		return 0 // silent
	})
	if code, err := c.a.Send(c.toHubA, id, "text/plain", payload(3000), 3000, func(f *msrp.Frame) { f.Flag = msrp.FlagMore }); err != nil || code != 200 {
		t.Fatalf("first chunk: %d %v", code, err)
	}
	<-got
	c.b.Close()
}

func (c *call) connect(t testing.TB) {
	t.Helper()
	if err := c.a.Connect(c.toHubA, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.b.WaitConnected(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%23)
	}
	return b
}

// A 100 KB message in 16 KiB chunks crosses the hub: b gets it whole, in
// chunks of at most 8 KiB with contiguous Byte-Ranges, addressed with b's
// own path and the hub's B-leg URI; the audit entry has the bytes.
func TestRelayChunkedMessage(t *testing.T) {
	l := newRelay(t, nil)
	c := l.call(t, "call-1", nil, nil, nil)
	if strings.Contains(string(c.offer), c.a.Path()) || strings.Contains(string(c.answer), c.b.Path()) {
		t.Fatal("an endpoint's own path leaked to the other side")
	}
	c.connect(t)
	body := payload(100 * 1024)
	code, err := c.a.Send(c.toHubA, "msg-100k", "text/plain", body, 16*1024, nil)
	if err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	m, err := c.b.Wait("msg-100k", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Body, body) || !m.Complete {
		t.Fatalf("b got %d bytes (complete %v), want %d", len(m.Body), m.Complete, len(body))
	}
	if m.Chunks != 13 {
		t.Fatalf("b got %d chunks, want 13 (100 KiB in 8 KiB pieces)", m.Chunks)
	}
	next := int64(1)
	for _, br := range m.Ranges {
		if br.Start != next || br.End-br.Start+1 > 8192 || br.Total != int64(len(body)) {
			t.Fatalf("chunk range %v after byte %d", br, next-1)
		}
		next = br.End + 1
	}
	if m.ToPath[0] != c.b.Path() || m.FromPath[0] != c.hubB {
		t.Fatalf("b saw To-Path %v From-Path %v, want %s and %s", m.ToPath, m.FromPath, c.b.Path(), c.hubB)
	}
	e := l.audit.wait(t, msrp.MethodMessage, "msg-100k")
	sum := sha256.Sum256(body)
	if e.Status != 200 || !strings.Contains(e.Reason, "message-id=msg-100k bytes=102400 chunks=7") || e.CallID != "call-1" ||
		e.SrcNet != "neta" || e.DstNet != "netb" || !bytes.Equal(e.BodySHA256, sum[:]) || e.BodyType != "text/plain" {
		t.Fatalf("audit entry %+v", e)
	}
	if !e.BodyKept || len(e.Body) != 0 {
		// 100 KiB is over the kept-body limit: hashed only.
		if e.BodyKept {
			t.Fatal("kept a body over 64 KiB")
		}
	}
}

// Success-Report: b's REPORT reaches a with a's paths and the Byte-Range
// of the whole message; a CPIM message is audited with its CPIM From/To.
func TestRelayReportMapping(t *testing.T) {
	l := newRelay(t, nil)
	c := l.call(t, "call-2", nil, nil, nil)
	c.connect(t)
	cpim := "From: Alice <sip:alice@a.example>\r\nTo: <sip:bob@b.example>\r\nDateTime: 2026-12-01T10:00:00Z\r\n\r\nContent-Type: text/plain\r\n\r\nhello"
	code, err := c.a.Send(c.toHubA, "msg-rep", "message/cpim", []byte(cpim), 4096, func(f *msrp.Frame) { f.SuccessReport = "yes" })
	if err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	select {
	case rep := <-c.a.Reports:
		want := msrp.ByteRange{Start: 1, End: int64(len(cpim)), Total: int64(len(cpim))}
		if rep.Status != "000 200 OK" || rep.MessageID != "msg-rep" || rep.ByteRange != want ||
			rep.ToPath[0] != c.a.Path() || rep.FromPath[0] != c.toHubA[0] {
			t.Fatalf("REPORT at a: %+v", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no REPORT reached a")
	}
	e := l.audit.wait(t, msrp.MethodMessage, "msg-rep")
	if e.From != "sip:alice@a.example" || e.To != "sip:bob@b.example" || !e.BodyKept || string(e.Body) != cpim {
		t.Fatalf("CPIM audit entry: from %q to %q kept %v", e.From, e.To, e.BodyKept)
	}
}

// When b stops answering and its connection drops mid-message, a gets a
// REPORT 000 408 for what was in flight and 481 for its next SEND.
func TestRelayFailureReportOnLegDrop(t *testing.T) {
	l := newRelay(t, nil)
	c := l.call(t, "call-3", nil, nil, nil)
	c.connect(t)
	c.dropMidMessage(t, "msg-drop")
	select {
	case rep := <-c.a.Reports:
		if rep.Status != "000 408 Request Timeout" || rep.MessageID != "msg-drop" || rep.ToPath[0] != c.a.Path() {
			t.Fatalf("REPORT at a: %+v", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure REPORT at a")
	}
	code, err := c.a.Send(c.toHubA, "msg-after", "text/plain", []byte("x"), 10, nil)
	if err != nil || code != 481 {
		t.Fatalf("SEND after the drop: %d %v, want 481", code, err)
	}
	e := l.audit.wait(t, msrp.MethodMessage, "msg-drop")
	if e.Status != 408 {
		t.Fatalf("audit of the dropped message: %d %s", e.Status, e.Reason)
	}
}

// File transfer (RFC 5547): the hub's SHA-1 over the reassembled bytes is
// compared with the offer's hash.
func TestRelayFileTransferHash(t *testing.T) {
	file := payload(20000)
	sum := sha1.Sum(file)
	var hx []string
	for _, b := range sum {
		hx = append(hx, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	good := strings.Join(hx, ":")
	bad := "00" + good[2:]
	tests := []struct {
		name    string
		sel     string
		verdict string
		status  int
	}{
		{"verified", `a=file-selector:name:"f.bin" type:application/octet-stream size:20000 hash:sha-1:` + good, "sha1=verified", 200},
		{"mismatch", `a=file-selector:name:"f.bin" type:application/octet-stream size:20000 hash:sha-1:` + bad, "sha1=mismatch", 0},
		{"no hash", `a=file-selector:name:"f.bin" type:application/octet-stream size:20000`, "sha1=no-hash", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newRelay(t, nil)
			c := l.call(t, "call-ft", []string{"a=sendonly", tt.sel, "a=file-transfer-id:ft1"}, []string{"a=recvonly"}, nil)
			if !strings.Contains(string(c.offer), tt.sel) {
				t.Fatal("file-selector changed in the offer")
			}
			c.connect(t)
			if code, err := c.a.Send(c.toHubA, "file-1", "application/octet-stream", file, 4096, nil); err != nil || code != 200 {
				t.Fatalf("send: %d %v", code, err)
			}
			e := l.audit.wait(t, msrp.MethodFile, "file-1")
			if !strings.Contains(e.Reason, tt.verdict) || !strings.Contains(e.Reason, "file-transfer-id=ft1") ||
				!strings.Contains(e.Reason, `name="f.bin"`) || e.Status != tt.status {
				t.Fatalf("file entry %d %s", e.Status, e.Reason)
			}
		})
	}
}

// Refusals on the hub's listener and per frame.
func TestRelayRefusals(t *testing.T) {
	l := newRelay(t, func(c *msrp.Config) { c.MaxMessageSize = 10000 })
	c := l.call(t, "call-4", nil, nil, nil)
	tcp, _ := l.r.Addrs()

	// Unknown session id: 481.
	x := msrptest.New("127.0.0.2", nil)
	bogus := fmt.Sprintf("msrp://%s/nosuchsession;tcp", tcp)
	if err := x.Connect([]string{bogus}, nil); err == nil || !strings.Contains(err.Error(), "481") {
		t.Fatalf("unknown session: %v", err)
	}
	// Right session, wrong From-Path: 403.
	y := msrptest.New("127.0.0.2", nil)
	if err := y.Connect(c.toHubA, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("foreign From-Path: %v", err)
	}
	c.connect(t)
	// A second connection for the bound leg: 506.
	z := msrptest.New("127.0.0.2", nil)
	z.URI = c.a.URI
	if err := z.Connect(c.toHubA, nil); err == nil || !strings.Contains(err.Error(), "506") {
		t.Fatalf("second connection: %v", err)
	}
	// Over the size limit: 413 to the sender, audited.
	code, err := c.a.Send(c.toHubA, "big", "text/plain", payload(20000), 4096, nil)
	if err != nil || code != 413 {
		t.Fatalf("oversized message: %d %v", code, err)
	}
	e := l.audit.wait(t, msrp.MethodMessage, "message-id=big")
	if e.Status != 413 || !strings.Contains(e.Reason, "limit of 10000") {
		t.Fatalf("audit %d %s", e.Status, e.Reason)
	}
	if n := l.r.Stats().Refused; n < 4 {
		t.Fatalf("refused %d, want at least 4", n)
	}
}

// RFC 6135: the offerer said actpass, the hub offers actpass, b answers
// active and connects itself; the hub answers passive toward a.
func TestRelaySetupActive(t *testing.T) {
	l := newRelay(t, nil)
	a := msrptest.New("127.0.0.2", nil)
	b := msrptest.New("127.0.0.3", nil)
	d := msrp.Dialog{CallID: "call-5", OffererNet: "neta", AnswererNet: "netb"}
	offer, err := l.r.Offer(d, a.SDP("a=setup:actpass"))
	if err != nil {
		t.Fatal(err)
	}
	om := msrp.ParseSDP(offer)
	if om[0].Setup != "actpass" {
		t.Fatalf("offer toward b: setup %q", om[0].Setup)
	}
	answer, err := l.r.Answer(d, b.SDP("a=setup:active"))
	if err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(answer)
	if am[0].Setup != "passive" {
		t.Fatalf("answer toward a: setup %q", am[0].Setup)
	}
	if err := b.Connect(om[0].Path, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(am[0].Path, nil); err != nil {
		t.Fatal(err)
	}
	if code, err := b.Send(om[0].Path, "from-b", "text/plain", []byte("hi a"), 100, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	m, err := a.Wait("from-b", 5*time.Second)
	if err != nil || string(m.Body) != "hi a" {
		t.Fatalf("a got %v %v", m, err)
	}
	// The BYE ends it: both connections close.
	l.r.End("call-5")
	if l.r.Sessions() != 0 {
		t.Fatal("session still anchored after End")
	}
	if _, err := a.Send(am[0].Path, "late", "text/plain", []byte("x"), 10, nil); err == nil {
		t.Fatal("a leg still open after End")
	}
}

// TLS legs: the hub advertises its own fingerprint on each leg, checks the
// endpoints' certificates against theirs, and the endpoints' handshakes
// succeed only against the hub's advertised fingerprint.
func TestRelayTLSFingerprints(t *testing.T) {
	l := newRelay(t, nil)
	aCert, bCert := selfSigned(t, "a.example"), selfSigned(t, "b.example")
	hubFP := fingerprintOf(l.cert.Certificate[0])
	a := msrptest.New("127.0.0.2", &tls.Config{Certificates: []tls.Certificate{aCert}})
	b, err := msrptest.Listen("127.0.0.3", &tls.Config{Certificates: []tls.Certificate{bCert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	d := msrp.Dialog{CallID: "call-tls", OffererNet: "neta", AnswererNet: "netb"}
	offer, err := l.r.Offer(d, a.SDP("a=fingerprint:"+fingerprintOf(aCert.Certificate[0])))
	if err != nil {
		t.Fatal(err)
	}
	om := msrp.ParseSDP(offer)
	if om[0].Fingerprint != hubFP || !strings.HasPrefix(om[0].Path[0], "msrps://") || om[0].Proto != msrp.ProtoTLS {
		t.Fatalf("offer toward b: %+v", om[0])
	}
	answer, err := l.r.Answer(d, b.SDP("a=fingerprint:"+fingerprintOf(bCert.Certificate[0])))
	if err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(answer)
	if am[0].Fingerprint != hubFP {
		t.Fatalf("answer toward a: fingerprint %q", am[0].Fingerprint)
	}
	check := func(want string) func(*tls.ConnectionState) error {
		return func(cs *tls.ConnectionState) error {
			if fingerprintOf(cs.PeerCertificates[0].Raw) != want {
				return errors.New("fingerprint mismatch")
			}
			return nil
		}
	}
	if err := a.Connect(am[0].Path, check("sha-256 00:11")); err == nil {
		t.Fatal("handshake succeeded against a fingerprint the hub did not advertise")
	}
	// A certificate that is not the offered one is refused.
	other := msrptest.New("127.0.0.2", &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "x.example")}})
	other.URI = a.URI
	if err := other.Connect(am[0].Path, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a certificate other than the offered fingerprint: %v", err)
	}
	a2 := msrptest.New("127.0.0.2", &tls.Config{Certificates: []tls.Certificate{aCert}})
	a2.URI = a.URI
	t.Cleanup(a2.Close)
	if err := a2.Connect(am[0].Path, check(am[0].Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := a2.Send(am[0].Path, "tls-1", "text/plain", payload(20000), 20000, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if m, err := b.Wait("tls-1", 5*time.Second); err != nil || len(m.Body) != 20000 {
		t.Fatalf("b: %v", err)
	}
}
