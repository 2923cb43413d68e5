package routing

import (
	"testing"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func edgeView(id string, edges ...string) *raft.NetworkView {
	return raft.NewState(1, &hubv1.ClusterState{Networks: []*hubv1.Network{{
		Id: id, Domains: []string{id + ".example"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Edges: edges,
	}}}).Network(id)
}

func TestEdgeLabel(t *testing.T) {
	v := edgeView("b", "sip:u.b.example", "not a uri", "SIPS:T.b.example", "sip:c.b.example:5070;transport=tcp", "sip:s.b.example;transport=sctp")
	cases := []struct {
		addr, transport string
		want            string
		ok              bool
	}{
		{"u.b.example:5060", "UDP", "sip:u.b.example", true},
		{"T.b.example:5061", "TLS", "SIPS:T.b.example", true}, // as registered, not re-serialised
		{"c.b.example:5070", "TCP", "sip:c.b.example:5070;transport=tcp", true},
		{"c.b.example:5070", "UDP", "", false}, // same address, other transport
		{"s.b.example:5060", "SCTP", "sip:s.b.example;transport=sctp", true},
		{"elsewhere:5060", "UDP", "", false},
	}
	for _, tc := range cases {
		got, ok := EdgeLabel(v, tc.addr, tc.transport)
		if got != tc.want || ok != tc.ok {
			t.Errorf("EdgeLabel(%s %s) = %q %v, want %q %v", tc.transport, tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := EdgeLabel(nil, "u.b.example:5060", "UDP"); ok {
		t.Errorf("EdgeLabel(nil) = %q", got)
	}
}

// TestEdgeCachePerView: a view's edges are parsed once (the same slice comes
// back), and a new view — a state change editing the edges — is parsed
// afresh, not served the old view's hops.
func TestEdgeCachePerView(t *testing.T) {
	v1 := edgeView("b", "sip:one.b.example")
	h1 := EdgeHops(v1)
	if len(h1) != 1 || h1[0].Addr != "one.b.example:5060" {
		t.Fatalf("EdgeHops(v1) = %+v", h1)
	}
	if h := EdgeHops(v1); &h[0] != &h1[0] {
		t.Error("EdgeHops parsed the same view twice")
	}
	v2 := edgeView("b", "sip:two.b.example:5080")
	if h := EdgeHops(v2); len(h) != 1 || h[0].Addr != "two.b.example:5080" {
		t.Errorf("EdgeHops(v2) = %+v, want the new view's edge", h)
	}
	if _, ok := EdgeLabel(v2, "one.b.example:5060", "UDP"); ok {
		t.Error("EdgeLabel(v2) matched an edge of the old view")
	}
}

// TestEdgeCacheBounded: views of states long gone do not pile up.
func TestEdgeCacheBounded(t *testing.T) {
	for i := 0; i < maxCachedViews+10; i++ {
		EdgeHops(edgeView("b", "sip:e.b.example"))
	}
	n := 0
	edgeCache.m.Range(func(any, any) bool { n++; return true })
	if n > maxCachedViews {
		t.Errorf("%d views cached, bound %d", n, maxCachedViews)
	}
}
