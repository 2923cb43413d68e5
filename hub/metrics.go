package hub

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	auditErrs  prometheus.Counter
	malformed  prometheus.Counter
	tlsRefused *prometheus.CounterVec

	retransmissions prometheus.Counter

	refusedRaw  *prometheus.CounterVec
	connRefused *prometheus.CounterVec
	connClosed  *prometheus.CounterVec
	acceptErrs  prometheus.Counter
	connsOpen   prometheus.Gauge

	keepalives *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "requests_total",
			Help: "SIP requests handled, by method, source and destination network and final status (0: none, e.g. ACK).",
		}, []string{"method", "src", "dst", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to sending its final response.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		auditErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "audit_errors_total",
			Help: "Ledger appends that failed (the request or response was refused with 500).",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "malformed_total",
			Help: "Datagrams refused as unparsable or oversized.",
		}),
		tlsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "tls_handshake_refused_total",
			Help: "Inbound TLS handshakes refused because the client certificate is missing or neither chains to a registered member CA nor is pinned, by reason.",
		}, []string{"reason"}),
		retransmissions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "request_retransmissions_total",
			Help: "Retransmitted non-INVITE requests absorbed by the hub (answered from the last response or dropped).",
		}),
		refusedRaw: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "refused_unparsed_total",
			Help: "Messages refused before the request pipeline (unattributed or suspended source, junk), by cause and outcome: audited (own ledger entries), answered or dropped (both counted in an aggregate ledger entry).",
		}, []string{"cause", "outcome"}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "connections_refused_total",
			Help: "Accepted TCP/TLS connections closed at once because a cap was reached, by cap (total, unattributed, per_source, per_network).",
		}, []string{"cap"}),
		connClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "connections_closed_total",
			Help: "TCP/TLS connections the hub closed, by reason (idle, header_timeout, handshake_timeout, handshake_refused, handshake_failed, framing).",
		}, []string{"reason"}),
		acceptErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "accept_errors_total",
			Help: "Temporary accept errors (e.g. out of file descriptors) retried after a backoff.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "connections_open",
			Help: "Accepted TCP/TLS connections open now.",
		}),
		keepalives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "keepalives_total",
			Help: "Keep-alive OPTIONS (Request-URI the hub itself) members sent and the hub answered 200, by source network; counted whatever sip.audit_keepalives says.",
		}, []string{"network"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.auditErrs, m.malformed, m.tlsRefused, m.retransmissions,
		m.refusedRaw, m.connRefused, m.connClosed, m.acceptErrs, m.connsOpen, m.keepalives} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("hub: metrics already registered on this registerer")
			}
			return nil, err
		}
	}
	return m, nil
}

var knownMethods = map[string]bool{
	"SUBSCRIBE": true, "NOTIFY": true, "PUBLISH": true, "MESSAGE": true, "INVITE": true,
	"ACK": true, "CANCEL": true, "BYE": true, "UPDATE": true, "INFO": true, "REFER": true,
	"PRACK": true, "OPTIONS": true, "REGISTER": true,
}

func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "other"
}

func statusLabel(code int) string { return strconv.Itoa(code) }
