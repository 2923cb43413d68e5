package msrp_test

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// The receiver refuses a message (415): what the sender hears depends on
// its Failure-Report (RFC 4975 section 7.1.2). The hub's own hop-by-hop
// answer: 200 for yes, none for partial and no; the failure: a REPORT for
// yes and partial, nothing for no.
func TestRelayFailureReportModes(t *testing.T) {
	tests := []struct {
		fr         string
		wantReport bool
	}{{"yes", true}, {"partial", true}, {"no", false}}
	for _, tt := range tests {
		t.Run(tt.fr, func(t *testing.T) {
			l := newRelay(t, nil)
			c := l.call(t, "fr-"+tt.fr, nil, nil, nil)
			c.connect(t)
			c.b.SetReply(func(*msrp.Frame) int { return 415 })
			code, err := c.a.Send(c.toHubA, "m-"+tt.fr, "text/x-unwanted", []byte("body"), 100, func(f *msrp.Frame) { f.FailureReport = tt.fr })
			if err != nil || code != 200 {
				t.Fatalf("send: %d %v", code, err)
			}
			select {
			case rep := <-c.a.Reports:
				if !tt.wantReport {
					t.Fatalf("REPORT with Failure-Report: no: %+v", rep)
				}
				if rep.Status != "000 415 x" || rep.MessageID != "m-"+tt.fr {
					t.Fatalf("REPORT %+v", rep)
				}
			case <-time.After(500 * time.Millisecond):
				if tt.wantReport {
					t.Fatal("no failure REPORT")
				}
			}
			if tt.fr != "no" {
				e := l.audit.wait(t, msrp.MethodMessage, "m-"+tt.fr)
				if e.Status != 415 {
					t.Fatalf("audit status %d", e.Status)
				}
			}
		})
	}
}

// A re-INVITE keeps the hub's URIs (the endpoints' connections stay), and
// a re-offer from the callee side is rewritten with the hub's A-leg URI.
func TestRelayReoffer(t *testing.T) {
	l := newRelay(t, nil)
	c := l.call(t, "re", nil, nil, nil)
	c.connect(t)
	d := msrp.Dialog{CallID: "re", OffererNet: "neta", AnswererNet: "netb"}
	again, err := l.r.Offer(d, c.a.SDP())
	if err != nil {
		t.Fatal(err)
	}
	if p := msrp.ParseSDP(again)[0].Path[0]; p != c.hubB {
		t.Fatalf("re-offer toward b: path %s, want the same %s", p, c.hubB)
	}
	fromB := msrp.Dialog{CallID: "re", OffererNet: "netb", AnswererNet: "neta"}
	rev, err := l.r.Offer(fromB, c.b.SDP())
	if err != nil {
		t.Fatal(err)
	}
	if p := msrp.ParseSDP(rev)[0].Path; p[0] != c.toHubA[0] {
		t.Fatalf("re-offer from b toward a: path %v, want %v", p, c.toHubA)
	}
	if _, err := l.r.Answer(fromB, c.a.SDP()); err != nil {
		t.Fatal(err)
	}
	if l.r.Sessions() != 1 {
		t.Fatalf("%d sessions after re-offers", l.r.Sessions())
	}
	if code, err := c.a.Send(c.toHubA, "after-re", "text/plain", []byte("still here"), 100, nil); err != nil || code != 200 {
		t.Fatalf("send after re-offers: %d %v", code, err)
	}
	if _, err := c.b.Wait("after-re", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Garbage on a bound leg closes that leg (the stream cannot be delimited
// any more); the other side's next SEND gets 481; nothing crashes.
func TestRelayMalformedFrameClosesLeg(t *testing.T) {
	l := newRelay(t, nil)
	c := l.call(t, "junk", nil, nil, nil)
	tcp, _ := l.r.Addrs()
	// b's side: a raw connection pretending to be the hub's peer is not
	// possible (the hub dials b), so a sends the junk.
	raw, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The first frame binds as a; once it is answered, junk follows.
	bind := &msrp.Frame{TID: "bind0001", Method: "SEND", ToPath: c.toHubA, FromPath: []string{c.a.Path()}, MessageID: "b1", Flag: '$'}
	if _, err := raw.Write(bind.Append(nil)); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := msrp.NewReader(raw, msrp.Limits{}).ReadFrame()
	if err != nil || res.Code != 200 || res.TID != "bind0001" {
		t.Fatalf("bind answer %+v %v", res, err)
	}
	if err := c.b.WaitConnected(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write([]byte("MSRP x\r\n\r\n\x00\x01garbage\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Read(make([]byte, 10)); err == nil {
		t.Fatal("the hub kept a leg open after junk")
	}
	// The hub closed a's leg: reading ended without the deadline.
	if n, err := c.b.Send([]string{c.hubB}, "to-a", "text/plain", []byte("x"), 10, nil); err != nil || n != 481 {
		t.Fatalf("b's SEND after a's leg closed: %d %v, want 481", n, err)
	}
}

// Nothing keeps running after End and Close.
func TestRelayNoLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := newRelay(t, nil)
	a := msrptest.New("127.0.0.2", nil)
	b, err := msrptest.Listen("127.0.0.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := msrp.Dialog{CallID: "leak", OffererNet: "neta", AnswererNet: "netb"}
	if _, err := l.r.Offer(d, a.SDP()); err != nil {
		t.Fatal(err)
	}
	ans, err := l.r.Answer(d, b.SDP())
	if err != nil {
		t.Fatal(err)
	}
	path := msrp.ParseSDP(ans)[0].Path
	if err := a.Connect(path, nil); err != nil {
		t.Fatal(err)
	}
	if code, err := a.Send(path, "l1", "text/plain", payload(50000), 20000, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if _, err := b.Wait("l1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	l.r.End("leak")
	l.r.Close()
	a.Close()
	b.Close()
	time.Sleep(100 * time.Millisecond) // endpoints' readers see the close
}

// Failure-Report: partial and a receiver that stays silent (as it should
// on success): after the transaction timeout the message counts as
// delivered, no 408 REPORT.
func TestRelayPartialSilenceIsSuccess(t *testing.T) {
	l := newRelay(t, func(c *msrp.Config) { c.TransactionTimeout = 300 * time.Millisecond })
	c := l.call(t, "partial", nil, nil, nil)
	c.connect(t)
	if code, err := c.a.Send(c.toHubA, "p1", "text/plain", []byte("quiet"), 100, func(f *msrp.Frame) { f.FailureReport = "partial" }); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	e := l.audit.wait(t, msrp.MethodMessage, "p1")
	if e.Status != 200 {
		t.Fatalf("audit %d %s", e.Status, e.Reason)
	}
	select {
	case rep := <-c.a.Reports:
		t.Fatalf("REPORT for a message the receiver took: %+v", rep)
	case <-time.After(200 * time.Millisecond):
	}
}
