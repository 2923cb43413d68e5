package raft

import (
	"errors"
	"strings"
	"testing"
	"time"

	"clearhub/proto/hubv1"
)

// Leadership moves to the named voter, or to any other voter; a follower
// refuses and names the leader; unknown servers and a lone voter are
// refused with a reason.
func TestTransferLeadership(t *testing.T) {
	c := newInmemCluster(t, 3, nil)
	ctx := ctxT(t)
	l := c.leader()
	target := (l + 1) % 3

	f := (l + 2) % 3
	if _, err := c.nodes[f].TransferLeadership(ctx, ""); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower transfer = %v, want ErrNotLeader", err)
	}
	if _, err := c.nodes[l].TransferLeadership(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("transfer to unknown = %v, want ErrNotFound", err)
	}
	if got, err := c.nodes[l].TransferLeadership(ctx, c.cfgs[l].ID); err != nil || got != c.cfgs[l].ID {
		t.Fatalf("transfer to self = %q, %v; want a no-op", got, err)
	}

	got, err := c.nodes[l].TransferLeadership(ctx, c.cfgs[target].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != c.cfgs[target].ID {
		t.Fatalf("new leader %q, want %q", got, c.cfgs[target].ID)
	}
	if nl := c.leader(); nl != target {
		t.Fatalf("leader is %s, want %s", c.cfgs[nl].ID, c.cfgs[target].ID)
	}
	// The new leader takes writes.
	idx, err := c.nodes[target].Apply(ctx, addNet("a"))
	if err != nil {
		t.Fatal(err)
	}
	c.converged(idx)

	// Any other voter.
	got, err = c.nodes[target].TransferLeadership(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got == c.cfgs[target].ID || got == "" {
		t.Fatalf("transfer to any: leader %q", got)
	}
}

func TestTransferLeadershipAlone(t *testing.T) {
	c := newInmemCluster(t, 1, nil)
	_, err := c.nodes[0].TransferLeadership(ctxT(t), "")
	if !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("lone voter transfer = %v, want ErrFailedPrecondition", err)
	}
}

// Lost quorum: two of three nodes are gone for good. The survivor alone
// cannot elect itself; after RecoverCluster with itself as the only peer it
// leads alone, still has the networks and policy, and takes writes.
func TestRecoverClusterFromMinority(t *testing.T) {
	c := newInmemCluster(t, 3, nil)
	ctx := ctxT(t)
	var idx uint64
	onLeader(t, c.nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("a")); return err })
	onLeader(t, c.nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("b")); return err })
	onLeader(t, c.nodes, func(l *Node) (err error) {
		idx, err = l.Apply(ctx, cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b"}))
		return err
	})
	c.converged(idx)

	const s = 2 // the survivor
	c.stop(0)
	c.stop(1)
	c.stop(s)

	// Before recovery the survivor stays without a leader.
	c.start(s)
	time.Sleep(10 * c.cfgs[s].ElectionTimeout)
	if id, _ := c.nodes[s].Leader(); id != "" {
		t.Fatalf("survivor knows leader %q without a quorum", id)
	}
	c.stop(s)

	if _, err := LastConfiguration(c.cfgs[s].Dir); err != nil {
		t.Fatalf("LastConfiguration: %v", err)
	}
	peers := []Server{{ID: c.cfgs[s].ID, Address: c.addr(s)}}
	if _, err := RecoverCluster(RecoverConfig{ID: "n9", Dir: c.cfgs[s].Dir, Servers: peers}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("recover without self in peers = %v, want ErrInvalid", err)
	}
	st, err := RecoverCluster(RecoverConfig{ID: c.cfgs[s].ID, Dir: c.cfgs[s].Dir, Servers: peers})
	if err != nil {
		t.Fatal(err)
	}
	if st.Network("a") == nil || st.Network("b") == nil {
		t.Fatalf("recovered state lacks the networks: %v", st.Proto())
	}
	conf, err := LastConfiguration(c.cfgs[s].Dir)
	if err != nil || len(conf) != 1 || conf[0].ID != c.cfgs[s].ID {
		t.Fatalf("configuration after recovery = %+v, %v", conf, err)
	}

	c.start(s)
	n := c.nodes[s]
	if err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.IsLeader() {
		t.Fatal("recovered node is not the leader")
	}
	if err := n.WaitRestored(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Removed() {
		t.Fatal("recovered node thinks it was removed")
	}
	if n.State().Network("a") == nil || !n.State().Allowed("b", "a", hubv1.Service_SERVICE_IM) {
		t.Fatalf("recovered node lost state: %v", n.State().Proto())
	}
	if len(n.Status().Servers) != 1 {
		t.Fatalf("servers = %+v, want the survivor alone", n.Status().Servers)
	}
	if _, err := n.Apply(ctx, addNet("c")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}

func TestRecoverClusterRefuses(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name  string
		cfg   RecoverConfig
		want  error
		inErr string
	}{
		{"bad id", RecoverConfig{ID: "N!", Dir: dir, Servers: []Server{{ID: "N!", Address: "127.0.0.1:1"}}}, ErrInvalid, "id"},
		{"no peers", RecoverConfig{ID: "n1", Dir: dir}, ErrInvalid, "peers"},
		{"twice", RecoverConfig{ID: "n1", Dir: dir, Servers: []Server{{ID: "n1", Address: "127.0.0.1:1"}, {ID: "n1", Address: "127.0.0.1:2"}}}, ErrInvalid, "given twice"},
		{"bad addr", RecoverConfig{ID: "n1", Dir: dir, Servers: []Server{{ID: "n1", Address: "0.0.0.0:1"}}}, nil, "peers[0]"},
		{"no state", RecoverConfig{ID: "n1", Dir: dir, Servers: []Server{{ID: "n1", Address: "127.0.0.1:1"}}}, nil, "raft.db"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RecoverCluster(tc.cfg)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("RecoverCluster = %v, want %v naming %q", err, tc.want, tc.inErr)
			}
		})
	}
}
