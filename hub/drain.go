package hub

import (
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// Draining takes a node out of service before maintenance (hubctl cluster
// drain): new out-of-dialog requests, members' keep-alive OPTIONS
// included, are answered 503 with Retry-After, so members move to another
// node of the hub (RFC 3261 21.5.4; RFC 3263 4.3: try the next server),
// while requests inside established dialogs and every response keep
// flowing, so the dialogs already here finish. The flag is node-local soft
// state: a restart clears it.

// drainRetryAfter is the Retry-After of a draining node's 503, in seconds:
// about as long as a restart for maintenance takes.
const drainRetryAfter = "60"

// rsnDraining is the refusal reason label of a draining node's 503.
const rsnDraining = "draining"

type drainFlag struct{ atomic.Bool }

// SetDraining drains the node (true) or puts it back in service (false).
// Safe from any goroutine.
func (h *Hub) SetDraining(on bool) {
	if h.drain.Swap(on) != on {
		if on {
			h.log.Warn("draining: new out-of-dialog requests are answered 503 until undrained; dialogs in progress continue")
		} else {
			h.log.Info("drain ended: serving new requests again")
		}
	}
}

// Draining reports whether the node is draining.
func (h *Hub) Draining() bool { return h.drain.Load() }

// refuseDraining answers an out-of-dialog request of a draining node with
// 503 and reports whether it did.
func (c *call) refuseDraining() bool {
	if !c.h.drain.Load() || inDialog(c.req) {
		return false
	}
	c.refuseFor(rsnDraining, 503, "Draining for Maintenance", "node draining for maintenance: use another node of the hub",
		sip.NewHeader("Retry-After", drainRetryAfter))
	return true
}
