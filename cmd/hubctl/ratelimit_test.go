package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestParseRateLimits(t *testing.T) {
	im, pres, all := hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_UNSPECIFIED
	tests := []struct {
		name   string
		vals   []string
		want   []*hubv1.RateLimit
		errSub string
	}{
		{name: "rate and burst, sorted by class", vals: []string{"presence=50,im=100/200"},
			want: []*hubv1.RateLimit{{Service: pres, PerSecond: 50}, {Service: im, PerSecond: 100, Burst: 200}}},
		{name: "repeated flag, all, fractions", vals: []string{"all=0.5/3", " IM = 0 "},
			want: []*hubv1.RateLimit{{Service: all, PerSecond: 0.5, Burst: 3}, {Service: im}}},
		{name: "none clears", vals: []string{"none"}, want: nil},
		{name: "empty", vals: []string{""}, want: nil},
		{name: "none with others", vals: []string{"none,im=1"}, errSub: "want CLASS=RATE"},
		{name: "no rate", vals: []string{"im"}, errSub: "want CLASS=RATE"},
		{name: "unknown class", vals: []string{"sms=5"}, errSub: `unknown class "sms"`},
		{name: "twice", vals: []string{"im=1", "im=2"}, errSub: "given twice"},
		{name: "negative", vals: []string{"im=-1"}, errSub: "rate must be"},
		{name: "not a number", vals: []string{"im=fast"}, errSub: "rate must be"},
		{name: "NaN", vals: []string{"im=NaN"}, errSub: "rate must be"},
		{name: "too fast", vals: []string{"im=2e6"}, errSub: "rate must be"},
		{name: "burst not whole", vals: []string{"im=1/2.5"}, errSub: "burst must be"},
		{name: "burst too big", vals: []string{"im=1/10000001"}, errSub: "burst must be"},
	}
	for _, tt := range tests {
		got, err := parseRateLimits("--rate-limit", tt.vals)
		if tt.errSub != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errSub) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.errSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if d := cmp.Diff(tt.want, got, protocmp.Transform()); d != "" {
			t.Errorf("%s: (-want +got)\n%s", tt.name, d)
		}
	}
}

// Whatever an operator types, parseRateLimits either refuses it or returns
// limits the cluster's validation accepts.
func FuzzParseRateLimits(f *testing.F) {
	for _, s := range []string{"im=100/200,presence=50", "none", "all=0.5", "im=1,im=2", "file=1e6/10000000", "x=", "=/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rls, err := parseRateLimits("--rate-limit", []string{s})
		if err != nil {
			return
		}
		n := &hubv1.Network{Id: "a", Domains: []string{"a.example"}, Edges: []string{"sip:a.example"}, RateLimits: rls}
		if err := raft.ValidateNetwork(n); err != nil {
			t.Fatalf("%q parsed to %v, which the cluster refuses: %v", s, rls, err)
		}
	})
}

// network update --rate-limit sends the limits with update_mask
// rate_limits; --rate-limit none sends none (clears them).
func TestNetworkUpdateRateLimit(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	tests := []struct {
		args []string
		want *hubv1.UpdateNetworkRequest
	}{
		{[]string{"network", "update", "a", "--rate-limit", "im=100/200,presence=50"}, &hubv1.UpdateNetworkRequest{
			Network: &hubv1.Network{Id: "a", RateLimits: []*hubv1.RateLimit{
				{Service: hubv1.Service_SERVICE_PRESENCE, PerSecond: 50}, {Service: hubv1.Service_SERVICE_IM, PerSecond: 100, Burst: 200}}},
			UpdateMask: []string{"rate_limits"}}},
		{[]string{"network", "update", "a", "--rate-limit", "none"}, &hubv1.UpdateNetworkRequest{
			Network: &hubv1.Network{Id: "a"}, UpdateMask: []string{"rate_limits"}}},
	}
	for _, tt := range tests {
		before := len(env.fake.recorded())
		if _, errOut, code := env.hubctl(t, tt.args...); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", tt.args, code, errOut)
		}
		calls := env.fake.recorded()[before:]
		if len(calls) == 0 || calls[len(calls)-1].method != "UpdateNetwork" {
			t.Fatalf("%v: server saw %v, want UpdateNetwork", tt.args, calls)
		}
		if d := cmp.Diff(tt.want, calls[len(calls)-1].req, protocmp.Transform(), protocmp.IgnoreEmptyMessages()); d != "" {
			t.Errorf("%v: request mismatch (-want +got):\n%s", tt.args, d)
		}
	}
	if _, errOut, code := env.hubctl(t, "network", "update", "a", "--rate-limit", "sms=5"); code == 0 || !strings.Contains(errOut, "unknown class") {
		t.Errorf("bad --rate-limit: exit %d, stderr %q; want a usage error naming the class", code, errOut)
	}
}

func TestRateLimitList(t *testing.T) {
	got := rateLimitList([]*hubv1.RateLimit{{Service: 0, PerSecond: 500}, {Service: hubv1.Service_SERVICE_IM, PerSecond: 2.5, Burst: 10}, {Service: hubv1.Service_SERVICE_FILE}})
	if want := "all=500,im=2.5/10,file=0"; got != want {
		t.Errorf("rateLimitList = %q, want %q", got, want)
	}
	if got := rateLimitList(nil); got != "-" {
		t.Errorf("rateLimitList(nil) = %q, want -", got)
	}
}
