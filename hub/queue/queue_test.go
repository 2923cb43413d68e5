package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// fsm is an in-memory replicated state: Propose applies through
// raft.ApplyTo like the FSM does.
type fsm struct {
	mu  sync.Mutex
	st  atomic.Pointer[raft.State]
	idx uint64
}

func newFSM(t *testing.T, nets ...*hubv1.Network) *fsm {
	f := &fsm{idx: 1}
	f.st.Store(raft.NewState(1, &hubv1.ClusterState{Networks: nets}))
	return f
}

func (f *fsm) State() *raft.State { return f.st.Load() }
func (f *fsm) Propose(_ context.Context, cmd *hubv1.Command) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idx++
	next, err := raft.ApplyTo(f.st.Load(), f.idx, cmd)
	if err != nil {
		return 0, err
	}
	f.st.Store(next)
	return f.idx, nil
}

type leader struct{ v atomic.Bool }

func (l *leader) IsLeader() bool { return l.v.Load() }

// sender is a fake destination: answer decides each response.
type sender struct {
	mu     sync.Mutex
	answer func(req *sip.Request) (*sip.Response, error)
	got    []*sip.Request
	notes  []string
	dsts   []string
}

func (s *sender) Send(_ context.Context, req *sip.Request, source, dst, note string) (*sip.Response, error) {
	s.mu.Lock()
	f := s.answer
	if req.Method == sip.MESSAGE {
		s.got = append(s.got, req)
		s.notes = append(s.notes, note)
		s.dsts = append(s.dsts, dst)
	}
	s.mu.Unlock()
	return f(req)
}

func (s *sender) set(f func(req *sip.Request) (*sip.Response, error)) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

func (s *sender) messages() []*sip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*sip.Request(nil), s.got...)
}

func answer(code int) func(req *sip.Request) (*sip.Response, error) {
	return func(req *sip.Request) (*sip.Response, error) {
		return sip.NewResponseFromRequest(req, code, "X", nil), nil
	}
}

var errDown = errors.New("every edge failed")

func down(*sip.Request) (*sip.Response, error) { return nil, errDown }

type audit struct {
	mu sync.Mutex
	es []*ledger.Entry
}

func (a *audit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.es = append(a.es, e)
	return uint64(len(a.es)), nil
}

func (a *audit) count(method string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, e := range a.es {
		if e.Method == method {
			n++
		}
	}
	return n
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func netB(d *hubv1.Deferral) *hubv1.Network {
	return &hubv1.Network{Id: "netb", Domains: []string{"b.example"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, Deferral: d}
}
func netA() *hubv1.Network {
	return &hubv1.Network{Id: "neta", Domains: []string{"a.example"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE}
}

type rig struct {
	q    *Queue
	f    *fsm
	s    *sender
	a    *audit
	l    *leader
	clk  *clock
	stop func()
}

func newRig(t *testing.T, d *hubv1.Deferral, cfg Config) *rig {
	t.Helper()
	r := &rig{f: newFSM(t, netA(), netB(d)), s: &sender{answer: down}, a: &audit{}, l: &leader{}, clk: newClock()}
	r.l.v.Store(true)
	cfg.NodeID = "n1"
	cfg.Now = r.clk.now
	if cfg.Tick == 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
		cfg.MaxBackoff = 80 * time.Millisecond
	}
	if cfg.Rate == 0 {
		cfg.Rate, cfg.Burst = 1000, 100
	}
	q, err := New(cfg, r.f, r.f, r.l, r.s, r.a)
	if err != nil {
		t.Fatal(err)
	}
	r.q = q
	return r
}

func (r *rig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func message(t *testing.T, i int) *sip.Request {
	t.Helper()
	u := sip.Uri{Scheme: "sip", User: "bob", Host: "b.example"}
	req := sip.NewRequest(sip.MESSAGE, u)
	vp := sip.NewParams()
	vp.Add("branch", "z9hG4bK-orig")
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "10.0.0.1", Port: 5060, Params: vp})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: sip.NewParams()}
	from.Params.Add("tag", fmt.Sprintf("ft%d", i))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: u, Params: sip.NewParams()})
	cid := sip.CallIDHeader(fmt.Sprintf("call-%d", i))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: uint32(i + 1), MethodName: sip.MESSAGE})
	req.AppendHeader(sip.NewHeader("Content-Type", "message/cpim"))
	req.AppendHeader(sip.NewHeader("Content-Encoding", "identity"))
	req.SetBody([]byte(fmt.Sprintf("From: <sip:alice@a.example>\r\n\r\nContent-Type: text/plain\r\n\r\nmessage %d", i)))
	return req
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

// Stored messages are delivered in order once the destination answers,
// byte-exact but for the Via, each removal committed; a transient failure
// backs off and keeps the message at the head.
func TestDeliverInOrderOnReturn(t *testing.T) {
	r := newRig(t, nil, Config{})
	const n = 20
	var want []string
	for i := 0; i < n; i++ {
		req := message(t, i)
		if _, err := r.q.Store(context.Background(), req, "neta", "netb", uint64(100+i), r.clk.now()); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(StoredBytes(req)))
		if strings.Contains(want[i], "Via:") {
			t.Fatalf("stored bytes keep the Via:\n%s", want[i])
		}
	}
	r.run(t)
	// Down: attempts fail, nothing is removed.
	waitFor(t, "a failed attempt", func() bool { return len(r.s.messages()) >= 1 })
	if q := r.f.State().Queue("netb"); len(q) != n {
		t.Fatalf("queue %d, want %d while down", len(q), n)
	}
	r.s.set(answer(200))
	r.q.Alive("netb")
	waitFor(t, "the queue to drain", func() bool { return len(r.f.State().Queue("netb")) == 0 })
	got := r.s.messages()
	// Deliveries after the failures are in order, each once.
	var delivered []*sip.Request
	for _, g := range got {
		if len(delivered) > 0 && g.CallID().Value() == delivered[len(delivered)-1].CallID().Value() {
			continue
		}
		delivered = append(delivered, g)
	}
	if len(delivered) != n {
		t.Fatalf("%d distinct deliveries, want %d", len(delivered), n)
	}
	for i, g := range delivered {
		if s := string(StoredBytes(g)); s != want[i] {
			t.Errorf("delivery %d differs:\n%s\nwant\n%s", i, s, want[i])
		}
	}
	if c := r.a.count("queue.delivered"); c != n {
		t.Errorf("%d delivered entries, want %d", c, n)
	}
	if !strings.Contains(r.s.notes[len(r.s.notes)-1], "request entry n1/119") {
		t.Errorf("attempt note %q does not name the request entry", r.s.notes[len(r.s.notes)-1])
	}
}

// The verdict on each answer: 2xx (also the destination's own 202) is
// delivered, 408/5xx transient, 480 transient only with the opt-in, any
// other final answer removes the message.
func TestJudge(t *testing.T) {
	cases := []struct {
		code  int
		err   error
		on480 bool
		want  verdict
	}{
		{200, nil, false, delivered},
		{202, nil, false, delivered},
		{0, errDown, false, retry},
		{408, nil, false, retry},
		{503, nil, false, retry},
		{500, nil, false, retry},
		{480, nil, true, retry},
		{480, nil, false, final},
		{404, nil, false, final},
		{403, nil, false, final},
		{302, nil, false, final},
		{603, nil, false, final},
	}
	for _, tc := range cases {
		var res *sip.Response
		if tc.err == nil {
			res = sip.NewResponseFromRequest(message(t, 0), tc.code, "X", nil)
		}
		if got := judge(res, tc.err, tc.on480); got != tc.want {
			t.Errorf("judge(%d, %v, on480=%v) = %v, want %v", tc.code, tc.err, tc.on480, got, tc.want)
		}
	}
}

// A final refusal removes the head and the queue moves on.
func TestFinalAnswerRemovesAndMovesOn(t *testing.T) {
	r := newRig(t, nil, Config{})
	for i := 0; i < 3; i++ {
		if _, err := r.q.Store(context.Background(), message(t, i), "neta", "netb", 1, r.clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	r.s.set(func(req *sip.Request) (*sip.Response, error) {
		if req.CallID().Value() == "call-1" {
			return sip.NewResponseFromRequest(req, 404, "Not Found", nil), nil
		}
		return sip.NewResponseFromRequest(req, 200, "OK", nil), nil
	})
	r.run(t)
	waitFor(t, "drain", func() bool { return len(r.f.State().Queue("netb")) == 0 })
	if r.a.count("queue.refused") != 1 || r.a.count("queue.delivered") != 2 {
		t.Errorf("refused %d delivered %d", r.a.count("queue.refused"), r.a.count("queue.delivered"))
	}
}

// Expiry by the injected clock removes undelivered messages, audited, and
// a network's TTL overrides the default.
func TestExpiry(t *testing.T) {
	r := newRig(t, &hubv1.Deferral{TtlSeconds: 3600}, Config{})
	if _, err := r.q.Store(context.Background(), message(t, 0), "neta", "netb", 1, r.clk.now()); err != nil {
		t.Fatal(err)
	}
	m := r.f.State().Queue("netb")[0]
	if got := time.Duration(m.GetExpiresUnixNano() - m.GetStoredUnixNano()); got != time.Hour {
		t.Errorf("TTL %v, want the network's 1h", got)
	}
	r.run(t)
	time.Sleep(50 * time.Millisecond)
	if len(r.f.State().Queue("netb")) != 1 {
		t.Fatal("expired early")
	}
	r.clk.add(time.Hour)
	waitFor(t, "expiry", func() bool { return len(r.f.State().Queue("netb")) == 0 })
	if r.a.count("queue.expired") != 1 {
		t.Errorf("%d expiry entries", r.a.count("queue.expired"))
	}
}

// Limits: count and bytes per destination, network override or config
// default; a full queue is ErrFull, never a silent drop.
func TestLimits(t *testing.T) {
	size := len(StoredBytes(message(t, 0)))
	cases := []struct {
		name string
		d    *hubv1.Deferral
		cfg  Config
		ok   int
	}{
		{"config count", nil, Config{MaxMessages: 2}, 2},
		{"network count", &hubv1.Deferral{MaxMessages: 3}, Config{MaxMessages: 2}, 3},
		{"config bytes", nil, Config{MaxBytes: uint64(2*size + size/2)}, 2},
		{"network bytes", &hubv1.Deferral{MaxBytes: uint64(size)}, Config{}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.d, tc.cfg)
			for i := 0; i <= tc.ok; i++ {
				_, err := r.q.Store(context.Background(), message(t, i), "neta", "netb", 1, r.clk.now())
				if i < tc.ok && err != nil {
					t.Fatalf("store %d: %v", i, err)
				}
				if i == tc.ok && !errors.Is(err, ErrFull) {
					t.Fatalf("store %d: %v, want ErrFull", i, err)
				}
			}
		})
	}
}

// Only the leader delivers; a node that becomes leader drains what the
// old one left, in order (takeover).
func TestOnlyLeaderDelivers(t *testing.T) {
	r := newRig(t, nil, Config{})
	r.l.v.Store(false)
	r.s.set(answer(200))
	for i := 0; i < 5; i++ {
		if _, err := r.q.Store(context.Background(), message(t, i), "neta", "netb", 1, r.clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	r.run(t)
	time.Sleep(60 * time.Millisecond)
	if n := len(r.s.messages()); n != 0 {
		t.Fatalf("follower delivered %d", n)
	}
	r.l.v.Store(true)
	waitFor(t, "drain after takeover", func() bool { return len(r.f.State().Queue("netb")) == 0 })
	for i, g := range r.s.messages() {
		if g.CallID().Value() != fmt.Sprintf("call-%d", i) {
			t.Fatalf("delivery %d is %s", i, g.CallID().Value())
		}
	}
}

// An operator drop removes one message or all, each audited.
func TestDrop(t *testing.T) {
	r := newRig(t, nil, Config{})
	for i := 0; i < 3; i++ {
		if _, err := r.q.Store(context.Background(), message(t, i), "neta", "netb", 1, r.clk.now()); err != nil {
			t.Fatal(err)
		}
	}
	id := r.f.State().Queue("netb")[1].GetId()
	if n, err := r.q.Drop(context.Background(), "netb", id, "op;role=operator"); err != nil || n != 1 {
		t.Fatalf("drop one: %d %v", n, err)
	}
	if n, err := r.q.Drop(context.Background(), "netb", "", "op;role=operator"); err != nil || n != 2 {
		t.Fatalf("drop all: %d %v", n, err)
	}
	if r.a.count("queue.dropped") != 3 || len(r.f.State().Queue("netb")) != 0 {
		t.Errorf("dropped entries %d, queue %d", r.a.count("queue.dropped"), len(r.f.State().Queue("netb")))
	}
}

// The gauges follow the replicated state on every node (a follower too);
// the counters count this node's work.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRig(t, nil, Config{Registerer: reg})
	r.l.v.Store(false)
	for i := 0; i < 3; i++ {
		if _, err := r.q.Store(context.Background(), message(t, i), "neta", "netb", 1, r.clk.now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	r.q.tick(context.Background())
	if got := value(t, r.q.m.depth.WithLabelValues("netb")); got != 3 {
		t.Errorf("depth %v, want 3", got)
	}
	if got := value(t, r.q.m.bytes.WithLabelValues("netb")); got != float64(r.f.State().QueueBytes("netb")) || got == 0 {
		t.Errorf("bytes %v", got)
	}
	if got := value(t, r.q.m.oldest.WithLabelValues("netb")); got != 60 {
		t.Errorf("oldest age %v, want 60", got)
	}
	if got := value(t, r.q.m.stored.WithLabelValues("netb")); got != 3 {
		t.Errorf("stored %v, want 3", got)
	}
	if _, err := r.q.Drop(context.Background(), "netb", "", "op"); err != nil {
		t.Fatal(err)
	}
	r.q.tick(context.Background())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "clearhub_queue_depth" && len(mf.GetMetric()) != 0 {
			t.Errorf("depth series after the queue emptied: %v", mf.GetMetric())
		}
	}
}

func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}
