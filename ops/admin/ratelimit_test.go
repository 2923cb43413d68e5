package admin

import (
	"testing"

	"google.golang.org/grpc/codes"

	"clearhub/proto/hubv1"
)

// UpdateNetwork with update_mask "rate_limits" replaces the network's
// rate limits (sorted by service), leaves the other fields alone, clears
// them when none are given, and refuses invalid ones before proposing.
func TestUpdateNetworkRateLimits(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)
	if _, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	im, all := hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_UNSPECIFIED
	steps := []struct {
		name   string
		limits []*hubv1.RateLimit
		want   []*hubv1.RateLimit // nil with code set: refused
		code   codes.Code
		errSub string
	}{
		{name: "set", limits: []*hubv1.RateLimit{{Service: im, PerSecond: 100, Burst: 200}, {Service: all, PerSecond: 500}},
			want: []*hubv1.RateLimit{{Service: all, PerSecond: 500}, {Service: im, PerSecond: 100, Burst: 200}}},
		{name: "negative rate", limits: []*hubv1.RateLimit{{Service: im, PerSecond: -1}},
			code: codes.InvalidArgument, errSub: "network.rate_limits[0].per_second"},
		{name: "twice for one service", limits: []*hubv1.RateLimit{{Service: im, PerSecond: 1}, {Service: im, PerSecond: 2}},
			code: codes.InvalidArgument, errSub: "network.rate_limits[1].service"},
		{name: "cleared", limits: nil, want: nil},
	}
	for _, s := range steps {
		got, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{
			Network:    &hubv1.Network{Id: "a", DisplayName: "ignored", RateLimits: s.limits},
			UpdateMask: []string{"rate_limits"},
		})
		if s.code != codes.OK {
			wantStatus(t, err, s.code, s.errSub)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got.GetDisplayName() != "Network a" {
			t.Errorf("%s: display name %q changed by a rate_limits update", s.name, got.GetDisplayName())
		}
		if len(got.GetRateLimits()) != len(s.want) {
			t.Fatalf("%s: rate limits %v, want %v", s.name, got.GetRateLimits(), s.want)
		}
		for i, rl := range got.GetRateLimits() {
			w := s.want[i]
			if rl.GetService() != w.GetService() || rl.GetPerSecond() != w.GetPerSecond() || rl.GetBurst() != w.GetBurst() {
				t.Errorf("%s: rate_limits[%d] = %v, want %v", s.name, i, rl, w)
			}
		}
	}
}
