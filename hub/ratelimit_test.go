package hub

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// frozenClock is a rate-limiter clock that moves only when told: buckets
// refill exactly as much as the test says.
type frozenClock struct{ ns atomic.Int64 }

func newFrozenClock() *frozenClock {
	c := &frozenClock{}
	c.ns.Store(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *frozenClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *frozenClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// shedTotal reads clearhub_sip_shed_total{network, reason}.
func shedTotal(t *testing.T, reg *prometheus.Registry, network, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clearhub_sip_shed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["network"] == network && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func withRateLimits(cs *hubv1.ClusterState, netID string, rl ...*hubv1.RateLimit) *hubv1.ClusterState {
	for _, n := range cs.Networks {
		if n.Id == netID {
			n.RateLimits = rl
		}
	}
	return cs
}

// sendMessages sends n MESSAGEs from m to user@domain through the hub and
// returns the final responses.
func sendMessages(t *testing.T, l *lab, m *member, ruri string, n int) []*sip.Response {
	t.Helper()
	out := make([]*sip.Response, 0, n)
	for i := 0; i < n; i++ {
		req := m.newRequest(sip.MESSAGE, ruri, l.udp)
		req.SetBody([]byte("hi"))
		out = append(out, m.do(req))
	}
	return out
}

func count(res []*sip.Response, code int) int {
	n := 0
	for _, r := range res {
		if r.StatusCode == code {
			n++
		}
	}
	return n
}

// Issue 10, per-member fairness: a member over its IM limit gets 503 with
// Retry-After, counted per member and reason and audited in one aggregate
// entry, while another member keeps getting 200; a network's own limit
// (Network.rate_limits) beats the configured default, and the all-traffic
// bucket limits every class together. The limiter's clock is frozen, so
// no bucket refills during a case.
func TestRateLimitPerMember(t *testing.T) {
	noLeaks(t)
	im := hubv1.Service_SERVICE_IM
	all := hubv1.Service_SERVICE_UNSPECIFIED
	cases := []struct {
		name       string
		defaults   map[hubv1.Service]Limit
		aLimits    []*hubv1.RateLimit
		bLimits    []*hubv1.RateLimit
		sendA      int
		sendB      int
		wantA, wtB int // 200s
		reason     string
	}{
		{name: "default im limit", defaults: map[hubv1.Service]Limit{im: {PerSecond: 1, Burst: 5}},
			sendA: 8, sendB: 4, wantA: 5, wtB: 4, reason: "Rate limit exceeded for im"},
		{name: "network override beats default", defaults: map[hubv1.Service]Limit{im: {PerSecond: 1, Burst: 5}},
			aLimits: []*hubv1.RateLimit{{Service: im, PerSecond: 1, Burst: 2}},
			bLimits: []*hubv1.RateLimit{{Service: im, PerSecond: 0}}, // unlimited
			sendA:   6, sendB: 8, wantA: 2, wtB: 8, reason: "Rate limit exceeded for im"},
		{name: "all-traffic bucket", aLimits: []*hubv1.RateLimit{{Service: all, PerSecond: 1, Burst: 3}},
			sendA: 5, sendB: 5, wantA: 3, wtB: 5, reason: "Rate limit exceeded for all traffic"},
		{name: "burst defaults to the rate", aLimits: []*hubv1.RateLimit{{Service: im, PerSecond: 4}},
			sendA: 6, sendB: 1, wantA: 4, wtB: 1, reason: "Rate limit exceeded for im"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFrozenClock()
			l, reg := guardLab(t, Config{RateLimits: tc.defaults, limitClock: clock.now})
			cs := labState(l.a, l.b)
			withRateLimits(cs, "neta", tc.aLimits...)
			withRateLimits(cs, "netb", tc.bLimits...)
			l.state.set(cs)

			resA := sendMessages(t, l, l.a, "sip:bob@b.example", tc.sendA)
			resB := sendMessages(t, l, l.b, "sip:alice@a.example", tc.sendB)
			if got := count(resA, 200); got != tc.wantA {
				t.Errorf("a: %d of %d answered 200, want %d", got, tc.sendA, tc.wantA)
			}
			if got := count(resB, 200); got != tc.wtB {
				t.Errorf("b: %d of %d answered 200, want %d", got, tc.sendB, tc.wtB)
			}
			shed := tc.sendA - tc.wantA
			for _, r := range resA[tc.wantA:] {
				if r.StatusCode != 503 || r.Reason != tc.reason {
					t.Fatalf("over the limit: %d %q, want 503 %q", r.StatusCode, r.Reason, tc.reason)
				}
				ra := r.GetHeader("Retry-After")
				if ra == nil || ra.Value() != "1" {
					t.Errorf("Retry-After %v, want 1 (one token per second)", ra)
				}
				if r.To().Params.GetOr("tag", "") == "" {
					t.Error("503 without a To tag (RFC 3261 8.2.6.2)")
				}
			}
			label := "rate_im"
			if strings.HasSuffix(tc.reason, "all traffic") {
				label = "rate_all"
			}
			if got := shedTotal(t, reg, "neta", label); got != float64(shed) {
				t.Errorf("shed_total{neta,%s} = %v, want %d", label, got, shed)
			}
			if got := shedTotal(t, reg, "netb", label); got != 0 {
				t.Errorf("shed_total{netb,%s} = %v, want 0", label, got)
			}
			// No entry of their own: the shed requests are in the aggregate.
			if es := l.audit.find(ledger.KindRequest, "MESSAGE", 503, ""); len(es) != 0 {
				t.Errorf("%d per-request entries for shed requests, want none", len(es))
			}
			l.hub.flushAggregate(context.Background(), time.Now())
			agg := aggregates(l.audit.all(), "127.0.0.2:")
			if shed == 0 {
				return
			}
			if len(agg) != 1 {
				t.Fatalf("want one aggregate entry for a, have %+v", agg)
			}
			e := agg[0]
			want := "aggregate: " + itoa(shed) + " requests from 127.0.0.2 over udp"
			if !strings.HasPrefix(e.Reason, want) || !strings.Contains(e.Reason, tc.reason) ||
				!strings.Contains(e.Reason, itoa(shed)+" answered 503") || e.SrcNet != "neta" || e.Status != 503 || e.Method != "MESSAGE" {
				t.Errorf("aggregate entry %+v, want %q ... %q ... %d answered 503", e, want, tc.reason, shed)
			}
			if b := aggregates(l.audit.all(), "127.0.0.3:"); len(b) != 0 {
				t.Errorf("aggregate entries for b, which stayed within its limits: %+v", b)
			}
		})
	}
}

// A limit changed in the replicated state takes effect on the next
// request: lifted, imposed, and re-rated on the same bucket (what the
// member used is kept, the new rate refills it).
func TestRateLimitFollowsState(t *testing.T) {
	noLeaks(t)
	im := hubv1.Service_SERVICE_IM
	clock := newFrozenClock()
	l, _ := guardLab(t, Config{limitClock: clock.now})
	set := func(rl ...*hubv1.RateLimit) { l.state.set(withRateLimits(labState(l.a, l.b), "neta", rl...)) }
	send := func(n int) int { return count(sendMessages(t, l, l.a, "sip:bob@b.example", n), 200) }

	steps := []struct {
		name    string
		limits  []*hubv1.RateLimit
		advance time.Duration
		send    int
		want200 int
	}{
		{"imposed", []*hubv1.RateLimit{{Service: im, PerSecond: 1, Burst: 2}}, 0, 4, 2},
		{"unchanged, frozen clock: still empty", []*hubv1.RateLimit{{Service: im, PerSecond: 1, Burst: 2}}, 0, 1, 0},
		{"re-rated: 100/s refills in 20 ms", []*hubv1.RateLimit{{Service: im, PerSecond: 100, Burst: 2}}, 20 * time.Millisecond, 3, 2},
		{"lifted", []*hubv1.RateLimit{{Service: im, PerSecond: 0}}, 0, 5, 5},
		{"imposed again", []*hubv1.RateLimit{{Service: im, PerSecond: 1, Burst: 1}}, 0, 3, 1},
	}
	for _, s := range steps {
		set(s.limits...)
		// The table follows the state at the next request; time passing
		// after that refills at the new rate.
		l.hub.limits.table(l.state.State())
		clock.advance(s.advance)
		if got := send(s.send); got != s.want200 {
			t.Errorf("%s: %d of %d answered 200, want %d", s.name, got, s.send, s.want200)
		}
	}
}

// An INVITE over the session limit is answered 503 by the hub on sipgo's
// path, and the sender's client transaction ends normally.
func TestRateLimitInvite(t *testing.T) {
	noLeaks(t)
	clock := newFrozenClock()
	l, reg := guardLab(t, Config{limitClock: clock.now,
		RateLimits: map[hubv1.Service]Limit{hubv1.Service_SERVICE_SESSION: {PerSecond: 1, Burst: 1}}})
	codes := []int{}
	for i := 0; i < 2; i++ {
		req := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)
		res := l.a.do(req)
		codes = append(codes, res.StatusCode)
		if res.StatusCode == 200 {
			ack := l.a.inDialog(sip.ACK, res.Contact().Address, reversed(recordRoutes(res)),
				&sip.FromHeader{Address: req.From().Address, Params: req.From().Params.Clone()},
				&sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}, req.CallID().Value(), 1)
			if err := l.a.cl.WriteRequest(ack); err != nil {
				t.Fatal(err)
			}
		} else if res.Reason != "Rate limit exceeded for session" || res.GetHeader("Retry-After") == nil {
			t.Errorf("second INVITE: %d %q, want 503 Rate limit exceeded for session with Retry-After", res.StatusCode, res.Reason)
		}
	}
	if codes[0] != 200 || codes[1] != 503 {
		t.Fatalf("INVITE answers %v, want [200 503]", codes)
	}
	if got := shedTotal(t, reg, "neta", "rate_session"); got != 1 {
		t.Errorf("shed_total{neta,rate_session} = %v, want 1", got)
	}
}

// The bucket table: defaults and per-network overrides, limiter objects
// kept across state changes that do not touch them, adjusted in place
// when they do, dropped with their network; an older state never
// rebuilds over a newer table.
func TestLimitTableRebuild(t *testing.T) {
	im, pres := hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE
	cfg, err := Config{UDPAddr: "127.0.0.1:0", RateLimits: map[hubv1.Service]Limit{im: {PerSecond: 10, Burst: 20}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := newRateLimiter(cfg)
	mk := func(idx uint64, aLimits []*hubv1.RateLimit, withB bool, name string) *raft.State {
		cs := &hubv1.ClusterState{Networks: []*hubv1.Network{{Id: "neta", DisplayName: name, Domains: []string{"a.example"}, RateLimits: aLimits}}}
		if withB {
			cs.Networks = append(cs.Networks, &hubv1.Network{Id: "netb", Domains: []string{"b.example"}})
		}
		return raft.NewState(idx, cs)
	}
	t1 := r.table(mk(1, nil, true, "A"))
	a1, b1 := t1.nets["neta"], t1.nets["netb"]
	if a1 == nil || b1 == nil {
		t.Fatal("networks missing from the table")
	}
	if got := a1.spec[im]; got != (bucketSpec{10, 20}) {
		t.Errorf("neta im %v, want the configured default 10/s burst 20", got)
	}
	if got := a1.spec[pres]; got != (bucketSpec{20000, 40000}) {
		t.Errorf("neta presence %v, want the built-in default", got)
	}
	if a1.lim[0] != nil {
		t.Error("all-traffic bucket limited by default")
	}

	t2 := r.table(mk(2, nil, true, "A renamed"))
	if t2 == t1 || t2.nets["neta"].lim[im] != a1.lim[im] || t2.nets["netb"].lim[pres] != b1.lim[pres] {
		t.Error("unchanged limits did not keep their limiter objects")
	}
	if t2.nets["neta"].load != a1.load {
		t.Error("the load counter did not survive the rebuild")
	}

	t3 := r.table(mk(3, []*hubv1.RateLimit{{Service: im, PerSecond: 5, Burst: 7}, {Service: 0, PerSecond: 50}}, false, "A"))
	a3 := t3.nets["neta"]
	if a3.lim[im] != a1.lim[im] || a3.lim[im].Limit() != 5 || a3.lim[im].Burst() != 7 {
		t.Errorf("changed im limit: limiter %p (was %p) at %v burst %d, want the same one at 5 burst 7",
			a3.lim[im], a1.lim[im], a3.lim[im].Limit(), a3.lim[im].Burst())
	}
	if a3.lim[0] == nil || a3.spec[0] != (bucketSpec{50, 50}) {
		t.Errorf("all-traffic override %v, want 50/s burst 50", a3.spec[0])
	}
	if t3.nets["netb"] != nil {
		t.Error("removed network still has buckets")
	}

	if got := r.table(mk(2, nil, true, "stale")); got != t3 {
		t.Error("an older state replaced the newer table")
	}
	if got := r.table(mk(3, nil, true, "same index")); got != t3 {
		t.Error("the same index rebuilt the table")
	}
}

// Which requests are charged to which bucket: dialog upkeep and BYE,
// ACK, CANCEL never; new work always.
func TestLimitClass(t *testing.T) {
	req := func(m sip.RequestMethod, event, body string) *sip.Request {
		r := sip.NewRequest(m, sip.Uri{Scheme: "sip", User: "bob", Host: "b.example"})
		if event != "" {
			r.AppendHeader(sip.NewHeader("Event", event))
		}
		if body != "" {
			r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			r.SetBody([]byte(body))
		}
		return r
	}
	file := "v=0\r\nm=message 7 TCP/MSRP *\r\na=file-selector:name:\"x\"\r\n"
	cases := []struct {
		name   string
		req    *sip.Request
		inDlg  bool
		svc    hubv1.Service
		counts bool
	}{
		{"MESSAGE", req(sip.MESSAGE, "", ""), false, hubv1.Service_SERVICE_IM, true},
		{"MESSAGE in a dialog", req(sip.MESSAGE, "", ""), true, hubv1.Service_SERVICE_IM, true},
		{"SUBSCRIBE presence", req(sip.SUBSCRIBE, "presence", ""), false, hubv1.Service_SERVICE_PRESENCE, true},
		{"SUBSCRIBE refresh", req(sip.SUBSCRIBE, "presence", ""), true, 0, false},
		{"NOTIFY in a dialog", req(sip.NOTIFY, "presence", ""), true, 0, false},
		{"PUBLISH", req(sip.PUBLISH, "presence", ""), false, hubv1.Service_SERVICE_PRESENCE, true},
		{"SUBSCRIBE conference", req(sip.SUBSCRIBE, "conference", ""), false, hubv1.Service_SERVICE_CHAT, true},
		{"INVITE", req(sip.INVITE, "", "v=0\r\n"), false, hubv1.Service_SERVICE_SESSION, true},
		{"INVITE file transfer", req(sip.INVITE, "", file), false, hubv1.Service_SERVICE_FILE, true},
		{"re-INVITE", req(sip.INVITE, "", "v=0\r\n"), true, 0, false},
		{"re-INVITE offering a file", req(sip.INVITE, "", file), true, hubv1.Service_SERVICE_FILE, true},
		{"REFER in a dialog", req(sip.REFER, "", ""), true, hubv1.Service_SERVICE_SESSION, true},
		{"UPDATE in a dialog", req(sip.UPDATE, "", ""), true, 0, false},
		{"OPTIONS", req(sip.OPTIONS, "", ""), false, svcNone, true},
		{"unknown event package", req(sip.SUBSCRIBE, "dialog", ""), false, svcNone, true},
		{"BYE", req(sip.BYE, "", ""), true, 0, false},
		{"BYE out of dialog", req(sip.BYE, "", ""), false, 0, false},
		{"ACK", req(sip.ACK, "", ""), true, 0, false},
		{"CANCEL", req(sip.CANCEL, "", ""), false, 0, false},
	}
	for _, tc := range cases {
		svc, counts := limitClass(tc.req, tc.inDlg)
		if counts != tc.counts || (counts && svc != tc.svc) {
			t.Errorf("%s: (%v, %v), want (%v, %v)", tc.name, svc, counts, tc.svc, tc.counts)
		}
	}
}

func TestRateLimitConfig(t *testing.T) {
	cases := []struct {
		name   string
		limits map[hubv1.Service]Limit
		errSub string
	}{
		{"defaults", nil, ""},
		{"unlimited im", map[hubv1.Service]Limit{hubv1.Service_SERVICE_IM: {}}, ""},
		{"negative rate", map[hubv1.Service]Limit{hubv1.Service_SERVICE_IM: {PerSecond: -1}}, "per second"},
		{"huge burst", map[hubv1.Service]Limit{hubv1.Service_SERVICE_IM: {PerSecond: 1, Burst: 1e8}}, "burst"},
		{"unknown service", map[hubv1.Service]Limit{hubv1.Service(42): {PerSecond: 1}}, "unknown service"},
	}
	for _, tc := range cases {
		c, err := Config{UDPAddr: "127.0.0.1:0", RateLimits: tc.limits}.withDefaults()
		if tc.errSub == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if len(c.RateLimits) != numClasses {
				t.Errorf("%s: %d classes after defaults, want %d", tc.name, len(c.RateLimits), numClasses)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.errSub) {
			t.Errorf("%s: error %v, want one about %q", tc.name, err, tc.errSub)
		}
	}
}
