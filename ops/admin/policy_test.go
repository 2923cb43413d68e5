package admin

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// An allow without services means every service; on top of a narrower
// grant it must be refused rather than silently widen it (issue 9, wrong
// answer 6). Listing every service still widens on purpose.
func TestAllowWithoutServicesDoesNotWiden(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork(id)}); err != nil {
			t.Fatal(err)
		}
	}
	im := []hubv1.Service{hubv1.Service_SERVICE_IM}
	rule := func() []hubv1.Service {
		t.Helper()
		p := n.store.State().Policy("b")
		for _, r := range p.GetRules() {
			if r.GetSource() == "a" {
				return r.GetServices()
			}
		}
		return nil
	}

	steps := []struct {
		name string
		req  *hubv1.PolicyChangeRequest
		code codes.Code
		subs []string
		// services of a's rule on b afterwards (nil: not checked)
		after []hubv1.Service
	}{
		{"no grant yet: empty means every service", &hubv1.PolicyChangeRequest{Destination: "a", Source: "b"}, codes.OK, nil, nil},
		{"narrow grant", &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: im}, codes.OK, nil, im},
		{"empty on a narrower grant is refused", &hubv1.PolicyChangeRequest{Destination: "b", Source: "a"},
			codes.FailedPrecondition, []string{"services: required", `source "a" already has im on "b"`, "--services all"}, im},
		{"every service listed widens on purpose", &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: raft.AllServices()},
			codes.OK, nil, raft.AllServices()},
		{"empty on a full grant changes nothing and is fine", &hubv1.PolicyChangeRequest{Destination: "b", Source: "a"},
			codes.OK, nil, raft.AllServices()},
		{"all members, narrow", &hubv1.PolicyChangeRequest{Destination: "b", All: true, Services: im}, codes.OK, nil, nil},
		{"all members, empty on a narrower switch is refused", &hubv1.PolicyChangeRequest{Destination: "b", All: true},
			codes.FailedPrecondition, []string{"services: required", "every member (all) already has im"}, nil},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if i == 3 {
				// Start over from nothing: the test's fake FSM does not merge
				// rules as the real one does.
				if _, err := c.DenyPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "b", Source: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.AllowPolicy(ctx, st.req)
			if st.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantStatus(t, err, st.code, st.subs...)
			}
			if st.after != nil {
				if got := rule(); !slices.Equal(got, st.after) {
					t.Errorf("a's services on b = %v, want %v", got, st.after)
				}
			}
		})
	}
	// Deny without services still takes back everything: narrowing is never
	// refused.
	if _, err := c.DenyPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "b", Source: "a"}); err != nil {
		t.Fatal(err)
	}
	if got := rule(); got != nil {
		t.Errorf("after deny a has %v on b", got)
	}
}
