package hub

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// Hosted services: the hub answers requests for the service domains it owns
// (rooms.domain, lists.domain) itself instead of routing them to a member.
// The proxy core does what it does for every request — attribution, the
// From-domain check, overload and rate limits, the request's audit entry —
// and then hands the request to the service, which decides and answers.
// The resolve step reads as one switch: a hub dialog route, a hosted
// domain, a member domain.

// HostedService answers requests addressed to one service domain. ServeSIP
// runs on the request's own goroutine and returns once it has answered
// (Respond with a final response); it may block, e.g. on replication, but
// must honour r.Context().
type HostedService interface {
	ServeSIP(r *HostedRequest)
}

// ParamService marks a URI of the hub itself as belonging to a hosted
// service (value: its domain). Services put it in the Contact they give
// out, so in-dialog requests (which target that Contact, RFC 3261 12.2.1.1)
// find their way back to the service without DNS for the service domain.
const ParamService = "chsvc"

// HostedRequest is one request for a hosted service.
type HostedRequest struct {
	// Req is the request as received; never modify it.
	Req *sip.Request
	// Source is the id of the member network that sent it (attributed by
	// its connection, From domain checked).
	Source string
	// Domain is the service domain the request was addressed to.
	Domain string
	// Transport is the lower-case transport it came over.
	Transport string
	// State is the cluster state the request was admitted against.
	State *raft.State

	c *call
}

// Context ends when the hub shuts down.
func (r *HostedRequest) Context() context.Context { return r.c.h.ctx }

// Respond sends res upstream. A final response is audited (as a response
// of the hub's own); responses after the first final one are dropped.
// Build res with sip.NewResponseFromRequest(r.Req, ...).
func (r *HostedRequest) Respond(res *sip.Response) {
	c := r.c
	if c.finalSent {
		return
	}
	if res.StatusCode >= 200 {
		// RFC 3261 8.2.6.2: the hub answers as a UAS; a final response
		// carries a To tag.
		if to := res.To(); to != nil && !to.Params.Has("tag") {
			to.Params.Add("tag", sip.GenerateTagN(10))
		}
		c.auditAsync(c.responseEntry(res, false, ""))
	}
	c.send(res)
}

// Contact returns a URI of this hub, on the transport the request came
// over, that routes back to the service: for the Contact of responses and
// requests the service sends in a dialog it is a party to.
func (r *HostedRequest) Contact(user string) sip.Uri {
	return r.c.h.HostedContact(r.Domain, user, r.Transport)
}

// HostedContact is the hub's own URI for a hosted service's dialogs.
func (h *Hub) HostedContact(domain, user, transport string) sip.Uri {
	tp := strings.ToLower(transport)
	if tp == "" {
		tp = "udp"
	}
	params := sip.NewParams()
	params.Add("transport", tp)
	params.Add(ParamService, strings.ToLower(domain))
	return sip.Uri{Scheme: "sip", User: user, Host: h.cfg.Hostname, Port: h.port(tp), UriParams: params}
}

// hostedFor returns the service a request is addressed to, or nil: the
// Request-URI's host is a hosted domain, or it is the hub itself with a
// ParamService naming one.
func (h *Hub) hostedFor(u *sip.Uri) (HostedService, string) {
	if len(h.cfg.Hosted) == 0 {
		return nil, ""
	}
	d := strings.ToLower(u.Host)
	if s, ok := h.cfg.Hosted[d]; ok {
		return s, d
	}
	if v, ok := u.UriParams.Get(ParamService); ok && h.isOurs(u) {
		d = strings.ToLower(v)
		if s, ok := h.cfg.Hosted[d]; ok {
			return s, d
		}
	}
	return nil, ""
}

// serveHosted audits the request and hands it to the service.
func (c *call) serveHosted(svc HostedService, domain string) {
	h := c.h
	c.dequeue() // overload.go: the append itself counts as pending now
	if _, err := h.audit.Append(h.ctx, c.requestEntry(0, "hosted: "+domain)); err != nil {
		h.m.auditErrs.Inc()
		h.log.Error("audit append failed; refusing request", "err", err, "method", c.req.Method)
		c.respond(500, "Server Internal Error")
		return
	}
	c.tapRequest() // tap.go
	r := &HostedRequest{Req: c.req, Source: c.srcID, Domain: domain, Transport: c.transport, State: c.st, c: c}
	svc.ServeSIP(r)
	if !c.finalSent && c.req.Method != sip.ACK {
		// A service that returned without answering is a bug; the
		// member still gets an answer it can act on.
		h.log.Error("hosted service returned without a final response", "domain", domain, "method", c.req.Method)
		c.generate(500, "Server Internal Error", "hosted service gave no answer")
	}
}
