package metrics

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Expiry is computed at scrape time from the certificates as they are
// then: a node certificate swapped by a reload and a member CA replaced in
// the state show their new notAfter at the next scrape.
func TestCertExpiry(t *testing.T) {
	mk := func(name string, ttl time.Duration) *pki.CA {
		t.Helper()
		ca, err := pki.NewCA(name, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	node, cluster, member, member2 := mk("node", 10*24*time.Hour), mk("cluster", 100*24*time.Hour), mk("member-a", 30*24*time.Hour), mk("member-a2", 300*24*time.Hour)
	var nodeCert atomic.Pointer[pki.CA]
	nodeCert.Store(node)
	var st atomic.Pointer[raft.State]
	state := func(caPEM string) *raft.State {
		return raft.NewState(1, &hubv1.ClusterState{Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Identity: &hubv1.Identity{CaPem: []string{caPEM}}},
			{Id: "netb", Domains: []string{"b.example"}, Identity: &hubv1.Identity{Pins: []string{"ab"}}},
		}})
	}
	st.Store(state(string(member.CertPEM)))
	now := time.Now()
	reg := prometheus.NewRegistry()
	if err := RegisterCertExpiry(reg, CertSources{
		Local: func() []LocalCert {
			return []LocalCert{{"node", nodeCert.Load().Cert}, {"cluster_ca", cluster.Cert}, {"cluster_ca", cluster.Cert}}
		},
		State: st.Load,
		Now:   func() time.Time { return now },
	}); err != nil {
		t.Fatal(err)
	}
	days := func(kind, network string) float64 {
		t.Helper()
		s := scrape(t, reg, "clearhub_cert_expiry_seconds", map[string]string{"kind": kind, "network": network})
		if !s.found {
			t.Fatalf("no expiry for %s %q", kind, network)
		}
		return s.value / 86400
	}
	cases := []struct {
		kind, network string
		wantDays      float64
	}{
		{"node", "", 10},
		{"cluster_ca", "", 100}, // listed twice, reported once
		{"member_ca", "neta", 30},
	}
	for _, c := range cases {
		if got := days(c.kind, c.network); got < c.wantDays-0.01 || got > c.wantDays+0.01 {
			t.Errorf("%s %q: %.2f days, want %v", c.kind, c.network, got, c.wantDays)
		}
	}
	if s := scrape(t, reg, "clearhub_cert_expiry_seconds", map[string]string{"network": "netb"}); s.found {
		t.Errorf("a pin-only network has an expiry series")
	}

	nodeCert.Store(mk("node2", 200*24*time.Hour))
	st.Store(state(string(member2.CertPEM)))
	if got := days("node", ""); got < 199.9 {
		t.Errorf("node after reload: %.2f days, want 200", got)
	}
	if got := days("member_ca", "neta"); got < 299.9 {
		t.Errorf("member CA after replacement: %.2f days, want 300", got)
	}
}
