package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Store and forward, the proxy's side (issue 12). A pager MESSAGE (RFC
// 3428) out of dialog whose destination cannot take it now is handed to
// the Deferrer (hub/queue, adapted in cmd/hubd) and answered 202 Accepted
// only once the Deferrer says it is replicated (RFC 3428 section 7: 202
// means accepted, not delivered). "Cannot take it now" is: no edge
// configured, every edge failed (transport error, 503), an edge stayed
// silent (408), or — opt-in per network — the destination answered 480.
// While a destination's queue is not empty, new MESSAGEs to it are stored
// behind the old ones without being tried, so the order holds. Any other
// final response from the destination (a 4xx other than 408, a 202 of its
// own store and forward) passes upstream unchanged.

// DeferredMessage is one MESSAGE handed to the Deferrer.
type DeferredMessage struct {
	// Req is the request as received; the Deferrer must not modify it.
	Req *sip.Request
	// Source and Destination are member network ids.
	Source, Destination string
	// AuditSeq is the request's entry in this node's ledger (0: unknown).
	AuditSeq uint64
	// Received is when the hub got the request (the original time).
	Received time.Time
	// Cause says why: "no_edge", "timeout", "all_failed", "480", "behind".
	Cause string
}

// Deferrer stores messages for later delivery. Defer returns the stored
// message's id once it is durable in the replicated state, or an error
// (wrapping ErrDeferFull when the destination's limits refuse it). Alive
// says a request to destination just succeeded (the network is back).
type Deferrer interface {
	Defer(ctx context.Context, m *DeferredMessage) (id string, err error)
	Alive(destination string)
}

// ErrDeferFull is wrapped by Defer errors for a destination whose queue is
// at its limits; the sender gets 503 with Retry-After, never a silent drop.
var ErrDeferFull = errors.New("store-and-forward queue full")

// deferTimeout bounds the wait for replication before the 202.
const deferTimeout = 5 * time.Second

// deferrable reports whether c's request may be stored: a MESSAGE out of
// dialog, not originated by the hub, to a network that has not turned
// deferral off.
func (c *call) deferrable() bool {
	return c.h.cfg.Deferrer != nil && c.orig == nil && c.req.Method == sip.MESSAGE &&
		!inDialog(c.req) && c.dst != nil && !c.dst.GetDeferral().GetDisabled()
}

// queuedBehind reports whether c's destination has stored messages, so a
// new MESSAGE must wait behind them.
func (c *call) queuedBehind() bool {
	return c.deferrable() && len(c.st.Queue(c.dstID)) > 0
}

// deferOn480 reports whether the destination stores on 480 (opt-in).
func (c *call) deferOn480(res *sip.Response) bool {
	return res.StatusCode == 480 && c.deferrable() && c.dst.GetDeferral().GetOn_480()
}

// noteAlive tells the Deferrer that the destination answered (anything but
// 503: an edge that answers is up), when it has a queue to drain.
func (c *call) noteAlive(res *sip.Response) {
	if d := c.h.cfg.Deferrer; d != nil && c.dst != nil && res.StatusCode != 503 && len(c.st.Queue(c.dstID)) > 0 {
		d.Alive(c.dstID)
	}
}

// deferMessage stores c's request and answers 202; false means it was not
// stored and the caller answers as it would have (the failure is logged).
// A full queue is answered here with 503 and Retry-After (true).
func (c *call) deferMessage(cause string) bool {
	if !c.deferrable() {
		return false
	}
	h := c.h
	ctx, cancel := context.WithTimeout(h.ctx, deferTimeout)
	defer cancel()
	id, err := h.cfg.Deferrer.Defer(ctx, &DeferredMessage{
		Req: c.req, Source: c.srcID, Destination: c.dstID, AuditSeq: c.auditSeq, Received: c.start, Cause: cause,
	})
	switch {
	case errors.Is(err, ErrDeferFull):
		c.generate(503, "Deferred Delivery Queue Full", "store-and-forward queue of "+c.dstID+" full", sip.NewHeader("Retry-After", "60"))
		return true
	case err != nil:
		h.log.Warn("store-and-forward: not stored", "dst", c.dstID, "cause", cause, "err", err)
		if cause == "behind" {
			// Forwarding it now would overtake the stored ones.
			c.generate(503, "Deferred Delivery Unavailable", fmt.Sprintf("not stored: %v", err), sip.NewHeader("Retry-After", "30"))
			return true
		}
		return false
	}
	c.generate(202, "Accepted", "stored for deferred delivery ("+strings.ReplaceAll(cause, "_", " ")+"), queue id "+id)
	return true
}
