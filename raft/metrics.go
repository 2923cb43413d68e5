package raft

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

// Metrics receives the measurements hashicorp/raft emits that an operator
// alerts on. hashicorp/raft reports through a process-wide go-metrics
// sink, so one Metrics serves every Node of the process (SetMetrics).
// Calls come from raft's goroutines and must not block.
type Metrics interface {
	// Commit reports, on the leader, the time from dispatching a log entry
	// to its commit by a quorum (raft.commitTime).
	Commit(d time.Duration)
	// FollowerContact reports, on the leader at each lease check, the time
	// since it last heard from one follower (raft.leader.lastContact).
	FollowerContact(d time.Duration)
	// FSMApply reports one command applied to the FSM (raft.fsm.apply).
	FSMApply(d time.Duration)
	// Event counts a transition: "heartbeat_timeout" (a follower lost its
	// leader), "leader_lease_timeout" (a leader lost its quorum),
	// "candidate" (an election started) and "leader" (one was won).
	Event(name string)
}

var (
	sinkOnce   sync.Once
	sinkTarget atomic.Pointer[Metrics]
)

// SetMetrics routes hashicorp/raft's go-metrics output into m (nil stops
// it). The first call installs a go-metrics global sink for the process,
// with the host name, runtime sampling and service prefix off so keys stay
// as raft writes them.
func SetMetrics(m Metrics) {
	if m == nil {
		sinkTarget.Store(nil)
		return
	}
	sinkTarget.Store(&m)
	sinkOnce.Do(func() {
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		cfg.EnableHostnameLabel = false
		cfg.EnableRuntimeMetrics = false
		cfg.EnableServiceLabel = false
		cfg.HostName = ""
		_, _ = gometrics.NewGlobal(cfg, metricsSink{})
	})
}

// metricsSink is the go-metrics sink: it picks out the keys Metrics names
// and drops the rest (timers arrive as milliseconds).
type metricsSink struct{}

func target() Metrics {
	if p := sinkTarget.Load(); p != nil {
		return *p
	}
	return nil
}

func ms(v float32) time.Duration { return time.Duration(float64(v) * float64(time.Millisecond)) }

func (metricsSink) AddSample(key []string, val float32) {
	m := target()
	if m == nil {
		return
	}
	switch strings.Join(key, ".") {
	case "raft.commitTime":
		m.Commit(ms(val))
	case "raft.leader.lastContact":
		m.FollowerContact(ms(val))
	case "raft.fsm.apply":
		m.FSMApply(ms(val))
	}
}

func (s metricsSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}

func (metricsSink) IncrCounter(key []string, _ float32) {
	m := target()
	if m == nil {
		return
	}
	switch strings.Join(key, ".") {
	case "raft.transition.heartbeat_timeout":
		m.Event("heartbeat_timeout")
	case "raft.transition.leader_lease_timeout":
		m.Event("leader_lease_timeout")
	case "raft.state.candidate":
		m.Event("candidate")
	case "raft.state.leader":
		m.Event("leader")
	}
}

func (s metricsSink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(key, val)
}

func (metricsSink) SetGauge([]string, float32)                              {}
func (metricsSink) SetGaugeWithLabels([]string, float32, []gometrics.Label) {}
func (metricsSink) EmitKey([]string, float32)                               {}

// LastContact is when this node last heard from a leader (zero if never).
// On the leader itself it is not kept current: compare with IsLeader.
func (n *Node) LastContact() time.Time { return n.raft.LastContact() }
