package msrp_test

import (
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// Through the callee network's relay the hub is the active side (RFC 4975
// default: the offerer connects), so it must send the bodiless SEND of RFC
// 4975 section 5.4 through the relay once the answer is in: that makes the
// relay connect to the passive callee, who can then send first. Without it
// the callee waits for a connection that only the caller's first message
// would bring (found by the interop case msrp-hubd with Kamailio's relay).
func TestRelayMemberRelayCalleeSendsFirst(t *testing.T) {
	for _, tc := range []struct {
		name       string
		offerExtra []string
	}{
		{"no a=setup: the hub connects", nil},
		{"a=setup:actpass, callee passive", []string{"a=setup:actpass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			defer rel.Close()
			ns := &netSettings{m: map[string]msrp.NetworkSettings{
				"netb": {Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "s3cret"}}}}
			l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get })
			a := msrptest.New("127.0.0.2", nil)
			b, err := msrptest.Listen("127.0.0.3", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			defer b.Close()
			d := msrp.Dialog{CallID: "callee-first-" + tc.name, OffererNet: "neta", AnswererNet: "netb", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"}
			offer, err := l.r.Offer(d, a.SDP(tc.offerExtra...))
			if err != nil {
				t.Fatal(err)
			}
			om := msrp.ParseSDP(offer)
			if len(om) != 1 || len(om[0].Path) != 2 {
				t.Fatalf("offer toward netb: %q", offer)
			}
			answer, err := l.r.Answer(d, b.SDP())
			if err != nil {
				t.Fatal(err)
			}
			am := msrp.ParseSDP(answer)
			if len(am) != 1 {
				t.Fatalf("answer toward a: %q", answer)
			}
			if err := a.Connect(am[0].Path, nil); err != nil {
				t.Fatal(err)
			}
			// Nothing sent by a: the relay's connection to b comes from
			// the hub's bodiless SEND alone.
			if err := b.WaitConnected(3 * time.Second); err != nil {
				t.Fatalf("b: %v (the hub sent no bodiless SEND through the relay)", err)
			}
			if code, err := b.Send(om[0].Path, "callee-first", "text/plain", []byte("bob speaks first"), 100, nil); err != nil || code != 200 {
				t.Fatalf("b sends first: %d %v", code, err)
			}
			if m, err := a.Wait("callee-first", 5*time.Second); err != nil || string(m.Body) != "bob speaks first" {
				t.Fatalf("a received %v", err)
			}
		})
	}
}
