package hub

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/ledger"
	"clearhub/raft"
)

// allowHeader lists what the hub carries (RFC 3261 20.5), sent with 405 and
// with 200 to OPTIONS addressed to the hub.
var allowHeader = strings.Join(routing.CarriedMethods, ", ")

// carried is routing.CarriedMethods keyed by the request's method type.
var carried = func() map[sip.RequestMethod]bool {
	m := make(map[sip.RequestMethod]bool, len(routing.CarriedMethods))
	for _, x := range routing.CarriedMethods {
		m[sip.RequestMethod(x)] = true
	}
	return m
}()

// call is the hub's work on one server transaction: a sipgo one (tx, for
// INVITE, ACK and CANCEL) or a lean one (lean, every other method).
type call struct {
	h         *Hub
	req       *sip.Request
	tx        sip.ServerTransaction
	lean      *leanServer
	st        *raft.State
	start     time.Time
	transport string // lower-case transport the request came over

	src, dst     *raft.NetworkView
	srcID, dstID string
	respDest     string // where responses to req go (sipgo's own choice)
	finalSent    bool
	queued       bool // admitted, before its audit append (overload.go)
	// orig is set on a request the hub sends itself (originate.go): there
	// is no upstream, responses are captured instead of sent.
	orig *origination
	// auditSeq is the request entry's seq (store and forward ties its
	// entries to it).
	auditSeq uint64
	// anchorBody is the SDP to forward instead of the received one, and
	// anchorOffered says the request's SDP was an offer the session
	// anchor took (anchor.go; Config.Anchor nil: never set).
	anchorBody    []byte
	anchorOffered bool
}

// handle is the sipgo request handler for every method. sipgo runs it on
// its own goroutine and terminates the server transaction when it returns,
// so it returns only when the transaction is over.
func (h *Hub) handle(req *sip.Request, tx sip.ServerTransaction) {
	if !h.enter() {
		return
	}
	defer h.leave()
	c := &call{h: h, req: req, tx: tx, st: h.state.State(), start: time.Now(), transport: strings.ToLower(req.Transport())}
	if req.Method == sip.INVITE {
		h.om.invites.Add(1)
		defer h.om.invites.Add(-1)
	}
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("panic handling SIP request", "panic", r, "method", req.Method, "src", req.Source(), "stack", string(debug.Stack()))
			if !c.finalSent && req.Method != sip.ACK {
				c.respond(500, "Server Internal Error")
			}
		}
	}()
	if req.Method == sip.INVITE && !c.admitInvite() { // overload.go
		return
	}
	c.run()
}

func (h *Hub) recoverPanic(what string) {
	if r := recover(); r != nil {
		h.log.Error("panic in hub "+what, "panic", r, "stack", string(debug.Stack()))
	}
}

func (c *call) run() {
	h, req := c.h, c.req
	if req.Method == sip.ACK {
		c.ack()
		return
	}

	// 1. Identify the sending network from the connection (RFC 5922).
	src, why := h.attribute(c.st, req, c.conn())
	if src == nil {
		c.refuseFor(rsnUnattributable, 403, "Forbidden", "unattributable source: "+why)
		return
	}
	c.src, c.srcID = src, src.GetId()
	if !src.Active() {
		c.refuseFor(rsnSuspended, 403, "Forbidden", "source network suspended")
		return
	}
	if req.Method == sip.CANCEL {
		// A CANCEL matching a live INVITE never gets here: sipgo answers
		// it, 487s the INVITE and the forwarding loop sends a CANCEL
		// downstream. This one matches nothing (RFC 3261 9.2).
		c.refuseFor(rsnNoTransaction, 481, "Call/Transaction Does Not Exist", "CANCEL matches no transaction")
		return
	}
	if !carried[req.Method] {
		c.refuseFor(rsnMethod, 405, "Method Not Allowed", "method not carried by the hub", sip.NewHeader("Allow", allowHeader))
		return
	}
	if c.refuseDraining() { // drain.go
		return
	}

	// RFC 3261 16.3 step 3 and section 11: Max-Forwards 0 ends the
	// journey here; an OPTIONS is answered by the hub itself, as is an
	// OPTIONS addressed to the hub (members' keep-alive).
	mf := 70
	if m := req.MaxForwards(); m != nil {
		mf = int(m.Val())
	}
	if req.Method == sip.OPTIONS && (mf == 0 || (req.Recipient.User == "" && h.isOurs(&req.Recipient))) {
		c.answerOptions() // keepalive.go
		return
	}
	if mf <= 0 {
		c.refuseFor(rsnMaxForwards, 483, "Too Many Hops", "Max-Forwards exhausted")
		return
	}
	// RFC 3261 16.3 step 4: loop detection.
	lh := loopHash(req)
	if h.looped(req, lh) {
		c.refuseFor(rsnLoop, 482, "Loop Detected", "request already passed this hub")
		return
	}

	// 2. Anti-spoofing (after RFC 3261 16.3 validation): a network sends only as its own domains.
	from := req.From()
	if from == nil || c.st.DomainOwner(from.Address.Host) != src {
		c.refuseFor(rsnSpoof, 403, "From domain not owned by sender", "From domain not owned by sender")
		return
	}

	// 3. Resolve: a hosted service domain is answered here (hosted.go);
	// otherwise by the hub's own Route entry in a dialog, by the
	// Request-URI domain otherwise. A hub Route on a request that is not
	// in a dialog (no To tag, or PUBLISH) is popped and otherwise ignored:
	// it never carries a request past the destination's policy.
	if svc, domain := h.hostedFor(&req.Recipient); svc != nil {
		c.serveHosted(svc, domain)
		return
	}
	popN, rp, bad := h.ownRoutes(req)
	var dr *dialogRoute
	if rp != nil && inDialog(req) {
		if bad != "" {
			c.refuseFor(rsnDialogRoute, 403, bad, bad)
			return
		}
		var no *routeRefusal
		if dr, no = h.openRoute(rp, req, c.srcID); no == nil {
			no = policeDialog(c.st, req, dr)
		}
		if no != nil {
			c.dstID = otherParty(rp, c.srcID)
			c.refuseFor(rsnDialogRoute, no.code, no.reason, no.audit())
			return
		}
	}
	var hops []hop
	var rr *dialogRoute
	if dr != nil {
		c.dstID = dr.peer
		c.dst = c.st.Network(c.dstID) // policeDialog saw it exist and active
		// RFC 3261 16.4/16.5: after popping our entries the next Route,
		// if any, is the target; otherwise the Request-URI.
		target := &req.Recipient
		if routes := req.GetHeaders("Route"); len(routes) > popN {
			if r, ok := routes[popN].(*sip.RouteHeader); ok {
				target = &r.Address
			}
		}
		if belongsTo(c.dst, target) {
			hops = []hop{hopOf(target)}
		} else {
			hops = edgeHops(c.dst)
		}
	} else {
		// 4. Owner of the domain, service, both networks' services and
		// the destination's peering policy: routing.Decide, the same
		// code `hubctl route check` runs.
		d := routing.Decide(c.st, c.src, routingRequest(req))
		if c.dst = d.Dst; c.dst != nil {
			c.dstID = c.dst.GetId()
		}
		if d.Code != 0 {
			c.refuseFor(d.Label, d.Code, d.Phrase, d.Detail)
			return
		}
		svc := d.Service
		hops = toHops(d.Hops)
		if kind, creates := kindOf(req.Method); creates {
			// Dialog-creating requests are record-routed (RFC 3261
			// 16.6 step 4) so that the dialog's requests cross the hub,
			// with a token bound to this dialog (route.go).
			fromTag, _ := tags(req)
			if fromTag == "" {
				// RFC 3261 8.1.1.3: MUST; the token binds it.
				c.refuseFor(rsnMalformed, 400, "Missing From tag", "dialog-creating request without a From tag")
				return
			}
			rr = &dialogRoute{src: c.srcID, dst: c.dstID, kind: kind, svc: svc}
			var callID string
			if cid := req.CallID(); cid != nil {
				callID = cid.Value()
			}
			h.sealRoute(rr, callID, fromTag)
		}
	}
	if len(hops) == 0 {
		c.noUsableEdge("none_configured")
		if c.deferrable() { // deferral.go: store instead of 503
			c.dequeue()
			if seq, err := h.audit.Append(h.ctx, c.requestEntry(0, "no usable edge")); err == nil {
				c.auditSeq = seq
				if !c.deferMessage("no_edge") {
					c.h.om.refused(rsnNoEdge, 503)
					c.generate(503, "Service Unavailable", "destination network has no usable edge", sip.NewHeader("Retry-After", "30"))
				}
				return
			}
			h.m.auditErrs.Inc()
		}
		c.refuseFor(rsnNoEdge, 503, "Service Unavailable", "destination network has no usable edge", sip.NewHeader("Retry-After", "30"))
		return
	}

	// Media anchoring (anchor.go): an SDP offer gets the hub's MSRP
	// addresses, a BYE ends the session; may refuse with 488.
	if !c.anchorRequest() {
		return
	}
	// 5. Audit before forwarding: unlogged traffic is never forwarded.
	c.dequeue() // overload.go: the append itself counts as pending now
	seq, err := h.audit.Append(h.ctx, c.requestEntry(0, ""))
	if err != nil {
		h.m.auditErrs.Inc()
		h.log.Error("audit append failed; refusing request", "err", err, "method", req.Method)
		c.respond(500, "Server Internal Error")
		return
	}
	c.auditSeq = seq
	h.ovl.observe(c) // overload.go: the queueing this request saw
	c.tapRequest()   // tap.go: interception and capture copies
	// Store and forward (deferral.go): a MESSAGE to a destination with
	// stored messages waits behind them.
	if c.queuedBehind() && c.deferMessage("behind") {
		return
	}
	// 6. Proxy.
	if c.lean == nil {
		c.respDest = sip.NewResponseFromRequest(req, 100, "Trying", nil).Destination()
	}
	c.forward(preferStreams(hops, c.size()), popN, mf, lh, rr)
}

// conn is the connection the request came over, for TLS attribution.
func (c *call) conn() net.Conn {
	if c.lean != nil {
		if mc := c.lean.up.conn; mc != nil {
			return mc
		}
		return nil
	}
	return tlsConnOf(c.tx)
}

// size estimates the forwarded request's size: the received length when
// the lean path knows it (re-marshalling every header just to count them
// cost ~2% of a forwarded MESSAGE), plus the hub's Via and Record-Route.
func (c *call) size() int {
	if c.lean != nil && c.lean.size > 0 {
		return c.lean.size + 200
	}
	n := len(c.req.Body()) + 200 // the hub's Via and Record-Route
	for _, hd := range c.req.Headers() {
		n += len(hd.Name()) + len(hd.Value()) + 4
	}
	return n + len(c.req.Recipient.Host) + 32
}

// preferStreams applies RFC 3261 18.1.1 (routing.PreferStreams): a large
// request tries the destination's TCP/TLS edges first.
func preferStreams(hops []hop, size int) []hop {
	return routing.PreferStreams(hops, size, func(hp hop) string { return hp.transport })
}

// refuse audits the request as refused with code, answers it and audits the
// generated response.
func (c *call) refuse(code int, reason, detail string, hdrs ...sip.Header) {
	if _, err := c.h.audit.Append(c.h.ctx, c.requestEntry(code, detail)); err != nil {
		c.h.m.auditErrs.Inc()
		c.h.log.Error("audit append failed", "err", err)
	}
	c.generate(code, reason, detail, hdrs...)
}

// generate answers the request with a response of the hub's own, audited.
func (c *call) generate(code int, reason, detail string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(c.req, code, reason, nil)
	for _, hd := range hdrs {
		res.AppendHeader(hd)
	}
	// RFC 3261 8.2.6.2 (the hub answers as a UAS here): a final response
	// carries a To tag.
	if to := res.To(); to != nil && code >= 200 && !to.Params.Has("tag") {
		to.Params.Add("tag", sip.GenerateTagN(10))
	}
	c.auditAsync(c.responseEntry(res, false, detail))
	c.send(res)
}

// auditAsync appends a response entry without holding the response back:
// only requests must be durable before they are acted on, and waiting for
// a second group commit would double the latency the hub adds. The entry
// is still appended (Close waits for it); a failure is logged and counted.
func (c *call) auditAsync(e *ledger.Entry) {
	h := c.h
	if !h.enter() {
		h.log.Warn("response not audited: hub closing", "status", e.Status)
		return
	}
	status := e.Status
	failed := func(err error) {
		if err != nil {
			h.m.auditErrs.Inc()
			h.log.Error("audit append failed for a response", "err", err, "status", status)
		}
	}
	// A ledger that takes entries nobody waits for commits this one with
	// the next request entry (no goroutine, no fdatasync of its own); the
	// hub's Close still waits for it through enter/leave.
	if h.bgAudit != nil {
		if err := h.bgAudit.appendBackground(h.ctx, e, func(err error) { defer h.leave(); failed(err) }); err != nil {
			h.leave()
			failed(err)
		}
		return
	}
	// On a pooled worker: it waits for a group commit (workers.go).
	h.workers().run(func() {
		defer h.leave()
		defer h.recoverPanic("background")
		_, err := h.audit.Append(h.ctx, e)
		failed(err)
	})
}

// respond answers without auditing (the ledger is failing, or panic).
func (c *call) respond(code int, reason string) {
	c.send(sip.NewResponseFromRequest(c.req, code, reason, nil))
}

func (c *call) send(res *sip.Response) {
	if c.orig != nil {
		c.orig.capture(res)
	} else if c.lean != nil {
		c.lean.respond(c.h, res)
	} else if err := c.tx.Respond(res); err != nil {
		c.h.log.Debug("respond failed", "err", err, "status", res.StatusCode)
	}
	if res.StatusCode >= 200 && !c.finalSent {
		c.finalSent = true
		c.h.m.requests.WithLabelValues(methodLabel(string(c.req.Method)), c.srcID, c.dstID, statusLabel(res.StatusCode)).Inc()
		c.h.m.latency.WithLabelValues(methodLabel(string(c.req.Method))).Observe(time.Since(c.start).Seconds())
		c.observeFinal()
	}
}

type outcome int

const (
	outFinal outcome = iota
	outTimeout
	outTransport
	outShutdown
)

// forward runs the client side: one client transaction per hop, in
// failover order, until a final response other than 503 arrives (RFC 3261
// 16.6-16.7, with failover on transport error, timeout and 503 as RFC 3263
// 4.3 suggests for the next server).
func (c *call) forward(hops []hop, popN, mf int, lh string, rr *dialogRoute) {
	h := c.h
	var cancelled chan struct{}
	if c.req.IsInvite() {
		cancelled = make(chan struct{})
		var once sync.Once
		if !c.tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
			// Cancelled (sipgo already sent 487) or gone before we started.
			c.auditCancelled()
			return
		}
	}
	timedOut := false
	for i, hp := range hops {
		if isClosed(cancelled) {
			c.auditCancelled()
			return
		}
		// A lean UDP forward is spliced from the received bytes when it
		// can be (splice.go); fwd stays nil then.
		var fwd *sip.Request
		if sp := c.spliceFor(hp, popN, mf, lh, rr); sp != nil {
			c.lean.out = sp
		} else {
			fwd = c.buildForward(hp, popN, mf, lh, rr)
		}
		res, out, wasCancelled := c.attempt(hp, fwd, cancelled)
		c.edgeOutcome(hp, res, out, i+1 < len(hops))
		switch out {
		case outFinal:
			if wasCancelled {
				// Upstream already has its 487; only a 2xx that raced the
				// CANCEL still goes up (RFC 3261 16.7 step 5).
				if res.IsSuccess() {
					c.relayFinal(res, true)
				}
				c.auditCancelled()
				return
			}
			if res.StatusCode == 503 {
				continue // next edge
			}
			c.noteAlive(res) // deferral.go: a queue to drain
			if c.deferOn480(res) && c.deferMessage("480") {
				return
			}
			c.relayFinal(res, false)
			return
		case outTimeout:
			timedOut = true
			if wasCancelled {
				c.auditCancelled()
				return
			}
		case outTransport:
			if wasCancelled {
				c.auditCancelled()
				return
			}
		case outShutdown:
			c.originFailure("shutdown")
			c.generate(503, "Service Unavailable", "hub shutting down", sip.NewHeader("Retry-After", "5"))
			return
		}
		h.log.Debug("edge failed, trying next", "edge", hp.uri, "outcome", out)
	}
	if timedOut {
		c.noUsableEdge("timeout")
		c.originFailure("timeout")
		if c.deferMessage("timeout") { // deferral.go: store instead of 408
			return
		}
		c.generate(408, "Request Timeout", "no edge answered")
		return
	}
	c.noUsableEdge("all_failed")
	c.originFailure("all_failed")
	if c.deferMessage("all_failed") { // deferral.go: store instead of 503
		return
	}
	c.generate(503, "Service Unavailable", "no edge available", sip.NewHeader("Retry-After", "30"))
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *call) auditCancelled() {
	res := sip.NewResponseFromRequest(c.req, 487, "Request Terminated", nil)
	if _, err := c.h.audit.Append(c.h.ctx, c.responseEntry(res, false, "cancelled by caller")); err != nil {
		c.h.m.auditErrs.Inc()
	}
	if !c.finalSent {
		c.finalSent = true
		c.h.m.requests.WithLabelValues(methodLabel(string(c.req.Method)), c.srcID, c.dstID, "487").Inc()
	}
}

func newBranch(lh string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return branchPrefix + hex.EncodeToString(b[:]) + "." + lh
}

// buildForward makes the request to send to hp from a clone of the received
// one (RFC 3261 16.6); the received request stays untouched because sipgo
// builds our upstream responses from it. A change here must be made in
// spliceFor too, or declined there (splice.go).
func (c *call) buildForward(hp hop, popN, mf int, lh string, rr *dialogRoute) *sip.Request {
	fwd := c.req.Clone()
	// anchor.go: the anchored SDP, if any.
	c.applyAnchor(fwd)
	for i := 0; i < popN; i++ { // RFC 3261 16.4
		fwd.RemoveHeader("Route")
	}
	// RFC 3261 16.6 step 3. sipgo's header clone shares the Max-Forwards
	// value with the original, so replace it rather than decrement it.
	m := sip.MaxForwardsHeader(uint32(mf - 1))
	if fwd.MaxForwards() != nil {
		fwd.ReplaceHeader(&m)
	} else {
		fwd.AppendHeader(&m)
	}
	// RFC 3261 18.2.1 / RFC 3581: note where the request really came from
	// so responses relayed without transaction state find their way.
	if top := fwd.Via(); top != nil {
		if host, port, err := net.SplitHostPort(c.req.Source()); err == nil {
			if top.Host != host {
				top.Params.Add("received", host)
			}
			if v, ok := top.Params.Get("rport"); ok && v == "" {
				top.Params.Add("rport", port)
			}
		}
	}
	if rr != nil {
		// RFC 5658: with different transports on the two sides the hub
		// records two routes, the one facing the callee on top.
		out := c.h.recordRoute(hp.transport, rr)
		if !strings.EqualFold(hp.transport, c.transport) {
			fwd.PrependHeader(c.h.recordRoute(c.transport, rr))
		}
		fwd.PrependHeader(out)
	}
	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       hp.transport,
		Host:            c.h.cfg.Hostname,
		Port:            c.h.port(hp.transport),
		Params:          sip.NewParams(),
	}
	if via.Port == 0 {
		via.Port = c.h.anyPort()
	}
	via.Params.Add("branch", newBranch(lh))
	fwd.PrependHeader(via)
	fwd.SetTransport(hp.transport)
	fwd.SetDestination(hp.addr)
	fwd.Laddr = sip.Addr{}
	if hp.transport == "UDP" {
		// Symmetric signalling (RFC 3581 section 4, RFC 3261 18.1.1):
		// sipgo reuses a UDP socket only by the peer's address and would
		// otherwise open a new one on 0.0.0.0:random; with Laddr set it
		// sends from the listening socket, the address in our Via.
		fwd.Laddr = c.h.udpLaddr
	}
	return fwd
}

// anyPort is the port advertised in Via for a transport the hub does not
// listen on (it dials out on TLS while listening only on UDP, say):
// responses come back on the connection anyway.
func (h *Hub) anyPort() int {
	for _, n := range []string{"udp", "tcp", "tls"} {
		if p := h.ports[n]; p != 0 {
			return p
		}
	}
	return 5060
}

// attempt sends fwd to one hop and waits for its final response.
func (c *call) attempt(hp hop, fwd *sip.Request, cancelled chan struct{}) (*sip.Response, outcome, bool) {
	h := c.h
	if c.lean != nil {
		res, out := c.attemptLean(hp, fwd)
		return res, out, false
	}
	if hp.transport == "UDP" && h.udp == nil {
		// No UDP listener to send from and receive responses on (the
		// lean path fails such an edge the same way).
		return nil, outTransport, isClosed(cancelled)
	}
	invite := fwd.IsInvite()
	dctx, cancelDial := contextWithTimeout(h, h.cfg.TransactionTimeout)
	ctx, err := h.txl.NewClientTransaction(dctx, fwd)
	cancelDial()
	if err != nil {
		h.log.Debug("client transaction", "edge", hp.uri, "err", err)
		return nil, outTransport, isClosed(cancelled)
	}
	if hp.transport == "TLS" {
		// The dialled connection must be the destination network's own
		// (clientTLS only proved it is some member's).
		if !c.peerIs(ctx.Connection(), c.dstID) {
			h.log.Warn("TLS peer is not the destination network", "edge", hp.uri, "want", c.dstID)
			ctx.Terminate()
			return nil, outTransport, isClosed(cancelled)
		}
	}
	if invite {
		// 2xx retransmissions (RFC 6026 Accepted state) go up statelessly.
		ctx.OnRetransmission(func(r *sip.Response) {
			if r.IsSuccess() {
				c.relayStateless(r)
			}
		})
	}
	if err := ctx.Init(); err != nil {
		ctx.Terminate()
		h.log.Debug("send to edge", "edge", hp.uri, "err", err)
		return nil, outTransport, isClosed(cancelled)
	}
	timer := time.NewTimer(h.cfg.TransactionTimeout)
	defer timer.Stop()
	gotResp, wasCancelled, cancelSent := false, false, false
	sendCancel := func() {
		if !cancelSent {
			cancelSent = true
			c.cancelDownstream(fwd)
		}
	}
	cancelCh := cancelled
	for {
		select {
		case res := <-ctx.Responses():
			if !gotResp {
				gotResp = true
				// Someone answers: wait as long as the method allows
				// (RFC 3261 Timer C for INVITE; Timer F runs inside the
				// client transaction for the others).
				if invite {
					timer.Reset(h.cfg.InviteTimeout)
				} else {
					timer.Reset(64*sip.T1 + time.Second)
				}
			}
			if wasCancelled {
				sendCancel() // RFC 3261 9.1: CANCEL once something came back
			}
			if res.IsProvisional() {
				if res.StatusCode > 100 && !wasCancelled {
					c.relayProvisional(res) // RFC 3261 16.7 step 5
				}
				continue
			}
			return res, outFinal, wasCancelled
		case <-ctx.Done():
			if errors.Is(ctx.Err(), sip.ErrTransactionTimeout) {
				return nil, outTimeout, wasCancelled
			}
			return nil, outTransport, wasCancelled
		case <-timer.C:
			if invite && gotResp {
				sendCancel() // RFC 3261 16.8: Timer C fired
			}
			ctx.Terminate()
			return nil, outTimeout, wasCancelled
		case <-cancelCh:
			cancelCh = nil
			wasCancelled = true
			if gotResp {
				sendCancel()
			}
		case <-h.ctx.Done():
			ctx.Terminate()
			return nil, outShutdown, wasCancelled
		}
	}
}

// peerIs reports whether conn is a TLS connection to network netID.
func (c *call) peerIs(conn sip.Connection, netID string) bool {
	tc, ok := conn.(*sip.TCPConnection)
	if !ok {
		return false
	}
	var v *raft.NetworkView
	switch x := tc.Conn.(type) {
	case *tls.Conn:
		v, _ = c.h.outIdentity(c.st, x)
	case *memberConn:
		v, _ = c.h.attributeTLS(c.st, x)
	}
	return v != nil && v.GetId() == netID
}

// cancelDownstream sends a CANCEL for the forwarded INVITE (RFC 3261 16.10,
// built per 9.1: same Request-URI, Call-ID, To, From, CSeq number and the
// hub's own Via) and consumes its response in the background.
func (c *call) cancelDownstream(fwd *sip.Request) {
	cr := sip.NewRequest(sip.CANCEL, *fwd.Recipient.Clone())
	cr.SipVersion = fwd.SipVersion
	cr.AppendHeader(fwd.Via().Clone())
	for _, r := range fwd.GetHeaders("Route") {
		cr.AppendHeader(sip.HeaderClone(r))
	}
	m := sip.MaxForwardsHeader(70)
	cr.AppendHeader(&m)
	for _, name := range []string{"From", "To", "Call-ID"} {
		if hd := fwd.GetHeader(name); hd != nil {
			cr.AppendHeader(sip.HeaderClone(hd))
		}
	}
	if cs := fwd.CSeq(); cs != nil {
		cr.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.CANCEL})
	}
	cl := sip.ContentLengthHeader(0)
	cr.AppendHeader(&cl)
	cr.SetTransport(fwd.Transport())
	cr.SetDestination(fwd.Destination())
	cr.Laddr = fwd.Laddr // from the socket the INVITE left from
	c.h.spawn(func() {
		ctx, cancel := contextWithTimeout(c.h, c.h.cfg.TransactionTimeout)
		defer cancel()
		tx, err := c.h.txl.Request(ctx, cr)
		if err != nil {
			c.h.log.Debug("send CANCEL downstream", "err", err)
			return
		}
		defer tx.Terminate()
		t := time.NewTimer(64*sip.T1 + time.Second)
		defer t.Stop()
		for {
			select {
			case res := <-tx.Responses():
				if res.StatusCode >= 200 {
					return
				}
			case <-tx.Done():
				return
			case <-t.C:
				return
			case <-c.h.ctx.Done():
				return
			}
		}
	})
}

// upstream turns a downstream response into the one to send upstream: the
// hub's Via removed (RFC 3261 16.7 step 3), addressed like sipgo addresses
// responses to the received request.
func (c *call) upstream(res *sip.Response) *sip.Response {
	if c.lean != nil {
		// The lean path parsed res itself and nobody else holds it.
		res.RemoveHeader("Via")
		return res
	}
	up := res.Clone()
	up.RemoveHeader("Via")
	up.SetTransport(c.req.Transport())
	up.SetDestination(c.respDest)
	return up
}

func (c *call) relayProvisional(res *sip.Response) {
	if c.orig != nil {
		return // originated: nobody upstream to tell
	}
	up := c.upstream(res)
	c.anchorResponse(up) // anchor.go: an early answer carries the hub's MSRP path too
	if c.lean != nil {
		c.lean.respond(c.h, up)
		return
	}
	if err := c.tx.Respond(up); err != nil {
		c.h.log.Debug("relay provisional", "err", err)
	}
}

// relayFinal audits and relays a final response. A response that cannot be
// audited is replaced by 500. A 2xx after the server transaction completed
// (raced a CANCEL) is sent statelessly.
func (c *call) relayFinal(res *sip.Response, stateless bool) {
	c.noteDialog(res)
	c.auditAsync(c.responseEntry(res, true, ""))
	c.tapResponse(res) // tap.go
	up := c.upstream(res)
	c.anchorResponse(up) // anchor.go: the answer gets the hub's MSRP path
	if c.orig != nil {
		c.orig.capture(up)
	} else if c.lean != nil {
		c.lean.respond(c.h, up)
	} else if stateless {
		if err := c.h.tpl.WriteMsg(up); err != nil {
			c.h.log.Debug("relay late 2xx", "err", err)
		}
		return
	} else if err := c.tx.Respond(up); err != nil && res.IsSuccess() && c.req.IsInvite() {
		_ = c.h.tpl.WriteMsg(up)
	}
	if !c.finalSent {
		c.finalSent = true
		c.h.m.requests.WithLabelValues(methodLabel(string(c.req.Method)), c.srcID, c.dstID, statusLabel(res.StatusCode)).Inc()
		c.h.m.latency.WithLabelValues(methodLabel(string(c.req.Method))).Observe(time.Since(c.start).Seconds())
		c.observeFinal()
	}
}

// relayStateless forwards a retransmitted 2xx of an INVITE upstream.
func (c *call) relayStateless(res *sip.Response) {
	up := c.upstream(res)
	c.anchorResponse(up) // anchor.go: the same rewrite as the first 2xx
	if err := c.h.tpl.WriteMsg(up); err != nil {
		c.h.log.Debug("relay 2xx retransmission", "err", err)
	}
}

// strayResponse handles responses matching no client transaction (RFC 3261
// 16.7 and 17.1.1.2): a 2xx to an INVITE arriving after the transaction is
// gone is forwarded statelessly by its Via; anything else is dropped.
func (h *Hub) strayResponse(res *sip.Response) {
	defer h.recoverPanic("stray response")
	if h.leanResponse(res) {
		return // a response to a lean forward that came over a dialled connection
	}
	via := res.Via()
	if via == nil || !strings.EqualFold(via.Host, h.cfg.Hostname) {
		return
	}
	if b, _ := via.Params.Get("branch"); !strings.HasPrefix(b, branchPrefix) {
		return
	}
	cs := res.CSeq()
	if !res.IsSuccess() || cs == nil || cs.MethodName != sip.INVITE {
		return
	}
	up := res.Clone()
	up.RemoveHeader("Via")
	next := up.Via()
	if next == nil {
		return
	}
	h.anchorStray(up) // anchor.go: the same rewrite as the first 2xx
	up.SetDestination("")
	up.SetTransport(next.Transport)
	if err := h.tpl.WriteMsg(up); err != nil {
		h.log.Debug("forward stray 2xx", "err", err)
	}
}

// ack forwards an ACK statelessly (RFC 3261 16.11 / 13.2.2.4: the ACK for
// a 2xx is its own transaction). The ACK for a non-2xx final response never
// gets here: it matches the INVITE server transaction, which absorbs it.
func (c *call) ack() {
	h, req := c.h, c.req
	src, why := h.attribute(c.st, req, c.conn())
	if src == nil {
		c.dropFor(rsnUnattributable, 403, "unattributable ACK dropped: "+why)
		return
	}
	c.src, c.srcID = src, src.GetId()
	popN, rp, bad := h.ownRoutes(req)
	if rp == nil || bad != "" || !inDialog(req) {
		c.dropFor(rsnDialogRoute, 403, "ACK without a valid hub route dropped")
		return
	}
	dr, no := h.openRoute(rp, req, c.srcID)
	if no == nil {
		no = policeDialog(c.st, req, dr)
	}
	if no != nil {
		c.dstID = otherParty(rp, c.srcID)
		c.dropFor(rsnDialogRoute, no.code, "ACK dropped: "+no.audit())
		return
	}
	c.dstID = dr.peer
	c.dst = c.st.Network(c.dstID) // policeDialog saw both networks exist and active
	mf := 70
	if m := req.MaxForwards(); m != nil {
		mf = int(m.Val())
	}
	if mf <= 0 {
		c.dropFor(rsnMaxForwards, 483, "ACK with Max-Forwards 0 dropped")
		return
	}
	target := &req.Recipient
	if routes := req.GetHeaders("Route"); len(routes) > popN {
		if r, ok := routes[popN].(*sip.RouteHeader); ok {
			target = &r.Address
		}
	}
	var hp hop
	if belongsTo(c.dst, target) {
		hp = hopOf(target)
	} else if edges := edgeHops(c.dst); len(edges) > 0 {
		hp = edges[0]
	} else {
		c.dropFor(rsnNoEdge, 503, "ACK dropped: destination has no edge")
		return
	}
	if _, err := h.audit.Append(h.ctx, c.requestEntry(0, "")); err != nil {
		h.m.auditErrs.Inc()
		h.log.Error("audit append failed; ACK dropped", "err", err)
		return
	}
	c.tapRequest() // tap.go
	if hp.transport == "UDP" && h.udp == nil {
		c.dropFor(rsnNoEdge, 503, "ACK dropped: no UDP listener to send it from")
		return
	}
	c.anchorAck() // anchor.go: the answer to an offer made in a 2xx
	fwd := c.buildForward(hp, popN, mf, loopHash(req), nil)
	if err := h.tpl.WriteMsg(fwd); err != nil {
		h.log.Debug("forward ACK", "err", err, "to", hp.uri)
	}
	h.m.requests.WithLabelValues("ACK", c.srcID, c.dstID, "0").Inc()
}

// otherParty names, for the audit entry of a refused in-dialog request, the
// network the hub Route would have sent it to ("" when the sender is
// neither of the networks it names).
func otherParty(rp *routeParams, sender string) string {
	switch sender {
	case rp.src:
		return rp.dst
	case rp.dst:
		return rp.src
	}
	return ""
}

func (c *call) auditOnly(status int, reason string) {
	if _, err := c.h.audit.Append(c.h.ctx, c.requestEntry(status, reason)); err != nil {
		c.h.m.auditErrs.Inc()
	}
	c.h.m.requests.WithLabelValues(methodLabel(string(c.req.Method)), c.srcID, c.dstID, statusLabel(status)).Inc()
}
