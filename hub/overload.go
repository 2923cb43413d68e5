package hub

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
	"clearhub/raft"
)

// Overload control: above capacity the hub sheds instead of collapsing.
// Two measures of the work admitted bound it:
//
//   - lean transactions in the pipeline (a goroutine each, from arrival to
//     the final response), against Config.MaxTransactions;
//   - audit appends in progress (every request waits for one before it is
//     forwarded) plus admitted transactions that have not reached theirs,
//     against Config.MaxPendingAppends.
//
// Below both limits, and without a standing queue (delayGate), everything
// is admitted. Above either, new work
// (out-of-dialog requests, in-dialog MESSAGE/REFER) is answered 503 with
// Retry-After at once on the read loop (RFC 3261 21.5.4), before any
// goroutine or ledger entry of its own — except for a member below its
// fair share of the transactions in flight (in flight / members with
// work in flight), so one member flooding does not shut the others out —
// and above 3/2 of a limit new work is shed whoever sends it. The rest of
// a dialog's requests keep priority up to twice the limits, the hard cap;
// responses, ACK and CANCEL are never gated. Shed requests are counted in
// clearhub_sip_shed_total{network,reason} and audited in aggregate
// entries (guard.go), never one by one, so a flood cannot fill the ledger.
// A shed request is answered statelessly (RFC 3261 8.2.7): no lean entry
// is kept, a retransmission is judged afresh.

type overload struct {
	maxTx, maxPending int64
	delay             delayGate
	oc                ocState // RFC 7339 (oc.go)

	inflight atomic.Int64 // lean transactions in the pipeline
	pending  atomic.Int64 // audit appends in progress
	queued   atomic.Int64 // admitted lean transactions not yet at their audit append
	active   atomic.Int64 // networks with a lean transaction in flight
}

// countingAuditor counts the appends in progress of the auditor it wraps.
type countingAuditor struct {
	a  Auditor
	bg backgroundAuditor // a's, when it takes entries nobody waits for (nil: none)
	o  *overload
}

func (c *countingAuditor) Append(ctx context.Context, e *ledger.Entry) (uint64, error) {
	c.o.pending.Add(1)
	defer c.o.pending.Add(-1)
	return c.a.Append(ctx, e)
}

// backgroundAuditor is an Auditor that can also take an entry without
// anyone waiting for it (ledger.Ledger.AppendBackground): done is called
// once it is durable or failed, on the auditor's goroutine.
type backgroundAuditor interface {
	AppendBackground(ctx context.Context, e *ledger.Entry, done func(error)) error
}

// appendBackground is the wrapped auditor's AppendBackground (c.bg must be
// set), counted as pending until done.
func (c *countingAuditor) appendBackground(ctx context.Context, e *ledger.Entry, done func(error)) error {
	c.o.pending.Add(1)
	err := c.bg.AppendBackground(ctx, e, func(err error) {
		c.o.pending.Add(-1)
		done(err)
	})
	if err != nil {
		c.o.pending.Add(-1)
	}
	return err
}

// start and end account for one lean transaction of the network whose
// load is l (nil: not attributed). From start until its request's audit
// append begins (call.dequeue) the transaction counts as queued for the
// ledger, so a burst admitted faster than its goroutines reach the
// ledger is bounded too.
func (o *overload) start(l *memberLoad) {
	o.inflight.Add(1)
	o.queued.Add(1)
	if l != nil && l.inflight.Add(1) == 1 {
		o.active.Add(1)
	}
}

func (o *overload) end(c *call, l *memberLoad) {
	c.dequeue()
	if l != nil && l.inflight.Add(-1) == 0 {
		o.active.Add(-1)
	}
	o.inflight.Add(-1)
}

// dequeue ends c's time as queued for the ledger (once).
func (c *call) dequeue() {
	if c.queued {
		c.queued = false
		c.h.ovl.queued.Add(-1)
	}
}

// gateInput is what one admission decision looks at.
type gateInput struct {
	inflight, pending int64 // now
	maxTx, maxPending int64 // soft limits
	active, mine      int64 // networks with work in flight; the sender's transactions in flight
	priority, attrib  bool  // in-dialog upkeep; sender attributed
	delayed           bool  // a standing queue (delayGate)
}

// The limits on counts bound memory, but at the hub's own capacity a
// queue within them can still hold a second of work. The delay gate
// bounds the time instead: each admitted request reports the time from
// its arrival (the kernel's receive time for UDP, stamp_linux.go; the read
// loop's otherwise) to its audit entry being durable (socket buffer,
// workers, CPU and the ledger's group commits). When more than half of an
// interval's requests waited longer than the target, the queue is
// standing rather than a burst passing (CoDel's distinction, RFC 8289,
// taken on the median rather than the minimum: under a flood the queue
// here drains between GC cycles and batches, so its minimum stays low
// while most requests wait), and new work is shed as at the soft limits
// (fair share kept) for the next interval. It needs load as well
// (minGateLoad transactions in flight), so a slow disk alone at low load
// sheds nothing, and an interval without any report ends it (nothing
// admitted, nothing queued).
type delayGate struct {
	target   int64 // ns; <= 0: off
	winStart atomic.Int64
	winAll   atomic.Int64 // requests reported this interval
	winLate  atomic.Int64 // of them, over the target
	over     atomic.Bool
}

const (
	gateInterval = int64(100 * time.Millisecond)
	minGateLoad  = 32
)

func (d *delayGate) observe(now int64, delay int64) {
	if d.target <= 0 {
		return
	}
	if ws := d.winStart.Load(); now-ws >= gateInterval && d.winStart.CompareAndSwap(ws, now) {
		all, late := d.winAll.Swap(0), d.winLate.Swap(0) // the interval that ended
		d.over.Store(ws != 0 && all > 0 && 2*late > all)
	}
	d.winAll.Add(1)
	if delay > d.target {
		d.winLate.Add(1)
	}
}

// standing reports whether the last full interval saw a standing queue.
func (d *delayGate) standing(now int64) bool {
	return d.target > 0 && d.over.Load() && now-d.winStart.Load() < 2*gateInterval
}

// observe reports c's queueing delay (lean requests: from the read loop).
func (o *overload) observe(c *call) {
	if c.lean == nil || c.lean.arrived.IsZero() {
		return
	}
	now := time.Now()
	o.delay.observe(now.UnixNano(), max(int64(now.Sub(c.lean.arrived)), 1))
}

// shedReason returns "" to admit, else the reason label.
func shedReason(in gateInput) string {
	over := func(num, den int64) string {
		switch {
		case in.pending*den >= in.maxPending*num:
			return "ledger_backlog"
		case in.inflight*den >= in.maxTx*num:
			return "transactions"
		}
		return ""
	}
	if in.priority {
		return over(2, 1) // the hard cap
	}
	why := over(1, 1)
	if why == "" && in.delayed && in.inflight >= minGateLoad {
		why = "queue_delay"
	}
	if why == "" {
		return ""
	}
	if hard := over(3, 2); hard != "" {
		return hard
	}
	// Between the soft limit and 3/2 of it: a member below its fair share
	// of the transactions in flight is still admitted.
	if in.attrib && in.active > 0 && in.mine*in.active < in.inflight {
		return ""
	}
	return why
}

func (o *overload) check(priority bool, l *memberLoad) *shedding {
	in := gateInput{inflight: o.inflight.Load(), pending: o.pending.Load() + o.queued.Load(), maxTx: o.maxTx, maxPending: o.maxPending,
		active: o.active.Load(), priority: priority, attrib: l != nil}
	if !priority && o.delay.target > 0 {
		in.delayed = o.delay.standing(time.Now().UnixNano())
	}
	if l != nil {
		in.mine = l.inflight.Load()
	}
	why := shedReason(in)
	if why == "" {
		return nil
	}
	// Retry-After spread over 1-3 s so that shed senders do not come back
	// in step (RFC 6357 3.1 on 503 synchronising retries).
	r := &shedding{label: why, retry: time.Duration(1+rand.IntN(3)) * time.Second}
	switch why {
	case "ledger_backlog":
		r.phrase, r.cause = "Overloaded: audit ledger backlog", "Overloaded: audit ledger backlog (sip.max_pending_appends)"
	case "queue_delay":
		r.phrase, r.cause = "Overloaded: queueing delay", "Overloaded: queueing delay above sip.queue_delay_target"
	default:
		r.phrase, r.cause = "Overloaded: too many transactions", "Overloaded: too many transactions in progress (sip.max_transactions)"
	}
	return r
}

// shedMetrics are overload control's series.
type shedMetrics struct {
	shed *prometheus.CounterVec
}

func (h *Hub) initOverload() error {
	h.limits = newRateLimiter(h.cfg)
	h.ovl = &overload{maxTx: int64(h.cfg.MaxTransactions), maxPending: int64(h.cfg.MaxPendingAppends)}
	h.ovl.delay.target = int64(h.cfg.QueueDelayTarget)
	ca := &countingAuditor{a: h.audit, o: h.ovl}
	ca.bg, _ = h.audit.(backgroundAuditor)
	h.audit, h.bgAudit = ca, ca
	if ca.bg == nil {
		h.bgAudit = nil
	}
	h.sm = &shedMetrics{shed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "clearhub", Subsystem: "sip", Name: "shed_total",
		Help: "Requests answered 503 at once by overload control or a per-member rate limit, by source network and reason (rate_<class>, ledger_backlog, transactions, queue_delay).",
	}, []string{"network", "reason"})}
	reg := h.cfg.Registerer
	if reg == nil {
		return nil
	}
	o := h.ovl
	for _, c := range []prometheus.Collector{h.sm.shed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "transactions_in_flight",
			Help: "Lean (non-INVITE) transactions in the pipeline, against sip.max_transactions.",
		}, func() float64 { return float64(o.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "audit_appends_pending",
			Help: "Audit ledger appends the SIP plane waits for (admitted requests not yet at theirs are held against sip.max_pending_appends too).",
		}, func() float64 { return float64(o.pending.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "retransmission_cache_evicted_total",
			Help: "Completed UDP transactions dropped from the retransmission cache before Timer J because it reached sip.retransmission_cache_mb (a retransmission of one is forwarded again).",
		}, func() float64 { return float64(h.lean.evictedCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "clearhub", Subsystem: "sip", Name: "retransmission_cache_bytes",
			Help: "Estimated memory of the completed UDP transactions kept to answer retransmissions (bounded by sip.retransmission_cache_mb).",
		}, func() float64 { return float64(h.lean.heldBytes()) }),
	} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return errors.New("hub: metrics already registered on this registerer")
			}
			return err
		}
	}
	return nil
}

// admit decides whether req (a new transaction, not a retransmission) may
// start work: overload first (it costs no token), then the sender's rate
// limits. It runs before any goroutine of the request's own; load is the
// sender's (nil when it is not attributed, which the pipeline refuses).
func (h *Hub) admit(st *raft.State, req *sip.Request, conn net.Conn) (load *memberLoad, netID string, no *shedding) {
	v, _ := h.attribute(st, req, conn)
	if v == nil || !v.Active() {
		return nil, "", nil
	}
	netID = v.GetId()
	if mb := h.limits.table(st).nets[netID]; mb != nil {
		load = mb.load
	}
	_, rp, _ := h.ownRoutes(req)
	inDlg := rp != nil && inDialog(req)
	svc, counts := limitClass(req, inDlg)
	no = h.ovl.check(inDlg || !counts, load)
	if !inDlg && counts {
		h.ovl.oc.count(no != nil)
	}
	if no != nil {
		return load, netID, no
	}
	if counts {
		no = h.limits.table(st).take(netID, svc, h.limits.now())
	}
	return load, netID, no
}

// shedResponse is the 503 for a refused request, with a To tag (RFC 3261
// 8.2.6.2) and Retry-After (21.5.4).
func shedResponse(req *sip.Request, no *shedding) *sip.Response {
	res := sip.NewResponseFromRequest(req, 503, no.phrase, nil)
	res.AppendHeader(retryAfter(no.retry))
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(10))
	}
	return res
}

// countShed accounts for one shed request in metrics and in the aggregate
// ledger entry of its source address.
func (h *Hub) countShed(req *sip.Request, netID string, no *shedding) {
	h.sm.shed.WithLabelValues(netID, no.label).Inc()
	src, _ := netip.ParseAddrPort(req.Source())
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	k := aggKey{src: src.Addr(), transport: strings.ToLower(req.Transport()), what: "requests", label: no.label, status: 503, srcNet: netID}
	h.guard.count(k, src, string(req.Method), no.cause, true)
}

// admitLean runs admit for a lean request on the read loop and answers a
// refused one statelessly; false when refused.
func (h *Hub) admitLean(st *raft.State, req *sip.Request, up upPath) (load *memberLoad, ok bool) {
	defer func() {
		// This runs on a read loop, where a panic would end the node: admit
		// instead, the pipeline recovers on its own goroutine.
		if r := recover(); r != nil {
			h.log.Error("panic in admission", "panic", r, "method", req.Method, "src", req.Source())
			load, ok = nil, true
		}
	}()
	var conn net.Conn
	if up.conn != nil {
		conn = up.conn
	}
	load, netID, no := h.admit(st, req, conn)
	if no == nil {
		return load, true
	}
	h.countShed(req, netID, no)
	res := shedResponse(req, no)
	h.ovl.oc.markVia(res, time.Now()) // RFC 7339 (oc.go)
	h.writeUp(up, marshalResponse(res))
	return nil, false
}

// admitInvite gates an INVITE on sipgo's path (its goroutine exists
// already; the gate still keeps it off the ledger and the edges); false
// when it was refused and answered.
func (c *call) admitInvite() bool {
	h := c.h
	_, netID, no := h.admit(c.st, c.req, c.conn())
	if no == nil {
		return true
	}
	h.countShed(c.req, netID, no)
	if err := c.tx.Respond(shedResponse(c.req, no)); err != nil {
		h.log.Debug("respond shed INVITE", "err", err)
	}
	c.finalSent = true
	return false
}
