package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
)

// Originate: requests the hub itself sends toward a member network (a
// store-and-forward redelivery, a room's fan-out copy, a resource list's
// back-end SUBSCRIBE, an OPTIONS probe). They take the proxy's own client
// side — call.forward with its edge failover, Timer E/F, TLS peer check,
// preferStreams and edge-health counters — on a call that has no upstream:
// the final response is captured instead of sent (call.orig).

// OriginateOptions says on whose behalf and for which service the hub sends.
type OriginateOptions struct {
	// Source is the member network the hub sends for ("" = the hub's own
	// service). It is the audit entries' SrcNet and decides the policy
	// check (see Originate).
	Source string
	// Service is what the request is checked as; SERVICE_UNSPECIFIED
	// classifies it like the proxy does (MESSAGE = im, SUBSCRIBE by
	// Event, OPTIONS = any).
	Service hubv1.Service
	// Note goes into the request entry's Reason, e.g. "store-and-forward
	// delivery of entry 1234, attempt 2", tying it to an earlier entry.
	Note string
	// StreamsOnly sends over dst's TCP/TLS edges, then over TCP to its UDP
	// edges' addresses, never as a datagram: for a request too large for
	// one (RFC 3261 18.1.1) whose sender would rather be refused than
	// IP-fragmented (a list's NOTIFY).
	StreamsOnly bool
}

// Errors of Originate, matched with errors.Is. A final response from the
// destination (any status) is not an error.
var (
	ErrOriginateRefused  = errors.New("refused by the hub")       // policy, unknown or suspended network, bad request
	ErrOriginateNoEdge   = errors.New("no usable edge")           // the destination has none configured
	ErrOriginateTimeout  = errors.New("no edge answered in time") // some edge stayed silent, none answered
	ErrOriginateFailed   = errors.New("every edge failed")        // transport errors or 503 on every edge
	ErrOriginateShutdown = errors.New("hub shutting down")
	ErrOriginateAudit    = errors.New("audit append failed")
)

// origination collects the outcome of an originated request.
type origination struct {
	res  *sip.Response
	fail string // why forward generated the final response: timeout, all_failed, shutdown
}

// Originate sends req (a non-INVITE request: MESSAGE, SUBSCRIBE, NOTIFY,
// OPTIONS, ...) toward member network dst through its edges in failover
// order and returns the destination's final response. req is not modified:
// a clone is sent, with the hub's Via (fresh branch) on top, leading Route
// entries that address the hub popped, and Max-Forwards decremented (RFC
// 3261 16.6; absent = 70, 0 = refused). The hub's Via is removed from the
// returned response.
//
// Audit: a request entry (SrcNet o.Source, DstNet dst, Reason o.Note)
// is appended durably before anything is sent — a refusal is audited with
// its status too — and the final response is audited, relayed or generated
// (408, 503), like forwarded requests.
//
// Policy (RFC-free, the hub's own rule; hub/DESIGN.md "Originated
// requests"): with o.Source a member network, exactly the proxy's check —
// both networks' services and dst's peering policy must admit the service.
// With o.Source "" (a hosted service speaking for itself: a room's NOTIFY,
// a list's NOTIFY, the queue's probes), dst's own services list must admit
// the service and dst must be active; peering policy names peer networks
// and the hub is not one. A hosted service that relays a member's content
// (a room fan-out copy of alice's message) should pass the member's
// network as o.Source so the peering policy applies. OPTIONS is always
// allowed from the hub (a liveness probe of a member's edges).
//
// ctx is checked before sending; once sent, a transaction ends by the
// proxy's own timers (TransactionTimeout per silent edge, Timer F after a
// first response) or at hub shutdown.
func (h *Hub) Originate(ctx context.Context, req *sip.Request, dst string, o OriginateOptions) (*sip.Response, error) {
	if req == nil {
		return nil, fmt.Errorf("originate to %s: %w: no request", dst, ErrOriginateRefused)
	}
	what := fmt.Sprintf("originate %s to %s", req.Method, dst)
	if !isLeanMethod(req.Method) || !carried[req.Method] {
		return nil, fmt.Errorf("%s: %w: method not originated by the hub", what, ErrOriginateRefused)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !h.enter() {
		return nil, fmt.Errorf("%s: %w", what, ErrOriginateShutdown)
	}
	defer h.leave()

	st := h.state.State()
	c := &call{h: h, req: req.Clone(), lean: &leanServer{}, orig: &origination{}, st: st, start: time.Now()}
	c.srcID, c.dstID = o.Source, dst
	refuse := func(status int, reason string) error {
		if _, err := h.audit.Append(ctx, c.requestEntry(status, joinNote(o.Note, reason))); err != nil {
			h.m.auditErrs.Inc()
			h.log.Error("audit append failed for a refused originated request", "err", err)
		}
		return fmt.Errorf("%s: %w: %s", what, ErrOriginateRefused, reason)
	}
	c.dst = st.Network(dst)
	if c.dst == nil {
		return nil, refuse(404, "unknown destination network")
	}
	if !c.dst.Active() {
		return nil, refuse(403, "destination network suspended")
	}
	if o.Source != "" {
		if c.src = st.Network(o.Source); c.src == nil {
			return nil, refuse(403, "unknown source network")
		}
		if !c.src.Active() {
			return nil, refuse(403, "source network suspended")
		}
	}
	svc := o.Service
	if svc == hubv1.Service_SERVICE_UNSPECIFIED {
		var ok bool
		if svc, ok = classify(c.req); !ok {
			return nil, refuse(489, "event package not carried: "+eventPackage(c.req))
		}
	}
	if reason := originPermits(c, svc); reason != "" {
		return nil, refuse(403, reason)
	}
	mf := 70
	if m := c.req.MaxForwards(); m != nil {
		mf = int(m.Val())
	}
	if mf <= 0 {
		return nil, refuse(483, "Max-Forwards exhausted")
	}
	hops := edgeHops(c.dst)
	if o.StreamsOnly {
		// RFC 3261 18.1.1 and 18 (every element implements TCP): a UDP
		// edge is tried over TCP at its own address, after the stream
		// edges; refused there, the caller decides (no UDP fallback here).
		var streams, upgraded []hop
		for _, hp := range hops {
			if hp.transport != "UDP" {
				streams = append(streams, hp)
			} else {
				upgraded = append(upgraded, hop{addr: hp.addr, transport: "TCP", uri: hp.uri + " (over TCP)"})
			}
		}
		hops = append(streams, upgraded...)
	}
	if len(hops) == 0 {
		c.noUsableEdge("none_configured")
		_ = refuse(503, "destination network has no usable edge")
		return nil, fmt.Errorf("%s: %w", what, ErrOriginateNoEdge)
	}
	popN, _, _ := h.ownRoutes(c.req)

	// Unlogged traffic is never sent, the hub's own included.
	if _, err := h.audit.Append(ctx, c.requestEntry(0, o.Note)); err != nil {
		h.m.auditErrs.Inc()
		return nil, fmt.Errorf("%s: %w: %w", what, ErrOriginateAudit, err)
	}
	c.tapRequest() // tap.go
	c.forward(preferStreams(hops, c.size()), popN, mf, loopHash(c.req), nil)

	switch c.orig.fail {
	case "":
	case "timeout":
		return nil, fmt.Errorf("%s: %w", what, ErrOriginateTimeout)
	case "shutdown":
		return nil, fmt.Errorf("%s: %w", what, ErrOriginateShutdown)
	default:
		return nil, fmt.Errorf("%s: %w", what, ErrOriginateFailed)
	}
	if c.orig.res == nil {
		return nil, fmt.Errorf("%s: %w: no final response", what, ErrOriginateFailed)
	}
	return c.orig.res, nil
}

// originPermits is Originate's policy rule (see its doc comment).
func originPermits(c *call, svc hubv1.Service) string {
	if c.src != nil {
		return permits(c.st, c.src, c.dst, svc)
	}
	if svc == svcAny || usesService(c.dst, svc) {
		return ""
	}
	return "Destination network not enabled for " + serviceName(svc)
}

func joinNote(note, reason string) string {
	if note == "" {
		return reason
	}
	return note + ": " + reason
}

// capture records the final response of an originated request.
func (o *origination) capture(res *sip.Response) {
	if res.StatusCode >= 200 && o.res == nil {
		o.res = res
	}
}

// originFailure names, for Originate, why forward generated its final
// response ("" when a final response came from the destination).
func (c *call) originFailure(cause string) {
	if c.orig != nil {
		c.orig.fail = cause
	}
}
