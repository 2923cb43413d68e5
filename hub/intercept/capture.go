package intercept

import (
	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// Capturer is SIP capture on one node: the traffic of the networks the
// replicated capture switches name (or all) mirrored whole to a Homer
// collector. Operators debugging interop switch it per network with
// `hubctl capture on|off NET`.
type Capturer struct {
	sender  *Sender
	agentID uint32
}

// NewCapturer mirrors to sender (required) as HEP capture agent agentID.
func NewCapturer(sender *Sender, agentID uint32) *Capturer {
	return &Capturer{sender: sender, agentID: agentID}
}

// Sender is the collector's delivery.
func (c *Capturer) Sender() *Sender { return c.sender }

// Wants reports whether capture is on for either network of the
// transaction: no lock, no allocation.
func (c *Capturer) Wants(st *raft.State, srcNet, dstNet string, _, _ *sip.Uri) bool {
	return st.CaptureOn() && (st.Captured(srcNet) || st.Captured(dstNet))
}

// Tap queues the whole message; a full queue drops it (counted in the
// sender's stats and metrics).
func (c *Capturer) Tap(ev Event) {
	p := packet(&ev, ev.Wire, c.agentID, ProtoTypeSIP)
	frame, err := p.Append(nil)
	if err != nil {
		c.sender.dropped.Add(1)
		c.sender.cfg.Metrics.count(OutcomeEncodeError)
		return
	}
	c.sender.Enqueue(frame, "")
}
