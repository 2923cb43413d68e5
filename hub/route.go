package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Record-Route parameters. The hub keeps no per-dialog state: its
// Record-Route URI names the two networks of the dialog and carries a sealed
// token, so an in-dialog request (which comes back with that URI as its
// Route, RFC 3261 12.2.1.1) can be attributed, policed and routed by any
// node that holds the route secret, even after a restart (see "Dialog
// route token" below).
const (
	paramSrc = "chs" // network that sent the dialog-creating request
	paramDst = "chd" // network it was routed to
	paramTok = "cht" // sealed dialog token (sealRoute)
	// paramMAC is the pre-token format's MAC (network pair only). Routes
	// still carrying it are refused: they are the replayable kind.
	paramMAC = "chm"

	branchPrefix = sip.RFC3261BranchMagicCookie + "-ch"
)

// recordRoute builds the hub's Record-Route for the interface facing
// transport (RFC 5658: the transport parameter names it).
func (h *Hub) recordRoute(transport string, dr *dialogRoute) *sip.RecordRouteHeader {
	tp := strings.ToLower(transport)
	params := sip.NewParams()
	params.Add("transport", tp)
	params.Add("lr", "")
	params.Add(paramSrc, dr.src)
	params.Add(paramDst, dr.dst)
	params.Add(paramTok, dr.token)
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

// routeParams are the dialog parameters of the hub's leading Route
// entries, not yet verified.
type routeParams struct {
	src, dst, tok string
	legacy        bool // the pre-token format (chm, no cht)
}

// ownRoutes counts the leading Route entries that address the hub (two of
// them with RFC 5658 double record-routing) and returns the dialog
// parameters they carry (nil when they carry none: a plain preloaded route
// to the hub). bad is non-empty when two of them disagree; the entries of
// one double record-route carry the same token.
func (h *Hub) ownRoutes(req *sip.Request) (n int, rp *routeParams, bad string) {
	for _, hd := range req.GetHeaders("Route") {
		r, isRoute := hd.(*sip.RouteHeader)
		if !isRoute || !h.isOurs(&r.Address) {
			break
		}
		n++
		p := &r.Address.UriParams
		src, hasSrc := p.Get(paramSrc)
		dst, hasDst := p.Get(paramDst)
		tok, hasTok := p.Get(paramTok)
		_, hasMAC := p.Get(paramMAC)
		if !hasSrc && !hasDst && !hasTok && !hasMAC {
			continue
		}
		this := routeParams{src: src, dst: dst, tok: tok, legacy: hasMAC && !hasTok}
		if rp == nil {
			rp = &this
		} else if *rp != this {
			bad = "Hub Route entries disagree"
		}
	}
	return n, rp, bad
}

// loopHash identifies a request for RFC 3261 16.3 step 4 loop detection: it
// covers what 16.6 step 8 lists except the topmost Via, so that the same
// request coming back through the hub matches.
//
// It runs on every forwarded request, so the input is written into a pooled
// buffer without intermediate strings (Uri.String, "|"+x concatenations);
// the bytes hashed are the same as before.
func loopHash(req *sip.Request) string {
	b := loopBufs.Get().(*bytes.Buffer)
	defer loopBufs.Put(b)
	b.Reset()
	req.Recipient.StringWrite(b)
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		b.WriteByte('|')
		b.WriteString(tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		b.WriteByte('|')
		b.WriteString(tag)
	}
	if c := req.CallID(); c != nil {
		b.WriteByte('|')
		b.WriteString(c.Value())
	}
	if c := req.CSeq(); c != nil {
		b.WriteByte('|')
		b.Write(strconv.AppendUint(b.AvailableBuffer(), uint64(c.SeqNo), 10))
		b.WriteString(string(c.MethodName))
	}
	for _, r := range req.GetHeaders("Route") {
		b.WriteByte('|')
		b.WriteString(r.Value())
	}
	if p := req.GetHeader("Proxy-Require"); p != nil {
		b.WriteByte('|')
		b.WriteString(p.Value())
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:8])
}

var loopBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

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
const svcAny = routing.AnyService

// classify maps an out-of-dialog request to the service its destination's
// policy must admit (routing.Classify). ok is false for an event package
// the hub does not carry (489 Bad Event, RFC 6665 8.3.2).
func classify(req *sip.Request) (svc hubv1.Service, ok bool) {
	r := routingRequest(req)
	return routing.Classify(r.Method, r.Event, r.FileTransfer)
}

// routingRequest is what routing.Decide reads of req. The Event header and
// the body are looked at only for the methods where they matter.
func routingRequest(req *sip.Request) routing.Request {
	r := routing.Request{Method: string(req.Method), Host: req.Recipient.Host}
	switch req.Method {
	case sip.SUBSCRIBE, sip.NOTIFY, sip.PUBLISH:
		r.Event = eventPackage(req)
	case sip.INVITE:
		r.FileTransfer = isFileTransfer(req)
	}
	return r
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

// usesService, permits and serviceName: see their routing counterparts,
// shared with hubctl's route check.
func usesService(v *raft.NetworkView, svc hubv1.Service) bool { return routing.UsesService(v, svc) }

func permits(st *raft.State, src, dst *raft.NetworkView, svc hubv1.Service) string {
	return routing.Permits(st, src, dst, svc)
}

func serviceName(svc hubv1.Service) string { return routing.ServiceName(svc) }

// hop is one place to send a forwarded request.
type hop struct {
	addr      string // host:port
	transport string // "UDP", "TCP" or "TLS"
	uri       string // for logs
}

// hopOf turns a SIP URI into a hop (routing.HopOf).
func hopOf(u *sip.Uri) hop { return toHop(routing.HopOf(u)) }

// edgeHops parses a network's edge URIs in failover order (routing.EdgeHops).
func edgeHops(v *raft.NetworkView) []hop { return toHops(routing.EdgeHops(v)) }

func toHop(r routing.Hop) hop { return hop{addr: r.Addr, transport: r.Transport, uri: r.URI} }

func toHops(rs []routing.Hop) []hop {
	if len(rs) == 0 {
		return nil
	}
	out := make([]hop, len(rs))
	for i, r := range rs {
		out[i] = toHop(r)
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

// Dialog route token.
//
// The hub's Record-Route carries cht=base64url(20 bytes):
//
//	[0]    format version (routeVersion)
//	[1]    key id (Config.RouteKeyID; Config.PreviousRouteSecrets verify older ids)
//	[2]    dialog kind: the method that created the dialog
//	[3]    service the dialog was admitted for (hubv1.Service)
//	[4:8]  issue time, Unix seconds, big-endian
//	[8:20] HMAC-SHA256(key, label, bytes 0-7, chs, chd, Call-ID, initiator's From tag), first 96 bits
//
// The Call-ID and the initiator's tag are bound by the MAC but not written
// into the URI (they are in every request of the dialog), so the URI stays
// short and a token verifies only on requests of the dialog it was issued
// for. Nothing is stored per dialog.
const (
	routeVersion  = 2
	routeTokenLen = 20
	routeMACLen   = 12
	// routeSkew is how far in the future an issue time may be (another
	// node's clock) before the token is refused.
	routeSkew  = 5 * time.Minute
	routeLabel = "clearhub dialog route\x00"
)

// dialogKind is the method that created a dialog; it decides which methods
// the dialog carries (dialogAllows).
type dialogKind byte

const (
	kindInvite    dialogKind = 'i'
	kindSubscribe dialogKind = 's'
	kindRefer     dialogKind = 'r'
)

func (k dialogKind) String() string {
	switch k {
	case kindInvite:
		return "session"
	case kindSubscribe:
		return "subscription"
	case kindRefer:
		return "refer"
	}
	return "unknown"
}

func kindOf(m sip.RequestMethod) (dialogKind, bool) {
	switch m {
	case sip.INVITE:
		return kindInvite, true
	case sip.SUBSCRIBE:
		return kindSubscribe, true
	case sip.REFER:
		return kindRefer, true
	}
	return 0, false
}

// dialogRoute is the dialog a hub Route describes: a token the hub issues
// (sealRoute) or one it verified (openRoute).
type dialogRoute struct {
	src, dst string // initiator's network, target's network
	kind     dialogKind
	svc      hubv1.Service
	issued   time.Time // second precision
	token    string    // the cht value

	// Set by openRoute for the request at hand.
	fromInitiator bool   // the request travels src -> dst
	peer          string // the network the request goes to
}

func (h *Hub) now() time.Time {
	if h.cfg.clock != nil {
		return h.cfg.clock()
	}
	return time.Now()
}

// routeKey returns the secret for a key id: the current one, or a retired
// one still accepted for verification.
func (h *Hub) routeKey(id uint8) []byte {
	if id == h.cfg.RouteKeyID {
		return h.secret
	}
	return h.cfg.PreviousRouteSecrets[id]
}

func routeMAC(key, head []byte, src, dst, callID, tag string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(routeLabel))
	m.Write(head)
	var lb [binary.MaxVarintLen64]byte
	for _, f := range []string{src, dst, callID, tag} {
		m.Write(lb[:binary.PutUvarint(lb[:], uint64(len(f)))])
		m.Write([]byte(f))
	}
	return m.Sum(nil)[:routeMACLen]
}

// sealRoute fills dr.issued and dr.token for the dialog-creating request
// with callID whose From tag is tag.
func (h *Hub) sealRoute(dr *dialogRoute, callID, tag string) {
	dr.issued = h.now().Truncate(time.Second)
	b := make([]byte, 8, routeTokenLen)
	b[0], b[1], b[2], b[3] = routeVersion, h.cfg.RouteKeyID, byte(dr.kind), byte(dr.svc)
	binary.BigEndian.PutUint32(b[4:8], uint32(dr.issued.Unix()))
	b = append(b, routeMAC(h.secret, b[:8], dr.src, dr.dst, callID, tag)...)
	dr.token = base64.RawURLEncoding.EncodeToString(b)
}

// routeRefusal is why a hub Route does not admit a request.
type routeRefusal struct {
	code   int
	reason string // reason phrase (specific, RFC 3261 21.4)
	detail string // what the audit entry adds to it
}

// audit is the reason recorded in the ledger.
func (r *routeRefusal) audit() string {
	if r.detail == "" {
		return r.reason
	}
	return r.reason + ": " + r.detail
}

// openRoute verifies the hub Route of an in-dialog request (To tag present)
// sent by network sender. The token must be well formed, of this version,
// under a key the hub holds; sender must be one of its two networks; its
// MAC must verify with the request's Call-ID and the initiator's tag where
// the request's direction puts it (From tag from the initiator's side, To
// tag from the target's side, RFC 3261 12.2.1.1); and it must not be older
// than Config.DialogRouteTTL.
func (h *Hub) openRoute(rp *routeParams, req *sip.Request, sender string) (*dialogRoute, *routeRefusal) {
	if rp.legacy {
		return nil, &routeRefusal{403, "Hub Route of an unsupported format", "no dialog token (pre-token format)"}
	}
	raw, err := base64.RawURLEncoding.DecodeString(rp.tok)
	// The decoder skips CR/LF and ignores trailing bits: only the one
	// canonical spelling of a token is accepted.
	if err != nil || len(raw) != routeTokenLen || base64.RawURLEncoding.EncodeToString(raw) != rp.tok || rp.src == "" || rp.dst == "" {
		return nil, &routeRefusal{403, "Malformed hub Route", "token does not decode or networks missing"}
	}
	if raw[0] != routeVersion {
		return nil, &routeRefusal{403, "Hub Route of an unsupported format", "token version " + strconv.Itoa(int(raw[0]))}
	}
	key := h.routeKey(raw[1])
	if key == nil {
		return nil, &routeRefusal{403, "Hub Route signed with an unknown key", "key id " + strconv.Itoa(int(raw[1]))}
	}
	dr := &dialogRoute{src: rp.src, dst: rp.dst, kind: dialogKind(raw[2]), svc: hubv1.Service(raw[3]),
		issued: time.Unix(int64(binary.BigEndian.Uint32(raw[4:8])), 0), token: rp.tok}
	if sender != dr.src && sender != dr.dst {
		return nil, &routeRefusal{403, "Sender is not a party to this dialog", "the Route names " + dr.src + " and " + dr.dst + ", sender is " + sender}
	}
	var callID string
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	fromTag, toTag := tags(req)
	mac := raw[8:]
	switch {
	case sender == dr.src && fromTag != "" && hmac.Equal(mac, routeMAC(key, raw[:8], dr.src, dr.dst, callID, fromTag)):
		dr.fromInitiator, dr.peer = true, dr.dst
	case sender == dr.dst && toTag != "" && hmac.Equal(mac, routeMAC(key, raw[:8], dr.src, dr.dst, callID, toTag)):
		dr.fromInitiator, dr.peer = false, dr.src
	default:
		return nil, &routeRefusal{403, "Hub Route does not match this dialog", "MAC does not verify for this Call-ID, tags, direction and networks (forged, altered or replayed from another dialog)"}
	}
	switch dr.kind {
	case kindInvite, kindSubscribe, kindRefer:
	default:
		// The MAC verified, so a node holding the key wrote it: a format
		// this build does not know.
		return nil, &routeRefusal{403, "Hub Route of an unsupported format", "dialog kind " + strconv.Itoa(int(dr.kind))}
	}
	now := h.now()
	if dr.issued.After(now.Add(routeSkew)) {
		return nil, &routeRefusal{403, "Hub Route issued in the future", "issued " + dr.issued.UTC().Format(time.RFC3339)}
	}
	if now.Sub(dr.issued) > h.cfg.DialogRouteTTL {
		// 481 rather than 403: RFC 3261 12.2.1.2 has the UA end the dialog
		// and RFC 6665 4.1.2.2 has a subscriber re-subscribe, which gets
		// a fresh token after a fresh policy check. A 403 to a refresh
		// would leave the subscription believed alive until it expires.
		return nil, &routeRefusal{481, "Dialog route expired", "issued " + dr.issued.UTC().Format(time.RFC3339) + ", older than " + h.cfg.DialogRouteTTL.String()}
	}
	return dr, nil
}

// tags returns the From and To tags of req ("" when absent).
func tags(req *sip.Request) (from, to string) {
	if f := req.From(); f != nil {
		from = f.Params.GetOr("tag", "")
	}
	if t := req.To(); t != nil {
		to = t.Params.GetOr("tag", "")
	}
	return from, to
}

// inDialog reports whether req claims to be inside a dialog: only such a
// request may be routed by a hub Route. A request without a To tag creates
// a dialog (or is out of any, RFC 3261 12.2), and PUBLISH is never sent in
// a dialog (RFC 3903 4): both are policed as if they carried no Route.
func inDialog(req *sip.Request) bool {
	_, to := tags(req)
	return req.Method != sip.PUBLISH && to != ""
}

// Which methods a dialog carries, and from which side. Each side of a
// dialog may send any request the dialog's usage defines (RFC 5057):
//
//   - session (INVITE, RFC 3261 12/14/15): ACK, BYE, re-INVITE, UPDATE (RFC
//     3311), INFO (RFC 6086 4.2), PRACK (RFC 3262, from whichever side sent
//     the INVITE being acknowledged), REFER and its NOTIFY/SUBSCRIBE with
//     Event: refer (RFC 3515 2.4.6, transfer within a call), MESSAGE (RFC
//     3428 4 allows it in an existing dialog; it is then policed as IM too);
//     both directions.
//   - subscription (SUBSCRIBE, RFC 6665 4.1.2/4.2.2): SUBSCRIBE refreshes
//     and unsubscribes from the subscriber only, NOTIFY from the notifier
//     only, same event package. RFC 6665 4.5.2 deprecates reusing the dialog
//     for anything else.
//   - refer (out-of-dialog REFER, RFC 3515 2.4.4): NOTIFY and SUBSCRIBE with
//     Event: refer, and further REFERs; both directions (either side may
//     refer in the dialog).
//
// OPTIONS is allowed in every dialog (RFC 3261 11: capabilities in a
// dialog). PUBLISH, CANCEL, REGISTER are never routed by a hub Route.
func dialogAllows(k dialogKind, m sip.RequestMethod, fromInitiator bool) bool {
	if m == sip.OPTIONS {
		return true
	}
	switch k {
	case kindInvite:
		switch m {
		case sip.ACK, sip.BYE, sip.INVITE, sip.UPDATE, sip.INFO, sip.PRACK, sip.REFER, sip.NOTIFY, sip.SUBSCRIBE, sip.MESSAGE:
			return true
		}
	case kindSubscribe:
		return (m == sip.SUBSCRIBE && fromInitiator) || (m == sip.NOTIFY && !fromInitiator)
	case kindRefer:
		return m == sip.NOTIFY || m == sip.SUBSCRIBE || m == sip.REFER
	}
	return false
}

// ownService is the service an in-dialog request carries by itself, which
// may differ from the dialog's: MESSAGE is IM, REFER and refer events are
// session, a re-INVITE offering a file transfer is file. ok is false for an
// event package the hub does not carry.
func ownService(req *sip.Request, dr *dialogRoute) (svc hubv1.Service, ok bool) {
	switch req.Method {
	case sip.MESSAGE:
		return hubv1.Service_SERVICE_IM, true
	case sip.REFER:
		return hubv1.Service_SERVICE_SESSION, true
	case sip.SUBSCRIBE, sip.NOTIFY:
		return classify(req)
	case sip.INVITE:
		if isFileTransfer(req) {
			return hubv1.Service_SERVICE_FILE, true
		}
	}
	return dr.svc, true
}

// policeDialog re-checks an in-dialog request against the current state
// st, every time (reads of the immutable state, no lock): the method must
// belong to the dialog's kind and direction; both networks must exist and
// be active (a suspension cuts the dialog); the dialog's service must still
// be admitted in the dialog's direction (initiator to target) by the
// target's policy and both networks' service lists; and a request carrying
// a service of its own (MESSAGE in a session, say) must also be admitted
// for that service in its own direction, as it would be out of dialog.
func policeDialog(st *raft.State, req *sip.Request, dr *dialogRoute) *routeRefusal {
	if !dialogAllows(dr.kind, req.Method, dr.fromInitiator) {
		side := "target"
		if dr.fromInitiator {
			side = "initiator"
		}
		return &routeRefusal{403, string(req.Method) + " not allowed from the " + side + " of a " + dr.kind.String() + " dialog", ""}
	}
	src, dst := st.Network(dr.src), st.Network(dr.dst)
	if src == nil || dst == nil {
		return &routeRefusal{404, "Dialog peer network no longer exists", dr.src + " to " + dr.dst}
	}
	for _, v := range []*raft.NetworkView{src, dst} {
		if !v.Active() {
			return &routeRefusal{403, "Dialog network suspended", v.GetId()}
		}
	}
	if why := permits(st, src, dst, dr.svc); why != "" {
		return &routeRefusal{403, "Dialog no longer permitted: " + why, serviceName(dr.svc) + " dialog " + dr.src + " to " + dr.dst}
	}
	if dr.kind == kindInvite && (req.Method == sip.SUBSCRIBE || req.Method == sip.NOTIFY) && eventPackage(req) != "refer" {
		// Only the transfer subscription REFER creates lives in a session
		// (RFC 3515 2.4.4; RFC 6665 4.5.2 deprecates other dialog reuse).
		return &routeRefusal{403, "Event package does not belong to this dialog", eventPackage(req) + " in a session dialog"}
	}
	own, ok := ownService(req, dr)
	if !ok {
		return &routeRefusal{489, "Bad Event", "event package not carried: " + eventPackage(req)}
	}
	if own == dr.svc {
		return nil
	}
	if dr.kind != kindInvite {
		// A subscription or refer dialog carries its own event package only.
		return &routeRefusal{403, "Event package does not belong to this dialog", eventPackage(req) + " in a " + serviceName(dr.svc) + " dialog"}
	}
	from, to := src, dst
	if !dr.fromInitiator {
		from, to = dst, src
	}
	if why := permits(st, from, to, own); why != "" {
		return &routeRefusal{403, why, "in a " + serviceName(dr.svc) + " dialog"}
	}
	return nil
}
