package hub

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub/routing"
)

// What an operator of the SIP plane alerts on, beyond metrics.go: the health
// of each member edge, why requests are refused, latency between each pair
// of networks, the transactions, dialogs and connections alive now. Every
// label is bounded: networks and edges come from the cluster state, reasons
// and outcomes from the fixed sets below.

// Refusal reasons (the reason label of clearhub_sip_refusals_total). 403
// alone stands for several of them; the label says which.
const (
	rsnUnattributable = "unattributable"       // no network owns the connection or source address
	rsnSuspended      = routing.LabelSuspended // source or destination network suspended
	rsnSpoof          = "spoof"                // From domain not owned by the sender
	rsnPolicy         = routing.LabelPolicy    // the destination's peering policy denies it
	rsnServices       = routing.LabelServices  // a network's service list does not include it
	rsnDialogRoute    = "dialog_route"         // hub Route missing, forged, expired or no longer permitted
	rsnMalformed      = "malformed"            // unparsable, oversized, mandatory header or From tag missing
	rsnNotFound       = routing.LabelNotFound  // no network owns the Request-URI domain
	rsnMethod         = "method"               // method not carried (405)
	rsnBadEvent       = routing.LabelBadEvent  // event package not carried (489)
	rsnLoop           = "loop"                 // 482
	rsnMaxForwards    = "max_forwards"         // 483
	rsnNoTransaction  = "no_transaction"       // CANCEL matching nothing (481)
	rsnNoEdge         = "no_edge"              // the destination has no usable edge (503)
	rsnOverload       = "overload"             // shed above capacity (503 + Retry-After): for the overload checks to count
	rsnOther          = "other"
)

// Edge attempt outcomes (clearhub_sip_edge_attempts_total).
const (
	edgeAnswered  = "answered"        // a final response other than 503
	edgeBusy      = "503"             // 503: the next edge is tried
	edgeTimeout   = "timeout"         // nothing within TransactionTimeout / Timer F
	edgeTransport = "transport_error" // dial, TLS or write failed
)

// dialogTarget is the edge label of an in-dialog request sent straight to
// a target inside the destination network (not one of its edges), so the
// label set stays bounded by the configured edges.
const dialogTarget = "dialog_target"

type opsMetrics struct {
	edgeAttempts  *prometheus.CounterVec
	edgeFailovers *prometheus.CounterVec
	noEdge        *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	pairLatency   *prometheus.HistogramVec
	dialogsOpened *prometheus.CounterVec
	dialogsClosed *prometheus.CounterVec
	tlsOutRefused *prometheus.CounterVec

	invites atomic.Int64 // INVITE server transactions being handled
}

func newOpsMetrics(h *Hub, reg prometheus.Registerer) (*opsMetrics, error) {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "sip", Name: name, Help: help}, labels)
	}
	m := &opsMetrics{
		edgeAttempts: cv("edge_attempts_total",
			"Requests sent to a member edge, by destination network, edge (the URI registered for the network; dialog_target for in-dialog requests sent to a target inside the network) and outcome: answered, 503, timeout, transport_error.",
			"network", "edge", "outcome"),
		edgeFailovers: cv("edge_failovers_total",
			"Times an edge failed (503, timeout, transport error) and the request moved on to the destination's next edge, by network and the edge that failed.",
			"network", "edge"),
		noEdge: cv("no_usable_edge_total",
			"Requests the hub answered itself because no edge of the destination network took them, by network and cause: none_configured (503), all_failed (503), timeout (408, some edge stayed silent).",
			"network", "cause"),
		refusals: cv("refusals_total",
			"Requests (and stray responses, status 0) the hub refused itself, by reason (unattributable, suspended, spoof, policy, services, dialog_route, malformed, not_found, method, bad_event, loop, max_forwards, no_transaction, no_edge, overload, other) and status.",
			"reason", "status"),
		pairLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "network_pair_duration_seconds",
			Help:    "Time from receiving a request to sending its final response, for requests whose source and destination network are both known, by source and destination network (refusals by policy included).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 30},
		}, []string{"src", "dst"}),
		dialogsOpened: cv("dialogs_opened_total",
			"Dialogs the hub saw established, by kind: session (2xx to an INVITE), subscription (2xx to a SUBSCRIBE), refer (2xx to a REFER). The hub keeps no dialog state: opened minus closed only approximates what is open (see dialogs_closed_total).",
			"kind"),
		dialogsClosed: cv("dialogs_closed_total",
			"Dialogs the hub saw end, by kind: session (2xx to a BYE), subscription and refer (2xx to a NOTIFY with Subscription-State terminated). Dialogs that end otherwise (expiry without a final NOTIFY, a UA that vanished, a BYE routed around the hub) are never counted here.",
			"kind"),
		tlsOutRefused: cv("tls_outbound_refused_total",
			"Outbound TLS handshakes to member edges refused because the edge's server certificate is not trusted (reason as tls_handshake_refused_total) or names no member network (unattributable).",
			"reason"),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.edgeAttempts, m.edgeFailovers, m.noEdge, m.refusals, m.pairLatency,
		m.dialogsOpened, m.dialogsClosed, m.tlsOutRefused, liveCollector{h}} {
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

// refused counts one refusal.
func (m *opsMetrics) refused(reason string, status int) {
	m.refusals.WithLabelValues(reason, strconv.Itoa(status)).Inc()
}

// rawReason maps a guard label (guard.go, malformed.go, stream.go) to a
// refusal reason.
func rawReason(label string) string {
	switch label {
	case "unattributed":
		return rsnUnattributable
	case "suspended":
		return rsnSuspended
	case "oversize", "malformed", "missing_header", "framing":
		return rsnMalformed
	}
	return rsnOther
}

// refuseFor is refuse with the reason counted.
func (c *call) refuseFor(reason string, code int, phrase, detail string, hdrs ...sip.Header) {
	c.h.om.refused(reason, code)
	c.refuse(code, phrase, detail, hdrs...)
}

// dropFor is auditOnly (an ACK refused without an answer) with the reason
// counted.
func (c *call) dropFor(reason string, status int, detail string) {
	c.h.om.refused(reason, status)
	c.auditOnly(status, detail)
}

// edgeLabel names hp for the metrics: the destination's edge URI as
// registered, or dialogTarget when hp is not one of its edges. The edges
// are parsed once per network view (routing.EdgeLabel), not per attempt.
func (c *call) edgeLabel(hp hop) string {
	if c.dst == nil {
		return dialogTarget
	}
	if e, ok := routing.EdgeLabel(c.dst, hp.addr, hp.transport); ok {
		return e // as the operator registered it
	}
	return dialogTarget
}

// edgeOutcome counts one attempt at hp; more says whether another edge
// follows it.
func (c *call) edgeOutcome(hp hop, res *sip.Response, out outcome, more bool) {
	var label string
	switch out {
	case outFinal:
		label = edgeAnswered
		if res != nil && res.StatusCode == 503 {
			label = edgeBusy
		}
	case outTimeout:
		label = edgeTimeout
	case outTransport:
		label = edgeTransport
	default:
		return // shutting down: says nothing about the edge
	}
	m, edge := c.h.om, c.edgeLabel(hp)
	m.edgeAttempts.WithLabelValues(c.dstID, edge, label).Inc()
	if label != edgeAnswered && more {
		m.edgeFailovers.WithLabelValues(c.dstID, edge).Inc()
	}
}

// noUsableEdge counts a request no edge of the destination took.
func (c *call) noUsableEdge(cause string) {
	c.h.om.noEdge.WithLabelValues(c.dstID, cause).Inc()
}

// observeFinal records the latency of the final response just sent.
func (c *call) observeFinal() {
	if c.srcID != "" && c.dstID != "" {
		c.h.om.pairLatency.WithLabelValues(c.srcID, c.dstID).Observe(time.Since(c.start).Seconds())
	}
}

// noteDialog counts dialogs opened and closed by the final response res to
// c.req, relayed from downstream.
func (c *call) noteDialog(res *sip.Response) {
	if res == nil || !res.IsSuccess() || c.srcID == "" || c.dstID == "" {
		return
	}
	req, m := c.req, c.h.om
	if !inDialog(req) {
		if k, creates := kindOf(req.Method); creates {
			m.dialogsOpened.WithLabelValues(k.String()).Inc()
		}
		return
	}
	switch req.Method {
	case sip.BYE:
		m.dialogsClosed.WithLabelValues(kindInvite.String()).Inc()
	case sip.NOTIFY:
		// RFC 6665 4.1.3: a NOTIFY with Subscription-State terminated
		// ends the subscription.
		if hd := req.GetHeader("Subscription-State"); hd != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(hd.Value())), "terminated") {
			kind := kindSubscribe
			if strings.EqualFold(eventPackage(req), "refer") {
				kind = kindRefer
			}
			m.dialogsClosed.WithLabelValues(kind.String()).Inc()
		}
	}
}

// liveCollector reports what is alive now, read at scrape time.
type liveCollector struct{ h *Hub }

var (
	descLean = prometheus.NewDesc("clearhub_sip_lean_transactions",
		"Entries in the lean (non-INVITE) transaction table, by table: server (transactions in progress and completed ones held for Timer J to absorb retransmissions), client (forwards waiting for a response).",
		[]string{"table"}, nil)
	descInvites = prometheus.NewDesc("clearhub_sip_invite_transactions",
		"INVITE server transactions being handled (waiting for the final response).", nil, nil)
	descMemberConns = prometheus.NewDesc("clearhub_sip_member_connections_open",
		"Accepted TCP/TLS connections attributed to a member network (TLS by its certificate, TCP by source address), by network. Connections the hub dialled to member edges are not included.",
		[]string{"network"}, nil)
)

func (liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLean
	ch <- descInvites
	ch <- descMemberConns
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	srv, cli := h.lean.size()
	ch <- prometheus.MustNewConstMetric(descLean, prometheus.GaugeValue, float64(srv), "server")
	ch <- prometheus.MustNewConstMetric(descLean, prometheus.GaugeValue, float64(cli), "client")
	var inv int64
	if h.om != nil {
		inv = h.om.invites.Load()
	}
	ch <- prometheus.MustNewConstMetric(descInvites, prometheus.GaugeValue, float64(inv))
	for netID, n := range h.conns.perNetwork() {
		ch <- prometheus.MustNewConstMetric(descMemberConns, prometheus.GaugeValue, float64(n), netID)
	}
}

// perNetwork copies the per-network connection counts.
func (t *connTable) perNetwork() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.perNet))
	for k, v := range t.perNet {
		out[k] = v
	}
	return out
}
