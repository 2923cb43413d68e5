package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RaftMetrics receives hashicorp/raft's measurements (it implements
// raft.Metrics; install it with raft.SetMetrics).
type RaftMetrics struct {
	commit  prometheus.Histogram
	contact prometheus.Histogram
	apply   prometheus.Histogram
	events  *prometheus.CounterVec
}

var raftBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewRaftMetrics makes the Raft histograms and counters, unregistered.
func NewRaftMetrics() *RaftMetrics {
	o := func(name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: "clearhub", Subsystem: "raft", Name: name, Help: help, Buckets: raftBuckets}
	}
	return &RaftMetrics{
		commit: prometheus.NewHistogram(o("commit_duration_seconds",
			"On the leader: time from dispatching a log entry to its commit by a quorum (hashicorp/raft commitTime).")),
		contact: prometheus.NewHistogram(o("leader_follower_contact_seconds",
			"On the leader, at each lease check: time since it last heard from a follower (hashicorp/raft leader.lastContact, one sample per follower).")),
		apply: prometheus.NewHistogram(o("fsm_apply_duration_seconds", "Time to apply one command to the replicated state.")),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "raft", Name: "transitions_total",
			Help: "Raft transitions on this node, by event: heartbeat_timeout (lost the leader), leader_lease_timeout (a leader lost its quorum), candidate (started an election), leader (won one)."},
			[]string{"event"}),
	}
}

// Commit implements raft.Metrics.
func (m *RaftMetrics) Commit(d time.Duration) { m.commit.Observe(d.Seconds()) }

// FollowerContact implements raft.Metrics.
func (m *RaftMetrics) FollowerContact(d time.Duration) { m.contact.Observe(d.Seconds()) }

// FSMApply implements raft.Metrics.
func (m *RaftMetrics) FSMApply(d time.Duration) { m.apply.Observe(d.Seconds()) }

// Event implements raft.Metrics.
func (m *RaftMetrics) Event(name string) { m.events.WithLabelValues(name).Inc() }

// ContactSource is what the last-contact gauge reads (*raft.Node).
type ContactSource interface {
	LastContact() time.Time
	IsLeader() bool
}

// Register adds m and clearhub_raft_last_contact_seconds, read from src at
// scrape time. Alert on last contact above a few election timeouts on a
// follower, on the commit p99, and on transitions_total{event="candidate"}
// moving (elections).
func (m *RaftMetrics) Register(reg prometheus.Registerer, src ContactSource) error {
	for _, e := range []string{"heartbeat_timeout", "leader_lease_timeout", "candidate", "leader"} {
		m.events.WithLabelValues(e) // export zeros, so rate() works from the start
	}
	last := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "raft", Name: "last_contact_seconds",
		Help: "Seconds since this node last heard from the leader (0 on the leader; -1 when it never has)."},
		func() float64 {
			if src.IsLeader() {
				return 0
			}
			t := src.LastContact()
			if t.IsZero() {
				return -1
			}
			return time.Since(t).Seconds()
		})
	for _, c := range []prometheus.Collector{m.commit, m.contact, m.apply, m.events, last} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register raft timing metrics: %w", err)
		}
	}
	return nil
}
