package chatroom

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/raft"
)

// metrics are the rooms' Prometheus series (the ops/metrics naming:
// clearhub_rooms_*). Gauges read the replicated state when scraped; the
// counters and histograms count this node's work.
type metrics struct {
	posted     *prometheus.CounterVec // mode: pager, session
	deliveries *prometheus.CounterVec // result: delivered, duplicate, refused, failed
	commit     prometheus.Histogram   // PostRoomMessage: proposal to applied here
	lag        prometheus.Histogram   // commit to the last copy of a fan-out
	private    prometheus.Counter     // RFC 7701 private messages
	// The focus's MSRP listeners: connections closed at accept by a cap
	// (cap: total, per_source, pending_per_source), and Accept errors
	// retried after a backoff.
	connRefused *prometheus.CounterVec
	acceptErrs  prometheus.Counter
	collectors  []prometheus.Collector // all of the above plus the gauges
}

func newMetrics(s *Service) *metrics {
	m := &metrics{
		posted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "messages_posted_total",
			Help: "Room messages this node committed, by mode (pager MESSAGE or RFC 7701 session SEND)."}, []string{"mode"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "deliveries_total",
			Help: "Room fan-out copies this node sent, by result: delivered (2xx), duplicate (482 to a re-sent copy), refused (other 4xx), failed (transport, 408, 5xx, 6xx)."}, []string{"result"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "commit_seconds",
			Help:    "Time from proposing a room message to its commit being applied on this node (what the sender's 200 waits for).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 13)}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "fanout_lag_seconds",
			Help:    "Time from a room message's arrival (its commit time stamp) to the final answer of its last fan-out copy from this node.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		private: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "private_messages_total",
			Help: "RFC 7701 private messages this node's focus delivered."}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "session_connections_refused_total",
			Help: "MSRP connections to the RFC 7701 focus closed at accept because a cap was reached, by cap (total, per_source, pending_per_source: not yet bound to a session)."}, []string{"cap"}),
		acceptErrs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "session_accept_errors_total",
			Help: "Accept errors on the RFC 7701 focus's MSRP listeners (e.g. out of file descriptors), retried after a backoff."}),
	}
	for _, mode := range []string{"pager", "session"} {
		m.posted.WithLabelValues(mode)
	}
	for _, r := range []string{"delivered", "duplicate", "refused", "failed"} {
		m.deliveries.WithLabelValues(r)
	}
	for _, c := range capLabel {
		m.connRefused.WithLabelValues(c)
	}
	state := s.cfg.Store.State
	gauge := func(name, help string, f func(*raft.State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "rooms", Name: name, Help: help},
			func() float64 { return f(state()) })
	}
	m.collectors = []prometheus.Collector{m.posted, m.deliveries, m.commit, m.lag, m.private, m.connRefused, m.acceptErrs,
		gauge("total", "Chat rooms in the cluster state.", func(st *raft.State) float64 { return float64(len(st.Rooms())) }),
		gauge("participants", "Joined participants over all rooms (invitees not counted).", func(st *raft.State) float64 {
			n := 0
			for _, r := range st.Rooms() {
				for _, p := range r.GetMembers() {
					if raft.Joined(p) {
						n++
					}
				}
			}
			return float64(n)
		}),
		gauge("fanouts_pending", "Room fan-outs not finished, cluster-wide (any owner).", func(st *raft.State) float64 {
			n := 0
			for _, r := range st.Rooms() {
				n += len(r.GetFanouts())
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "sessions",
			Help: "RFC 7701 session-mode participants whose MSRP session is on this node."}, func() float64 {
			if s.focus == nil {
				return 0
			}
			s.focus.mu.Lock()
			defer s.focus.mu.Unlock()
			return float64(len(s.focus.legs))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "rooms", Name: "session_connections_open",
			Help: "MSRP connections to the RFC 7701 focus on this node holding a slot of rooms.session_max_connections (bound or not)."}, func() float64 {
			if s.focus == nil {
				return 0
			}
			n, _, _ := s.focus.gate.Open("")
			return float64(n)
		}),
	}
	return m
}

// register adds the rooms' series to reg (nil: none).
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("chatroom metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) since(h prometheus.Histogram, t time.Time) { h.Observe(time.Since(t).Seconds()) }
