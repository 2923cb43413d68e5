package hub

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/proto/hubv1"
)

// series returns the value of name{labels} in reg (labels not named are
// ignored and matches summed; a histogram counts its samples).
func series(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				v += m.GetCounter().GetValue()
			case m.Gauge != nil:
				v += m.GetGauge().GetValue()
			case m.Histogram != nil:
				v += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return v
}

// waitSeries waits until name{labels} reaches want (metrics of responses
// relayed asynchronously may trail the answer by a moment).
func waitSeries(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := series(t, reg, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each edge's outcome, the failovers past it, and "no usable edge" per
// network and cause are counted; so is the latency between the two
// networks.
func TestEdgeHealthMetrics(t *testing.T) {
	busy := newMember(t, "busy", "b.example", "127.0.0.3", memberOpts{})
	busy.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
	})
	l, reg := guardLab(t, Config{})
	cs := labState(l.a, l.b)
	cs.Networks[1].Edges = []string{deadTCPEdge, deadUDPEdge, busy.edge(), l.b.edge()}
	l.state.set(cs)
	if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d %s", res.StatusCode, res.Reason)
	}
	for _, c := range []struct {
		edge, outcome string
		failover      float64
	}{
		{deadTCPEdge, "transport_error", 1},
		{deadUDPEdge, "timeout", 1},
		{busy.edge(), "503", 1},
		{l.b.edge(), "answered", 0},
	} {
		waitSeries(t, reg, "clearhub_sip_edge_attempts_total", map[string]string{"network": "netb", "edge": c.edge, "outcome": c.outcome}, 1)
		if got := series(t, reg, "clearhub_sip_edge_failovers_total", map[string]string{"network": "netb", "edge": c.edge}); got != c.failover {
			t.Errorf("failovers past %s = %v, want %v", c.edge, got, c.failover)
		}
	}
	waitSeries(t, reg, "clearhub_sip_network_pair_duration_seconds", map[string]string{"src": "neta", "dst": "netb"}, 1)

	causes := []struct {
		name   string
		edges  []string
		status int
		cause  string
	}{
		{"every edge refused", []string{deadTCPEdge}, 503, "all_failed"},
		{"an edge stayed silent", []string{deadUDPEdge}, 408, "timeout"},
		{"no edge registered", nil, 503, "none_configured"},
	}
	for _, c := range causes {
		t.Run(c.name, func(t *testing.T) {
			cs := labState(l.a, l.b)
			cs.Networks[1].Edges = c.edges
			l.state.set(cs)
			labels := map[string]string{"network": "netb", "cause": c.cause}
			before := series(t, reg, "clearhub_sip_no_usable_edge_total", labels)
			if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != c.status {
				t.Fatalf("MESSAGE: %d %s, want %d", res.StatusCode, res.Reason, c.status)
			}
			waitSeries(t, reg, "clearhub_sip_no_usable_edge_total", labels, before+1)
		})
	}
}

// waitAtLeast waits until name{labels} reaches want or more (a UDP request
// refused before the pipeline is refused again when it is retransmitted).
func waitAtLeast(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := series(t, reg, name, labels)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want at least %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every refusal is counted under a reason that says which check refused
// it (403 alone stands for several).
func TestRefusalReasonLabel(t *testing.T) {
	l, reg := guardLab(t, Config{})
	stranger := newMember(t, "x", "x.example", "127.0.0.9", memberOpts{})
	cases := []struct {
		name   string
		mutate func(*hubv1.ClusterState)
		from   *member
		fromAs string // From domain, default the sender's own
		ruri   string
		method sip.RequestMethod
		status int
		reason string
	}{
		{name: "policy", ruri: "sip:carol@c.example", status: 403, reason: "policy"},
		{name: "services", mutate: func(cs *hubv1.ClusterState) { cs.Networks[0].Services = []hubv1.Service{svcPresence} }, status: 403, reason: "services"},
		{name: "spoof", fromAs: "b.example", status: 403, reason: "spoof"},
		{name: "destination suspended", mutate: func(cs *hubv1.ClusterState) {
			cs.Networks[1].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
		}, status: 403, reason: "suspended"},
		{name: "source suspended", mutate: func(cs *hubv1.ClusterState) {
			cs.Networks[0].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
		}, status: 403, reason: "suspended"},
		{name: "unattributable", from: stranger, status: 403, reason: "unattributable"},
		{name: "not found", ruri: "sip:bob@nowhere.example", status: 404, reason: "not_found"},
		{name: "method", method: "FOO", status: 405, reason: "method"},
		{name: "bad event", method: sip.SUBSCRIBE, status: 489, reason: "bad_event"},
		{name: "no edge", mutate: func(cs *hubv1.ClusterState) { cs.Networks[1].Edges = nil }, status: 503, reason: "no_edge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := labState(l.a, l.b)
			if c.mutate != nil {
				c.mutate(cs)
			}
			l.state.set(cs)
			from := l.a
			if c.from != nil {
				from = c.from
			}
			method := c.method
			if method == "" {
				method = sip.MESSAGE
			}
			ruri := c.ruri
			if ruri == "" {
				ruri = "sip:bob@b.example"
			}
			req := from.newRequest(method, ruri, l.udp)
			if method == sip.SUBSCRIBE {
				req.AppendHeader(sip.NewHeader("Event", "no-such-package"))
			}
			if c.fromAs != "" {
				req.From().Address.Host = c.fromAs
			}
			labels := map[string]string{"reason": c.reason, "status": statusLabel(c.status)}
			before := series(t, reg, "clearhub_sip_refusals_total", labels)
			if res := from.do(req); res.StatusCode != c.status {
				t.Fatalf("%s: %d %s, want %d", method, res.StatusCode, res.Reason, c.status)
			}
			waitAtLeast(t, reg, "clearhub_sip_refusals_total", labels, before+1)
		})
	}
}

// Dialogs opened and closed are counted by kind: an INVITE's 2xx opens a
// session and a BYE's 2xx closes it; a SUBSCRIBE's 2xx opens a
// subscription and a NOTIFY with Subscription-State terminated closes it.
func TestDialogCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newRouteLab(t, func(c *Config) { c.Registerer = reg })
	opened := func(kind string) map[string]string { return map[string]string{"kind": kind} }

	d := l.open(t, sip.INVITE)
	waitSeries(t, reg, "clearhub_sip_dialogs_opened_total", opened("session"), 1)
	if res := sendVia(l, l.a, d.fromAReq(l.a, sip.BYE, 2)); res.StatusCode != 200 {
		t.Fatalf("BYE: %d %s", res.StatusCode, res.Reason)
	}
	waitSeries(t, reg, "clearhub_sip_dialogs_closed_total", opened("session"), 1)

	s := l.open(t, sip.SUBSCRIBE)
	waitSeries(t, reg, "clearhub_sip_dialogs_opened_total", opened("subscription"), 1)
	// An active NOTIFY closes nothing; a terminating one does.
	if res := sendVia(l, l.b, withEvent(s.fromB(l.b, sip.NOTIFY, 1), "presence")); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d %s", res.StatusCode, res.Reason)
	}
	notify := s.fromB(l.b, sip.NOTIFY, 2)
	notify.AppendHeader(sip.NewHeader("Event", "presence"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=timeout"))
	if res := sendVia(l, l.b, notify); res.StatusCode != 200 {
		t.Fatalf("terminating NOTIFY: %d %s", res.StatusCode, res.Reason)
	}
	waitSeries(t, reg, "clearhub_sip_dialogs_closed_total", opened("subscription"), 1)
	if got := series(t, reg, "clearhub_sip_dialogs_opened_total", opened("session")); got != 1 {
		t.Errorf("sessions opened = %v after in-dialog requests, want 1", got)
	}
}

// The live gauges: INVITE transactions in progress, lean transactions held
// and connections per member network.
func TestLiveGauges(t *testing.T) {
	l, reg := guardLab(t, Config{})
	release := make(chan struct{})
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.Method == sip.INVITE {
			<-release
		}
		if !req.IsAck() {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		}
	})
	done := make(chan *sip.Response, 1)
	go func() { done <- l.a.do(l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)) }()
	waitSeries(t, reg, "clearhub_sip_invite_transactions", nil, 1)
	close(release)
	if res := <-done; res.StatusCode != 486 {
		t.Fatalf("INVITE: %d %s", res.StatusCode, res.Reason)
	}
	waitSeries(t, reg, "clearhub_sip_invite_transactions", nil, 0)

	// A UDP MESSAGE's server transaction is held for Timer J.
	if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 486 {
		t.Fatalf("MESSAGE: %d %s", res.StatusCode, res.Reason)
	}
	if got := series(t, reg, "clearhub_sip_lean_transactions", map[string]string{"table": "server"}); got < 1 {
		t.Errorf("lean server transactions = %v, want at least 1", got)
	}

	// A TCP member's connection is counted under its network.
	tm := newMember(t, "a-tcp", "a.example", "127.0.0.2", memberOpts{network: "tcp"})
	if res := tm.do(tm.newRequest(sip.MESSAGE, "sip:bob@b.example", l.tcp)); res.StatusCode != 486 {
		t.Fatalf("MESSAGE over TCP: %d %s", res.StatusCode, res.Reason)
	}
	waitSeries(t, reg, "clearhub_sip_member_connections_open", map[string]string{"network": "neta"}, 1)
}
