package chatroom

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"clearhub/hub/msrp"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Store is the replicated state as the service uses it.
type Store interface {
	// State is the latest applied state; never nil.
	State() *raft.State
	// Propose commits cmd through the cluster (forwarding to the leader)
	// and returns once this node has applied it, with its log index.
	// Errors wrap raft.ErrInvalid, ErrNotFound, ErrAlreadyExists,
	// ErrFailedPrecondition (the FSM refused it) or say that the cluster
	// could not take it.
	Propose(ctx context.Context, cmd *hubv1.Command) (uint64, error)
	// Subscribe delivers the newest state after changes (raft.FSM.Subscribe).
	Subscribe() (<-chan *raft.State, func())
	// IsLeader reports whether this node leads (it claims stalled fan-outs).
	IsLeader() bool
}

// SendOptions go with a request the room sends.
type SendOptions struct {
	// Source is the member network the request speaks for: the sender's
	// network for a fan-out copy (the destination's peering policy for
	// chat then applies), "" for the room's own requests (replies,
	// NOTIFY).
	Source string
	// Note goes into the audit entry, e.g. "room sip:team@... #12".
	Note string
}

// Sender sends a request the hub originates toward member network dst and
// returns the final response (cmd/hubd: hub.Originate with service chat).
// A final response of any status is not an error.
type Sender interface {
	Send(ctx context.Context, req *sip.Request, dst string, o SendOptions) (*sip.Response, error)
}

// Auditor is the audit ledger (*ledger.Ledger).
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// Deferrer takes a delivery that failed for store-and-forward (hub/queue:
// durable in the replicated state, redelivered with the same request);
// src is the network the copy speaks for. nil means failed deliveries are
// retried from this node's memory.
type Deferrer interface {
	Defer(ctx context.Context, req *sip.Request, src, dst, note string) error
}

// Request is one request for the rooms domain, attributed by the core.
type Request struct {
	Req *sip.Request
	// Source is the member network that sent it.
	Source string
	// Transport is the lower-case transport it came over.
	Transport string
	// Respond sends a response upstream (the first final one counts).
	Respond func(*sip.Response)
	// Contact returns the hub's URI for user that routes back to the
	// rooms service (for Contact headers of dialogs the room is in).
	Contact func(user string) sip.Uri
	// Ctx ends at shutdown; nil means context.Background().
	Ctx context.Context
}

func (r *Request) ctx() context.Context {
	if r.Ctx == nil {
		return context.Background()
	}
	return r.Ctx
}

// Config configures a Service. Domain, NodeID, Store and Sender are required.
type Config struct {
	Domain string // rooms domain, e.g. rooms.hub.example
	NodeID string
	Store  Store
	Sender Sender
	// Auditor, if set, gets one chat entry per room message and entries
	// for deliveries the room gave up on or handed to the queue.
	Auditor  Auditor
	Deferrer Deferrer
	Logger   *slog.Logger
	// MaxMembersCap is the hub's hard cap on a room's members (default
	// 5000, at most raft.MaxRoomMembers).
	MaxMembersCap int
	// Rate and Burst bound one sender's messages per room (default 2.5/s,
	// burst 5: ejabberd's 0.4 s min_message_interval, with a burst).
	Rate  rate.Limit
	Burst int
	// BatchSize is how many recipients a fan-out delivers between two
	// replicated progress records (default 64): the most copies of one
	// message a takeover may send twice.
	BatchSize int
	// Concurrency bounds parallel deliveries of one batch (default 64).
	Concurrency int
	// TakeoverAfter is how long a fan-out may stand still before the
	// leader hands it to itself (default 10 s).
	TakeoverAfter time.Duration
	// RosterCoalesce is the least time between two roster NOTIFYs to one
	// watcher (default 1 s).
	RosterCoalesce time.Duration
	// RetryDelays are the waits before in-memory retries of a failed
	// delivery when there is no Deferrer (default 2 s, 10 s, 60 s).
	RetryDelays []time.Duration
	// SessionAddr is the TCP address the RFC 7701 focus listens on for
	// session-mode participants' MSRP ("" = session mode off: an INVITE
	// to a room gets 488); SessionHost the host put into its MSRP URIs
	// and SDP (default: the listener's IP). SessionSetupTimeout ends a
	// session whose participant never connects (default 30 s).
	SessionAddr         string
	SessionHost         string
	SessionSetupTimeout time.Duration
	// SessionTLSAddr, with SessionTLS (the node certificate), also takes
	// TCP/TLS/MSRP offers ("" = TCP only).
	SessionTLSAddr string
	SessionTLS     *tls.Config
	// SessionMaxConns, SessionMaxConnsPerIP and SessionMaxPendingPerIP cap
	// the focus's inbound MSRP connections, both listeners together (the
	// relay's hub/msrp ConnGate): in total (default 16384), from one
	// source address (default 4096: many participants may sit behind one
	// NAT or SBC), and from one source address before the connection is
	// bound to a participant's session (default 16: the cap a flood from
	// one address hits). Over a cap a connection is closed at accept and
	// counted. One that binds no session within SessionFirstFrameTimeout
	// (default 10 s, TLS handshake included) is closed.
	SessionMaxConns          int
	SessionMaxConnsPerIP     int
	SessionMaxPendingPerIP   int
	SessionFirstFrameTimeout time.Duration
	// Tap, if set, is offered every SEND chunk a session participant sends
	// the focus and every SEND the focus sends a participant (lawful
	// interception's msrp delivery, as on the anchoring relay): the
	// participant's side is its network and user, the other the room.
	Tap msrp.ContentTap
	// Registerer, if set, gets the rooms' metrics (clearhub_rooms_*).
	Registerer prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
}

// Service is the rooms service of one node.
type Service struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	limMu    sync.Mutex
	limiters map[string]*limiter

	fan    *fanout
	roster *roster
	focus  *focus // nil: no session mode
	m      *metrics
}

type limiter struct {
	l    *rate.Limiter
	used time.Time
}

// New builds a Service; Start runs its background work.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Domain == "":
		return nil, errors.New("chatroom: Config.Domain required")
	case cfg.NodeID == "" || cfg.Store == nil || cfg.Sender == nil:
		return nil, errors.New("chatroom: Config.NodeID, Store and Sender required")
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxMembersCap <= 0 || cfg.MaxMembersCap > raft.MaxRoomMembers {
		cfg.MaxMembersCap = raft.MaxRoomMembers
	}
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = 2.5, 5
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 64
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.TakeoverAfter <= 0 {
		cfg.TakeoverAfter = 10 * time.Second
	}
	if cfg.RosterCoalesce <= 0 {
		cfg.RosterCoalesce = time.Second
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = []time.Duration{2 * time.Second, 10 * time.Second, time.Minute}
	}
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now, limiters: map[string]*limiter{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.fan = newFanout(s)
	s.roster = newRoster(s)
	if s.cfg.SessionSetupTimeout <= 0 {
		s.cfg.SessionSetupTimeout = 30 * time.Second
	}
	if s.cfg.SessionMaxConns <= 0 {
		s.cfg.SessionMaxConns = 16384
	}
	if s.cfg.SessionMaxConnsPerIP <= 0 {
		s.cfg.SessionMaxConnsPerIP = 4096
	}
	if s.cfg.SessionMaxPendingPerIP <= 0 {
		s.cfg.SessionMaxPendingPerIP = 16
	}
	if s.cfg.SessionFirstFrameTimeout <= 0 {
		s.cfg.SessionFirstFrameTimeout = 10 * time.Second
	}
	f, err := newFocus(s)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.focus = f
	s.m = newMetrics(s)
	if err := s.m.register(cfg.Registerer); err != nil {
		s.cancel()
		if f != nil {
			f.closeListeners()
		}
		return nil, err
	}
	return s, nil
}

// Start starts the state watcher (fan-out resumption and takeover, roster
// updates). Stop ends it.
func (s *Service) Start() {
	states, cancel := s.cfg.Store.Subscribe()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		tick := time.NewTicker(s.cfg.TakeoverAfter / 4)
		defer tick.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case st, ok := <-states:
				if !ok {
					return
				}
				s.fan.stateChanged(st)
				s.roster.stateChanged(st)
				if s.focus != nil {
					s.focus.stateChanged(st)
				}
			case <-tick.C:
				st := s.cfg.Store.State()
				s.fan.stateChanged(st)
				s.roster.expire()
				if s.focus != nil {
					s.focus.stateChanged(st)
				}
			}
		}
	}()
	s.fan.stateChanged(s.cfg.Store.State())
	if s.focus != nil {
		s.focus.run()
		s.focus.stateChanged(s.cfg.Store.State())
	}
}

// Stop ends background work and waits for it. Deliveries in flight end
// with the context; their fan-outs are resumed by this node at its next
// start, or taken over by the leader.
func (s *Service) Stop() {
	s.cancel()
	s.wg.Wait()
}

// go runs fn as tracked background work.
func (s *Service) goBG(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Serve answers one request to the rooms domain.
func (s *Service) Serve(r *Request) {
	switch r.Req.Method {
	case sip.MESSAGE:
		s.serveMessage(r)
	case sip.SUBSCRIBE:
		s.roster.serveSubscribe(r)
	case sip.INVITE:
		if s.focus == nil {
			respond(r, 488, "Room Session Mode Not Enabled")
			return
		}
		s.focus.serveInvite(r)
	case sip.BYE:
		if s.focus == nil {
			respond(r, 481, "Call/Transaction Does Not Exist")
			return
		}
		s.focus.serveBye(r)
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(r.Req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", s.allowed()))
		res.AppendHeader(sip.NewHeader("Accept", "text/plain, message/cpim"))
		r.Respond(res)
	case sip.ACK:
		// ACK of the focus's 2xx: nothing to do.
	case sip.CANCEL:
		// The focus answers an INVITE without a provisional stage, so
		// there is nothing left to cancel (RFC 3261 9.2).
		respond(r, 481, "Call/Transaction Does Not Exist")
	default:
		res := sip.NewResponseFromRequest(r.Req, 405, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", s.allowed()))
		r.Respond(res)
	}
}

func (s *Service) allowed() string {
	if s.focus != nil {
		return "MESSAGE, SUBSCRIBE, OPTIONS, INVITE, ACK, BYE"
	}
	return "MESSAGE, SUBSCRIBE, OPTIONS"
}

func respond(r *Request, code int, reason string) {
	r.Respond(sip.NewResponseFromRequest(r.Req, code, reason, nil))
}

// RoomURI returns the canonical room URI for a name or URI.
func (s *Service) RoomURI(nameOrURI string) (string, error) {
	if !strings.Contains(nameOrURI, "@") {
		nameOrURI = "sip:" + nameOrURI + "@" + s.cfg.Domain
	}
	u, err := raft.NormalizeRoomURI(nameOrURI)
	if err != nil {
		return "", err
	}
	if raft.UserHost(u) != s.cfg.Domain {
		return "", fmt.Errorf("room %s is not under the rooms domain %s", u, s.cfg.Domain)
	}
	return u, nil
}

// sender returns the canonical URI of the request's From address.
func senderOf(req *sip.Request) (string, error) {
	f := req.From()
	if f == nil {
		return "", errors.New("no From header")
	}
	return raft.NormalizeUserURI(f.Address.User + "@" + f.Address.Host)
}

func (s *Service) serveMessage(r *Request) {
	req := r.Req
	room, err := s.RoomURI(req.Recipient.User + "@" + req.Recipient.Host)
	if err != nil || req.Recipient.User == "" {
		respond(r, 404, "Room Not Found")
		return
	}
	sender, err := senderOf(req)
	if err != nil {
		respond(r, 400, "Bad From Address")
		return
	}
	body := req.Body()
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.TrimSpace(h.Value())
	}
	if ct == "" {
		if len(body) > 0 {
			respond(r, 400, "Missing Content-Type")
			return
		}
		ct = "text/plain"
	}
	if isIMDN(ct, body) {
		// A delivery or display notification (RFC 5438) for a copy the
		// room sent: it is for the original sender, never a room
		// message (linphonec 5.1 answers every copy with a bare
		// message/imdn+xml to the room). Accepted and not relayed: the
		// room does not map receipts back to senders.
		s.audit(room, sender, r.Source, "IMDN notification to the room accepted, not posted or relayed")
		respond(r, 200, "OK")
		return
	}
	if cmd, ok := ParseCommand(ct, body); ok {
		respond(r, 200, "OK")
		// The command runs after the answer: its reply is a MESSAGE
		// from the room, like imc's.
		s.goBG(func() { s.runCommand(r, room, sender, cmd) })
		return
	}
	st := s.cfg.Store.State()
	rm := st.Room(room)
	if rm == nil {
		respond(r, 404, "Room Not Found")
		return
	}
	m := raft.RoomMember(rm, sender)
	if b := raft.RoomBanFor(rm, sender, r.Source); b != nil {
		respond(r, 403, "Banned From Room")
		return
	}
	if why := raft.MaySpeak(rm, m); why != "" {
		switch {
		case m == nil:
			respond(r, 403, "Not A Room Participant")
		case !raft.Joined(m):
			respond(r, 403, "Invitation Not Accepted")
		default:
			respond(r, 403, "Visitors May Not Speak")
		}
		return
	}
	if m.GetNetwork() != r.Source {
		// The core checked the From domain belongs to r.Source; a
		// participant recorded under another network is not this one.
		respond(r, 403, "Participant Belongs To Another Network")
		return
	}
	if len(body) > raft.MaxRoomBody {
		respond(r, 413, "Room Message Too Large")
		return
	}
	if !s.allow(room, sender) {
		res := sip.NewResponseFromRequest(req, 503, "Room Rate Limit Exceeded", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "1"))
		r.Respond(res)
		return
	}
	cid := ""
	if h := req.CallID(); h != nil {
		cid = h.Value()
	}
	cmd := s.command(sender, &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{
		Room: room, Owner: s.cfg.NodeID, RatePerMinute: s.ratePerMinute(), Burst: uint32(s.cfg.Burst),
		Message: &hubv1.RoomMessage{Sender: sender, ContentType: ct, Body: body, CallId: cid},
	}})
	start := time.Now()
	idx, err := s.cfg.Store.Propose(r.ctx(), cmd)
	if err == nil {
		s.m.since(s.m.commit, start)
		s.m.posted.WithLabelValues("pager").Inc()
	}
	if errors.Is(err, raft.ErrAlreadyExists) {
		// A retransmission (perhaps to another node) of a message already
		// committed: it was accepted, and is not posted again.
		respond(r, 200, "OK")
		return
	}
	if err != nil {
		code, reason := refusal(err)
		s.log.Info("room message refused", "room", room, "sender", sender, "err", err)
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if code == 503 {
			ra := "2"
			if reason == "Room Rate Limit Exceeded" {
				ra = "1"
			}
			res.AppendHeader(sip.NewHeader("Retry-After", ra))
		}
		r.Respond(res)
		return
	}
	msg := raft.RoomMessageAt(s.cfg.Store.State().Room(room), idx)
	seq := uint64(0)
	if msg != nil {
		seq = msg.GetSeq()
	}
	s.auditMessage(r, room, sender, ct, body, seq)
	// Acknowledged = committed: the message is in the replicated history
	// and its fan-out record names this node (RFC 3428 7: 200 says the
	// room accepted it, not that anyone read it).
	respond(r, 200, "OK")
	s.fan.kick(room)
}

// refusal maps a Propose error to a SIP answer.
func refusal(err error) (int, string) {
	switch {
	case errors.Is(err, raft.ErrFailedPrecondition):
		if strings.Contains(err.Error(), "deliveries in progress") {
			return 503, "Room Delivery Backlog Full"
		}
		if errors.Is(err, raft.ErrRoomRateLimited) || strings.Contains(err.Error(), "over the room rate limit") {
			// Forwarded errors keep the text, not the identity.
			return 503, "Room Rate Limit Exceeded"
		}
		return 403, "Not Allowed In Room"
	case errors.Is(err, raft.ErrNotFound):
		return 404, "Room Not Found"
	case errors.Is(err, raft.ErrInvalid):
		return 488, "Room Message Not Acceptable"
	}
	return 503, "Room Not Available"
}

func (s *Service) command(actor string, op any) *hubv1.Command {
	c := &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: s.now().UnixNano(), Actor: actor}
	switch op := op.(type) {
	case *hubv1.Command_PostRoomMessage:
		c.Op = op
	case *hubv1.Command_PutRoom:
		c.Op = op
	case *hubv1.Command_DeleteRoom:
		c.Op = op
	case *hubv1.Command_PutRoomMember:
		c.Op = op
	case *hubv1.Command_RemoveRoomMember:
		c.Op = op
	case *hubv1.Command_BanRoom:
		c.Op = op
	case *hubv1.Command_UnbanRoom:
		c.Op = op
	case *hubv1.Command_RoomFanoutProgress:
		c.Op = op
	case *hubv1.Command_ClaimRoomFanout:
		c.Op = op
	default:
		panic(fmt.Sprintf("chatroom: command %T", op))
	}
	return c
}

// ratePerMinute is the cluster-wide limit put into each post (the FSM's
// token bucket, raft.takeToken); 0 when unlimited.
func (s *Service) ratePerMinute() uint32 {
	if s.cfg.Rate == rate.Inf || s.cfg.Rate <= 0 {
		return 0
	}
	return uint32(max(1, float64(s.cfg.Rate)*60+0.5))
}

// allow is the per-sender, per-room token bucket (node-local: a sender
// spraying several nodes gets at most the sum; the FSM's fan-out backlog
// bound still holds).
func (s *Service) allow(room, sender string) bool {
	key := room + " " + sender
	now := s.now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.limiters[key]
	if l == nil {
		if len(s.limiters) > 100_000 {
			for k, v := range s.limiters {
				if now.Sub(v.used) > time.Minute {
					delete(s.limiters, k)
				}
			}
		}
		l = &limiter{l: rate.NewLimiter(s.cfg.Rate, s.cfg.Burst)}
		s.limiters[key] = l
	}
	l.used = now
	return l.l.AllowN(now, 1)
}

func (s *Service) auditMessage(r *Request, room, sender, ct string, body []byte, seq uint64) {
	if s.cfg.Auditor == nil {
		return
	}
	sum := sha256.Sum256(body)
	e := &ledger.Entry{
		Time: s.now().UnixNano(), Kind: ledger.KindChat, Method: string(sip.MESSAGE),
		From: sender, To: room, RURI: room, SrcNet: r.Source, Transport: r.Transport,
		Reason: fmt.Sprintf("room %s seq %d", room, seq), BodyType: ct, BodySHA256: sum[:],
	}
	if h := r.Req.CallID(); h != nil {
		e.CallID = h.Value()
	}
	if n := s.cfg.Store.State().Network(r.Source); n != nil && n.GetKeepBodies() {
		e.Body, e.BodyKept = body, true
	}
	if _, err := s.cfg.Auditor.Append(context.WithoutCancel(r.ctx()), e); err != nil {
		s.log.Error("audit append of a room message failed", "room", room, "seq", seq, "err", err)
	}
}

// audit appends a chat-kind note (room changes made in band, deliveries
// given up).
func (s *Service) audit(room, actor, network, reason string) {
	if s.cfg.Auditor == nil {
		return
	}
	e := &ledger.Entry{Time: s.now().UnixNano(), Kind: ledger.KindChat, From: actor, To: room, RURI: room, SrcNet: network, Reason: reason}
	if _, err := s.cfg.Auditor.Append(s.ctx, e); err != nil {
		s.log.Error("audit append failed", "room", room, "reason", reason, "err", err)
	}
}

// newRequest builds a MESSAGE from the room to user.
func (s *Service) newMessage(room, user, callID string, ct string, body []byte) *sip.Request {
	var to sip.Uri
	_ = sip.ParseUri(user, &to)
	req := sip.NewRequest(sip.MESSAGE, to)
	var from sip.Uri
	_ = sip.ParseUri(room, &from)
	fp := sip.NewParams()
	fp.Add("tag", tagFor(callID))
	req.AppendHeader(&sip.FromHeader{Address: from, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if len(body) > 0 || ct != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", ct))
	}
	req.SetBody(body)
	return req
}

// tagFor derives a From tag from a Call-ID: a re-sent copy is the
// identical request.
func tagFor(callID string) string {
	h := sha256.Sum256([]byte("tag " + callID))
	return fmt.Sprintf("%x", h[:5])
}

// reply sends a "*** " line from the room to user of network.
func (s *Service) reply(room, user, network, text string) {
	cid := fmt.Sprintf("%s@%s", sip.GenerateTagN(16), s.cfg.Domain)
	req := s.newMessage(room, user, cid, "text/plain;charset=UTF-8", []byte("*** "+text))
	ctx, cancel := context.WithTimeout(s.ctx, 40*time.Second)
	defer cancel()
	res, err := s.cfg.Sender.Send(ctx, req, network, SendOptions{Note: "room reply " + room})
	if err != nil || res.StatusCode >= 300 {
		s.log.Info("room reply not delivered", "room", room, "to", user, "err", err, "status", statusOf(res))
	}
}

func statusOf(res *sip.Response) int {
	if res == nil {
		return 0
	}
	return res.StatusCode
}

// isIMDN reports whether a body is an IMDN notification (RFC 5438 7.2):
// message/imdn+xml, bare or inside CPIM.
func isIMDN(ct string, body []byte) bool {
	switch mediaType(ct) {
	case "message/imdn+xml":
		return true
	case "message/cpim":
		m, err := ParseCPIM(body)
		return err == nil && mediaType(m.ContentType) == "message/imdn+xml"
	}
	return false
}
