package intercept

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// What became of a frame given to a Sender (or of a copy the Interceptor
// could not even queue): the label values of Metrics.
const (
	OutcomeSent        = "sent"         // written to the collector's connection
	OutcomeQueueFull   = "queue_full"   // Enqueue found the queue full
	OutcomeUnreachable = "unreachable"  // dial failed, or within the backoff after a failure
	OutcomeWriteError  = "write_error"  // the write failed (the connection is redialled)
	OutcomeShutdown    = "shutdown"     // still queued when Close's flush time ran out
	OutcomeNoCollector = "no_collector" // interception without intercept.address
	OutcomeEncodeError = "encode_error" // the HEP frame could not be built
)

// Metrics counts frames by outcome for one Sender and the Interceptor or
// Capturer that feeds it. Two flavours, because the two features differ in
// who may know what:
//
//   - NewInterceptMetrics counts only the copies that did not reach the
//     mediation endpoint (clearhub_intercept_copies_dropped_total{reason}),
//     with no warrant, target or network label. Delivered copies are not
//     counted: a rising "sent" series would date every warrant and trace its
//     target's traffic for anyone who can read the node's metrics, which
//     docs/interception.md keeps to the lawful-intercept role (the
//     interception ledger has the per-warrant counts).
//   - NewCaptureMetrics counts every mirrored frame
//     (clearhub_capture_frames_total{result}, "sent" included): capture is
//     an operator tool whose switches every operator role sees.
//
// A nil *Metrics counts nothing.
type Metrics struct {
	frames    *prometheus.CounterVec
	countSent bool
}

// failures are the outcomes other than sent, in label order.
var failures = []string{OutcomeQueueFull, OutcomeUnreachable, OutcomeWriteError, OutcomeShutdown, OutcomeNoCollector, OutcomeEncodeError}

// NewInterceptMetrics is the interception flavour (failures only).
func NewInterceptMetrics() *Metrics {
	m := &Metrics{frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "intercept", Name: "copies_dropped_total",
		Help: "Lawful-interception copies this node did not deliver to the mediation endpoint, by reason: queue_full, unreachable (dial failed or backing off), write_error, shutdown, no_collector (no intercept.address), encode_error. No warrant or target label, and delivered copies are not counted (docs/interception.md)."},
		[]string{"reason"})}
	for _, o := range failures {
		m.frames.WithLabelValues(o)
	}
	return m
}

// NewCaptureMetrics is the SIP capture flavour (every frame).
func NewCaptureMetrics() *Metrics {
	m := &Metrics{countSent: true, frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "capture", Name: "frames_total",
		Help: "SIP capture (HEP mirroring) frames for the Homer collector, by result: sent, or why dropped: queue_full, unreachable (dial failed or backing off), write_error, shutdown, encode_error."},
		[]string{"result"})}
	m.frames.WithLabelValues(OutcomeSent)
	for _, o := range failures {
		if o != OutcomeNoCollector { // a capturer always has its collector
			m.frames.WithLabelValues(o)
		}
	}
	return m
}

func (m *Metrics) count(outcome string) {
	if m == nil || (outcome == OutcomeSent && !m.countSent) {
		return
	}
	m.frames.WithLabelValues(outcome).Inc()
}

// Register adds the counter to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	if m == nil || reg == nil {
		return nil
	}
	if err := reg.Register(m.frames); err != nil {
		return fmt.Errorf("intercept metrics: %w", err)
	}
	return nil
}
