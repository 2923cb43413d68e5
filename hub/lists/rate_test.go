package lists

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// idle waits until no list subscription has a NOTIFY in flight, so that
// the answers to the NOTIFYs seen so far have been read.
func (l *lab) idle() {
	l.t.Helper()
	waitFor(l.t, "NOTIFYs answered", func() bool {
		l.svc.mu.Lock()
		defer l.svc.mu.Unlock()
		for _, sub := range l.svc.subs {
			if sub.sending {
				return false
			}
		}
		return true
	})
}

// What the hub reads of the rate parameters, applies and echoes; each case
// names the RFC 6446 rule it checks.
func TestEventRates(t *testing.T) {
	const hour = time.Hour
	cases := []struct {
		rule  string
		event string
		exp   time.Duration // time left on the subscription
		echo  string
		bad   bool
	}{
		{"4.2: no parameters, no rate control, nothing echoed", "presence", hour, "", false},
		{"5.2: max-rate echoed as applied", "presence;max-rate=0.5", hour, ";max-rate=0.5", false},
		{"9.1: parameter names are case-insensitive, LWS around = allowed", "presence; Max-Rate = 0.5", hour, ";max-rate=0.5", false},
		{"9.2: the largest value", "presence;max-rate=99.9999999999", hour, ";max-rate=99.9999999999", false},
		{"9.2: the smallest value, echoed in fixed point", "presence;min-rate=0.0000000001", hour, ";min-rate=0.0000000001", false},
		{"9.2: the echo is never an exponent (5.3 raise off: the subscription is ending)", "presence;max-rate=0.00001", 0, ";max-rate=0.00001", false},
		{"9.2: three integer digits", "presence;max-rate=100", hour, "", true},
		{"9.2: an exponent", "presence;max-rate=1e-3", hour, "", true},
		{"9.2: no integer digit", "presence;max-rate=.5", hour, "", true},
		{"9.2: no fraction digit after the point", "presence;max-rate=5.", hour, "", true},
		{"9.2: eleven decimals", "presence;min-rate=0.00000000001", hour, "", true},
		{"9.2: a sign", "presence;max-rate=-1", hour, "", true},
		{"9.2: no value", "presence;adaptive-min-rate", hour, "", true},
		{"9.2: not a number", "presence;adaptive-min-rate=abc", hour, "", true},
		{"5.1, 6.1, 7.1: zero is not allowed", "presence;min-rate=0.0", hour, "", true},
		{"6.3: the notifier may lower min-rate (the hub: once a minute)", "presence;min-rate=10", hour, ";min-rate=0.0166666667", false},
		{"7.3: the notifier may lower adaptive-min-rate (the hub: once a minute)", "presence;adaptive-min-rate=2", hour, ";adaptive-min-rate=0.0166666667", false},
		{"5.3: a max-rate allowing no NOTIFY before expiry MUST be raised to 1/(time left)",
			"presence;max-rate=0.0001", hour, ";max-rate=0.0002777778", false},
		{"5.3: the raise follows the expiry granted", "presence;max-rate=0.001", 100 * time.Second, ";max-rate=0.01", false},
		{"5.3: a max-rate that allows a NOTIFY before expiry stays", "presence;max-rate=0.001", hour, ";max-rate=0.001", false},
		{"8: min-rate above max-rate MUST be lowered to at most max-rate",
			"presence;max-rate=0.001;min-rate=0.01", hour, ";max-rate=0.001;min-rate=0.001", false},
		{"8: adaptive-min-rate above max-rate MUST be lowered to at most max-rate",
			"presence;max-rate=0.001;adaptive-min-rate=0.01", hour, ";max-rate=0.001;adaptive-min-rate=0.001", false},
		{"8: min-rate not lower than adaptive-min-rate MUST NOT be considered",
			"presence;min-rate=0.01;adaptive-min-rate=0.005", hour, ";adaptive-min-rate=0.005", false},
		{"8: min-rate equal to adaptive-min-rate is not lower either",
			"presence;min-rate=0.005;adaptive-min-rate=0.005", hour, ";adaptive-min-rate=0.005", false},
		{"8: min-rate lower than adaptive-min-rate is kept", "presence;min-rate=0.001;adaptive-min-rate=0.005", hour,
			";min-rate=0.001;adaptive-min-rate=0.005", false},
		{"8: all three: both minimums at most max-rate", "presence;max-rate=0.002;min-rate=0.001;adaptive-min-rate=0.005", hour,
			";max-rate=0.002;min-rate=0.001;adaptive-min-rate=0.002", false},
	}
	for _, c := range cases {
		req := subscribeReq(t, "alice", buddies, subOpts{event: c.event})
		p, err := eventRates(req)
		if (err != nil) != c.bad {
			t.Errorf("%s: %s: err %v", c.rule, c.event, err)
			continue
		}
		if got := p.applied(c.exp).echo(); got != c.echo {
			t.Errorf("%s: %s: echo %q, want %q", c.rule, c.event, got, c.echo)
		}
	}
}

// When the state goes again with nothing new (RFC 6446 6.2, 7.2, 7.4).
func TestHeartbeatIn(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(secs ...int) []time.Time {
		var out []time.Time
		for _, s := range secs {
			out = append(out, t0.Add(time.Duration(s)*time.Second))
		}
		return out
	}
	cases := []struct {
		rule  string
		event string
		since time.Time   // adaptive-min-rate in force since
		now   time.Time   // the NOTIFY just sent
		sent  []time.Time // NOTIFYs sent, now's included
		want  time.Duration
	}{
		{"4.2: no rates, no heartbeat", "presence", t0, t0, at(0), 0},
		{"6.2: min-rate: 1/min-rate after every NOTIFY", "presence;min-rate=0.005", t0, t0, nil, 200 * time.Second},
		{"7.2 step 1, 7.4 (1): the count starts with period*rate = 5, plus the first NOTIFY: 6/(0.01^2*500 s)",
			"presence;adaptive-min-rate=0.01", t0, t0, at(0), 120 * time.Second},
		{"7.4 (1): NOTIFYs sent lately lengthen the timeout: 9/(0.01^2*500 s)",
			"presence;adaptive-min-rate=0.01", t0, t0, at(0, 0, 0, 0), 180 * time.Second},
		{"7.4: count is the last period's only: the initial history and older NOTIFYs have left it",
			"presence;adaptive-min-rate=0.01", t0, t0.Add(1000 * time.Second), at(100, 500, 600, 700, 800, 900, 1000), 100 * time.Second},
		{"7.4: the initial history leaves the period a NOTIFY at a time (4 of it left at 180 s)",
			"presence;adaptive-min-rate=0.01", t0, t0.Add(180 * time.Second), at(0, 0, 0, 0, 180), 180 * time.Second},
		{"7.4 (2): with max-rate, never under 1/max-rate: MAX(1000 s, 1/(0.001^2*5000 s))",
			"presence;max-rate=0.001;adaptive-min-rate=0.001", t0.Add(-2 * time.Hour), t0, at(0), 1000 * time.Second},
		{"8: a min-rate lower than adaptive-min-rate still bounds a long adaptive timeout",
			"presence;min-rate=0.005;adaptive-min-rate=0.01", t0, t0, at(0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 200 * time.Second},
		{"7.4: a notifier may reach the adaptive minimum its own way: the hub's floor of a minute",
			"presence;adaptive-min-rate=0.01", t0.Add(-time.Hour), t0, at(0), time.Minute},
	}
	for _, c := range cases {
		p, err := eventRates(subscribeReq(t, "alice", buddies, subOpts{event: c.event}))
		if err != nil {
			t.Fatalf("%s: %v", c.event, err)
		}
		if got := p.applied(time.Hour).heartbeatIn(c.since, c.now, c.sent); got != c.want {
			t.Errorf("%s: %s: heartbeat in %v, want %v", c.rule, c.event, got, c.want)
		}
	}
}

// The send history keeps the last period only, and a bounded number.
func TestRecordSent(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	p, _ := parseRates("presence;adaptive-min-rate=0.01") // period 500 s
	p = p.applied(time.Hour)
	var sent []time.Time
	for i := range amrHistoryCap + 10 {
		sent = p.recordSent(sent, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if len(sent) != amrHistoryCap {
		t.Errorf("%d send times kept, want the cap %d", len(sent), amrHistoryCap)
	}
	sent = p.recordSent(sent, t0.Add(600*time.Second))
	if len(sent) != 1 {
		t.Errorf("%d send times kept after the period rolled on, want 1", len(sent))
	}
	var none rateParams
	if got := none.recordSent(sent, t0); got != nil {
		t.Errorf("history kept without adaptive-min-rate: %v", got)
	}
}

// RFC 6446 7.2/7.4 end to end: a busy subscription's heartbeat comes later
// than a fixed 1/adaptive-min-rate (here 100 s), and the applied value is
// echoed.
func TestAdaptiveMinRate(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")),
		func(c *Config) { c.Throttle = -1 })
	res := l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "presence;adaptive-min-rate=0.01"}), "a")
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	s, _ := l.nextNotify() // count 5+1 at t0
	if got := headerValue(s.req, "Subscription-State"); !strings.HasSuffix(got, ";adaptive-min-rate=0.01") {
		t.Fatalf("adaptive-min-rate not echoed: %s", got)
	}
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	be := l.snd.subscribes()[0]
	for i := range 3 { // three changes at t0: count 9, timeout 9/(0.01^2*500 s) = 180 s
		l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", strings.Repeat("x", i+1))), "b")
		if _, n := l.nextNotify(); n.RLMI.FullState {
			t.Fatalf("change %d sent as full state", i)
		}
	}
	l.clock.Advance(179 * time.Second) // a fixed rate of 0.01 would have sent at t0+100
	l.noNotify()
	l.clock.Advance(time.Second)
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 4 {
		t.Fatalf("adaptive heartbeat: %+v", n.RLMI)
	}
	// At t0+180 four of the initial five are still in the period, with the
	// five NOTIFYs: 180 s again.
	l.clock.Advance(179 * time.Second)
	l.noNotify()
	l.clock.Advance(time.Second)
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 5 {
		t.Fatalf("second heartbeat: %+v", n.RLMI)
	}
}

var expiresParam = regexp.MustCompile(`;expires=[0-9]+`)

// RFC 6446 5.2: max-rate holds every NOTIFY but those upon a SUBSCRIBE and
// the last one; a full state after a list edit waits like a change.
func TestMaxRateExemptions(t *testing.T) {
	cases := []struct {
		rule   string
		act    func(l *lab, o subOpts)
		held   bool
		state  string // the Subscription-State wanted, expires aside
		isFull bool
	}{
		{"5.2: a full state after a list edit is held like any change", func(l *lab, _ subOpts) {
			lst := publicList(buddies, "sip:bob@b.example", "sip:carol@b.example")
			lst.Revision = 2
			l.setState(labState(l.t, false, lst))
		}, true, "active;max-rate=0.01", true},
		{"5.2: the NOTIFY upon a SUBSCRIBE is not held", func(l *lab, o subOpts) {
			l.serve(subscribeReq(l.t, "alice", buddies, o), "a")
		}, false, "active;max-rate=0.01", true},
		{"5.2: the last NOTIFY (un-SUBSCRIBE) is not held, and echoes the rates (4.2)", func(l *lab, o subOpts) {
			o.expires = "0"
			l.serve(subscribeReq(l.t, "alice", buddies, o), "a")
		}, false, "terminated;reason=timeout;max-rate=0.01", true},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), func(c *Config) { c.Throttle = -1 })
			o := subOpts{event: "presence;max-rate=0.01", callID: "mr", fromTag: "w1"}
			res := l.serve(subscribeReq(t, "alice", buddies, o), "a")
			l.nextNotify()
			o.toTag = tagOf(res.To().Params)
			l.clock.Advance(10 * time.Second)
			c.act(l, o)
			if c.held {
				l.noNotify()
				l.clock.Advance(90 * time.Second) // 1/max-rate after the first NOTIFY
			}
			s, n := l.nextNotify()
			got := headerValue(s.req, "Subscription-State")
			if expiresParam.ReplaceAllString(got, "") != c.state {
				t.Errorf("Subscription-State %q, want %q (expires aside)", got, c.state)
			}
			if n.RLMI.FullState != c.isFull {
				t.Errorf("fullState %v", n.RLMI.FullState)
			}
		})
	}
}

// RFC 6446 4.1, 5.2, 9.3: the watcher may change the rates in the Event
// header of its 2xx to a NOTIFY.
func TestRatesInNotifyAnswer(t *testing.T) {
	cases := []struct {
		rule   string
		answer string // the Event header of the 200s; "" none
		held   bool   // a change 2 s after the first NOTIFY waits for max-rate
		echo   string // the rates echoed in the NOTIFY of that change
	}{
		{"5.2: the notifier MUST take max-rate from a 2xx to a NOTIFY", "presence;max-rate=0.5", false, ";max-rate=0.5"},
		{"9.3: the 2xx carries every rate wanted: one left out is removed (5.1)", "presence", false, ""},
		{"9.3: other Event parameters mean nothing there", "presence;id=7;max-rate=0.5", false, ";max-rate=0.5"},
		{"9.3: an Event of another type than the NOTIFY's is not about these rates", "dialog;max-rate=0.5", true, ";max-rate=0.01"},
		{"9.2: a value not of the grammar changes nothing (a response cannot be refused)", "presence;max-rate=1e3", true, ";max-rate=0.01"},
		{"4.1: a 2xx without an Event header changes nothing", "", true, ";max-rate=0.01"},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), func(c *Config) { c.Throttle = -1 })
			if c.answer != "" {
				l.snd.resHdr = func(req *sip.Request) []sip.Header {
					if req.Method != sip.NOTIFY {
						return nil
					}
					return []sip.Header{sip.NewHeader("Event", c.answer)}
				}
			}
			l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "presence;max-rate=0.01"}), "a")
			l.nextNotify()
			l.idle()
			waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
			l.clock.Advance(2 * time.Second)
			l.serve(backendNotifyReq(l.snd.subscribes()[0], "active", pidf("sip:bob@b.example", "x")), "b")
			if c.held {
				l.noNotify()
				l.clock.Advance(98 * time.Second)
			}
			s, n := l.nextNotify()
			if n.RLMI.FullState || len(n.RLMI.Resources) != 1 {
				t.Errorf("the change: %+v", n.RLMI)
			}
			got := headerValue(s.req, "Subscription-State")
			if i := strings.Index(got, ";max-rate"); (i < 0 && c.echo != "") || (i >= 0 && got[i:] != c.echo) {
				t.Errorf("Subscription-State %q, want the rates %q", got, c.echo)
			}
		})
	}
}
