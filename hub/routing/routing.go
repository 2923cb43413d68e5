// Package routing is the SIP plane's routing decision for an out-of-dialog
// request, as a pure function of the cluster state: which member network
// owns the Request-URI domain, which service the request needs, whether
// both networks and the destination's peering policy admit it, and which
// edges are tried in which order.
//
// The proxy core (package hub) calls Decide on every out-of-dialog request
// it routes to a member; `hubctl route check` calls the same function on
// the state it fetched over the admin API, so a dry run answers exactly
// what the SIP plane would. Keep it free of I/O and of anything heavier
// than the state types so hubctl can import it.
package routing

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// AnyService marks OPTIONS, which any admitted service allows.
const AnyService = hubv1.Service(-1)

// CarriedMethods are the methods the hub carries, in the order of its
// Allow header (RFC 3261 20.5); anything else is refused with 405 before
// routing.
var CarriedMethods = []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "UPDATE", "INFO", "REFER", "PRACK"}

// Refusal labels (the reason label of clearhub_sip_refusals_total) Decide
// can give.
const (
	LabelSuspended = "suspended"
	LabelPolicy    = "policy"
	LabelServices  = "services"
	LabelNotFound  = "not_found"
	LabelBadEvent  = "bad_event"
)

// Request is what the decision reads of an out-of-dialog request.
type Request struct {
	Method string // e.g. "MESSAGE"
	Host   string // Request-URI host
	// Event is the lower-case event package without parameters (RFC 6665
	// 7.2.1), for SUBSCRIBE, NOTIFY and PUBLISH.
	Event string
	// FileTransfer marks an INVITE offering an RFC 5547 file transfer.
	FileTransfer bool
}

// Decision is the outcome. Code 0 means identity and policy admit the
// request; it is then sent to Hops in order (none: the proxy answers 503 or
// stores the MESSAGE, see Forwardable). Otherwise Code, Phrase and Detail
// are the refusal the proxy sends and audits, Label its metric label.
type Decision struct {
	Code   int
	Phrase string // SIP reason phrase of the refusal
	Detail string // what the audit entry says
	Label  string // refusal reason label
	// Dst is the destination network when one owns the domain.
	Dst *raft.NetworkView
	// Service is what the destination's policy was asked to admit.
	Service hubv1.Service
	// Hops are the destination's usable edges in registration (failover)
	// order; Order applies the size rule.
	Hops []Hop
}

// Forwardable reports whether the request would be sent to some edge.
func (d Decision) Forwardable() bool { return d.Code == 0 && len(d.Hops) > 0 }

// Decide routes an out-of-dialog request from src (already attributed and
// active) by its Request-URI host. The checks run in the proxy's order:
// 404 no owner, 403 destination suspended, 489 event package not carried
// (RFC 6665 8.3.2), 403 by either network's service list or the
// destination's peering policy.
func Decide(st *raft.State, src *raft.NetworkView, r Request) Decision {
	var d Decision
	d.Dst = st.DomainOwner(r.Host)
	if d.Dst == nil {
		return refusal(d, 404, "Not Found", "no member network owns "+r.Host, LabelNotFound)
	}
	if !d.Dst.Active() {
		return refusal(d, 403, "Forbidden", "destination network suspended", LabelSuspended)
	}
	svc, ok := Classify(r.Method, r.Event, r.FileTransfer)
	if !ok {
		return refusal(d, 489, "Bad Event", "event package not carried: "+r.Event, LabelBadEvent)
	}
	d.Service = svc
	if why := Permits(st, src, d.Dst, svc); why != "" {
		label := LabelServices
		if strings.HasPrefix(why, "Peering policy") {
			label = LabelPolicy
		}
		return refusal(d, 403, why, why, label)
	}
	d.Hops = EdgeHops(d.Dst)
	return d
}

func refusal(d Decision, code int, phrase, detail, label string) Decision {
	d.Code, d.Phrase, d.Detail, d.Label = code, phrase, detail, label
	return d
}

// Classify maps an out-of-dialog request to the service its destination's
// policy must admit. ok is false for an event package the hub does not
// carry (489 Bad Event, RFC 6665 8.3.2).
func Classify(method, event string, fileTransfer bool) (svc hubv1.Service, ok bool) {
	switch method {
	case "MESSAGE":
		return hubv1.Service_SERVICE_IM, true
	case "SUBSCRIBE", "NOTIFY", "PUBLISH":
		switch {
		case event == "presence" || strings.HasPrefix(event, "presence."):
			// presence, presence.winfo and list subscriptions (RFC 4662
			// lists ride on Event: presence with Supported: eventlist).
			return hubv1.Service_SERVICE_PRESENCE, true
		case event == "refer":
			return hubv1.Service_SERVICE_SESSION, true
		case event == "conference":
			return hubv1.Service_SERVICE_CHAT, true
		}
		return 0, false
	case "OPTIONS":
		return AnyService, true
	case "INVITE":
		if fileTransfer {
			return hubv1.Service_SERVICE_FILE, true
		}
		return hubv1.Service_SERVICE_SESSION, true
	}
	// REFER, and BYE/UPDATE/INFO/PRACK outside a hub dialog.
	return hubv1.Service_SERVICE_SESSION, true
}

// UsesService reports whether network v takes part in svc: its own service
// list (Network.services, hubctl network --services) names it, or is
// empty, which means every service.
func UsesService(v *raft.NetworkView, svc hubv1.Service) bool {
	s := v.GetServices()
	return len(s) == 0 || slices.Contains(s, svc)
}

// everyService is what OPTIONS (AnyService) may ride on.
var everyService = []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_SESSION, hubv1.Service_SERVICE_CHAT, hubv1.Service_SERVICE_FILE}

// Permits checks one request direction, src to dst, for svc against st:
// both networks' own service lists and dst's peering policy. It returns ""
// when allowed, otherwise the refusal's reason phrase (it names the
// service). AnyService passes when some service passes.
func Permits(st *raft.State, src, dst *raft.NetworkView, svc hubv1.Service) string {
	if svc == AnyService {
		shared := false
		for _, s := range everyService {
			if UsesService(src, s) && UsesService(dst, s) {
				shared = true
				if st.Allowed(src.GetId(), dst.GetId(), s) {
					return ""
				}
			}
		}
		if !shared {
			return "Networks share no enabled service"
		}
		return "Peering policy denies any service"
	}
	switch {
	case !UsesService(src, svc):
		return "Source network not enabled for " + ServiceName(svc)
	case !UsesService(dst, svc):
		return "Destination network not enabled for " + ServiceName(svc)
	case !st.Allowed(src.GetId(), dst.GetId(), svc):
		return "Peering policy denies " + ServiceName(svc)
	}
	return ""
}

// ServiceName is the short name operators type (hubctl --service).
func ServiceName(svc hubv1.Service) string {
	switch svc {
	case hubv1.Service_SERVICE_PRESENCE:
		return "presence"
	case hubv1.Service_SERVICE_IM:
		return "im"
	case hubv1.Service_SERVICE_SESSION:
		return "session"
	case hubv1.Service_SERVICE_CHAT:
		return "chat"
	case hubv1.Service_SERVICE_FILE:
		return "file"
	}
	return "any service"
}

// Hop is one place to send a forwarded request.
type Hop struct {
	Addr      string // host:port
	Transport string // "UDP", "TCP" or "TLS"
	URI       string // as registered, for logs and metrics
}

// HopOf turns a SIP URI into a hop (RFC 3263 without DNS SRV: explicit
// transport parameter, else sips means TLS, else UDP; default ports).
func HopOf(u *sip.Uri) Hop {
	tp := "UDP"
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		tp = strings.ToUpper(v)
	}
	if strings.EqualFold(u.Scheme, "sips") {
		tp = "TLS"
	}
	port := u.Port
	if port == 0 {
		if tp == "TLS" {
			port = 5061
		} else {
			port = 5060
		}
	}
	return Hop{Addr: net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), Transport: tp, URI: u.String()}
}

// EdgeHops parses a network's edge URIs in failover order, skipping those
// that do not parse or name a transport the hub cannot send on. The parse is
// cached per view (edgecache.go); the slice is shared: do not modify it.
func EdgeHops(v *raft.NetworkView) []Hop { return edgesOf(v).hops }

// PreferStreams applies RFC 3261 18.1.1: a request within 200 bytes of the
// path MTU (unknown: 1500) goes over a congestion-controlled transport, so
// TCP/TLS hops are tried first. UDP hops stay as the fallback (the lean
// path then sends the large datagram anyway rather than fail the edge).
// transport reads a hop's transport, so the proxy can order its own hop
// type with this same rule.
func PreferStreams[H any](hops []H, size int, transport func(H) string) []H {
	if size <= 1300 || len(hops) < 2 {
		return hops
	}
	out := make([]H, 0, len(hops))
	for _, hp := range hops {
		if transport(hp) != "UDP" {
			out = append(out, hp)
		}
	}
	for _, hp := range hops {
		if transport(hp) == "UDP" {
			out = append(out, hp)
		}
	}
	return out
}

// Order is d.Hops in the order a request of size bytes tries them.
func (d Decision) Order(size int) []Hop {
	return PreferStreams(d.Hops, size, func(h Hop) string { return h.Transport })
}
