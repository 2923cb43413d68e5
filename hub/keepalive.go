package hub

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Members' keep-alive OPTIONS (RFC 3261 11: an OPTIONS whose Request-URI
// is the hub itself, answered by the hub) are not traffic between networks.
// By default they are audited like any request, a request and a response
// entry each; with Config.AuditKeepalives "count" they are counted per
// member network and transport into the aggregate entries of guard.go, so
// a member pinging every few seconds costs one ledger entry per
// AggregateInterval instead of two per ping.

// optionsHeaders are fresh per response (headers are mutable objects).
func optionsHeaders() []sip.Header {
	return []sip.Header{
		sip.NewHeader("Allow", allowHeader),
		sip.NewHeader("Accept", "application/sdp, application/pidf+xml, text/plain"),
	}
}

// isKeepalive reports whether req is addressed to the hub itself (no user
// part, the hub's host and one of its ports).
func (h *Hub) isKeepalive(req *sip.Request) bool {
	return req.Method == sip.OPTIONS && req.Recipient.User == "" && h.isOurs(&req.Recipient)
}

// answerOptions answers an OPTIONS the hub handles itself (addressed to it,
// or with Max-Forwards 0) with 200, Allow and Accept (RFC 3261 11.2). The
// source network is attributed and active.
func (c *call) answerOptions() {
	h := c.h
	if !h.isKeepalive(c.req) {
		c.refuse(200, "OK", "OPTIONS answered by the hub", optionsHeaders()...)
		return
	}
	h.m.keepalives.WithLabelValues(c.srcID).Inc()
	if h.cfg.AuditKeepalives != KeepaliveCount {
		c.refuse(200, "OK", "OPTIONS answered by the hub", optionsHeaders()...)
		return
	}
	src, _ := netip.ParseAddrPort(c.req.Source())
	h.guard.countKeepalive(c.srcID, c.transport, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()))
	res := sip.NewResponseFromRequest(c.req, 200, "OK", nil)
	for _, hd := range optionsHeaders() {
		res.AppendHeader(hd)
	}
	// RFC 3261 8.2.6.2: the hub answers as a UAS, with a To tag.
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(10))
	}
	c.send(res)
}
