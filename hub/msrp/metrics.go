package msrp

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus series of the relay (clearhub_msrp_*, the ops/metrics
// naming). Labels stay bounded: causes, codes and results are fixed sets,
// networks are the member network ids (as clearhub_sip_requests_total has
// them); no session id, Call-ID or user address.

// Why the relay refused a connection, a first frame or a member relay: the
// cause label of clearhub_msrp_refusals_total.
const (
	CauseNodeCap             = "node_cap"             // msrp.max_connections reached
	CauseSourceCap           = "source_cap"           // max_connections_per_source
	CausePendingCap          = "pending_cap"          // max_pending_per_source (connections that named no session)
	CauseFirstFrameTimeout   = "first_frame_timeout"  // no TLS handshake and first frame within first_frame_timeout
	CauseTLSHandshake        = "tls_handshake"        // the handshake failed
	CauseBadFirstFrame       = "bad_first_frame"      // a response, or a To-Path that does not parse
	CauseUnknownSession      = "unknown_session"      // 481: no such hub URI (or over the other transport)
	CauseFromPathMismatch    = "from_path_mismatch"   // 403: From-Path is not the SDP's a=path
	CauseFingerprintMismatch = "fingerprint_mismatch" // 403: TLS certificate is not the SDP's a=fingerprint
	CauseNotReady            = "not_ready"            // 403: the hub connects on this leg, or no answer yet
	CauseAlreadyBound        = "already_bound"        // 506: the leg has its connection
	CauseNotFromRelay        = "not_from_relay"       // 403: a leg through a member relay, from another address
	CauseRelayAuth           = "relay_auth"           // AUTH or re-AUTH to a member's RFC 4976 relay failed
)

var refusalCauses = []string{CauseNodeCap, CauseSourceCap, CausePendingCap, CauseFirstFrameTimeout, CauseTLSHandshake, CauseBadFirstFrame,
	CauseUnknownSession, CauseFromPathMismatch, CauseFingerprintMismatch, CauseNotReady, CauseAlreadyBound, CauseNotFromRelay, CauseRelayAuth}

// Which side opened a leg's connection: the leg label of
// clearhub_msrp_connections_total.
const (
	LegInbound     = "inbound"      // the endpoint connected to the hub's listener
	LegOutbound    = "outbound"     // the hub connected to the endpoint (a=setup)
	LegMemberRelay = "member_relay" // the hub's AUTH connection to a member's relay, or one that relay opened
)

// reportCodes are the failure REPORT codes with their own label value;
// others (a member's unusual response code passed on) are "other".
var reportCodes = []int{400, 403, 408, 413, 415, 423, 481, 501, 506}

// File transfer verdicts (the audit's sha1=…).
var fileResults = []string{"verified", "mismatch", "no-hash", "unverifiable"}

type promMetrics struct {
	conns    *prometheus.CounterVec // leg, transport
	refusals *prometheus.CounterVec // cause
	messages *prometheus.CounterVec // src_network, dst_network
	bytes    *prometheus.CounterVec // src_network, dst_network
	reports  *prometheus.CounterVec // code
	files    *prometheus.CounterVec // result
	tooLarge *prometheus.CounterVec // network (the sender's)
}

func newPromMetrics() *promMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "msrp", Name: name, Help: help}, labels)
	}
	m := &promMetrics{
		conns: counter("connections_total",
			"MSRP connections bound to a leg, by leg (inbound: the endpoint connected; outbound: the hub connected, a=setup; member_relay: to or from a member's RFC 4976 relay) and transport (tcp, tls).",
			"leg", "transport"),
		refusals: counter("refusals_total",
			"MSRP connections, first frames and member relays the relay refused, by cause: node_cap, source_cap, pending_cap (closed at accept), first_frame_timeout, tls_handshake, bad_first_frame, unknown_session (481), from_path_mismatch, fingerprint_mismatch, not_ready (403), already_bound (506), not_from_relay (403), relay_auth (AUTH or re-AUTH to a member relay failed).",
			"cause"),
		messages: counter("messages_total",
			"MSRP messages relayed whole (last chunk taken by the receiver or sent with Failure-Report: no), by sending and receiving member network.",
			"src_network", "dst_network"),
		bytes: counter("bytes_total",
			"MSRP body bytes the hub sent toward the receiving endpoint, by sending and receiving member network.",
			"src_network", "dst_network"),
		reports: counter("failure_reports_total",
			"Failure REPORTs (RFC 4975 section 7.1.2) the hub generated toward a sender, by status code (408 leg closed or no response, 481, 413, a member's own code; other).",
			"code"),
		files: counter("file_transfers_total",
			"RFC 5547 file transfers audited, by the hub's SHA-1 check: verified, mismatch, no-hash (the offer had none), unverifiable (out of order, aborted or failed).",
			"result"),
		tooLarge: counter("size_refusals_total",
			"MSRP messages and files refused with 413 over the maximum size (msrp.max_message_size or the network's max_file_size), by sending network.",
			"network"),
	}
	for _, c := range refusalCauses {
		m.refusals.WithLabelValues(c)
	}
	for _, c := range reportCodes {
		m.reports.WithLabelValues(strconv.Itoa(c))
	}
	for _, r := range fileResults {
		m.files.WithLabelValues(r)
	}
	return m
}

// RegisterMetrics adds the relay's series to reg (nil: none). The counters
// run from New on, so registering late loses nothing.
func (r *Relay) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	m := r.prom
	for _, c := range []prometheus.Collector{m.conns, m.refusals, m.messages, m.bytes, m.reports, m.files, m.tooLarge,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "msrp", Name: "sessions",
			Help: "MSRP sessions (m=message sections) anchored on this node now."}, func() float64 { return float64(r.Sessions()) }),
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New("msrp: metrics already registered on this registerer")
			}
			return fmt.Errorf("msrp metrics: %w", err)
		}
	}
	return nil
}

func (m *promMetrics) refused(cause string) { m.refusals.WithLabelValues(cause).Inc() }

func (m *promMetrics) connected(leg string, secure bool) {
	m.conns.WithLabelValues(leg, transportLabel(secure)).Inc()
}

func (m *promMetrics) report(code int) {
	label := "other"
	for _, c := range reportCodes {
		if c == code {
			label = strconv.Itoa(code)
			break
		}
	}
	m.reports.WithLabelValues(label).Inc()
}

func transportLabel(secure bool) string {
	if secure {
		return "tls"
	}
	return "tcp"
}

// capCause maps a connection gate's refusal reason to its cause label.
func capCause(why string) string {
	switch why {
	case RefusedTotal:
		return CauseNodeCap
	case RefusedPerSource:
		return CauseSourceCap
	}
	return CausePendingCap // RefusedPendingSrc
}

// readCause is the cause for a connection whose handshake or first frame
// failed: a deadline (first_frame_timeout covers both) or something else.
func readCause(err error, fallback string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CauseFirstFrameTimeout
	}
	return fallback
}
