package raft

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type recMetrics struct {
	mu                       sync.Mutex
	commits, contacts, apply int
	events                   map[string]int
}

func (r *recMetrics) Commit(time.Duration)          { r.mu.Lock(); r.commits++; r.mu.Unlock() }
func (r *recMetrics) FollowerContact(time.Duration) { r.mu.Lock(); r.contacts++; r.mu.Unlock() }
func (r *recMetrics) FSMApply(time.Duration)        { r.mu.Lock(); r.apply++; r.mu.Unlock() }
func (r *recMetrics) Event(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[name]++
}

// hashicorp/raft's go-metrics output reaches Metrics: commit and FSM apply
// latency for a write, the leader's contact with its follower, elections;
// a follower knows when it last heard from the leader.
func TestMetricsBridge(t *testing.T) {
	rec := &recMetrics{events: map[string]int{}}
	SetMetrics(rec)
	t.Cleanup(func() { SetMetrics(nil) })
	c := newInmemCluster(t, 2, nil)
	onLeader(t, c.nodes, func(l *Node) error {
		_, err := l.Apply(ctxT(t), addNet("net-a", "a.example"))
		return err
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		ok := rec.commits > 0 && rec.apply > 0 && rec.contacts > 0 && rec.events["leader"] > 0 && rec.events["candidate"] > 0
		got := fmt.Sprintf("commits %d, applies %d, contacts %d, events %v", rec.commits, rec.apply, rec.contacts, rec.events)
		rec.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics not seen: %s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	follower := c.nodes[1-c.leader()]
	if lc := follower.LastContact(); lc.IsZero() || time.Since(lc) > 5*time.Second {
		t.Fatalf("follower LastContact = %v", lc)
	}

	// Once unset, nothing is delivered.
	SetMetrics(nil)
	rec.mu.Lock()
	before := rec.commits
	rec.mu.Unlock()
	onLeader(t, c.nodes, func(l *Node) error {
		_, err := l.Apply(ctxT(t), addNet("net-b", "b.example"))
		return err
	})
	rec.mu.Lock()
	after := rec.commits
	rec.mu.Unlock()
	if after != before {
		t.Fatalf("commits %d -> %d after SetMetrics(nil)", before, after)
	}
}
