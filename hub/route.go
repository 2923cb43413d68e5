package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Record-Route parameters. The hub keeps no per-dialog state: its
// Record-Route URI names the two networks of the dialog and carries an HMAC
// over them, so an in-dialog request (which comes back with that URI as its
// Route, RFC 3261 12.2.1.1) can be attributed, policed and routed by any
// node that holds the route secret, even after a restart.
const (
	paramSrc = "chs" // network that sent the dialog-creating request
	paramDst = "chd" // network it was routed to
	paramMAC = "chm" // HMAC-SHA256(secret, chs "\x00" chd), 96 bits, base64url

	branchPrefix = sip.RFC3261BranchMagicCookie + "-ch"
)

type dialogRoute struct {
	src, dst string
}

func (h *Hub) routeMAC(src, dst string) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte(src))
	m.Write([]byte{0})
	m.Write([]byte(dst))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// recordRoute builds the hub's Record-Route for the interface facing
// transport (RFC 5658: the transport parameter names it).
func (h *Hub) recordRoute(transport string, dr dialogRoute) *sip.RecordRouteHeader {
	tp := strings.ToLower(transport)
	params := sip.NewParams()
	params.Add("transport", tp)
	params.Add("lr", "")
	params.Add(paramSrc, dr.src)
	params.Add(paramDst, dr.dst)
	params.Add(paramMAC, h.routeMAC(dr.src, dr.dst))
	return &sip.RecordRouteHeader{Address: sip.Uri{
		Scheme:    "sip",
		Host:      h.cfg.Hostname,
		Port:      h.port(tp),
		UriParams: params,
	}}
}

// isOurs reports whether u addresses this hub (a Route it must pop, RFC
// 3261 16.4, or a Request-URI for the hub itself).
func (h *Hub) isOurs(u *sip.Uri) bool {
	if !strings.EqualFold(u.Host, h.cfg.Hostname) && !h.ownIP(u.Host) {
		return false
	}
	if u.Port == 0 {
		return true
	}
	for _, p := range h.ports {
		if p == u.Port {
			return true
		}
	}
	return false
}

func (h *Hub) ownIP(host string) bool {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false
	}
	for _, a := range h.ips {
		if a == ip.Unmap() {
			return true
		}
	}
	return false
}

// popOwnRoutes counts the leading Route entries that address the hub (two of
// them with RFC 5658 double record-routing) and returns the dialog they
// describe. ok is false when a hub Route carries parameters with a bad MAC.
func (h *Hub) popOwnRoutes(req *sip.Request) (n int, dr *dialogRoute, ok bool) {
	for _, hd := range req.GetHeaders("Route") {
		r, isRoute := hd.(*sip.RouteHeader)
		if !isRoute || !h.isOurs(&r.Address) {
			break
		}
		n++
		src, hasSrc := r.Address.UriParams.Get(paramSrc)
		dst, _ := r.Address.UriParams.Get(paramDst)
		mac, _ := r.Address.UriParams.Get(paramMAC)
		if !hasSrc && mac == "" {
			continue // a plain preloaded route to the hub
		}
		want := h.routeMAC(src, dst)
		if !hmac.Equal([]byte(want), []byte(mac)) {
			return n, nil, false
		}
		dr = &dialogRoute{src: src, dst: dst}
	}
	return n, dr, true
}

// loopHash identifies a request for RFC 3261 16.3 step 4 loop detection: it
// covers what 16.6 step 8 lists except the topmost Via, so that the same
// request coming back through the hub matches.
func loopHash(req *sip.Request) string {
	hs := sha256.New()
	var b bytes.Buffer
	b.WriteString(req.Recipient.String())
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		b.WriteString("|" + tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		b.WriteString("|" + tag)
	}
	if c := req.CallID(); c != nil {
		b.WriteString("|" + c.Value())
	}
	if c := req.CSeq(); c != nil {
		b.WriteString("|" + strconv.FormatUint(uint64(c.SeqNo), 10) + string(c.MethodName))
	}
	for _, r := range req.GetHeaders("Route") {
		b.WriteString("|" + r.Value())
	}
	if p := req.GetHeader("Proxy-Require"); p != nil {
		b.WriteString("|" + p.Value())
	}
	hs.Write(b.Bytes())
	return hex.EncodeToString(hs.Sum(nil)[:8])
}

// looped reports whether one of req's Via entries is the hub's with the same
// loop hash (482 Loop Detected); a different hash is a legal spiral.
func (h *Hub) looped(req *sip.Request, hash string) bool {
	for _, hd := range req.GetHeaders("Via") {
		v, ok := hd.(*sip.ViaHeader)
		if !ok || !strings.EqualFold(v.Host, h.cfg.Hostname) {
			continue
		}
		b, _ := v.Params.Get("branch")
		if strings.HasPrefix(b, branchPrefix) && strings.HasSuffix(b, "."+hash) {
			return true
		}
	}
	return false
}

// eventPackage returns the lower-case event package of req's Event header
// (RFC 6665 7.2.1; "o" is its compact form), without parameters.
func eventPackage(req *sip.Request) string {
	hd := req.GetHeader("Event")
	if hd == nil {
		hd = req.GetHeader("o")
	}
	if hd == nil {
		return ""
	}
	v := hd.Value()
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// svcAny marks OPTIONS, which any admitted service allows.
const svcAny = hubv1.Service(-1)

// classify maps an out-of-dialog request to the service its destination's
// policy must admit. ok is false for an event package the hub does not carry
// (489 Bad Event, RFC 6665 8.3.2).
func classify(req *sip.Request) (svc hubv1.Service, ok bool) {
	switch req.Method {
	case sip.MESSAGE:
		return hubv1.Service_SERVICE_IM, true
	case sip.SUBSCRIBE, sip.NOTIFY, sip.PUBLISH:
		ev := eventPackage(req)
		switch {
		case ev == "presence" || strings.HasPrefix(ev, "presence."):
			// presence, presence.winfo and list subscriptions (RFC 4662
			// lists ride on Event: presence with Supported: eventlist).
			return hubv1.Service_SERVICE_PRESENCE, true
		case ev == "refer":
			return hubv1.Service_SERVICE_SESSION, true
		case ev == "conference":
			return hubv1.Service_SERVICE_CHAT, true
		}
		return 0, false
	case sip.OPTIONS:
		return svcAny, true
	case sip.INVITE:
		if isFileTransfer(req) {
			return hubv1.Service_SERVICE_FILE, true
		}
		return hubv1.Service_SERVICE_SESSION, true
	}
	// REFER, and BYE/UPDATE/INFO/PRACK outside a hub dialog.
	return hubv1.Service_SERVICE_SESSION, true
}

// isFileTransfer spots an RFC 5547 file-transfer offer: an MSRP media line
// with a file-selector attribute.
func isFileTransfer(req *sip.Request) bool {
	ct := req.ContentType()
	if ct == nil || !strings.HasPrefix(strings.ToLower(ct.Value()), "application/sdp") {
		return false
	}
	body := req.Body()
	return bytes.Contains(body, []byte("m=message")) && bytes.Contains(body, []byte("a=file-selector"))
}

func allowed(st *raft.State, src, dst string, svc hubv1.Service) bool {
	if svc != svcAny {
		return st.Allowed(src, dst, svc)
	}
	for _, s := range []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_SESSION, hubv1.Service_SERVICE_CHAT, hubv1.Service_SERVICE_FILE} {
		if st.Allowed(src, dst, s) {
			return true
		}
	}
	return false
}

func serviceName(svc hubv1.Service) string {
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

// hop is one place to send a forwarded request.
type hop struct {
	addr      string // host:port
	transport string // "UDP", "TCP" or "TLS"
	uri       string // for logs
}

// hopOf turns a SIP URI into a hop (RFC 3263 without DNS SRV: explicit
// transport parameter, else sips means TLS, else UDP; default ports).
func hopOf(u *sip.Uri) hop {
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
	return hop{addr: net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), transport: tp, uri: u.String()}
}

// edgeHops parses a network's edge URIs in failover order.
func edgeHops(v *raft.NetworkView) []hop {
	var out []hop
	for _, e := range v.GetEdges() {
		var u sip.Uri
		if err := sip.ParseUri(e, &u); err != nil || u.Host == "" {
			continue
		}
		switch h := hopOf(&u); h.transport {
		case "UDP", "TCP", "TLS":
			out = append(out, h)
		}
	}
	return out
}

// belongsTo reports whether an in-dialog target (a Contact or a member's own
// Record-Route) is inside network v: one of its hosts, or an address in its
// lab prefixes. Anything else is reached through v's edges, so a member
// cannot make the hub send traffic to arbitrary addresses.
func belongsTo(v *raft.NetworkView, u *sip.Uri) bool {
	host := strings.ToLower(strings.Trim(u.Host, "[]"))
	if v.Hosts[host] {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		for _, p := range v.CIDRs {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}
