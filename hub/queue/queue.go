// Package queue is the hub's store and forward (issue 12): pager MESSAGEs
// (RFC 3428) for a member network that cannot take them now are kept in
// the replicated cluster state and delivered, in order, when it returns.
//
// Storing: the proxy (hub/deferral.go) hands a MESSAGE over; Store
// proposes it through Raft (forwarded to the leader from a follower) and
// returns only once it is committed and applied on this node, so the 202
// Accepted the sender then gets means a quorum holds the message. The
// stored bytes are the request as received minus its Via headers, with the
// receive time.
//
// Delivering: the Raft leader delivers (one node per destination, no
// lease to manage: leadership is the lease). Each destination's queue goes
// out strictly in order, through the proxy's own client side (Sender, an
// adapter over hub.Originate: a new transaction with the hub's Via,
// everything else as stored), at most Rate per second. A destination that
// fails is retried with backoff (MinBackoff doubling to MaxBackoff), and an
// OPTIONS probe goes first so a dead network costs one probe, not one
// MESSAGE attempt. The drain starts at node start (first tick), on every
// backoff expiry, when the proxy sees the network answer (Alive) and on
// an operator's retry. Delivery is at-least-once: the "delivered" removal
// is proposed right after the destination's 2xx; a crash (or loss of
// leadership) between that 2xx and the removal's commit makes the next
// leader send that one message again. That window is one Raft commit.
//
// This package must not import clearhub/hub: it declares what it needs.
package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// StateSource is the replicated state (*raft.Node).
type StateSource interface{ State() *raft.State }

// Proposer commits a command through Raft, forwarding to the leader from a
// follower, and returns once this node has applied it (*admin.Server).
type Proposer interface {
	Propose(ctx context.Context, cmd *hubv1.Command) (uint64, error)
}

// Leader says whether this node delivers (*raft.Node).
type Leader interface{ IsLeader() bool }

// Sender sends a request the hub originates toward network destination,
// on behalf of network source ("" = the hub itself), and returns the final
// response. note goes into the request's audit entry. An error wrapping
// ErrRefused means the hub's own checks refused it (policy, suspended);
// any other error means the destination was not reached.
type Sender interface {
	Send(ctx context.Context, req *sip.Request, source, destination, note string) (*sip.Response, error)
}

// Auditor appends to this node's ledger.
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

var (
	// ErrFull: the destination's limits refuse another message.
	ErrFull = errors.New("store-and-forward queue full")
	// ErrRefused is wrapped by Sender errors for the hub's own refusals.
	ErrRefused = errors.New("refused by the hub")
)

// Config tunes the queue; zero values take the defaults.
type Config struct {
	// NodeID names this node (message ids, audit).
	NodeID string
	// Hostname is the hub's SIP host, for the From of OPTIONS probes.
	Hostname string
	// MaxMessages and MaxBytes bound each destination's queue unless its
	// network overrides them (default 10,000 messages, 64 MiB).
	MaxMessages uint32
	MaxBytes    uint64
	// TTL is each message's retention unless its network overrides it
	// (default 72 h).
	TTL time.Duration
	// Rate and Burst bound deliveries per second to one destination
	// (default 20/s, burst 10), so a returning network is not flooded.
	Rate  float64
	Burst int
	// MinBackoff and MaxBackoff bound the wait after a failed delivery
	// (default 5 s doubling to 300 s).
	MinBackoff, MaxBackoff time.Duration
	// Tick is how often the delivering node looks at the queues (default
	// 1 s): expiry, due retries, gauges.
	Tick time.Duration
	// Now is the clock for stored and expiry times (tests inject one).
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.MaxMessages == 0 {
		c.MaxMessages = 10000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 64 << 20
	}
	if c.TTL <= 0 {
		c.TTL = 72 * time.Hour
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Burst <= 0 {
		c.Burst = 10
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 5 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(300*time.Second, c.MinBackoff)
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hostname == "" {
		c.Hostname = "hub.invalid"
	}
	return c
}

// Queue is one node's store and forward.
type Queue struct {
	cfg    Config
	state  StateSource
	prop   Proposer
	leader Leader
	send   Sender
	audit  Auditor
	log    *slog.Logger
	m      *metrics
	parser *sip.Parser

	kick chan struct{}

	mu   sync.Mutex
	dsts map[string]*dstState // delivery bookkeeping while leader
	wg   sync.WaitGroup
}

// dstState is the delivering node's view of one destination.
type dstState struct {
	running  bool
	next     time.Time     // not before (backoff)
	backoff  time.Duration // 0: last attempt did not fail
	lim      *rate.Limiter
	attempts map[string]int // message id -> delivery attempts by this node
}

// New builds a queue; Run starts its delivery loop.
func New(cfg Config, state StateSource, prop Proposer, leader Leader, send Sender, audit Auditor) (*Queue, error) {
	if state == nil || prop == nil || leader == nil || send == nil || audit == nil {
		return nil, errors.New("queue: state, proposer, leader, sender and auditor are required")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("queue metrics: %w", err)
	}
	return &Queue{
		cfg: cfg, state: state, prop: prop, leader: leader, send: send, audit: audit,
		log: cfg.Logger.With("component", "queue"), m: m, parser: sip.NewParser(),
		kick: make(chan struct{}, 1), dsts: map[string]*dstState{},
	}, nil
}

// Limits returns destination's effective limits and TTL: the network's
// own settings where set, the configured defaults otherwise.
func (q *Queue) Limits(st *raft.State, destination string) (maxMessages uint32, maxBytes uint64, ttl time.Duration) {
	maxMessages, maxBytes, ttl = q.cfg.MaxMessages, q.cfg.MaxBytes, q.cfg.TTL
	if n := st.Network(destination); n != nil {
		d := n.GetDeferral()
		if d.GetMaxMessages() > 0 {
			maxMessages = d.GetMaxMessages()
		}
		if d.GetMaxBytes() > 0 {
			maxBytes = d.GetMaxBytes()
		}
		if d.GetTtlSeconds() > 0 {
			ttl = time.Duration(d.GetTtlSeconds()) * time.Second
		}
	}
	return
}

// Store commits req (as received; not modified) to destination's queue and
// returns its id once this node has applied the commit. received is the
// original time; auditSeq the request's entry in this node's ledger.
func (q *Queue) Store(ctx context.Context, req *sip.Request, source, destination string, auditSeq uint64, received time.Time) (string, error) {
	st := q.state.State()
	maxN, maxB, ttl := q.Limits(st, destination)
	if received.IsZero() {
		received = q.cfg.Now()
	}
	raw := StoredBytes(req)
	id := q.newID()
	var callID string
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	cmd := &hubv1.Command{Version: 1, TimeUnixNano: q.cfg.Now().UnixNano(), Actor: "node:" + q.cfg.NodeID,
		Op: &hubv1.Command_QueueStore{QueueStore: &hubv1.QueueStore{
			Message: &hubv1.QueuedMessage{
				Id: id, Destination: destination, Source: source, Request: raw,
				StoredUnixNano: received.UnixNano(), ExpiresUnixNano: received.Add(ttl).UnixNano(),
				CallId: callID, AuditNode: q.cfg.NodeID, AuditSeq: auditSeq,
			},
			MaxMessages: maxN, MaxBytes: maxB,
		}}}
	if _, err := q.prop.Propose(ctx, cmd); err != nil {
		// A follower's forwarded error keeps only its text.
		if errors.Is(err, raft.ErrQueueFull) || strings.Contains(err.Error(), "queue full") {
			q.m.refusedFull.WithLabelValues(destination).Inc()
			return "", fmt.Errorf("store for %s: %w: %w", destination, ErrFull, err)
		}
		return "", fmt.Errorf("store for %s: %w", destination, err)
	}
	q.m.stored.WithLabelValues(destination).Inc()
	return id, nil
}

// StoredBytes is what the queue keeps of a request: all of it but its Via
// headers (the delivery is a new transaction the hub starts, RFC 3261
// 8.1.1.7), serialized as the proxy serializes what it forwards.
func StoredBytes(req *sip.Request) []byte {
	c := req.Clone()
	for c.RemoveHeader("Via") {
	}
	var b bytes.Buffer
	c.StringWrite(&b)
	return b.Bytes()
}

func (q *Queue) newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return q.cfg.NodeID + "-" + hex.EncodeToString(b[:])
}

// Alive says destination just answered a request: deliver now.
func (q *Queue) Alive(destination string) { q.Retry(destination) }

// Retry makes destination due at once, skipping the probe. It reports
// whether this node is the one delivering (the leader).
func (q *Queue) Retry(destination string) bool {
	q.mu.Lock()
	if ds, ok := q.dsts[destination]; ok {
		ds.next, ds.backoff = time.Time{}, 0
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return q.leader.IsLeader()
}

// Run delivers while ctx lasts (on the leader) and keeps the gauges
// current (on every node). It returns when ctx ends and its deliveries
// have stopped.
func (q *Queue) Run(ctx context.Context) {
	t := time.NewTicker(q.cfg.Tick)
	defer t.Stop()
	defer q.wg.Wait()
	for {
		q.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-q.kick:
		}
	}
}

// tick runs one round: gauges everywhere; on the leader, expiry and the
// start of every due destination's drain.
func (q *Queue) tick(ctx context.Context) {
	st := q.state.State()
	now := q.cfg.Now()
	q.m.observe(st, now)
	if !q.leader.IsLeader() {
		// Not (or no longer) delivering: forget backoffs, so a node that
		// becomes leader drains at once.
		q.mu.Lock()
		for d, ds := range q.dsts {
			if !ds.running {
				delete(q.dsts, d)
			}
		}
		q.mu.Unlock()
		return
	}
	for _, d := range st.QueueDestinations() {
		q.expire(ctx, st, d, now)
		q.mu.Lock()
		ds := q.dsts[d]
		if ds == nil {
			ds = &dstState{lim: rate.NewLimiter(rate.Limit(q.cfg.Rate), q.cfg.Burst), attempts: map[string]int{}}
			q.dsts[d] = ds
		}
		due := !ds.running && !time.Now().Before(ds.next)
		if due {
			ds.running = true
		}
		probe := ds.backoff > 0
		q.mu.Unlock()
		if due {
			q.wg.Add(1)
			go q.drain(ctx, d, ds, probe)
		}
	}
}

// expire removes destination's messages whose TTL passed, audited.
func (q *Queue) expire(ctx context.Context, st *raft.State, destination string, now time.Time) {
	var gone []*hubv1.QueuedMessage
	for _, m := range st.Queue(destination) {
		if m.GetExpiresUnixNano() <= now.UnixNano() {
			gone = append(gone, m)
		}
	}
	if len(gone) == 0 {
		return
	}
	if len(gone) > raft.MaxQueueRemove {
		gone = gone[:raft.MaxQueueRemove] // the rest next tick
	}
	if err := q.remove(ctx, destination, hubv1.QueueOutcome_QUEUE_OUTCOME_EXPIRED, gone...); err != nil {
		q.log.Warn("expire stored messages", "dst", destination, "err", err)
		return
	}
	for _, m := range gone {
		q.m.expired.WithLabelValues(destination).Inc()
		q.event(ctx, m, "queue.expired", 408, fmt.Sprintf("store-and-forward: expired undelivered after %s", time.Duration(m.GetExpiresUnixNano()-m.GetStoredUnixNano())))
		q.notifyAsync(ctx, m, "failed") // imdn.go
	}
}

// remove proposes the removal of ms from destination's queue.
func (q *Queue) remove(ctx context.Context, destination string, outcome hubv1.QueueOutcome, ms ...*hubv1.QueuedMessage) error {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.GetId()
	}
	cmd := &hubv1.Command{Version: 1, TimeUnixNano: q.cfg.Now().UnixNano(), Actor: "node:" + q.cfg.NodeID,
		Op: &hubv1.Command_QueueRemove{QueueRemove: &hubv1.QueueRemove{Destination: destination, Ids: ids, Outcome: outcome}}}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := q.prop.Propose(rctx, cmd)
	return err
}

// verdict classifies a delivery attempt.
type verdict int

const (
	delivered verdict = iota // 2xx: remove
	final                    // the destination's final answer: remove
	retry                    // not reached, or a transient answer: back off
)

// judge applies the rules: 2xx (a 202 of the destination's own
// store and forward included) is delivered; 408, 500, 503, 504 and — with
// the network's opt-in — 480 are transient; any other final answer (a 4xx
// other than 408, 3xx, 6xx, other 5xx) is the destination's own verdict.
func judge(res *sip.Response, err error, on480 bool) verdict {
	if err != nil || res == nil {
		return retry
	}
	switch c := res.StatusCode; {
	case c >= 200 && c < 300:
		return delivered
	case c == 408 || c == 500 || c == 503 || c == 504 || (c == 480 && on480):
		return retry
	}
	return final
}

// drain delivers destination's queue in order until it is empty or a
// delivery fails (then backs off).
func (q *Queue) drain(ctx context.Context, destination string, ds *dstState, probe bool) {
	defer q.wg.Done()
	failed := false
	defer func() {
		q.mu.Lock()
		ds.running = false
		if failed {
			ds.backoff = min(max(2*ds.backoff, q.cfg.MinBackoff), q.cfg.MaxBackoff)
			ds.next = time.Now().Add(ds.backoff)
		} else {
			ds.backoff, ds.next = 0, time.Time{}
		}
		q.mu.Unlock()
	}()
	if probe && !q.probe(ctx, destination) {
		failed = true
		return
	}
	for ctx.Err() == nil && q.leader.IsLeader() {
		st := q.state.State()
		ms := st.Queue(destination)
		if len(ms) == 0 {
			return
		}
		m := ms[0]
		if m.GetExpiresUnixNano() <= q.cfg.Now().UnixNano() {
			return // tick expires it (one place audits expiry), then drains on
		}
		if err := ds.lim.Wait(ctx); err != nil {
			return
		}
		req, err := q.parse(m)
		if err != nil {
			// Cannot happen for bytes the hub wrote; never block the queue on it.
			q.log.Error("stored message does not parse; removing it", "id", m.GetId(), "err", err)
			if q.remove(ctx, destination, hubv1.QueueOutcome_QUEUE_OUTCOME_REFUSED, m) == nil {
				q.event(ctx, m, "queue.refused", 0, "store-and-forward: stored bytes do not parse: "+err.Error())
			}
			continue
		}
		q.mu.Lock()
		ds.attempts[m.GetId()]++
		n := ds.attempts[m.GetId()]
		q.mu.Unlock()
		note := fmt.Sprintf("store-and-forward delivery of %s (request entry %s/%d), attempt %d", m.GetId(), m.GetAuditNode(), m.GetAuditSeq(), n)
		res, err := q.send.Send(ctx, req, m.GetSource(), destination, note)
		on480 := false
		if nv := st.Network(destination); nv != nil {
			on480 = nv.GetDeferral().GetOn_480()
		}
		switch judge(res, err, on480) {
		case retry:
			q.m.deliveries.WithLabelValues(destination, "retry").Inc()
			q.log.Info("store-and-forward: delivery failed; backing off", "dst", destination, "id", m.GetId(), "err", err, "status", status(res))
			failed = true
			return
		case delivered:
			// The at-least-once window: from here to the removal's commit.
			if err := q.remove(ctx, destination, hubv1.QueueOutcome_QUEUE_OUTCOME_DELIVERED, m); err != nil {
				q.log.Warn("store-and-forward: delivered but not marked; it may be sent again", "id", m.GetId(), "err", err)
				failed = true
				return
			}
			q.m.deliveries.WithLabelValues(destination, "delivered").Inc()
			q.event(ctx, m, "queue.delivered", res.StatusCode, fmt.Sprintf("store-and-forward: delivered, attempt %d", n))
			q.notifyAsync(ctx, m, "delivered") // imdn.go
		case final:
			if err := q.remove(ctx, destination, hubv1.QueueOutcome_QUEUE_OUTCOME_REFUSED, m); err != nil {
				failed = true
				return
			}
			q.m.deliveries.WithLabelValues(destination, "refused").Inc()
			q.event(ctx, m, "queue.refused", res.StatusCode, fmt.Sprintf("store-and-forward: the destination's final answer %d %s; removed", res.StatusCode, res.Reason))
			q.notifyAsync(ctx, m, "failed") // imdn.go
		}
		q.mu.Lock()
		delete(ds.attempts, m.GetId())
		q.mu.Unlock()
	}
}

func status(res *sip.Response) int {
	if res == nil {
		return 0
	}
	return res.StatusCode
}

// probe sends OPTIONS to destination (the hub's own request, always
// allowed) and reports whether some edge answered other than 503 or 408.
func (q *Queue) probe(ctx context.Context, destination string) bool {
	st := q.state.State()
	n := st.Network(destination)
	if n == nil || len(n.GetDomains()) == 0 {
		return false
	}
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: n.GetDomains()[0]})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "store-and-forward", Host: q.cfg.Hostname}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: n.GetDomains()[0]}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + q.cfg.Hostname)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	res, err := q.send.Send(ctx, req, "", destination, "store-and-forward liveness probe")
	ok := err == nil && res != nil && res.StatusCode != 503 && res.StatusCode != 408
	q.m.probes.WithLabelValues(destination, map[bool]string{true: "alive", false: "down"}[ok]).Inc()
	return ok
}

func (q *Queue) parse(m *hubv1.QueuedMessage) (*sip.Request, error) {
	msg, err := q.parser.ParseSIP(m.GetRequest())
	if err != nil {
		return nil, err
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil, errors.New("not a request")
	}
	return req, nil
}

// event audits a lifecycle step of a stored message, tied to the original
// request by its Call-ID and its entry (node/seq) in Reason.
func (q *Queue) event(ctx context.Context, m *hubv1.QueuedMessage, what string, status int, reason string) {
	q.eventBy(ctx, m, what, status, reason, "node:"+q.cfg.NodeID)
}

// eventBy is event with the actor (From, as in every admin entry) named.
func (q *Queue) eventBy(ctx context.Context, m *hubv1.QueuedMessage, what string, status int, reason, actor string) {
	e := &ledger.Entry{
		Kind: ledger.KindAdmin, Method: what, CallID: m.GetCallId(), From: actor,
		SrcNet: m.GetSource(), DstNet: m.GetDestination(), Status: status,
		Reason: fmt.Sprintf("%s (queue id %s, request entry %s/%d)", reason, m.GetId(), m.GetAuditNode(), m.GetAuditSeq()),
	}
	if req, err := q.parse(m); err == nil {
		if t := req.To(); t != nil {
			e.To = t.Address.String()
		}
		if cs := req.CSeq(); cs != nil {
			e.CSeq = cs.Value()
		}
		e.RURI = req.Recipient.String()
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := q.audit.Append(actx, e); err != nil {
		q.log.Error("audit append failed for a store-and-forward event", "event", what, "id", m.GetId(), "err", err)
	}
}

// Drop removes one message (id) or every message of destination, audited
// with actor. It returns how many were dropped.
func (q *Queue) Drop(ctx context.Context, destination, id, actor string) (int, error) {
	var ms []*hubv1.QueuedMessage
	for _, m := range q.state.State().Queue(destination) {
		if id == "" || m.GetId() == id {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return 0, nil
	}
	done := 0
	for len(ms) > 0 {
		n := min(len(ms), raft.MaxQueueRemove)
		if err := q.remove(ctx, destination, hubv1.QueueOutcome_QUEUE_OUTCOME_DROPPED, ms[:n]...); err != nil {
			return done, fmt.Errorf("drop from %s: %w", destination, err)
		}
		for _, m := range ms[:n] {
			q.m.dropped.WithLabelValues(destination).Inc()
			q.eventBy(ctx, m, "queue.dropped", 0, "store-and-forward: dropped by an operator", actor)
		}
		done += n
		ms = ms[n:]
	}
	return done, nil
}
