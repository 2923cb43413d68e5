package hub

import (
	"bytes"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The lean transaction path (RFC 3261 17.1.2 and 17.2.2, non-INVITE).
//
// sipgo keeps every server and client transaction, with its full messages,
// until Timer J/K expire (64*T1 = 32 s with production timers): at 10,000
// MESSAGE/s that is hundreds of thousands of parsed messages and goroutine
// timers. Non-INVITE transactions need far less: the hub handles every
// request other than INVITE, ACK and CANCEL itself, before sipgo sees it
// (the UDP read filter, the stream framer of memberConn), and keeps
//
//   - per upstream transaction (branch + sent-by + method, RFC 3261 17.2.3)
//     a small entry holding where responses go and the bytes of the last
//     response sent, so a retransmitted request is answered from it (or
//     dropped while nothing was sent, RFC 3261 17.2.2 Trying state);
//   - per forwarded request (the hub's own Via branch) a channel the
//     forwarding goroutine waits on; that goroutine retransmits over UDP
//     per Timer E and gives up per Timer F / TransactionTimeout.
//
// Completed entries are dropped after Timer J (64*T1 over UDP, at once over
// TCP/TLS) by one expiry goroutine reading a FIFO: every entry has the same
// lifetime, so insertion order is expiry order and no heap is needed.
// INVITE, ACK and CANCEL stay on sipgo's full transaction path (Timer C,
// CANCEL matching, 2xx retransmissions).

// isLeanMethod reports whether a request takes the lean path.
func isLeanMethod(m sip.RequestMethod) bool {
	return m != sip.INVITE && m != sip.ACK && m != sip.CANCEL
}

// txKey identifies an upstream server transaction (RFC 3261 17.2.3): a
// 128-bit keyed hash of branch, sent-by and method, so an entry stays small.
type txKey [2]uint64

// srvEntry is what the hub remembers about one upstream transaction.
type srvEntry struct {
	last  []byte // bytes of the last response sent upstream (nil: none yet)
	final bool
	up    upPath
}

// upPath is where responses to an upstream request go: a UDP address
// (RFC 3261 18.2.2 with RFC 3581 rport) or the stream connection the request
// came over (RFC 3261 18.2.2: reliable transports answer on the connection).
type upPath struct {
	udp  netip.AddrPort
	conn *memberConn
}

type expiry struct {
	at   time.Time
	key  txKey
	cost int64 // what the entry counts against the cache bound
}

// entryOverhead is what a completed entry costs besides its response bytes:
// the map slot, the srvEntry, its expiry record (measured roughly: a
// 1,000,000-entry table is ~160 MB more than its response bytes).
const entryOverhead = 160

// leanTable holds the lean transactions of a hub.
type leanTable struct {
	seed1, seed2 maphash.Seed

	mu  sync.Mutex
	srv map[txKey]*srvEntry
	cli map[string]chan *sip.Response // hub Via branch -> waiting forwarder
	exp []expiry                      // FIFO of completed UDP entries
	exh int                           // head index into exp
	// held is the cost of the entries in exp from exh on; past budget the
	// oldest are dropped before their Timer J (evicted counts them).
	held, budget int64
	evicted      uint64

	poolOnce sync.Once
	pool     *workerPool // goroutines for lean transactions (workers.go)
}

// maxIdleWorkers bounds the parked workers (16-32 KiB of stack each):
// several times the transactions in flight at 10,000 MESSAGE/s with
// millisecond round trips.
const maxIdleWorkers = 1024

// workers is the hub's worker pool, made on first use (its workers stop
// when the hub closes).
func (h *Hub) workers() *workerPool {
	h.lean.poolOnce.Do(func() { h.lean.pool = newWorkerPool(h.ctx.Done(), maxIdleWorkers) })
	return h.lean.pool
}

func newLeanTable(budget int64) *leanTable {
	return &leanTable{
		budget: budget,
		seed1:  maphash.MakeSeed(),
		seed2:  maphash.MakeSeed(),
		srv:    make(map[txKey]*srvEntry, 1024),
		cli:    make(map[string]chan *sip.Response, 256),
	}
}

// serverKey computes the RFC 3261 17.2.3 key of req; ok is false without a
// top Via or CSeq. For a pre-RFC 3261 branch (no magic cookie) the key
// falls back to the 17.2.3 list of fields that identify the request.
func (t *leanTable) serverKey(req *sip.Request) (txKey, bool) {
	via, cs := req.Via(), req.CSeq()
	if via == nil || cs == nil {
		return txKey{}, false
	}
	branch, _ := via.Params.Get("branch")
	var b [256]byte
	s := b[:0]
	s = append(s, branch...)
	s = append(s, 0)
	s = append(s, via.Host...)
	s = append(s, ':')
	s = strconv.AppendInt(s, int64(via.Port), 10)
	s = append(s, 0)
	s = append(s, req.Method...)
	if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) {
		s = append(s, 0)
		s = append(s, req.Recipient.String()...)
		if f := req.From(); f != nil {
			s = append(s, f.Params.GetOr("tag", "")...)
		}
		if c := req.CallID(); c != nil {
			s = append(s, c.Value()...)
		}
		s = strconv.AppendUint(s, uint64(cs.SeqNo), 10)
	}
	return txKey{maphash.Bytes(t.seed1, s), maphash.Bytes(t.seed2, s)}, true
}

// begin registers an upstream transaction. When it already exists (a
// retransmission) it returns the bytes to re-send, possibly nil, and false.
func (t *leanTable) begin(k txKey, up upPath) (resend []byte, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.srv[k]; ok {
		return e.last, false
	}
	t.srv[k] = &srvEntry{up: up}
	return nil, true
}

// record stores the last response sent upstream; a final one schedules the
// entry's removal after linger (Timer J) or removes it at once.
func (t *leanTable) record(k txKey, b []byte, final bool, linger time.Duration, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.srv[k]
	if !ok || e.final {
		return
	}
	if final && linger <= 0 {
		delete(t.srv, k)
		return
	}
	e.last, e.final = b, final
	if final {
		cost := int64(len(b)) + entryOverhead
		t.exp = append(t.exp, expiry{at: now.Add(linger), key: k, cost: cost})
		t.held += cost
		// Bounded memory: the oldest completed entries go first (they
		// are the least likely to see a retransmission still).
		for t.held > t.budget && t.exh < len(t.exp) {
			t.drop()
			t.evicted++
		}
	}
}

// drop removes the FIFO's head entry (t.mu held).
func (t *leanTable) drop() {
	x := t.exp[t.exh]
	delete(t.srv, x.key)
	t.held -= x.cost
	t.exp[t.exh] = expiry{}
	t.exh++
}

// abandon removes an upstream transaction that ends without a final
// response (hub shutting down, panic).
func (t *leanTable) abandon(k txKey) {
	t.mu.Lock()
	if e, ok := t.srv[k]; ok && !e.final {
		delete(t.srv, k)
	}
	t.mu.Unlock()
}

// expire drops the entries whose Timer J has fired and returns when the
// next one is due (zero when none is queued).
func (t *leanTable) expire(now time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.exh < len(t.exp) && !t.exp[t.exh].at.After(now) {
		t.drop()
	}
	// Compact the FIFO once its consumed head dominates.
	if t.exh > 4096 && t.exh*2 > len(t.exp) {
		n := copy(t.exp, t.exp[t.exh:])
		clear(t.exp[n:])
		t.exp = t.exp[:n]
		t.exh = 0
	}
	if t.exh < len(t.exp) {
		return t.exp[t.exh].at
	}
	return time.Time{}
}

func (t *leanTable) evictedCount() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.evicted
}

func (t *leanTable) heldBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held
}

func (t *leanTable) size() (srv, cli int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.srv), len(t.cli)
}

func (t *leanTable) addClient(branch string) chan *sip.Response {
	ch := make(chan *sip.Response, 4)
	t.mu.Lock()
	t.cli[branch] = ch
	t.mu.Unlock()
	return ch
}

func (t *leanTable) removeClient(branch string) {
	t.mu.Lock()
	delete(t.cli, branch)
	t.mu.Unlock()
}

// waiting reports whether a forwarder waits on branch.
func (t *leanTable) waiting(branch string) bool {
	t.mu.Lock()
	_, ok := t.cli[branch]
	t.mu.Unlock()
	return ok
}

// deliver hands a response to the forwarder waiting on branch. A response
// for a finished transaction (a late retransmission, RFC 3261 17.1.2.2
// Timer K) or beyond the channel's room is dropped: the downstream server
// retransmits its final response when the request is retransmitted.
func (t *leanTable) deliver(branch string, res *sip.Response) {
	t.mu.Lock()
	ch := t.cli[branch]
	t.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- res:
	default:
	}
}

// runExpiry is the single timer goroutine of the lean path.
func (h *Hub) runExpiry() {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	lastTrim := time.Now()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(lastTrim) >= time.Second {
				h.workers().trim()
				h.ovl.oc.roll(now) // oc.go
				lastTrim = now
			}
			next := h.lean.expire(now)
			d := time.Second
			if !next.IsZero() {
				d = max(min(next.Sub(now), time.Second), 50*time.Millisecond)
			}
			t.Reset(d)
		}
	}
}

// leanServer is the server side of one lean transaction.
type leanServer struct {
	key  txKey
	up   upPath
	size int    // bytes of the request as received (RFC 3261 18.1.1 estimate)
	raw  []byte // the request as received over UDP, for splicing (splice.go)
	out  *spliced
	// arrived is when the kernel received the request (SO_TIMESTAMPNS,
	// udpread.go) or the read loop took it: overload.go's queueing delay
	// counts from it, socket buffer included.
	arrived time.Time
}

// leanRequest takes a parsed non-INVITE request off the transport (wire:
// its bytes, valid only during the call): a retransmission is answered
// from the table, a new transaction is handled on a worker of its own. It
// must not block (it runs on a read loop).
// arrived is when the kernel took the request in (zero: now), for the
// queueing delay overload control measures.
func (h *Hub) leanRequest(req *sip.Request, up upPath, wire []byte, arrived time.Time) {
	// The key from the raw top Via where it has an RFC 3261 branch, the
	// one early shedding (earlyshed.go) looks up too.
	k, ok := h.lean.wireKey(topVia(wire), string(req.Method))
	if !ok {
		k, ok = h.lean.serverKey(req)
	}
	if !ok {
		// RFC 3261 16.3 step 1: no Via or CSeq, nothing to match on.
		h.m.malformed.Inc()
		return
	}
	resend, fresh := h.lean.begin(k, up)
	if !fresh {
		h.m.retransmissions.Inc()
		if resend != nil {
			h.writeUp(up, resend)
		}
		return
	}
	st := h.state.State()
	// Overload control and rate limits (overload.go): a refused request is
	// answered here, statelessly, before it costs a goroutine.
	load, admitted := h.admitLean(st, req, up)
	if !admitted {
		h.lean.abandon(k)
		return
	}
	if !h.enter() {
		h.lean.abandon(k)
		return
	}
	h.ovl.start(load)
	if now := time.Now(); arrived.IsZero() || arrived.After(now) || now.Sub(arrived) > 10*time.Second {
		arrived = now // unknown, or a wall clock step: count from here
	}
	ls := &leanServer{key: k, up: up, size: len(wire), arrived: arrived}
	if up.conn == nil {
		// The read loop reuses its buffer; the splice needs the bytes.
		ls.raw = bytes.Clone(wire)
	}
	h.workers().run(func() {
		defer h.leave()
		c := &call{h: h, req: req, lean: ls, st: st, start: time.Now(), transport: strings.ToLower(req.Transport()), queued: true}
		defer h.ovl.end(c, load)
		defer func() {
			if r := recover(); r != nil {
				h.log.Error("panic handling SIP request", "panic", r, "method", req.Method, "src", req.Source(), "stack", string(debug.Stack()))
				if !c.finalSent {
					c.respond(500, "Server Internal Error")
				}
			}
			if !c.finalSent {
				h.lean.abandon(k)
			}
		}()
		c.run()
	})
}

// leanResponse takes a response whose top Via is a lean forward of the hub;
// false means it is not one (sipgo handles it).
func (h *Hub) leanResponse(res *sip.Response) bool {
	via := res.Via()
	if via == nil {
		return false
	}
	branch, _ := via.Params.Get("branch")
	if !strings.HasPrefix(branch, branchPrefix) {
		return false
	}
	cs := res.CSeq()
	if cs == nil || !isLeanMethod(cs.MethodName) {
		return false
	}
	h.lean.deliver(branch, res)
	return true
}

// writeUp sends response bytes upstream.
func (h *Hub) writeUp(up upPath, b []byte) {
	var err error
	if up.conn != nil {
		_, err = up.conn.Write(b)
	} else if h.udp != nil {
		_, err = h.udp.WriteToUDPAddrPort(b, up.udp)
	}
	if err != nil {
		h.log.Debug("send response upstream", "err", err)
	}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuf returns buf to bufPool unless a rare huge message grew it.
func putBuf(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		bufPool.Put(buf)
	}
}

func marshalResponse(res *sip.Response) []byte {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	res.StringWrite(buf)
	out := bytes.Clone(buf.Bytes())
	bufPool.Put(buf)
	return out
}

// respond sends res upstream on the lean path and records it for
// retransmissions (RFC 3261 17.2.2: Timer J = 64*T1 over UDP, 0 otherwise).
func (s *leanServer) respond(h *Hub, res *sip.Response) {
	h.ovl.oc.markVia(res, time.Now()) // RFC 7339 (oc.go)
	b := marshalResponse(res)
	final := res.StatusCode >= 200
	linger := time.Duration(0)
	if s.up.conn == nil {
		linger = 64 * sip.T1
	}
	if res.StatusCode > 100 {
		h.lean.record(s.key, b, final, linger, time.Now())
	}
	h.writeUp(s.up, b)
}

// udpDest is where responses to a UDP request go (RFC 3261 18.2.2, RFC
// 3581 section 4): the source address, with the source port when the
// client asked for rport and the Via port (default 5060) otherwise.
func udpDest(req *sip.Request, src netip.AddrPort) netip.AddrPort {
	via := req.Via()
	if via == nil {
		return src
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		return src
	}
	port := via.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(src.Addr(), uint16(port))
}

// resolveHop turns a hop address into a UDP destination; names go through
// the resolver (rare: edges are normally IP literals, parsed here without
// a context or a lookup).
func (h *Hub) resolveHop(addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ctx, cancel := contextWithTimeout(h, h.cfg.TransactionTimeout)
	defer cancel()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, errors.Join(errors.New("resolve "+host), err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// attemptLean sends fwd to one hop as a lean client transaction (RFC 3261
// 17.1.2) and waits for its final response.
// fwd nil: the forward was spliced (c.lean.out, UDP only).
func (c *call) attemptLean(hp hop, fwd *sip.Request) (*sip.Response, outcome) {
	h := c.h
	var branch string
	if fwd == nil {
		branch = c.lean.out.branch
	} else {
		branch, _ = fwd.Via().Params.Get("branch")
	}
	ch := h.lean.addClient(branch)
	defer h.lean.removeClient(branch)

	var raw []byte
	var dst netip.AddrPort
	if hp.transport == "UDP" {
		if h.udp == nil {
			return nil, outTransport
		}
		ap, err := h.resolveHop(hp.addr)
		if err != nil {
			h.log.Debug("resolve edge", "edge", hp.uri, "err", err)
			return nil, outTransport
		}
		dst = ap
		// RFC 3261 18.1.1 would move a request this large to TCP; forward
		// already put the destination's stream edges first, so here the
		// datagram goes as it is (up to 65,535 bytes; loopback and most
		// LANs carry it fragmented).
		if fwd == nil {
			raw = c.lean.out.raw
		} else {
			// Marshalled into a pooled buffer held for the attempt
			// (Timer E retransmits it).
			buf := bufPool.Get().(*bytes.Buffer)
			buf.Reset()
			fwd.StringWrite(buf)
			defer putBuf(buf)
			raw = buf.Bytes()
		}
		if _, err := h.udp.WriteToUDPAddrPort(raw, dst); err != nil {
			h.log.Debug("send to edge", "edge", hp.uri, "err", err)
			return nil, outTransport
		}
	} else {
		ctx, cancel := contextWithTimeout(h, h.cfg.TransactionTimeout)
		conn, err := h.tpl.ClientRequestConnection(ctx, fwd)
		cancel()
		if err != nil {
			h.log.Debug("connect to edge", "edge", hp.uri, "err", err)
			return nil, outTransport
		}
		// ClientRequestConnection took a reference on the pooled
		// connection; release exactly that one (the pool keeps the
		// connection open for reuse).
		ok := hp.transport != "TLS" || c.peerIs(conn, c.dstID)
		if !ok {
			h.log.Warn("TLS peer is not the destination network", "edge", hp.uri, "want", c.dstID)
		} else if err = conn.WriteMsg(fwd); err != nil {
			h.log.Debug("send to edge", "edge", hp.uri, "err", err)
		}
		conn.TryClose()
		if !ok || err != nil {
			return nil, outTransport
		}
	}

	// Timer E (UDP only): T1, doubling up to T2; at T2 once a provisional
	// response arrived (RFC 3261 17.1.2.2). The wait is TransactionTimeout
	// for a first response (then the next edge is tried), Timer F after it.
	//
	// One timer serves both: it fires at the earlier of the next
	// retransmission and the deadline (a timer per transaction is a
	// runtime timer-heap insertion and removal; two were ~2% of a
	// forwarded MESSAGE's CPU).
	start := time.Now()
	interval := sip.T1
	deadline := start.Add(h.cfg.TransactionTimeout)
	var next time.Time // next retransmission; zero over streams
	if raw != nil {
		next = start.Add(interval)
	}
	due := func() time.Duration {
		if !next.IsZero() && next.Before(deadline) {
			return time.Until(next)
		}
		return time.Until(deadline)
	}
	t := time.NewTimer(due())
	defer t.Stop()
	gotResp := false
	for {
		select {
		case res := <-ch:
			if !gotResp {
				gotResp = true
				if rest := 64*sip.T1 - time.Since(start); rest > 0 {
					deadline = time.Now().Add(rest)
				}
			}
			if res.IsProvisional() {
				if interval != sip.T2 && !next.IsZero() {
					// Timer E runs at T2 from now on (RFC 3261 17.1.2.2).
					interval = sip.T2
					next = time.Now().Add(interval)
				}
				if res.StatusCode > 100 {
					c.relayProvisional(res) // RFC 3261 16.7 step 5
				}
				t.Reset(due())
				continue
			}
			return res, outFinal
		case now := <-t.C:
			if !now.Before(deadline) {
				return nil, outTimeout
			}
			if !next.IsZero() && !now.Before(next) {
				if _, err := h.udp.WriteToUDPAddrPort(raw, dst); err != nil {
					h.log.Debug("retransmit to edge", "edge", hp.uri, "err", err)
				}
				interval = min(2*interval, sip.T2)
				next = now.Add(interval)
			}
			t.Reset(due())
		case <-h.ctx.Done():
			return nil, outShutdown
		}
	}
}
