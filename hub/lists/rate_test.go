package lists

import (
	"strings"
	"testing"
	"time"
)

// RFC 6446 adaptive-min-rate: a minimum average rate. A subscription that
// was busy gets no heartbeat until its average falls to the asked rate; a
// quiet one gets one every interval. The applied value is echoed.
func TestAdaptiveMinRate(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")),
		func(c *Config) { c.Throttle = -1 })
	res := l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "presence;adaptive-min-rate=0.01"}), "a")
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	s, _ := l.nextNotify() // count 1 at t0: next deadline t0+100 s
	if got := headerValue(s.req, "Subscription-State"); !strings.HasSuffix(got, ";adaptive-min-rate=0.01") {
		t.Fatalf("adaptive-min-rate not echoed: %s", got)
	}
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	be := l.snd.subscribes()[0]
	for i := range 3 { // three changes: count 4, deadline t0+400 s
		l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", strings.Repeat("x", i+1))), "b")
		if _, n := l.nextNotify(); n.RLMI.FullState {
			t.Fatalf("change %d sent as full state", i)
		}
	}
	l.clock.Advance(150 * time.Second) // a fixed min-rate of 0.01 would have sent at t0+100
	l.noNotify()
	l.clock.Advance(250 * time.Second) // t0+400: the average fell to the asked rate
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 4 {
		t.Fatalf("adaptive heartbeat: %+v", n.RLMI)
	}
	l.clock.Advance(99 * time.Second) // quiet now: one per interval
	l.noNotify()
	l.clock.Advance(time.Second)
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 5 {
		t.Fatalf("second heartbeat: %+v", n.RLMI)
	}
}

func TestEventRates(t *testing.T) {
	cases := []struct {
		event, echo string
		bad         bool
	}{
		{"presence", "", false},
		{"presence;max-rate=0.5", ";max-rate=0.5", false},
		{"presence;min-rate=0.001", ";min-rate=0.001", false},
		{"presence;min-rate=10", ";min-rate=0.0166667", false},                                               // floored
		{"presence;adaptive-min-rate=2", ";adaptive-min-rate=0.0166667", false},                              // floored
		{"presence;max-rate=0.001;adaptive-min-rate=0.01", ";max-rate=0.001;adaptive-min-rate=0.001", false}, // the ceiling wins
		{"presence;adaptive-min-rate=0", "", true},
		{"presence;adaptive-min-rate=abc", "", true},
		{"presence;max-rate=NaN", "", true},
	}
	for _, c := range cases {
		req := subscribeReq(t, "alice", buddies, subOpts{event: c.event})
		p, err := eventRates(req)
		if (err != nil) != c.bad {
			t.Errorf("%s: err %v", c.event, err)
			continue
		}
		if got := p.echo(); got != c.echo {
			t.Errorf("%s: echo %q, want %q", c.event, got, c.echo)
		}
	}
}
