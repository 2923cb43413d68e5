package hub

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// SessionAnchor puts the hub on the media path of sessions it routes
// (today: MSRP, hub/msrp, adapted in cmd/hubd). Config.Anchor nil: SDP
// crosses the hub untouched.
//
// Offer and Answer return the SDP to forward instead of the one received
// (nil: forward it as it is). An Offer error refuses the request (488):
// the hub does not let a session it should audit bypass it. End closes
// whatever the anchor holds for a dialog.
type SessionAnchor interface {
	Offer(d AnchorDialog, sdp []byte) ([]byte, error)
	Answer(d AnchorDialog, sdp []byte) ([]byte, error)
	End(callID string)
}

// AnchorDialog says which dialog an offer or answer belongs to and who
// made the offer (OffererNet, Offerer: network id and AoR of the party that
// sent the offer; AnswererNet, Answerer: the other party).
type AnchorDialog struct {
	CallID                  string
	OffererNet, AnswererNet string
	Offerer, Answerer       string
}

const rsnAnchor = "msrp_anchor" // the session's media could not be anchored (488)

// hasSDP reports whether m carries an SDP body (RFC 3264 offer/answer).
func hasSDP(m interface {
	ContentType() *sip.ContentTypeHeader
	Body() []byte
}) bool {
	ct := m.ContentType()
	if ct == nil || len(m.Body()) == 0 {
		return false
	}
	t, _, _ := strings.Cut(ct.Value(), ";")
	return strings.EqualFold(strings.TrimSpace(t), "application/sdp")
}

func (c *call) dialog(offerFromSource bool) AnchorDialog {
	d := AnchorDialog{OffererNet: c.srcID, AnswererNet: c.dstID}
	if cid := c.req.CallID(); cid != nil {
		d.CallID = cid.Value()
	}
	if f := c.req.From(); f != nil {
		d.Offerer = f.Address.String()
	}
	if t := c.req.To(); t != nil {
		d.Answerer = t.Address.String()
	}
	if !offerFromSource {
		d.OffererNet, d.AnswererNet = d.AnswererNet, d.OffererNet
		d.Offerer, d.Answerer = d.Answerer, d.Offerer
	}
	return d
}

// anchorRequest runs before the request is audited and forwarded: an
// INVITE, re-INVITE or UPDATE with SDP is an offer (RFC 3264, RFC 3311);
// a BYE ends the dialog's anchored sessions (it passed the dialog route
// checks, so it comes from a party of the dialog). It reports false when
// it refused the request.
func (c *call) anchorRequest() bool {
	a := c.h.cfg.Anchor
	if a == nil {
		return true
	}
	switch c.req.Method {
	case sip.BYE:
		if cid := c.req.CallID(); cid != nil {
			a.End(cid.Value())
		}
	case sip.INVITE, sip.UPDATE:
		if !hasSDP(c.req) {
			return true
		}
		out, err := a.Offer(c.dialog(true), c.req.Body())
		if err != nil {
			c.h.log.Info("session media not anchored", "err", err, "call_id", c.dialog(true).CallID)
			c.refuseFor(rsnAnchor, 488, "Session media cannot be anchored", err.Error())
			return false
		}
		c.anchorBody = out
		c.anchorOffered = true
	}
	return true
}

// applyAnchor puts the anchored SDP into a forwarded request (a clone:
// the received request stays as it came, sipgo answers from it).
func (c *call) applyAnchor(fwd *sip.Request) {
	if c.anchorBody != nil {
		fwd.SetBody(c.anchorBody)
	}
}

// anchorResponse rewrites the SDP of a response relayed upstream: the
// answer to an anchored offer (18x or 2xx; retransmissions get the same
// rewrite), or, for an INVITE sent without SDP, the offer in the 2xx
// (RFC 3261 13.2.1: the answer then comes in the ACK). A failed initial
// INVITE ends what its offer allocated.
func (c *call) anchorResponse(up *sip.Response) {
	a := c.h.cfg.Anchor
	if a == nil || c.req.Method != sip.INVITE && c.req.Method != sip.UPDATE {
		return
	}
	if up.StatusCode >= 300 {
		if c.anchorOffered && c.req.Method == sip.INVITE && !inDialog(c.req) {
			a.End(c.dialog(true).CallID)
		}
		return
	}
	if !hasSDP(up) {
		return
	}
	var out []byte
	var err error
	switch {
	case c.anchorOffered:
		out, err = a.Answer(c.dialog(true), up.Body())
	case c.req.Method == sip.INVITE && up.StatusCode < 300 && up.StatusCode >= 200:
		out, err = a.Offer(c.dialog(false), up.Body())
	}
	if err != nil {
		// The response is already on its way up: the endpoints get the
		// unanchored SDP. Logged; the session's bytes then bypass the hub.
		c.h.log.Warn("session answer not anchored", "err", err, "call_id", c.dialog(true).CallID)
		return
	}
	if out != nil {
		up.SetBody(out)
	}
}

// anchorAck takes the answer an ACK carries for an offer made in a 2xx.
func (c *call) anchorAck() {
	a := c.h.cfg.Anchor
	if a == nil || !hasSDP(c.req) {
		return
	}
	// The offer came from the ACK's destination (the 2xx's sender).
	out, err := a.Answer(c.dialog(false), c.req.Body())
	if err != nil {
		c.h.log.Warn("session answer in ACK not anchored", "err", err)
		return
	}
	c.anchorBody = out
}

// anchorStray rewrites a 2xx retransmission relayed without a transaction:
// the anchor gives the same answer again for the same bytes.
func (h *Hub) anchorStray(up *sip.Response) {
	a := h.cfg.Anchor
	if a == nil || !hasSDP(up) {
		return
	}
	cid := up.CallID()
	if cid == nil {
		return
	}
	if out, err := a.Answer(AnchorDialog{CallID: cid.Value()}, up.Body()); err == nil && out != nil {
		up.SetBody(out)
	}
}
