// Package lists is the hub's resource list server: RFC 4662 list
// subscriptions to lists defined in Raft (raft/lists.go) or contained in
// the request (RFC 5367), served under the hub's lists domain, with one
// back-end presence subscription per (presentity, event, view) shared by
// every watcher of that view on this node (backend.go).
//
// It does not import the proxy core: requests come in through Serve (cmd/hubd
// adapts hub.HostedRequest to Request) and the hub's own requests go out
// through Sender (hub.Originate), so policy, audit and edge failover apply
// to them as to any routed request.
package lists

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Sender sends a request of the hub's own toward member network dst and
// returns the final response. src is the member network the hub speaks for
// ("" = the hub's own service): it decides the policy check and is the
// audit entries' source. streamsOnly sends over dst's TCP/TLS edges only
// (a NOTIFY too large for a datagram). cmd/hubd adapts hub.Originate to it.
type Sender interface {
	Send(ctx context.Context, req *sip.Request, src, dst, note string, streamsOnly bool) (*sip.Response, error)
}

// Request is one request for the lists domain, as the proxy core attributed
// and audited it.
type Request struct {
	Req *sip.Request
	// Source is the member network that sent it.
	Source string
	// State is the cluster state the request was admitted against.
	State *raft.State
	// Respond sends a response upstream (the first final one counts).
	Respond func(*sip.Response)
	// Contact is the hub's URI, on the request's transport, that routes
	// in-dialog requests back to this service.
	Contact func(user string) sip.Uri
	// Ctx ends when the hub shuts down; nil = background.
	Ctx context.Context
}

// Config configures a Service.
type Config struct {
	// Domain is lists.domain, e.g. lists.hub.example.
	Domain string
	Sender Sender
	// State returns the current cluster state (for timers and list edits).
	State func() *raft.State
	// Contact returns the hub's URI for back-end dialogs toward member
	// network dst (with chsvc), on the transport the hub reaches dst
	// over: the presentity's server sends its NOTIFYs there.
	Contact func(user, dst string) sip.Uri
	Log     *slog.Logger
	Clock   Clock
	// Throttle is the least time between two fan-outs of one back-end
	// subscription's state (RFC 3856 6.10: 5 s). Negative: no throttle.
	Throttle time.Duration
	// MaxBackendsPerNetwork caps this node's back-end subscriptions toward
	// one member network; the excess is shown as terminated;reason=
	// noresource and logged, never dropped silently.
	MaxBackendsPerNetwork int
	// MaxSubscriptions caps this node's list subscriptions (503 beyond).
	MaxSubscriptions int
	// Expiry bounds for list subscriptions (RFC 6665 4.2.1.1).
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// BackendExpires is what back-end SUBSCRIBEs ask for.
	BackendExpires time.Duration
	// BackendRetry is how long after a failed back-end subscription the
	// hub tries again (for failures that are not a refusal).
	BackendRetry time.Duration
	// MaxDatagram is the largest NOTIFY sent as a UDP datagram (RFC 3261
	// 18.1.1: 1300 bytes when the path MTU is unknown); larger ones go over
	// TCP/TLS only (notify.go).
	MaxDatagram int
	// Registerer takes the service's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Throttle == 0 {
		c.Throttle = 5 * time.Second
	}
	if c.MaxBackendsPerNetwork <= 0 {
		c.MaxBackendsPerNetwork = 10000
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 100000
	}
	if c.MinExpires <= 0 {
		c.MinExpires = 60 * time.Second
	}
	if c.MaxExpires <= 0 {
		c.MaxExpires = 7200 * time.Second
	}
	if c.DefaultExpires <= 0 {
		c.DefaultExpires = 3600 * time.Second
	}
	if c.BackendExpires <= 0 {
		c.BackendExpires = 3600 * time.Second
	}
	if c.BackendRetry <= 0 {
		c.BackendRetry = 60 * time.Second
	}
	if c.MaxDatagram <= 0 {
		c.MaxDatagram = 1300
	}
	c.Domain = strings.ToLower(c.Domain)
}

// Service is the list server of one hub node.
type Service struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	capLog rate.Sometimes
	m      *metrics

	mu       sync.Mutex
	subs     map[string]*listSub // dialog id -> subscription
	backs    map[backKey]*backend
	byCallID map[string]*backend
	perNet   map[string]int // presentity network -> back-end subscriptions
	closed   bool
}

// New returns a Service; Close stops its timers and waits for its sends.
func New(cfg Config) (*Service, error) {
	cfg.defaults()
	if cfg.Domain == "" || cfg.Sender == nil || cfg.State == nil || cfg.Contact == nil {
		return nil, errors.New("lists: Config.Domain, Sender, State and Contact are required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, ctx: ctx, cancel: cancel, capLog: rate.Sometimes{Interval: 10 * time.Second},
		subs: map[string]*listSub{}, backs: map[backKey]*backend{}, byCallID: map[string]*backend{}, perNet: map[string]int{},
	}
	m, err := newMetrics(s, cfg.Registerer)
	if err != nil {
		cancel()
		return nil, err
	}
	s.m = m
	return s, nil
}

// Close drops every subscription without sending anything (they are soft
// state: watchers re-subscribe to another node, back ends expire) and
// waits for sends in flight.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	for _, sub := range s.subs {
		sub.stopTimers()
	}
	for _, b := range s.backs {
		b.stopTimers()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// go runs f as a tracked goroutine unless the service is closed (mu held).
func (s *Service) goLocked(f func()) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f() }()
}

// afterLocked schedules f (called with mu held) after d.
func (s *Service) afterLocked(d time.Duration, f func()) Timer {
	return s.cfg.Clock.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			f()
		}
	})
}

// Counts reports this node's list subscriptions and back-end
// subscriptions (tests, metrics).
func (s *Service) Counts() (subscriptions, backends int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs), len(s.backs)
}

// BackendsToward reports the back-end subscriptions toward one network.
func (s *Service) BackendsToward(network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perNet[network]
}

// Serve answers one request for the lists domain.
func (s *Service) Serve(r Request) {
	switch r.Req.Method {
	case sip.SUBSCRIBE:
		s.subscribe(r)
	case sip.NOTIFY:
		s.backendNotify(r)
	case sip.ACK:
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(r.Req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "SUBSCRIBE, NOTIFY, OPTIONS"))
		res.AppendHeader(sip.NewHeader("Allow-Events", "presence, buddylist, presencelist"))
		res.AppendHeader(sip.NewHeader("Supported", "eventlist, recipient-list-subscribe"))
		r.Respond(res)
	default:
		res := sip.NewResponseFromRequest(r.Req, 405, "Method Not Allowed at the list server", nil)
		res.AppendHeader(sip.NewHeader("Allow", "SUBSCRIBE, NOTIFY, OPTIONS"))
		r.Respond(res)
	}
}

// respond answers with code and reason plus extra headers (name, value...).
func respond(r Request, code int, reason string, hdrs ...string) {
	res := sip.NewResponseFromRequest(r.Req, code, reason, nil)
	for i := 0; i+1 < len(hdrs); i += 2 {
		res.AppendHeader(sip.NewHeader(hdrs[i], hdrs[i+1]))
	}
	r.Respond(res)
}

// tokens returns the lower-case comma-separated values of every header
// called name (or its compact form).
func tokens(req *sip.Request, names ...string) []string {
	var out []string
	for _, n := range names {
		for _, h := range req.GetHeaders(n) {
			for _, v := range strings.Split(h.Value(), ",") {
				if v = strings.ToLower(strings.TrimSpace(v)); v != "" {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func headerValue(req *sip.Request, names ...string) string {
	for _, n := range names {
		if h := req.GetHeader(n); h != nil {
			return strings.TrimSpace(h.Value())
		}
	}
	return ""
}

// eventPackage returns the package of the Event header (without
// parameters) and its id parameter.
func eventPackage(req *sip.Request) (pkg, id string) {
	v := headerValue(req, "Event", "o")
	parts := strings.Split(v, ";")
	pkg = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "id") {
			id = val
		}
	}
	return pkg, id
}

// Packages: presence with RFC 4662 lists; buddylist and presencelist (the
// drafts RFC 4662 grew from) are aliases served from the same lists.
func knownPackage(p string) bool { return p == "presence" || p == "buddylist" || p == "presencelist" }

const (
	optEventlist = "eventlist"
	optRecipient = "recipient-list-subscribe"
)

// expiresOf reads the Expires header (RFC 6665 4.1.2.1); absent = dflt.
func expiresOf(req *sip.Request, dflt time.Duration) (time.Duration, bool) {
	v := headerValue(req, "Expires")
	if v == "" {
		return dflt, true
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

func (s *Service) subscribe(r Request) {
	req := r.Req
	pkg, eventID := eventPackage(req)
	rates, rateErr := eventRates(req)
	if !knownPackage(pkg) {
		// RFC 6665 8.2.2: 489 with the packages we serve.
		respond(r, 489, "Bad Event: the list server serves presence lists", "Allow-Events", "presence, buddylist, presencelist")
		return
	}
	require := tokens(req, "Require")
	for _, o := range require {
		if o != optEventlist && o != optRecipient {
			respond(r, 420, "Bad Extension", "Unsupported", o) // RFC 3261 8.2.2.3
			return
		}
	}
	supported := tokens(req, "Supported", "k")
	if pkg == "presence" && !has(supported, optEventlist) && !has(require, optEventlist) {
		// RFC 4662 4.3: a list URI without eventlist support.
		respond(r, 421, "Extension Required: eventlist", "Require", optEventlist)
		return
	}
	if rateErr != nil {
		respond(r, 400, "Bad Request: "+rateErr.Error())
		return
	}
	exp, ok := expiresOf(req, s.cfg.DefaultExpires)
	if !ok {
		respond(r, 400, "Bad Expires header")
		return
	}
	if exp != 0 && exp < s.cfg.MinExpires {
		respond(r, 423, "Interval Too Brief", "Min-Expires", strconv.Itoa(int(s.cfg.MinExpires/time.Second)))
		return
	}
	exp = min(exp, s.cfg.MaxExpires)
	rates = rates.applied(exp) // RFC 6446 5.3: max-rate against the expiry granted

	var adhoc []Entry
	inDialog := req.To() != nil && req.To().Params.Has("tag")
	// A refresh may repeat Require: recipient-list-subscribe without the
	// body (liblinphone does): it keeps the list (RFC 5367 5).
	if len(req.Body()) > 0 || (has(require, optRecipient) && !inDialog) {
		var code int
		var reason string
		var hdrs []string
		adhoc, code, reason, hdrs = requestList(req)
		if code != 0 {
			respond(r, code, reason, hdrs...)
			return
		}
	}
	if inDialog {
		s.refresh(r, exp, adhoc, rates)
		return
	}

	st := r.State
	if st == nil {
		st = s.cfg.State()
	}
	from := req.From()
	if from == nil || !from.Params.Has("tag") {
		respond(r, 400, "From tag required")
		return
	}
	contact := req.Contact()
	if contact == nil {
		respond(r, 400, "Contact required in a SUBSCRIBE")
		return
	}
	watcher := watcherURI(&from.Address)
	listURI := listURIOf(&req.Recipient)
	var named *hubv1.ResourceList
	if adhoc == nil {
		named = st.List(listURI)
		if named == nil || !strings.EqualFold(req.Recipient.Host, s.cfg.Domain) {
			respond(r, 404, "No such list")
			return
		}
		if o := named.GetOwner(); o != "" && !sameUser(o, watcher) {
			// Personal list: only its owner (whose From the core has tied to
			// the sending network's domains).
			respond(r, 403, "Forbidden: a personal list, and you are not its owner")
			return
		}
	}

	localTag := sip.GenerateTagN(10)
	sub := &listSub{
		localTag: localTag, remoteTag: tagOf(from.Params), callID: req.CallID().Value(),
		listURI: listURI, network: r.Source, watcher: watcher, watcherHdr: from.Address,
		event: pkg, eventID: eventID, remoteTarget: contact.Address,
		dirty: map[string]bool{}, backs: map[string]*backend{}, static: map[string]resState{}, full: true,
		rates: rates, amrSince: s.cfg.Clock.Now(),
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			sub.routeSet = append(sub.routeSet, rr.Address) // RFC 3261 12.1.1: in order, for the UAS
		}
	}
	if named != nil {
		sub.name, sub.revision, sub.entries = named.GetDisplayName(), named.GetRevision(), entriesOf(named)
	} else {
		sub.adhoc, sub.entries = true, adhoc
	}
	sub.id = sip.DialogIDMake(sub.callID, localTag, sub.remoteTag)
	sub.contact = r.Contact("rls-" + sip.GenerateTagN(8))

	s.mu.Lock()
	if len(s.subs) >= s.cfg.MaxSubscriptions {
		s.mu.Unlock()
		s.m.refused.WithLabelValues("subscriptions", r.Source).Inc()
		s.cfg.Log.Warn("list subscription refused: node at its cap", "cap", s.cfg.MaxSubscriptions, "list", listURI, "watcher", watcher)
		respond(r, 503, "Service Unavailable: too many list subscriptions on this node", "Retry-After", "60")
		return
	}
	s.subs[sub.id] = sub
	s.setExpiryLocked(sub, exp)
	s.reconcileLocked(sub, st)
	s.mu.Unlock()

	s.answer(r, sub, localTag, exp)

	s.mu.Lock()
	if exp == 0 {
		// RFC 6665 4.4.3: a fetch: one NOTIFY with the state, then done.
		s.terminateLocked(sub, "timeout")
	} else {
		s.kickLocked(sub)
	}
	s.mu.Unlock()
}

// answer sends the 200 for an initial or refreshing SUBSCRIBE (RFC 6665
// 4.2.1.1: 200, not the deprecated 202).
func (s *Service) answer(r Request, sub *listSub, localTag string, exp time.Duration) {
	res := sip.NewResponseFromRequest(r.Req, 200, "OK", nil)
	if to := res.To(); to != nil && !r.Req.To().Params.Has("tag") {
		// sipgo put a random tag of its own; the dialog is keyed by ours.
		to.Params.Add("tag", localTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(exp/time.Second))))
	if sub.event == "presence" {
		res.AppendHeader(sip.NewHeader("Require", optEventlist)) // RFC 4662 4.4
	}
	res.AppendHeader(&sip.ContactHeader{Address: sub.contact})
	r.Respond(res)
}

// requestList reads an RFC 5367 request-contained list; code is the
// refusal, 0 when entries is usable.
func requestList(req *sip.Request) (entries []Entry, code int, reason string, hdrs []string) {
	if len(req.Body()) == 0 {
		return nil, 400, "Bad Request: recipient-list-subscribe without a resource list body", nil
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(strings.TrimSpace(strings.Split(h.Value(), ";")[0]))
	}
	if ct != "application/resource-lists+xml" {
		return nil, 415, "Unsupported Media Type: a request-contained list is application/resource-lists+xml",
			[]string{"Accept", "application/resource-lists+xml"}
	}
	body, err := DecodeBody(req.Body(), headerValue(req, "Content-Encoding", "e"), MaxDocument)
	switch {
	case errors.Is(err, ErrUnsupportedEncoding):
		return nil, 415, "Unsupported Media Type: content encoding", []string{"Accept-Encoding", "deflate, gzip"}
	case errors.Is(err, ErrTooLarge):
		return nil, 413, "Request Entity Too Large: resource list", nil
	case err != nil:
		return nil, 400, "Bad Request: resource list body does not decompress", nil
	}
	docs, err := ParseResourceLists(body, raft.MaxListEntries)
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, 413, fmt.Sprintf("Request Entity Too Large: at most %d list entries", raft.MaxListEntries), nil
	case err != nil:
		return nil, 400, "Bad Request: malformed resource list", nil
	}
	seen := map[string]bool{}
	entries = []Entry{} // not nil: an empty list is still a request-contained one
	for _, d := range docs {
		for _, e := range d.Entries {
			if !seen[e.URI] {
				seen[e.URI] = true
				entries = append(entries, e)
			}
		}
	}
	return entries, 0, "", nil
}

func entriesOf(l *hubv1.ResourceList) []Entry {
	out := make([]Entry, len(l.GetEntries()))
	for i, e := range l.GetEntries() {
		out[i] = Entry{URI: e.GetUri(), DisplayName: e.GetDisplayName()}
	}
	return out
}

func tagOf(p sip.HeaderParams) string { v, _ := p.Get("tag"); return v }

// watcherURI is the canonical sip:user@host of a From address.
func watcherURI(u *sip.Uri) string {
	c, prob := raft.CanonicalSIPURI("sip:"+u.User+"@"+u.Host, "sip")
	if prob != "" {
		return "sip:" + u.User + "@" + strings.ToLower(u.Host)
	}
	return c
}

// listURIOf is the canonical list URI a Request-URI names.
func listURIOf(u *sip.Uri) string {
	scheme := "sip"
	if u.Scheme == "sips" {
		scheme = "sips"
	}
	c, _ := raft.CanonicalSIPURI(scheme+":"+u.User+"@"+u.Host, "sip", "sips")
	if c == "" || scheme == "sips" {
		// Lists are stored as sip: URIs; sips only asks for TLS.
		c2, _ := raft.CanonicalSIPURI("sip:"+u.User+"@"+u.Host, "sip")
		if c2 != "" {
			return c2
		}
	}
	return c
}

// sameUser compares an owner URI with a watcher's, ignoring sip/sips.
func sameUser(owner, watcher string) bool {
	trim := func(s string) string { return strings.TrimPrefix(strings.TrimPrefix(s, "sips:"), "sip:") }
	return trim(owner) == trim(watcher)
}

func (s *Service) refresh(r Request, exp time.Duration, adhoc []Entry, rates rateParams) {
	id, err := sip.DialogIDFromRequestUAS(r.Req)
	s.mu.Lock()
	sub := s.subs[id]
	if err != nil || sub == nil || sub.terminating != "" {
		s.mu.Unlock()
		// RFC 6665 4.1.2.2 / 4.2.1.2: the subscription is gone (expired,
		// or held by a node that died): the watcher subscribes anew.
		respond(r, 481, "Subscription does not exist")
		return
	}
	if r.Source != sub.network {
		s.mu.Unlock()
		respond(r, 403, "Forbidden: subscription belongs to another network")
		return
	}
	if c := r.Req.Contact(); c != nil {
		sub.remoteTarget = c.Address // RFC 6665 4.1.2.1: a refresh may update the target
	}
	if adhoc != nil && sub.adhoc {
		sub.entries = adhoc // RFC 5367: a changed body replaces the list
	}
	s.setRatesLocked(sub, rates) // RFC 6446 4.1: a refresh may change the rates
	sub.noStreams = false
	s.setExpiryLocked(sub, exp)
	if exp > 0 {
		s.reconcileLocked(sub, r.State)
	}
	s.mu.Unlock()

	s.answer(r, sub, sub.localTag, exp)

	s.mu.Lock()
	if exp == 0 {
		s.terminateLocked(sub, "timeout") // RFC 6665 4.2.1.4: unsubscribe
	} else {
		// RFC 4662 4.5 / K #276: every SUBSCRIBE gets full state, and
		// RFC 6446 5.2: max-rate does not hold it.
		sub.full, sub.answering = true, true
		s.kickLocked(sub)
	}
	s.mu.Unlock()
}

func (s *Service) setExpiryLocked(sub *listSub, exp time.Duration) {
	if sub.expiry != nil {
		sub.expiry.Stop()
		sub.expiry = nil
	}
	sub.expires = s.cfg.Clock.Now().Add(exp)
	if exp > 0 {
		sub.expiry = s.afterLocked(exp, func() {
			if s.subs[sub.id] == sub {
				s.terminateLocked(sub, "timeout")
			}
		})
	}
}

// StateChanged applies list edits and policy changes to live
// subscriptions: a deleted list ends its subscriptions (noresource), an
// edited one gets the new entries and a full-state NOTIFY, and every
// subscription re-derives its back-end views (a sharing grant or a policy
// change takes effect for existing watchers too).
func (s *Service) StateChanged(st *raft.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.terminating != "" {
			continue
		}
		if !sub.adhoc {
			l := st.List(sub.listURI)
			if l == nil {
				s.terminateLocked(sub, "noresource")
				continue
			}
			if o := l.GetOwner(); o != "" && !sameUser(o, sub.watcher) {
				// The list became someone else's personal list.
				s.terminateLocked(sub, "rejected")
				continue
			}
			if l.GetRevision() != sub.revision {
				sub.name, sub.revision, sub.entries = l.GetDisplayName(), l.GetRevision(), entriesOf(l)
				sub.full = true
			}
		}
		if s.reconcileLocked(sub, st) {
			sub.full = true
		}
		if sub.full {
			s.kickLocked(sub)
		}
	}
}
