package lists

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Back-end subscriptions. Each is keyed by (presentity, event, view):
//   - default view "user:<watcher>": sent in the watcher's name, so the
//     presentity's network authorises each watcher itself; one watcher's
//     several lists share it;
//   - shared view "net:<network>": when the presentity's network granted
//     the watcher's network a shared view (PolicyRule.share_views), one
//     subscription per presentity per watching network per node, from a hub
//     identity for that view, fanned out to every watcher of the network.
// They are node-local soft state: a node that dies stops refreshing them
// and the presentity's network expires them.

type backKey struct{ presentity, event, view string }

// Back-end states as RLMI shows them (RFC 4662 5.2).
const (
	statePending    = "pending"
	stateActive     = "active"
	stateTerminated = "terminated"
)

// maxPIDF bounds the presence document kept per back-end subscription.
const maxPIDF = 64 << 10

type backend struct {
	key      backKey
	id       string // instance id (stable) and Contact user
	network  string // the presentity's network
	src      string // the watching network the hub speaks for
	from     sip.Uri
	callID   string
	localTag string

	// Dialog, once the 200 or the first NOTIFY arrived.
	remoteTag    string
	remoteTarget *sip.Uri
	routeSet     []sip.Uri
	cseq         uint32

	state, reason string
	contentType   string
	body          []byte

	watchers map[*listSub]string // watcher -> its entry URI
	dropped  bool
	unsubbed bool // the un-SUBSCRIBE went out
	failures int  // consecutive failed SUBSCRIBEs (retry backoff)

	// Throttle: the last fan-out and the pending one, if any.
	fanned  bool
	lastFan time.Time
	pending Timer
	refresh Timer
}

func (b *backend) stopTimers() {
	if b.pending != nil {
		b.pending.Stop()
		b.pending = nil
	}
	if b.refresh != nil {
		b.refresh.Stop()
		b.refresh = nil
	}
}

// resState is a resource's state without a back-end subscription (refused
// by policy, unknown domain, over the cap).
type resState struct{ state, reason string }

// viewFor picks the view for a watcher of a presentity in presNet.
func (s *Service) viewFor(st *raft.State, sub *listSub, presNet string) (view string, from sip.Uri) {
	if st.ShareViews(presNet, sub.network) {
		return "net:" + sub.network, sip.Uri{Scheme: "sip", User: "view." + sub.network, Host: s.cfg.Domain}
	}
	u := sub.watcherHdr
	return "user:" + sub.watcher, sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host, Port: u.Port}
}

// target is where one entry of a subscription leads on this state: a
// back-end key, or a static state.
type target struct {
	key    backKey
	net    string
	from   sip.Uri
	static *resState
}

func (s *Service) targetFor(st *raft.State, sub *listSub, uri string) target {
	c, prob := raft.CanonicalSIPURI(uri, "sip", "sips", "pres")
	if prob != "" {
		return target{static: &resState{stateTerminated, "noresource"}}
	}
	host := c[strings.LastIndexByte(c, '@')+1:]
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if host == s.cfg.Domain {
		// A list inside a list: nested lists are not served.
		return target{static: &resState{stateTerminated, "noresource"}}
	}
	owner := st.DomainOwner(host)
	if owner == nil || !owner.Active() {
		return target{static: &resState{stateTerminated, "noresource"}}
	}
	presNet := owner.GetId()
	if !st.Allowed(sub.network, presNet, hubv1.Service_SERVICE_PRESENCE) {
		// The peering policy refuses presence from the watcher's network:
		// the hub does not ask on its behalf (RFC 6665 reason "rejected").
		return target{static: &resState{stateTerminated, "rejected"}}
	}
	view, from := s.viewFor(st, sub, presNet)
	if strings.HasPrefix(c, "pres:") {
		c = "sip:" + strings.TrimPrefix(c, "pres:") // RFC 3859 pres: resolves to SIP here
	}
	return target{key: backKey{presentity: c, event: "presence", view: view}, net: presNet, from: from}
}

// reconcileLocked attaches sub to the back ends its entries need on st and
// detaches it from those it no longer needs; it reports whether anything
// changed.
func (s *Service) reconcileLocked(sub *listSub, st *raft.State) bool {
	if st == nil {
		st = s.cfg.State()
	}
	changed := false
	want := make(map[string]bool, len(sub.entries))
	for _, e := range sub.entries {
		want[e.URI] = true
		t := s.targetFor(st, sub, e.URI)
		if b := sub.backs[e.URI]; b != nil {
			if t.static == nil && b.key == t.key {
				continue
			}
			s.detachLocked(sub, e.URI)
			changed = true
		}
		if t.static != nil {
			if old, ok := sub.static[e.URI]; !ok || old != *t.static {
				sub.static[e.URI] = *t.static
				changed = true
			}
			continue
		}
		if b := s.attachLocked(sub, e.URI, t); b == nil {
			sub.static[e.URI] = resState{stateTerminated, "noresource"}
		} else {
			delete(sub.static, e.URI)
		}
		changed = true
	}
	for uri := range sub.backs {
		if !want[uri] {
			s.detachLocked(sub, uri)
			changed = true
		}
	}
	for uri := range sub.static {
		if !want[uri] {
			delete(sub.static, uri)
			changed = true
		}
	}
	return changed
}

// attachLocked adds sub as a watcher of t's back end, creating it (and
// sending its SUBSCRIBE) if needed; nil when the cap refuses a new one.
func (s *Service) attachLocked(sub *listSub, uri string, t target) *backend {
	b := s.backs[t.key]
	if b == nil {
		if s.perNet[t.net] >= s.cfg.MaxBackendsPerNetwork {
			// Refuse visibly (the resource shows terminated;reason=
			// noresource), count it and say so, unlike rls
			// max_backend_subs.
			s.m.refused.WithLabelValues("backends", t.net).Inc()
			s.capLog.Do(func() {
				s.cfg.Log.Warn("back-end subscription refused: cap toward network reached",
					"network", t.net, "cap", s.cfg.MaxBackendsPerNetwork, "presentity", t.key.presentity, "watcher_network", sub.network)
			})
			return nil
		}
		sum := sha256.Sum256([]byte(t.key.presentity + "\x00" + t.key.view))
		b = &backend{
			key: t.key, id: hex.EncodeToString(sum[:6]), network: t.net, src: sub.network, from: t.from,
			callID: sip.GenerateTagN(16) + "@" + s.cfg.Domain, localTag: sip.GenerateTagN(10),
			state: statePending, watchers: map[*listSub]string{},
		}
		s.backs[t.key] = b
		s.byCallID[b.callID] = b
		s.perNet[t.net]++
		s.goLocked(func() { s.backendSubscribe(b, s.cfg.BackendExpires) })
	}
	b.watchers[sub] = uri
	sub.backs[uri] = b
	return b
}

func (s *Service) detachLocked(sub *listSub, uri string) {
	b := sub.backs[uri]
	if b == nil {
		return
	}
	delete(sub.backs, uri)
	delete(b.watchers, sub)
	if len(b.watchers) == 0 {
		s.dropBackendLocked(b)
	}
}

// dropBackendLocked ends a back end nobody watches: un-SUBSCRIBE (Expires:
// 0, RFC 6665 4.1.2.3) if a dialog exists, best effort.
func (s *Service) dropBackendLocked(b *backend) {
	b.dropped = true
	b.stopTimers()
	delete(s.backs, b.key)
	delete(s.byCallID, b.callID)
	s.perNet[b.network]--
	if s.perNet[b.network] <= 0 {
		delete(s.perNet, b.network)
	}
	if b.remoteTag != "" && b.state != stateTerminated {
		s.unsubscribeLocked(b)
	}
}

func (s *Service) unsubscribeLocked(b *backend) {
	if b.unsubbed {
		return
	}
	b.unsubbed = true
	req := s.backendRequestLocked(b, 0)
	s.goLocked(func() {
		_, _ = s.cfg.Sender.Send(s.ctx, req, b.src, b.network, "list back-end unsubscribe "+b.key.presentity, false)
	})
}

// dialogFromResponseLocked takes the dialog a 2xx to b's SUBSCRIBE made.
func dialogFromResponseLocked(b *backend, res *sip.Response) {
	if b.remoteTag == "" {
		b.remoteTag = tagOf(res.To().Params)
		b.routeSet = nil
		rrs := res.GetHeaders("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- { // RFC 3261 12.1.2: reversed for the UAC
			if rr, ok := rrs[i].(*sip.RecordRouteHeader); ok {
				b.routeSet = append(b.routeSet, rr.Address)
			}
		}
	}
	if c := res.Contact(); c != nil {
		b.remoteTarget = c.Address.Clone()
	}
}

// backendRequestLocked builds the back-end SUBSCRIBE (initial or in
// dialog).
func (s *Service) backendRequestLocked(b *backend, expires time.Duration) *sip.Request {
	var pres sip.Uri
	_ = sip.ParseUri(b.key.presentity, &pres) // canonical: parses
	ruri := pres
	if b.remoteTag != "" && b.remoteTarget != nil {
		ruri = *b.remoteTarget.Clone()
	}
	req := sip.NewRequest(sip.SUBSCRIBE, ruri)
	for _, r := range b.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	fp := sip.NewParams()
	fp.Add("tag", b.localTag)
	req.AppendHeader(&sip.FromHeader{Address: b.from, Params: fp})
	tp := sip.NewParams()
	if b.remoteTag != "" {
		tp.Add("tag", b.remoteTag)
	}
	req.AppendHeader(&sip.ToHeader{Address: pres, Params: tp})
	cid := sip.CallIDHeader(b.callID)
	req.AppendHeader(&cid)
	b.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: b.cseq, MethodName: sip.SUBSCRIBE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: s.cfg.Contact("be-"+b.id, b.network)})
	req.AppendHeader(sip.NewHeader("Event", b.key.event))
	req.AppendHeader(sip.NewHeader("Accept", "application/pidf+xml"))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.SetBody(nil)
	return req
}

// backendSubscribe sends (or refreshes) b's SUBSCRIBE and records the
// outcome.
func (s *Service) backendSubscribe(b *backend, expires time.Duration) {
	s.mu.Lock()
	if b.dropped {
		s.mu.Unlock()
		return
	}
	req := s.backendRequestLocked(b, expires)
	s.mu.Unlock()

	res, err := s.cfg.Sender.Send(s.ctx, req, b.src, b.network, "list back-end subscription "+b.key.presentity+" view "+b.key.view, false)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if b.dropped {
		if err == nil && res.StatusCode >= 200 && res.StatusCode < 300 && expires > 0 {
			// Nobody wanted it any more while the SUBSCRIBE was in flight:
			// end the dialog it made rather than leave it to expire.
			dialogFromResponseLocked(b, res)
			s.unsubscribeLocked(b)
		}
		return
	}
	switch {
	case err != nil:
		s.backendFailedLocked(b, "giveup", true, fmt.Sprintf("not sent: %v", err))
	case res.StatusCode >= 200 && res.StatusCode < 300:
		b.failures = 0
		dialogFromResponseLocked(b, res)
		granted := expires
		if h := res.GetHeader("Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
				granted = min(granted, time.Duration(n)*time.Second)
			}
		}
		if granted > 0 {
			// Refresh before it lapses (RFC 6665 4.1.2.2 leaves the margin
			// to us): at 80 %, at least 5 s early.
			at := min(granted*8/10, granted-5*time.Second)
			if at <= 0 {
				at = granted / 2
			}
			b.refresh = s.afterLocked(at, func() {
				b.refresh = nil
				if !b.dropped {
					s.goLocked(func() { s.backendSubscribe(b, s.cfg.BackendExpires) })
				}
			})
		}
	case res.StatusCode == 423:
		if n, err := strconv.Atoi(strings.TrimSpace(headerOf(res, "Min-Expires"))); err == nil && n > 0 && time.Duration(n)*time.Second > expires {
			s.goLocked(func() { s.backendSubscribe(b, time.Duration(n)*time.Second) })
			return
		}
		s.backendFailedLocked(b, "rejected", false, "423 without a usable Min-Expires")
	case res.StatusCode == 481:
		// The dialog is gone at the back end: start a new one.
		b.remoteTag, b.remoteTarget, b.routeSet = "", nil, nil
		delete(s.byCallID, b.callID)
		b.callID, b.localTag = sip.GenerateTagN(16)+"@"+s.cfg.Domain, sip.GenerateTagN(10)
		s.byCallID[b.callID] = b
		s.backendFailedLocked(b, "deactivated", true, "481 on refresh")
	case res.StatusCode == 403, res.StatusCode == 603, res.StatusCode == 489:
		s.backendFailedLocked(b, "rejected", false, fmt.Sprintf("%d %s", res.StatusCode, res.Reason))
	case res.StatusCode == 404, res.StatusCode == 410, res.StatusCode == 480, res.StatusCode == 484, res.StatusCode == 604:
		s.backendFailedLocked(b, "noresource", false, fmt.Sprintf("%d %s", res.StatusCode, res.Reason))
	default:
		s.backendFailedLocked(b, "giveup", true, fmt.Sprintf("%d %s", res.StatusCode, res.Reason))
	}
}

func headerOf(res *sip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// backendFailedLocked shows b as terminated with reason to its watchers
// and, for a failure that is not a refusal, tries again later.
func (s *Service) backendFailedLocked(b *backend, reason string, retry bool, why string) {
	s.cfg.Log.Info("list back-end subscription failed", "presentity", b.key.presentity, "view", b.key.view,
		"network", b.network, "reason", reason, "detail", why, "retry", retry)
	b.state, b.reason, b.body, b.contentType = stateTerminated, reason, nil, ""
	s.changedLocked(b)
	if retry {
		// A busy presence server (Kamailio on sqlite answers 500 to
		// concurrent SUBSCRIBEs) deserves a quick second try: 2 s,
		// doubling up to BackendRetry.
		b.failures++
		delay := s.cfg.BackendRetry
		if b.failures < 8 {
			delay = min(delay, (2*time.Second)<<(b.failures-1))
		}
		b.refresh = s.afterLocked(delay, func() {
			b.refresh = nil
			if !b.dropped {
				b.remoteTag, b.remoteTarget, b.routeSet = "", nil, nil
				s.goLocked(func() { s.backendSubscribe(b, s.cfg.BackendExpires) })
			}
		})
	}
}

// backendNotify takes a NOTIFY for one of the hub's back-end
// subscriptions (it reaches the hub's Contact with chsvc).
func (s *Service) backendNotify(r Request) {
	req := r.Req
	cid := req.CallID()
	s.mu.Lock()
	var b *backend
	if cid != nil {
		b = s.byCallID[cid.Value()]
	}
	if b == nil || b.dropped {
		s.mu.Unlock()
		respond(r, 481, "Subscription does not exist") // RFC 6665 4.1.3
		return
	}
	if r.Source != b.network {
		s.mu.Unlock()
		respond(r, 403, "Forbidden: NOTIFY from a network other than the presentity's")
		return
	}
	if len(req.Body()) > maxPIDF {
		s.mu.Unlock()
		respond(r, 413, "Request Entity Too Large: presence document")
		return
	}
	ss := strings.ToLower(headerValue(req, "Subscription-State"))
	state, params, _ := strings.Cut(ss, ";")
	state = strings.TrimSpace(state)
	if state != stateActive && state != statePending && state != stateTerminated {
		s.mu.Unlock()
		respond(r, 400, "Bad Request: Subscription-State missing or unknown")
		return
	}
	if b.remoteTag == "" {
		// RFC 6665 4.1.2.4: the NOTIFY may come before the 200; it makes
		// the dialog (route set from its Record-Route, in order).
		b.remoteTag = tagOf(req.From().Params)
		for _, h := range req.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				b.routeSet = append(b.routeSet, rr.Address)
			}
		}
	}
	if c := req.Contact(); c != nil {
		b.remoteTarget = c.Address.Clone()
	}
	b.state, b.reason = state, ""
	if state == stateTerminated {
		b.reason = "noresource"
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "reason" && isToken(v) {
				b.reason = v
			}
		}
		b.body, b.contentType = nil, ""
	} else if body := req.Body(); len(body) > 0 {
		b.body = append([]byte(nil), body...)
		b.contentType = "application/pidf+xml"
		if h := req.ContentType(); h != nil && isMediaType(h.Value()) {
			b.contentType = strings.TrimSpace(h.Value())
		}
	}
	s.changedLocked(b)
	if state == stateTerminated && (b.reason == "deactivated" || b.reason == "timeout" || b.reason == "probation" || b.reason == "giveup") {
		// RFC 6665 4.2.2: the subscriber may try again.
		if b.refresh != nil {
			b.refresh.Stop()
		}
		b.refresh = s.afterLocked(s.cfg.BackendRetry, func() {
			b.refresh = nil
			if !b.dropped {
				b.remoteTag, b.remoteTarget, b.routeSet = "", nil, nil
				s.goLocked(func() { s.backendSubscribe(b, s.cfg.BackendExpires) })
			}
		})
	}
	s.mu.Unlock()
	respond(r, 200, "OK")
}

func isToken(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// isMediaType accepts a Content-Type value safe to copy into a body part
// header: printable, no CR/LF, bounded.
func isMediaType(v string) bool {
	if v == "" || len(v) > 256 || !strings.Contains(v, "/") {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// changedLocked fans b's new state out to its watchers, at most once per
// Throttle (RFC 3856 6.10): a change inside the window schedules one
// fan-out at its end, which carries whatever state is latest then.
func (s *Service) changedLocked(b *backend) {
	if b.pending != nil {
		return // scheduled: latest state wins
	}
	now := s.cfg.Clock.Now()
	if s.cfg.Throttle > 0 && b.fanned {
		if wait := b.lastFan.Add(s.cfg.Throttle).Sub(now); wait > 0 {
			b.pending = s.afterLocked(wait, func() {
				b.pending = nil
				if !b.dropped {
					s.fanLocked(b)
				}
			})
			return
		}
	}
	s.fanLocked(b)
}

func (s *Service) fanLocked(b *backend) {
	b.fanned, b.lastFan = true, s.cfg.Clock.Now()
	for sub, uri := range b.watchers {
		sub.dirty[uri] = true
		s.kickLocked(sub)
	}
}
