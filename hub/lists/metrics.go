package lists

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics makes every refusal and every large NOTIFY countable: the caps
// refuse visibly (RLMI state, log line at most every 10 s) and are counted
// here each time, unlike rls max_backend_subs.
type metrics struct {
	refused *prometheus.CounterVec // cap: subscriptions | backends
	large   *prometheus.CounterVec // how: streams | split | oversize
}

func newMetrics(s *Service, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "lists", Name: "refused_total",
			Help: "Refusals by a cap of this node: subscriptions (503 to a SUBSCRIBE, max_subscriptions), backends (a resource shown terminated;reason=noresource, max_backends_per_network; network = the presentity's)."},
			[]string{"cap", "network"}),
		large: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "lists", Name: "large_notify_total",
			Help: "NOTIFYs over the datagram size (RFC 3261 18.1.1) by how they went: streams (TCP/TLS), split (into datagram-sized NOTIFYs, no edge took TCP), oversize (one resource larger than a datagram, sent over UDP anyway)."},
			[]string{"how"}),
	}
	if reg == nil {
		return m, nil
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "lists", Name: name, Help: help}, f)
	}
	for _, c := range []prometheus.Collector{m.refused, m.large,
		gauge("subscriptions", "List subscriptions held by this node (soft state).", func() float64 { n, _ := s.Counts(); return float64(n) }),
		gauge("backends", "Back-end presence subscriptions held by this node.", func() float64 { _, n := s.Counts(); return float64(n) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("lists metrics: %w", err)
		}
	}
	return m, nil
}
