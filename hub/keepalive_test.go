package hub

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
)

// keepaliveCount reads clearhub_sip_keepalives_total for network.
func keepaliveCount(t *testing.T, reg *prometheus.Registry, network string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clearhub_sip_keepalives_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "network" && lp.GetValue() == network {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Issue 9 wrong answer 5: members' keep-alive OPTIONS to the hub were two
// ledger entries each. With AuditKeepalives "count" they are one
// aggregate entry per member network and interval (and a metric); other
// OPTIONS the hub answers (Max-Forwards 0) keep their entries, and the
// default keeps entries for keep-alives too.
func TestKeepaliveAudit(t *testing.T) {
	const pings = 5
	for _, tc := range []struct {
		mode       string
		perPing    int // ledger entries per keep-alive
		aggregates int // aggregate keep-alive entries after a flush
	}{
		{"", 2, 0}, // default: entries
		{KeepaliveEntries, 2, 0},
		{KeepaliveCount, 0, 1},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			l := &lab{state: &fakeState{}, audit: &memAudit{}}
			l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
			l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
			l.state.set(labState(l.a, l.b))
			reg := prometheus.NewRegistry()
			l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", RouteSecret: []byte("s"),
				AuditKeepalives: tc.mode, Registerer: reg, AggregateInterval: time.Hour}, l.state, l.audit)
			l.udp = l.hub.Addrs()[0].String()

			var cids []string
			for range pings {
				req := l.a.newRequest(sip.OPTIONS, "sip:"+l.udp, l.udp)
				cids = append(cids, req.CallID().Value())
				if res := l.a.do(req); res.StatusCode != 200 || res.GetHeader("Allow") == nil {
					t.Fatalf("keep-alive: %d %s", res.StatusCode, res.Reason)
				}
			}
			// Not a keep-alive: answered by the hub, audited as always.
			probe := l.a.newRequest(sip.OPTIONS, "sip:bob@b.example", l.udp)
			mf := sip.MaxForwardsHeader(0)
			probe.AppendHeader(&mf)
			if res := l.a.do(probe); res.StatusCode != 200 {
				t.Fatalf("OPTIONS Max-Forwards 0: %d", res.StatusCode)
			}
			l.audit.waitAudit(t, ledger.KindRequest, "OPTIONS", 200, probe.CallID().Value())
			l.audit.waitAudit(t, ledger.KindResponse, "OPTIONS", 200, probe.CallID().Value())
			if tc.perPing > 0 {
				// Responses are audited on pooled workers (auditAsync), in
				// no fixed order: the last ping's entry can land before an
				// earlier one's (seen under -race load: 9 of 10), so wait
				// for each.
				for _, cid := range cids {
					l.audit.waitAudit(t, ledger.KindResponse, "OPTIONS", 200, cid)
				}
			}

			per := 0
			for _, cid := range cids {
				per += len(l.audit.find(ledger.KindRequest, "OPTIONS", -1, cid)) + len(l.audit.find(ledger.KindResponse, "OPTIONS", -1, cid))
			}
			if per != tc.perPing*pings {
				t.Errorf("%d entries for %d keep-alives, want %d", per, pings, tc.perPing*pings)
			}
			if got := keepaliveCount(t, reg, "neta"); got != pings {
				t.Errorf("clearhub_sip_keepalives_total{network=neta} = %v, want %d", got, pings)
			}

			l.hub.flushAggregate(context.Background(), time.Now())
			var agg []*ledger.Entry
			for _, e := range l.audit.all() {
				if strings.Contains(e.Reason, "keep-alive") {
					agg = append(agg, e)
				}
			}
			if len(agg) != tc.aggregates {
				t.Fatalf("%d aggregate keep-alive entries, want %d: %+v", len(agg), tc.aggregates, agg)
			}
			if tc.aggregates == 0 {
				return
			}
			e := agg[0]
			want := "aggregate: 5 keep-alive OPTIONS from network neta over udp"
			if !strings.HasPrefix(e.Reason, want) || e.SrcNet != "neta" || e.Method != "OPTIONS" || e.Status != 200 ||
				e.Kind != ledger.KindRequest || e.Transport != "udp" || !strings.HasPrefix(e.Src, "127.0.0.2:") {
				t.Errorf("aggregate entry %+v, want reason starting %q", e, want)
			}
		})
	}
}

func TestKeepaliveAuditConfig(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"", KeepaliveEntries, false},
		{"entries", KeepaliveEntries, false},
		{"count", KeepaliveCount, false},
		{"Count", "", true},
		{"none", "", true},
	} {
		c, err := Config{UDPAddr: "127.0.0.1:0", AuditKeepalives: tc.in}.withDefaults()
		if (err != nil) != tc.err || (err == nil && c.AuditKeepalives != tc.want) {
			t.Errorf("AuditKeepalives %q: got %q, %v", tc.in, c.AuditKeepalives, err)
		}
		if err != nil && !strings.Contains(err.Error(), "AuditKeepalives") {
			t.Errorf("error %q does not name the field", err)
		}
	}
}
