package intercept

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Appender is the interception ledger (a second *ledger.Ledger).
type Appender interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// Config configures lawful interception on one node.
type Config struct {
	// Sender delivers to the mediation endpoint; nil when none is
	// configured: matches are then counted as dropped and audited so.
	Sender *Sender
	// AgentID is the HEP capture agent id of this node.
	AgentID uint32
	// Ledger receives warrant changes and delivery counts; required.
	Ledger Appender
	// State is the node's current cluster state (warrant changes are
	// noticed from it); required.
	State func() *raft.State
	// AuditEvery is the aggregation period of delivery entries (1s).
	AuditEvery time.Duration
	// Metrics counts the copies that could not be queued here (no Sender,
	// encode error); give the Sender the same one for the rest. nil: none.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Interceptor is lawful interception on one node: a Tap for the proxy.
type Interceptor struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu     sync.Mutex
	counts map[string]*delivery // warrant id -> this period's counts

	seen map[string]*hubv1.Warrant // audit goroutine only: warrants last audited
}

// delivery counts one warrant's copies in one period.
type delivery struct {
	copied, delivered, dropped int
	bytes                      int
	callIDs                    map[string]bool
}

// maxCallIDsPerEntry bounds the Call-IDs named in one delivery entry.
const maxCallIDsPerEntry = 20

// NewInterceptor starts the audit goroutine; Close ends it.
func NewInterceptor(cfg Config) (*Interceptor, error) {
	if cfg.Ledger == nil || cfg.State == nil {
		return nil, fmt.Errorf("intercept: Config.Ledger and Config.State are required")
	}
	if cfg.AuditEvery <= 0 {
		cfg.AuditEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	i := &Interceptor{cfg: cfg, counts: map[string]*delivery{}, seen: map[string]*hubv1.Warrant{}, done: make(chan struct{})}
	i.ctx, i.cancel = context.WithCancel(context.Background())
	go i.run()
	return i, nil
}

// Wants reports whether some warrant in force covers the message. With no
// warrant it is one length check; no lock, no allocation either way.
func (i *Interceptor) Wants(st *raft.State, srcNet, dstNet string, from, to *sip.Uri) bool {
	ws := st.Warrants()
	if len(ws) == 0 {
		return false
	}
	now := time.Now().UnixNano()
	for _, w := range ws {
		if matches(w, now, srcNet, dstNet, from, to) {
			return true
		}
	}
	return false
}

// Tap queues one HEP frame per warrant covering ev (its warrant id in the
// Group ID chunk), cut to what the warrant delivers.
func (i *Interceptor) Tap(ev Event) {
	if ev.State == nil {
		return
	}
	now := ev.Time.UnixNano()
	for _, w := range ev.State.Warrants() {
		if !matches(w, now, ev.SrcNet, ev.DstNet, ev.From, ev.To) {
			continue
		}
		payload := deliverable(w, ev.Wire, ev.BodyOffset)
		if len(payload) == 0 {
			continue
		}
		i.send(w.GetId(), &ev, payload, ProtoTypeSIP)
	}
}

// deliverable is the part of a SIP message a warrant delivers.
func deliverable(w *hubv1.Warrant, wire []byte, bodyOff int) []byte {
	bodyOff = min(max(bodyOff, 0), len(wire))
	switch {
	case w.GetSignalling() && w.GetBodies():
		return wire
	case w.GetSignalling():
		return wire[:bodyOff]
	case w.GetBodies():
		return wire[bodyOff:]
	}
	return nil
}

func (i *Interceptor) send(id string, ev *Event, payload []byte, protoType uint8) {
	p := packet(ev, payload, i.cfg.AgentID, protoType)
	p.GroupID = "warrant:" + id
	frame, err := p.Append(nil)
	i.mu.Lock()
	d := i.counts[id]
	if d == nil {
		d = &delivery{callIDs: map[string]bool{}}
		i.counts[id] = d
	}
	d.copied++
	if ev.CallID != "" && len(d.callIDs) < maxCallIDsPerEntry {
		d.callIDs[ev.CallID] = true
	}
	i.mu.Unlock()
	switch {
	case err != nil:
		i.cfg.Metrics.count(OutcomeEncodeError)
		i.result(id, 0, false)
	case i.cfg.Sender == nil:
		i.cfg.Metrics.count(OutcomeNoCollector)
		i.result(id, 0, false)
	case !i.cfg.Sender.Enqueue(frame, id): // counted by the Sender
		i.result(id, 0, false)
	}
}

// result is the Sender's OnResult: what became of a queued frame.
func (i *Interceptor) result(id string, n int, delivered bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	d := i.counts[id]
	if d == nil {
		d = &delivery{callIDs: map[string]bool{}}
		i.counts[id] = d
	}
	if delivered {
		d.delivered++
		d.bytes += n
	} else {
		d.dropped++
	}
}

// OnResult is the function to put in the Sender's SenderConfig.OnResult.
func (i *Interceptor) OnResult() func(tag string, n int, delivered bool) { return i.result }

// Close writes the last period's entries and stops.
func (i *Interceptor) Close() error {
	i.once.Do(func() {
		i.cancel()
		<-i.done
	})
	return nil
}

func (i *Interceptor) run() {
	defer close(i.done)
	t := time.NewTicker(i.cfg.AuditEvery)
	defer t.Stop()
	i.auditWarrants()
	for {
		select {
		case <-t.C:
			i.auditWarrants()
			i.auditDeliveries()
		case <-i.ctx.Done():
			i.auditDeliveries()
			return
		}
	}
}

// auditWarrants records every warrant this node starts or stops applying:
// new, changed, removed, and entering or leaving its time window.
func (i *Interceptor) auditWarrants() {
	st := i.cfg.State()
	now := time.Now().UnixNano()
	cur := map[string]*hubv1.Warrant{}
	for _, w := range st.Warrants() {
		cur[w.GetId()] = w
		old := i.seen[w.GetId()]
		switch {
		case old == nil:
			i.append("WarrantSeen", w, describeWarrant(w, now))
		case !proto.Equal(old, w):
			i.append("WarrantChanged", w, describeWarrant(w, now))
		case inForce(old, now-int64(i.cfg.AuditEvery)) != inForce(w, now):
			i.append("WarrantWindow", w, describeWarrant(w, now))
		}
	}
	for id, old := range i.seen {
		if cur[id] == nil {
			i.append("WarrantRemoved", old, "warrant "+id+" removed from the cluster state")
		}
	}
	i.seen = cur
}

func inForce(w *hubv1.Warrant, now int64) bool {
	return now >= w.GetStartUnixNano() && now < w.GetEndUnixNano()
}

// DescribeWarrant is the one-line text of a warrant in the ledger.
func describeWarrant(w *hubv1.Warrant, now int64) string {
	var what []string
	for _, x := range []struct {
		on   bool
		name string
	}{{w.GetSignalling(), "signalling"}, {w.GetBodies(), "bodies"}, {w.GetMsrp(), "msrp"}} {
		if x.on {
			what = append(what, x.name)
		}
	}
	state := "not in force"
	if inForce(w, now) {
		state = "in force"
	}
	return fmt.Sprintf("warrant %s (%s): %s %s from %s until %s, deliver %s; set by %s; %s",
		w.GetId(), w.GetReference(), strings.TrimPrefix(w.GetKind().String(), "WARRANT_TARGET_"), w.GetTarget(),
		time.Unix(0, w.GetStartUnixNano()).UTC().Format(time.RFC3339), time.Unix(0, w.GetEndUnixNano()).UTC().Format(time.RFC3339),
		strings.Join(what, "+"), w.GetCreatedBy(), state)
}

// DescribeWarrant is describeWarrant for the admin API's change entries.
func DescribeWarrant(w *hubv1.Warrant) string { return describeWarrant(w, time.Now().UnixNano()) }

func (i *Interceptor) auditDeliveries() {
	i.mu.Lock()
	counts := i.counts
	i.counts = map[string]*delivery{}
	i.mu.Unlock()
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	dest := "no mediation endpoint configured"
	if s := i.cfg.Sender; s != nil {
		dest = s.Transport() + " " + s.Addr()
	}
	for _, id := range ids {
		d := counts[id]
		cids := make([]string, 0, len(d.callIDs))
		for c := range d.callIDs {
			cids = append(cids, c)
		}
		sort.Strings(cids)
		reason := fmt.Sprintf("warrant %s: %d copied, %d delivered (%d bytes) to %s, %d dropped; call-ids %s",
			id, d.copied, d.delivered, d.bytes, dest, d.dropped, strings.Join(cids, " "))
		e := &ledger.Entry{Kind: ledger.KindAdmin, Method: "InterceptDelivery", Reason: reason, To: id}
		if len(cids) == 1 {
			e.CallID = cids[0]
		}
		if _, err := i.cfg.Ledger.Append(context.WithoutCancel(i.ctx), e); err != nil {
			i.cfg.Logger.Error("interception ledger append failed", "err", err)
		}
	}
}

func (i *Interceptor) append(method string, w *hubv1.Warrant, reason string) {
	e := &ledger.Entry{Kind: ledger.KindAdmin, Method: method, From: w.GetCreatedBy(), To: w.GetId(), Reason: reason}
	if _, err := i.cfg.Ledger.Append(context.WithoutCancel(i.ctx), e); err != nil {
		i.cfg.Logger.Error("interception ledger append failed", "err", err)
	}
}

// ProtoTypeMSRP is the HEP protocol type of MSRP content. HEP registers
// none for MSRP; this value is the hub's choice (documented in
// docs/interception.md) until a mediation vendor asks for another.
const ProtoTypeMSRP = 0x3c

// WantsMSRP reports whether a warrant in force with msrp delivery covers
// an MSRP session whose SIP dialog ran srcNet -> dstNet between from and
// to. hub/msrp asks it per relayed chunk: allocation-free.
func (i *Interceptor) WantsMSRP(st *raft.State, srcNet, dstNet string, from, to *sip.Uri) bool {
	ws := st.Warrants()
	if len(ws) == 0 {
		return false
	}
	now := time.Now().UnixNano()
	for _, w := range ws {
		if w.GetMsrp() && matches(w, now, srcNet, dstNet, from, to) {
			return true
		}
	}
	return false
}

// TapMSRP delivers one MSRP chunk as received (ev.Wire, a copy the
// interceptor owns; Transport "tcp" or "tls"; CallID the session's SIP
// Call-ID) to every warrant with msrp delivery that covers it.
func (i *Interceptor) TapMSRP(ev Event) {
	if ev.State == nil {
		return
	}
	now := ev.Time.UnixNano()
	for _, w := range ev.State.Warrants() {
		if w.GetMsrp() && matches(w, now, ev.SrcNet, ev.DstNet, ev.From, ev.To) {
			i.send(w.GetId(), &ev, ev.Wire, ProtoTypeMSRP)
		}
	}
}
