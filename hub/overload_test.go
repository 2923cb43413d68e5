package hub

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"clearhub/ledger"
)

// noLeaks fails t if goroutines it started outlive its cleanups (the hub's
// and its members'); waiting for them also keeps a test's shutdown from
// overlapping the next test.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func TestShedReason(t *testing.T) {
	base := gateInput{maxTx: 100, maxPending: 10, attrib: true}
	with := func(f func(*gateInput)) gateInput { in := base; f(&in); return in }
	cases := []struct {
		name string
		in   gateInput
		want string
	}{
		{"idle", base, ""},
		{"below both limits", with(func(in *gateInput) { in.inflight, in.pending = 99, 9 }), ""},
		{"ledger backlog", with(func(in *gateInput) { in.pending = 10; in.inflight, in.active, in.mine = 10, 1, 10 }), "ledger_backlog"},
		{"transactions", with(func(in *gateInput) { in.inflight, in.active, in.mine = 100, 1, 100 }), "transactions"},
		{"ledger named first", with(func(in *gateInput) { in.inflight, in.pending, in.active, in.mine = 100, 10, 1, 100 }), "ledger_backlog"},
		{"below fair share admitted", with(func(in *gateInput) { in.inflight, in.active, in.mine = 120, 2, 3 }), ""},
		{"at fair share shed", with(func(in *gateInput) { in.inflight, in.active, in.mine = 120, 2, 60 }), "transactions"},
		{"idle member admitted", with(func(in *gateInput) { in.pending, in.inflight, in.active = 12, 30, 1 }), ""},
		{"unattributed not exempt", with(func(in *gateInput) { in.inflight, in.active, in.attrib = 120, 2, false }), "transactions"},
		{"3/2 sheds everyone new", with(func(in *gateInput) { in.inflight, in.active, in.mine = 150, 5, 0 }), "transactions"},
		{"3/2 of the ledger", with(func(in *gateInput) { in.pending, in.inflight, in.active = 15, 1, 1 }), "ledger_backlog"},
		{"priority above soft", with(func(in *gateInput) { in.priority = true; in.inflight, in.pending = 199, 19 }), ""},
		{"priority at the hard cap", with(func(in *gateInput) { in.priority = true; in.inflight = 200 }), "transactions"},
		{"priority at the ledger hard cap", with(func(in *gateInput) { in.priority = true; in.pending = 20 }), "ledger_backlog"},
	}
	for _, tc := range cases {
		if got := shedReason(tc.in); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// stallAudit is a memAudit whose request entries for MESSAGE block while
// stalled (a ledger that stopped committing, as far as those appends can
// tell); everything else is appended at once.
type stallAudit struct {
	*memAudit
	stalled atomic.Bool
	mu      sync.Mutex
	release chan struct{}
}

func newStallAudit() *stallAudit {
	return &stallAudit{memAudit: &memAudit{}, release: make(chan struct{})}
}

func (s *stallAudit) stall() { s.stalled.Store(true) }

func (s *stallAudit) unstall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled.Swap(false) {
		close(s.release)
		s.release = make(chan struct{})
	}
}

func (s *stallAudit) Append(ctx context.Context, e *ledger.Entry) (uint64, error) {
	if s.stalled.Load() && e.Kind == ledger.KindRequest && e.Method == "MESSAGE" && !strings.HasPrefix(e.Reason, "aggregate") {
		s.mu.Lock()
		ch := s.release
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return s.memAudit.Append(ctx, e)
}

// shedLab is a routeLab (a, b, c; a's subscriptions to b record-routed)
// whose ledger can stall.
func shedLab(t *testing.T, cfg Config) (*routeLab, *stallAudit, *prometheus.Registry) {
	t.Helper()
	au := newStallAudit()
	reg := prometheus.NewRegistry()
	l := &routeLab{lab: &lab{state: &fakeState{}, audit: au.memAudit}, clock: &fakeClock{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	l.c = newMember(t, "c", "c.example", "127.0.0.4", memberOpts{})
	l.state.set(oneWayState(l.a, l.b, l.c))
	cfg.NodeID, cfg.UDPAddr, cfg.RouteSecret, cfg.Registerer = "n1", "127.0.0.1:0", []byte("test-secret"), reg
	l.hub = startHub(t, cfg, l.state, au)
	t.Cleanup(au.unstall) // before the hub closes: cleanups run last first
	l.udp = l.hub.Addrs()[0].String()
	for _, m := range []*member{l.a, l.b, l.c} {
		m.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
			if req.IsAck() {
				return
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if req.To().Params.GetOr("tag", "") == "" && req.Method == sip.SUBSCRIBE {
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: m.name, Host: hostOf(m.addr), Port: portOf(m.addr)}})
			}
			_ = tx.Respond(res)
		})
	}
	return l, au, reg
}

// rawSender is a UDP socket at a member's address that counts the
// responses it reads by status line.
type rawSender struct {
	c    *net.UDPConn
	to   *net.UDPAddr
	mu   sync.Mutex
	seen map[string]int // status line -> count
	last map[string][]byte
	done chan struct{}
}

func newRawSender(t *testing.T, ip, to string) *rawSender {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	s := &rawSender{c: c, to: mustResolveUDP(to), seen: map[string]int{}, last: map[string][]byte{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			line, _, _ := bytes.Cut(buf[:n], []byte("\r\n"))
			s.mu.Lock()
			s.seen[string(line)]++
			s.last[string(line)] = bytes.Clone(buf[:n])
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-s.done })
	return s
}

func (s *rawSender) send(t *testing.T, i int) {
	t.Helper()
	port := s.c.LocalAddr().(*net.UDPAddr).Port
	via := "SIP/2.0/UDP 127.0.0.2:" + itoa(port) + ";rport;branch=z9hG4bKshed" + itoa(i)
	if _, err := s.c.WriteToUDP(rawMessage(via, "shed-"+itoa(i), "hello"), s.to); err != nil {
		t.Fatal(err)
	}
}

func (s *rawSender) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for line, c := range s.seen {
		if strings.HasPrefix(line, prefix) {
			n += c
		}
	}
	return n
}

func (s *rawSender) example(prefix string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	for line, b := range s.last {
		if strings.HasPrefix(line, prefix) {
			return b
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 10, overload control: with the ledger stalled, new MESSAGEs are
// answered 503 + Retry-After on the read loop (no goroutine, no ledger
// entry of their own, one aggregate entry), while an in-dialog NOTIFY of an
// existing subscription still goes through; once the ledger moves again
// the stalled MESSAGEs complete and new ones are admitted.
func TestShedWhenLedgerStalled(t *testing.T) {
	noLeaks(t)
	const limit = 4
	l, au, reg := shedLab(t, Config{MaxPendingAppends: limit})
	d := l.open(t, sip.SUBSCRIBE)

	au.stall()
	s := newRawSender(t, "127.0.0.2", l.udp)
	for i := 0; i < limit; i++ {
		s.send(t, i)
	}
	waitFor(t, "the stalled appends", func() bool { return l.hub.ovl.pending.Load() >= limit })
	before := runtime.NumGoroutine()
	const extra = 20
	for i := limit; i < limit+extra; i++ {
		s.send(t, i)
	}
	waitFor(t, "the 503s", func() bool { return s.count("SIP/2.0 503") == extra })
	if got := runtime.NumGoroutine(); got > before+10 {
		t.Errorf("%d goroutines after %d shed requests, %d before", got, extra, before)
	}
	res := s.example("SIP/2.0 503")
	if !bytes.HasPrefix(res, []byte("SIP/2.0 503 Overloaded: audit ledger backlog\r\n")) {
		t.Errorf("shed answer %q, want 503 Overloaded: audit ledger backlog", res)
	}
	if ra, ok := rawHeader(res, "retry-after", ""); !ok || len(ra) != 1 || ra[0] < '1' || ra[0] > '3' {
		t.Errorf("Retry-After %q, want 1-3 s", ra)
	}

	// The subscription's NOTIFY keeps priority.
	notify := withEvent(d.fromB(l.b, sip.NOTIFY, 1), "presence")
	if r := sendVia(l, l.b, notify); r.StatusCode != 200 {
		t.Fatalf("in-dialog NOTIFY under overload: %d %s, want 200", r.StatusCode, r.Reason)
	}
	if got := shedTotal(t, reg, "neta", "ledger_backlog"); got != extra {
		t.Errorf("shed_total{neta,ledger_backlog} = %v, want %d", got, extra)
	}

	au.unstall()
	waitFor(t, "the stalled MESSAGEs' 200s", func() bool { return s.count("SIP/2.0 200") == limit })
	s.send(t, 1000)
	waitFor(t, "a MESSAGE admitted again", func() bool { return s.count("SIP/2.0 200") == limit+1 })

	if es := l.audit.find(ledger.KindRequest, "MESSAGE", 503, ""); len(es) != 0 {
		t.Errorf("%d per-request entries for shed MESSAGEs, want none", len(es))
	}
	l.hub.flushAggregate(context.Background(), time.Now())
	agg := aggregates(l.audit.all(), "127.0.0.2:")
	if len(agg) != 1 || !strings.HasPrefix(agg[0].Reason, "aggregate: "+itoa(extra)+" requests from 127.0.0.2 over udp") ||
		!strings.Contains(agg[0].Reason, "audit ledger backlog") || agg[0].SrcNet != "neta" {
		t.Errorf("aggregate entries %+v, want one counting %d shed MESSAGEs of neta", agg, extra)
	}
}

// Under a flood the hub's goroutines stay bounded by the admission limits,
// whether the ledger stalls or the destination edge does not answer, and
// the excess is answered 503 rather than queued.
func TestFloodGoroutinesBounded(t *testing.T) {
	noLeaks(t)
	cases := []struct {
		name   string
		cfg    Config
		stall  bool
		reason string
	}{
		{"ledger stalled", Config{MaxPendingAppends: 32}, true, "SIP/2.0 503 Overloaded: audit ledger backlog"},
		{"edge silent", Config{MaxTransactions: 32, TransactionTimeout: time.Second}, false, "SIP/2.0 503 Overloaded: too many transactions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, au, _ := shedLab(t, tc.cfg)
			// The edge never answers in either case: a burst of answers
			// from a sipgo member racing its own shutdown can leave a
			// socket behind (sipgo re-dials on a closed pool).
			l.b.setHandler(func(*sip.Request, sip.ServerTransaction) {})
			if tc.stall {
				au.stall()
			}
			s := newRawSender(t, "127.0.0.2", l.udp)
			runtime.GC()
			before := runtime.NumGoroutine()
			peak := atomic.Int64{}
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					if n := int64(runtime.NumGoroutine()); n > peak.Load() {
						peak.Store(n)
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			const flood = 3000
			for i := 0; i < flood; i++ {
				s.send(t, i)
				if i%200 == 199 {
					time.Sleep(time.Millisecond) // let the loopback queue drain
				}
			}
			waitFor(t, "answers to most of the flood", func() bool { return s.count(tc.reason) >= flood*9/10 })
			close(stop)
			<-sampled
			// Admitted: at most 3/2 of the limit of new work, a goroutine
			// each; plus the sampler and the sipgo members' own.
			if grew := peak.Load() - int64(before); grew > 32*3/2+40 {
				t.Errorf("goroutines grew by %d under a %d-request flood, want at most %d", grew, flood, 32*3/2+40)
			}
			if got := l.hub.ovl.inflight.Load(); got > 48 {
				t.Errorf("%d transactions in flight, want at most 48", got)
			}
			// Let the admitted ones finish before the members close.
			au.unstall()
			waitFor(t, "the admitted transactions to end", func() bool { return l.hub.ovl.inflight.Load() == 0 })
		})
	}
}
