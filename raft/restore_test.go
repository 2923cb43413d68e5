package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// A node reopened from its Dir is not restored (and WaitRestored does not
// return) until the FSM has re-applied the commands its log held; without a
// quorum that never happens, and its State stays the pre-log one. Once a
// quorum is back, it catches up and counts as restored.
func TestRestoreWaitsForTheLog(t *testing.T) {
	c := newInmemCluster(t, 3, nil)
	ctx := ctxT(t)
	var idx uint64
	for _, id := range []string{"a", "b", "c"} {
		onLeader(t, c.nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet(id)); return err })
	}
	c.converged(idx)
	for i := range c.nodes {
		if !c.nodes[i].Restored() {
			t.Fatalf("n%d not restored in a running cluster", i)
		}
		c.stop(i)
	}

	// Alone, n1 has the log but cannot learn the commit index.
	c.start(1)
	n := c.nodes[1]
	if applied, target := n.RestoreProgress(); target < idx || applied >= target {
		t.Fatalf("reopened alone: applied %d of %d, want target >= %d and not reached", applied, target, idx)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := n.WaitRestored(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRestored without quorum = %v, want DeadlineExceeded", err)
	}
	if st := n.Status(); st.Restored || st.RestoreTarget < idx || n.State().DomainOwner("c.example") != nil {
		t.Fatalf("without quorum: Status %+v, network c present = %v", st, n.State().DomainOwner("c.example") != nil)
	}

	c.start(2)
	if err := n.WaitRestored(ctx); err != nil {
		t.Fatalf("WaitRestored with quorum: %v", err)
	}
	if n.State().Index < idx || n.State().DomainOwner("c.example") == nil {
		t.Fatalf("restored at index %d without network c", n.State().Index)
	}
	if st := n.Status(); !st.Restored || st.StateIndex < idx {
		t.Fatalf("Status after restore = %+v", st)
	}
}

// A fresh node has nothing to restore; a leader-only call made right after
// Open waits for the election instead of failing with ErrNoLeader.
func TestFreshNodeRestoredAndWritesWaitForLeader(t *testing.T) {
	cfg := fastConfig("solo", t.TempDir())
	cfg.Bootstrap = true
	_, tr := hraft.NewInmemTransport("127.0.0.1:7100")
	cfg.Transport = tr
	ctx := ctxT(t)
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitRestored(ctx); err != nil {
		t.Fatalf("fresh node WaitRestored = %v", err)
	}
	// No WaitForLeader: the election (150ms here) is still running.
	if _, err := n.Apply(ctx, addNet("a")); err != nil {
		t.Fatalf("Apply right after Open = %v, want it to wait for the leader", err)
	}

	// With no leader to be found the wait is bounded by half the deadline.
	cfg2 := fastConfig("lonely", t.TempDir())
	_, tr2 := hraft.NewInmemTransport("127.0.0.1:7101")
	cfg2.Transport = tr2
	n2, err := Open(ctx, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	actx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = n2.Apply(actx, addNet("b"))
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Apply without any leader = %v, want ErrNoLeader", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("Apply waited %v, want about half of the 400ms deadline", d)
	}
}

// A removed node notices: Removed, RemovedChan and Status say so, and
// WaitRestored answers ErrRemoved after a restart. The nodes that joined
// (replaying older configurations without themselves) are not removed.
func TestRemovedNodeNotices(t *testing.T) {
	c := newInmemCluster(t, 3, nil)
	ctx := ctxT(t)
	var idx uint64
	onLeader(t, c.nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("a")); return err })
	c.converged(idx)
	time.Sleep(3 * watchEvery) // let the watchers look at the joined configuration
	for i, n := range c.nodes {
		if n.Removed() {
			t.Fatalf("n%d reports removed in a healthy cluster", i)
		}
	}
	l := c.leader()
	gone := (l + 1) % 3
	onLeader(t, c.nodes, func(ld *Node) error { return ld.RemoveServer(ctx, c.cfgs[gone].ID) })
	select {
	case <-c.nodes[gone].RemovedChan():
	case <-ctx.Done():
		t.Fatalf("n%d never noticed its removal", gone)
	}
	if st := c.nodes[gone].Status(); !st.Removed {
		t.Errorf("removed node Status = %+v, want Removed", st)
	}
	for i, n := range c.nodes {
		if i != gone && n.Removed() {
			t.Errorf("n%d (still a member) reports removed", i)
		}
	}

	// Restarted, the removed node knows at once and never restores.
	c.stop(gone)
	c.start(gone)
	if err := c.nodes[gone].WaitRestored(ctx); !errors.Is(err, ErrRemoved) {
		t.Fatalf("restarted removed node: WaitRestored = %v, want ErrRemoved", err)
	}
}
