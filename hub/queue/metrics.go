package queue

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/raft"
)

type metrics struct {
	depth, bytes, oldest                  *prometheus.GaugeVec
	stored, expired, dropped, refusedFull *prometheus.CounterVec
	deliveries, probes, imdn              *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "queue", Name: name, Help: help}, []string{"network"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "queue", Name: name, Help: help}, append([]string{"network"}, labels...))
	}
	m := &metrics{
		depth:       gauge("depth", "Stored MESSAGEs waiting for the destination network (replicated state, every node)."),
		bytes:       gauge("bytes", "Bytes of stored requests per destination network."),
		oldest:      gauge("oldest_age_seconds", "Age of the oldest stored MESSAGE per destination network."),
		stored:      counter("stored_total", "MESSAGEs stored by this node (answered 202)."),
		expired:     counter("expired_total", "Stored MESSAGEs removed undelivered after their TTL (by the delivering node)."),
		dropped:     counter("dropped_total", "Stored MESSAGEs dropped by an operator."),
		refusedFull: counter("full_total", "MESSAGEs refused with 503 because the destination's queue was full."),
		deliveries:  counter("deliveries_total", "Delivery attempts by outcome: delivered, retry (not reached or transient), refused (the destination's final answer).", "outcome"),
		probes:      counter("probes_total", "OPTIONS liveness probes of a deferring network, by result.", "result"),
		imdn:        counter("imdn_total", "RFC 5438 delivery notifications the hub sent to a sender's network, by status and result.", "status", "result"),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.depth, m.bytes, m.oldest, m.stored, m.expired, m.dropped, m.refusedFull, m.deliveries, m.probes, m.imdn} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe sets the gauges from the replicated state.
func (m *metrics) observe(st *raft.State, now time.Time) {
	m.depth.Reset()
	m.bytes.Reset()
	m.oldest.Reset()
	for _, d := range st.QueueDestinations() {
		q := st.Queue(d)
		m.depth.WithLabelValues(d).Set(float64(len(q)))
		m.bytes.WithLabelValues(d).Set(float64(st.QueueBytes(d)))
		oldest := q[0].GetStoredUnixNano()
		for _, x := range q {
			oldest = min(oldest, x.GetStoredUnixNano())
		}
		m.oldest.WithLabelValues(d).Set(max(0, now.Sub(time.Unix(0, oldest)).Seconds()))
	}
}
