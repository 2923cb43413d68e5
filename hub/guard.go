package hub

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"clearhub/ledger"
)

// The guard bounds what traffic the hub refuses before the request
// pipeline may cost (DESIGN.md "a non-member must never cost more than a
// member"): requests from sources no member network is known for, from
// suspended networks, and junk (unparsable, oversized, without Via or
// CSeq). Such traffic is decided on the transport's read loop, from the
// current state (an immutable pointer, no lock) and the raw bytes, before
// sipgo parses it and without a goroutine:
//
//   - a few refusals per source are audited one by one (request and
//     response entries, on the bounded helper goroutines of badSem): the
//     operator sees what was sent;
//   - beyond that, up to RefusalsPerSource per second per source are
//     answered with a response built from the raw header lines (no parse,
//     no entry), the rest dropped unanswered;
//   - everything not audited one by one is counted, and every
//     AggregateInterval one aggregate entry per source and cause carries the
//     count (Kind request, Reason "aggregate: N …"): a flood costs a
//     handful of ledger entries, not one per packet.
//
// The per-source budgets live in a bounded map (idle ones are evicted at
// each flush; when it is full, new sources share one budget), and answers
// are capped overall too, since a UDP source address can be forged.
// Connections over the caps (conns below) are counted the same way, and so
// are members' keep-alive OPTIONS when Config.AuditKeepalives is "count"
// (one bucket per network and transport, keepalive.go).

const (
	guardMaxSources = 4096 // per-source budgets kept
	guardMaxAgg     = 1024 // aggregate buckets per interval (then "other sources")
)

// aggKey is one aggregate bucket: one source, transport and cause.
type aggKey struct {
	src       netip.Addr // invalid: other sources, the table was full
	transport string     // "udp", "tcp", "tls"
	what      string     // "requests", "responses", "connections"
	label     string     // short cause, also the metric label
	status    int        // the answer's status (0: none possible)
	srcNet    string     // the network the source belongs to, if any
}

type aggCount struct {
	count    uint64 // not audited one by one
	answered uint64
	method   string
	mixed    bool   // more than one method
	example  string // the first source ip:port
	cause    string // the first detailed reason
}

type srcBudget struct {
	answer, detail *rate.Limiter
	gen            uint64 // flush generation of the last use
}

type guard struct {
	interval  time.Duration
	perSource int

	mu        sync.Mutex
	budgets   map[netip.Addr]*srcBudget
	overflow  *srcBudget // shared by sources beyond guardMaxSources
	answerAll *rate.Limiter
	detailAll *rate.Limiter
	agg       map[aggKey]*aggCount
	since     time.Time
	gen       uint64
}

func newGuard(cfg Config) *guard {
	g := &guard{
		interval:  cfg.AggregateInterval,
		perSource: cfg.RefusalsPerSource,
		budgets:   make(map[netip.Addr]*srcBudget),
		// Overall caps: answers (reflection toward forged sources) and
		// refusals audited one by one (ledger load from many sources).
		answerAll: rate.NewLimiter(rate.Limit(100*cfg.RefusalsPerSource), 100*cfg.RefusalsPerSource),
		detailAll: rate.NewLimiter(50, 100),
		agg:       make(map[aggKey]*aggCount),
		since:     time.Now(),
	}
	g.overflow = g.newBudget(false)
	return g
}

func (g *guard) newBudget(member bool) *srcBudget {
	if member {
		// A member's junk is its own traffic (per-member rate limits are
		// overload control's, not the guard's): audited one by one up to
		// RefusalsPerSource per second, answered up to ten times that.
		return &srcBudget{
			answer: rate.NewLimiter(rate.Limit(10*g.perSource), 10*g.perSource),
			detail: rate.NewLimiter(rate.Limit(g.perSource), 2*g.perSource),
			gen:    g.gen,
		}
	}
	// A stranger: one refusal per aggregate interval is audited in full
	// (two at once for the first burst); answers follow RefusalsPerSource.
	return &srcBudget{
		answer: rate.NewLimiter(rate.Limit(g.perSource), g.perSource),
		detail: rate.NewLimiter(rate.Every(g.interval), 2),
		gen:    g.gen,
	}
}

func (g *guard) budget(ip netip.Addr, member bool) *srcBudget {
	b := g.budgets[ip]
	if b == nil {
		if len(g.budgets) >= guardMaxSources {
			return g.overflow
		}
		b = g.newBudget(member)
		g.budgets[ip] = b
	}
	b.gen = g.gen
	return b
}

type verdict int

const (
	vDrop   verdict = iota // counted, not answered
	vAnswer                // counted, answered without an entry
	vDetail                // audited one by one (and answered when possible)
)

// decide picks what to do with one refused message from src; everything
// but vDetail is counted in k's aggregate bucket here.
func (g *guard) decide(k aggKey, src netip.AddrPort, method, cause string, answerable bool) verdict {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	// A source with a network (suspended ones aside) is a member.
	b := g.budget(k.src, k.srcNet != "" && k.label != "suspended")
	if b.detail.AllowN(now, 1) && g.detailAll.AllowN(now, 1) {
		return vDetail
	}
	v := vDrop
	if answerable && b.answer.AllowN(now, 1) && g.answerAll.AllowN(now, 1) {
		v = vAnswer
	}
	g.countLocked(k, src, method, cause, v == vAnswer)
	return v
}

// passResponse lets a response from an unattributed source that carries
// one of the hub's branches through to sipgo's transaction matching, within
// the source's answer budget.
func (g *guard) passResponse(ip netip.Addr) bool {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.budget(ip, false).answer.AllowN(now, 1)
}

// count adds one message (or connection) to k's bucket without a budget
// (connections refused over a cap; a detailed refusal that found no helper).
func (g *guard) count(k aggKey, src netip.AddrPort, method, cause string, answered bool) {
	g.mu.Lock()
	g.countLocked(k, src, method, cause, answered)
	g.mu.Unlock()
}

func (g *guard) countLocked(k aggKey, src netip.AddrPort, method, cause string, answered bool) {
	c := g.agg[k]
	if c == nil && len(g.agg) >= guardMaxAgg {
		k.src, k.srcNet = netip.Addr{}, ""
		c = g.agg[k]
	}
	if c == nil {
		c = &aggCount{method: method, cause: cause}
		if k.src.IsValid() {
			c.example = src.String()
		}
		g.agg[k] = c
	}
	c.count++
	if answered {
		c.answered++
	}
	if method != c.method {
		c.mixed = true
	}
	if c.cause == "" {
		c.cause = cause
	}
}

// countKeepalive counts one keep-alive OPTIONS from network netID (Config
// AuditKeepalives count). Its bucket is the network's, not the source
// address's, and bypasses the guardMaxAgg cap: only attributed members get
// here, so there are at most networks x transports such buckets.
func (g *guard) countKeepalive(netID, transport string, src netip.AddrPort) {
	k := aggKey{transport: transport, what: "keep-alives", label: "keepalive", status: 200, srcNet: netID}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.agg[k]
	if c == nil {
		c = &aggCount{method: "OPTIONS", example: src.String()}
		g.agg[k] = c
	}
	c.count++
	c.answered++
}

// take empties the aggregate buckets and evicts budgets idle for a whole
// interval; it returns the buckets and the length of the interval.
func (g *guard) take(now time.Time) (map[aggKey]*aggCount, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out, d := g.agg, now.Sub(g.since)
	g.agg, g.since = make(map[aggKey]*aggCount), now
	for ip, b := range g.budgets {
		if b.gen+1 < g.gen {
			delete(g.budgets, ip)
		}
	}
	g.gen++
	return out, d
}

// aggregateEntries turns buckets into ledger entries.
func aggregateEntries(buckets map[aggKey]*aggCount, d time.Duration) []*ledger.Entry {
	out := make([]*ledger.Entry, 0, len(buckets))
	for k, c := range buckets {
		if k.what == "keep-alives" {
			out = append(out, &ledger.Entry{Kind: ledger.KindRequest, Method: "OPTIONS", Src: c.example, Transport: k.transport,
				SrcNet: k.srcNet, Status: 200,
				Reason: fmt.Sprintf("aggregate: %d keep-alive OPTIONS from network %s over %s in %s (Request-URI the hub itself; first from %s): %d answered 200",
					c.count, k.srcNet, k.transport, d.Round(time.Millisecond), c.example, c.answered)})
			continue
		}
		from := "other sources (too many to count one by one)"
		if k.src.IsValid() {
			from = k.src.String()
		}
		var b strings.Builder
		fmt.Fprintf(&b, "aggregate: %d %s from %s over %s in %s", c.count, k.what, from, k.transport, d.Round(time.Millisecond))
		if c.cause != "" {
			fmt.Fprintf(&b, " (%s)", c.cause)
		} else {
			fmt.Fprintf(&b, " (%s)", strings.ReplaceAll(k.label, "_", " "))
		}
		switch {
		case k.what == "connections":
			b.WriteString(": closed at once")
		case k.status > 0:
			fmt.Fprintf(&b, ": %d answered %d, %d dropped unanswered", c.answered, k.status, c.count-c.answered)
		default:
			b.WriteString(": dropped")
		}
		e := &ledger.Entry{Kind: ledger.KindRequest, Src: c.example, Transport: k.transport, SrcNet: k.srcNet,
			Status: k.status, Reason: b.String()}
		if !c.mixed {
			e.Method = c.method
		}
		out = append(out, e)
	}
	return out
}

// runAggregate writes the aggregate entries every AggregateInterval, and
// once more when the hub closes.
func (h *Hub) runAggregate() {
	t := time.NewTicker(h.cfg.AggregateInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			h.flushAggregate(h.ctx, now)
		case <-h.ctx.Done():
			// The hub is closing: the ledger is still open (the node
			// closes it after the hub), but h.ctx is gone.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			h.flushAggregate(ctx, time.Now())
			cancel()
			return
		}
	}
}

func (h *Hub) flushAggregate(ctx context.Context, now time.Time) {
	buckets, d := h.guard.take(now)
	for _, e := range aggregateEntries(buckets, d) {
		if _, err := h.audit.Append(ctx, e); err != nil {
			h.m.auditErrs.Inc()
			h.log.Error("audit append failed for an aggregate entry", "err", err, "src", e.Src)
		}
	}
}

// rawRefusal is a message refused before the request pipeline.
type rawRefusal struct {
	transport string // "udp", "tcp", "tls"
	src       netip.AddrPort
	srcNet    string
	data      []byte
	label     string // short cause (metric label, aggregate bucket)
	code      int    // answer status; 0: nothing can be answered
	reason    string // reason phrase of the answer
	detail    string // why, for the audit entries
	send      func([]byte) error
}

// refuse accounts for one refused message: audited in full within the
// source's budget, otherwise answered (within budget) or dropped, and
// counted for the aggregate entry. It never blocks: it runs on read loops.
func (h *Hub) refuse(r rawRefusal) {
	h.om.refused(rawReason(r.label), r.code)
	isResp := bytes.HasPrefix(r.data, []byte("SIP/"))
	method := rawMethod(r.data)
	// No answer to a response, to an ACK (RFC 3261 17.1.1.3) or to
	// anything without a Via to send it along (RFC 3261 18.2.2).
	answerable := r.code > 0 && r.send != nil && !isResp && method != "ACK" && rawHasVia(r.data)
	what := "requests"
	if isResp {
		what = "responses"
	}
	status := r.code
	if !answerable {
		status = 0
	}
	k := aggKey{src: r.src.Addr(), transport: r.transport, what: what, label: r.label, status: status, srcNet: r.srcNet}
	v := h.guard.decide(k, r.src, method, r.detail, answerable)
	switch v {
	case vDetail:
		if h.detailRefusal(r, answerable) {
			h.m.refusedRaw.WithLabelValues(r.label, "audited").Inc()
			return
		}
		h.guard.count(k, r.src, method, r.detail, false)
		h.m.refusedRaw.WithLabelValues(r.label, "dropped").Inc()
	case vAnswer:
		h.m.refusedRaw.WithLabelValues(r.label, "answered").Inc()
		echo, _ := salvage(r.data)
		if err := r.send(buildRawResponse(r.code, r.reason, echo)); err != nil {
			h.log.Debug("answer refused request", "err", err)
		}
	default:
		h.m.refusedRaw.WithLabelValues(r.label, "dropped").Inc()
	}
}

// detailRefusal audits (and answers) r on a bounded helper goroutine;
// false when none is free.
func (h *Hub) detailRefusal(r rawRefusal, answerable bool) bool {
	select {
	case h.badSem <- struct{}{}:
	default:
		return false
	}
	data := bytes.Clone(r.data[:min(len(r.data), 8192)])
	send := r.send
	if !answerable {
		send = nil
	}
	if !h.spawn(func() {
		defer func() { <-h.badSem }()
		h.answerRaw(r.src, r.transport, r.srcNet, data, r.code, r.reason, r.detail, send)
	}) {
		<-h.badSem
		return false
	}
	return true
}

// Raw header access, for decisions taken before (or instead of) parsing.
// Header names are matched case-insensitively, compact forms included.

// rawMethod returns the method of a request's start line ("" for a
// response or junk), at most 32 bytes, printable.
func rawMethod(data []byte) string {
	end := bytes.IndexByte(data[:min(len(data), 33)], ' ')
	if end <= 0 || bytes.HasPrefix(data, []byte("SIP/")) {
		return ""
	}
	m := data[:end]
	for _, c := range m {
		if c < '!' || c > '~' {
			return ""
		}
	}
	return string(m)
}

// rawHeader returns the value of the first header named long or short in
// the header block of data.
func rawHeader(data []byte, long, short string) ([]byte, bool) {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	// Skip the start line.
	i := bytes.Index(head, []byte("\r\n"))
	if i < 0 {
		return nil, false
	}
	head = head[i+2:]
	for len(head) > 0 {
		line := head
		if j := bytes.Index(head, []byte("\r\n")); j >= 0 {
			line, head = head[:j], head[j+2:]
		} else {
			head = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		if bytes.EqualFold(name, []byte(long)) || (short != "" && bytes.EqualFold(name, []byte(short))) {
			return bytes.TrimSpace(line[colon+1:]), true
		}
	}
	return nil, false
}

func rawHasVia(data []byte) bool {
	_, ok := rawHeader(data, "via", "v")
	return ok
}

// rawBranch returns the branch parameter of the top Via.
func rawBranch(data []byte) string {
	v, ok := rawHeader(data, "via", "v")
	if !ok {
		return ""
	}
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i] // several values in one header: the first is the top
	}
	for _, p := range bytes.Split(v, []byte(";"))[1:] {
		name, val, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("branch")) {
			return string(bytes.TrimSpace(val))
		}
	}
	return ""
}

// Connection caps (RFC 5923 connection reuse means a member needs few).

// connTable counts accepted TCP/TLS connections.
type connTable struct {
	mu           sync.Mutex
	total        int
	unattributed int
	perIP        map[netip.Addr]int
	perNet       map[string]int
}

// connSlot is what one connection holds in the table: its source IP when
// unattributed, its network otherwise.
type connSlot struct {
	ip    netip.Addr
	netID string
}

// admit takes a slot, or names the cap that refuses it.
func (t *connTable) admit(cfg *Config, s *connSlot) (label, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perIP == nil {
		t.perIP, t.perNet = make(map[netip.Addr]int), make(map[string]int)
	}
	if t.total >= cfg.MaxConnections {
		return "total", fmt.Sprintf("connection cap: %d connections in all", cfg.MaxConnections)
	}
	if label, why := t.fits(cfg, *s); label != "" {
		return label, why
	}
	t.total++
	t.add(*s, 1)
	return "", ""
}

func (t *connTable) fits(cfg *Config, s connSlot) (label, why string) {
	if s.netID != "" {
		if t.perNet[s.netID] >= cfg.MaxConnectionsPerNetwork {
			return "per_network", fmt.Sprintf("connection cap: %d per member network", cfg.MaxConnectionsPerNetwork)
		}
		return "", ""
	}
	if t.unattributed >= cfg.MaxConnections/2 {
		return "unattributed", fmt.Sprintf("connection cap: %d from sources no member network is known for", cfg.MaxConnections/2)
	}
	if t.perIP[s.ip] >= cfg.MaxConnectionsPerSource {
		return "per_source", fmt.Sprintf("connection cap: %d per unattributed source address", cfg.MaxConnectionsPerSource)
	}
	return "", ""
}

func (t *connTable) add(s connSlot, d int) {
	if s.netID != "" {
		t.perNet[s.netID] += d
		if t.perNet[s.netID] <= 0 {
			delete(t.perNet, s.netID)
		}
		return
	}
	t.unattributed += d
	t.perIP[s.ip] += d
	if t.perIP[s.ip] <= 0 {
		delete(t.perIP, s.ip)
	}
}

func (t *connTable) release(s *connSlot) {
	t.mu.Lock()
	t.total--
	t.add(*s, -1)
	t.mu.Unlock()
}

// move re-files a connection once its TLS certificate named its network.
// On refusal the connection keeps its old slot (the caller closes it).
func (t *connTable) move(cfg *Config, s *connSlot, to connSlot) (label, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.netID == to.netID {
		return "", ""
	}
	if label, why := t.fits(cfg, to); label != "" {
		return label, why
	}
	t.add(*s, -1)
	t.add(to, 1)
	*s = to
	return "", ""
}

func (t *connTable) open() (total, unattributed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.unattributed
}
