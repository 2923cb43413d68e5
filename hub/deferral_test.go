package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/queue"
	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// fakeDeferrer records what the proxy hands over.
type fakeDeferrer struct {
	mu    sync.Mutex
	got   []*DeferredMessage
	err   error
	alive []string
}

func (f *fakeDeferrer) Defer(_ context.Context, m *DeferredMessage) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.got = append(f.got, m)
	return fmt.Sprintf("q%d", len(f.got)), nil
}

func (f *fakeDeferrer) Alive(dst string) {
	f.mu.Lock()
	f.alive = append(f.alive, dst)
	f.mu.Unlock()
}

func (f *fakeDeferrer) deferred() []*DeferredMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*DeferredMessage(nil), f.got...)
}

func newDeferLab(t *testing.T, d Deferrer) *lab {
	t.Helper()
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	l.state.set(labState(l.a, l.b))
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", RouteSecret: []byte("test-secret"), Deferrer: d}, l.state, l.audit)
	l.udp = l.hub.Addrs()[0].String()
	return l
}

// When the proxy stores a MESSAGE instead of answering 408/503, and when
// the destination's own answer passes upstream.
func TestDeferDecision(t *testing.T) {
	queued := &hubv1.QueuedMessage{Id: "old", Destination: "netb", Source: "neta", Request: []byte("x"), StoredUnixNano: 1, ExpiresUnixNano: 2, Seq: 1}
	cases := []struct {
		name    string
		edges   []string // netb's edges; nil: b itself
		deferr  *hubv1.Deferral
		queue   bool  // netb has a stored message
		answer  int   // b's answer (0: 200)
		toTag   bool  // the MESSAGE is in a dialog
		err     error // the Deferrer's error
		status  int
		reason  string
		stored  string // the cause handed over ("" = not stored)
		reaches bool   // b receives the MESSAGE
	}{
		{name: "every edge refused", edges: []string{deadTCPEdge}, status: 202, stored: "all_failed"},
		{name: "silent edge", edges: []string{deadUDPEdge}, status: 202, stored: "timeout"},
		{name: "no edge", edges: []string{}, status: 202, stored: "no_edge"},
		{name: "deferral off", edges: []string{deadTCPEdge}, deferr: &hubv1.Deferral{Disabled: true}, status: 503},
		{name: "in a dialog", edges: []string{deadTCPEdge}, toTag: true, status: 503},
		{name: "480 without opt-in", answer: 480, status: 480, reaches: true},
		{name: "480 opt-in", answer: 480, deferr: &hubv1.Deferral{On_480: true}, status: 202, stored: "480", reaches: true},
		{name: "404 is final", answer: 404, deferr: &hubv1.Deferral{On_480: true}, status: 404, reaches: true},
		{name: "destination's own 202", answer: 202, status: 202, reaches: true},
		{name: "behind a non-empty queue", queue: true, status: 202, stored: "behind"},
		{name: "queue full", edges: []string{deadTCPEdge}, err: fmt.Errorf("netb: %w", ErrDeferFull), status: 503, reason: "Deferred Delivery Queue Full"},
		{name: "store failed", edges: []string{deadTCPEdge}, err: errors.New("no quorum"), status: 503, reason: "Service Unavailable"},
		{name: "store failed behind a queue", queue: true, err: errors.New("no quorum"), status: 503, reason: "Deferred Delivery Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fd := &fakeDeferrer{err: tc.err}
			l := newDeferLab(t, fd)
			cs := labState(l.a, l.b)
			if tc.edges != nil {
				cs.Networks[1].Edges = tc.edges
			}
			cs.Networks[1].Deferral = tc.deferr
			if tc.queue {
				cs.Queued = []*hubv1.QueuedMessage{queued}
			}
			l.state.set(cs)
			if tc.answer != 0 {
				l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
					_ = tx.Respond(sip.NewResponseFromRequest(req, tc.answer, "Answer", nil))
				})
			}
			req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
			if tc.toTag {
				req.To().Params.Add("tag", "remote")
			}
			res := l.a.do(req)
			if res.StatusCode != tc.status || (tc.reason != "" && res.Reason != tc.reason) {
				t.Fatalf("got %d %s, want %d %s", res.StatusCode, res.Reason, tc.status, tc.reason)
			}
			if tc.status == 503 && res.GetHeader("Retry-After") == nil {
				t.Error("503 without Retry-After")
			}
			got := fd.deferred()
			switch {
			case tc.stored == "" && len(got) != 0:
				t.Fatalf("stored (%s), want not", got[0].Cause)
			case tc.stored != "" && (len(got) != 1 || got[0].Cause != tc.stored):
				t.Fatalf("stored %v, want cause %s", got, tc.stored)
			case tc.stored != "":
				m := got[0]
				if m.Source != "neta" || m.Destination != "netb" || m.AuditSeq == 0 || m.Req.CallID().Value() != req.CallID().Value() {
					t.Errorf("handed over %+v", m)
				}
				e := l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", 202, req.CallID().Value())
				if e.Reason == "Accepted" {
					t.Errorf("202 entry does not say it was stored: %q", e.Reason)
				}
			}
			select {
			case <-l.b.reqs:
				if !tc.reaches {
					t.Error("the MESSAGE reached b")
				}
			case <-time.After(100 * time.Millisecond):
				if tc.reaches {
					t.Error("the MESSAGE did not reach b")
				}
			}
		})
	}
}

// fsmState is a StateSource and queue.Proposer over one in-memory state,
// as a Raft node and its admin server are for hubd.
type fsmState struct {
	fakeState
	mu  sync.Mutex
	idx uint64
}

func (f *fsmState) Propose(_ context.Context, cmd *hubv1.Command) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.p.Load()
	next, err := raft.ApplyTo(cur, cur.Index+1, cmd)
	if err != nil {
		return 0, err
	}
	f.p.Store(next)
	return next.Index, nil
}

type alwaysLeader struct{}

func (alwaysLeader) IsLeader() bool { return true }

// hubSender and hubDeferrer are what cmd/hubd wires: the queue sends
// through Originate, the proxy stores through the queue.
type hubSender struct{ h *Hub }

func (s hubSender) Send(ctx context.Context, req *sip.Request, src, dst, note string) (*sip.Response, error) {
	res, err := s.h.Originate(ctx, req, dst, OriginateOptions{Source: src, Note: note})
	if errors.Is(err, ErrOriginateRefused) {
		return nil, fmt.Errorf("%w: %w", queue.ErrRefused, err)
	}
	return res, err
}

// hubDeferrer's queue is set after the hub starts (as in cmd/hubd): atomic.
type hubDeferrer struct{ q atomic.Pointer[queue.Queue] }

func (d *hubDeferrer) Defer(ctx context.Context, m *DeferredMessage) (string, error) {
	id, err := d.q.Load().Store(ctx, m.Req, m.Source, m.Destination, m.AuditSeq, m.Received)
	if errors.Is(err, queue.ErrFull) {
		return "", fmt.Errorf("%w: %w", ErrDeferFull, err)
	}
	return id, err
}
func (d *hubDeferrer) Alive(dst string) { d.q.Load().Alive(dst) }

// End to end in one process: with b's edges down MESSAGEs get 202, and
// when b comes back they arrive in order with their original Call-ID,
// tags, CSeq and body; the limit answers 503.
func TestStoreAndForwardInProcess(t *testing.T) {
	st := &fsmState{}
	au := &memAudit{}
	a := newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	b := newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	cs := labState(a, b)
	cs.Networks[1].Edges = []string{deadTCPEdge}
	cs.Networks[1].Deferral = &hubv1.Deferral{MaxMessages: 12}
	st.set(cs)
	dd := &hubDeferrer{}
	h := startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", RouteSecret: []byte("s"), Deferrer: dd}, st, au)
	q, err := queue.New(queue.Config{NodeID: "n1", Hostname: "127.0.0.1", Tick: 20 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Rate: 500, Burst: 50},
		st, st, alwaysLeader{}, hubSender{h}, au)
	if err != nil {
		t.Fatal(err)
	}
	dd.q.Store(q)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 12
	hubAddr := h.Addrs()[0].String()
	var sent []*sip.Request
	for i := 0; i < n; i++ {
		req := a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
		req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		req.SetBody([]byte(fmt.Sprintf("message %d \x00 binary-safe", i)))
		if res := a.do(req); res.StatusCode != 202 {
			t.Fatalf("message %d: %d %s, want 202", i, res.StatusCode, res.Reason)
		}
		sent = append(sent, req)
	}
	over := a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	if res := a.do(over); res.StatusCode != 503 || res.GetHeader("Retry-After") == nil {
		t.Fatalf("over the limit: %d %s, want 503 with Retry-After", res.StatusCode, res.Reason)
	}
	if d := len(st.State().Queue("netb")); d != n {
		t.Fatalf("queue depth %d, want %d", d, n)
	}

	// b comes back.
	cs = labState(a, b)
	cs.Networks[1].Deferral = &hubv1.Deferral{MaxMessages: 12}
	cs.Queued = st.State().Proto().Queued
	st.set(cs)
	for i := 0; i < n; i++ {
		var got *sip.Request
		select {
		case got = <-b.reqs:
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
		if got.Method != sip.MESSAGE {
			i--
			continue // the probe
		}
		w := sent[i]
		ft, _ := got.From().Params.Get("tag")
		wt, _ := w.From().Params.Get("tag")
		if got.CallID().Value() != w.CallID().Value() || string(got.Body()) != string(w.Body()) || ft != wt ||
			got.CSeq().Value() != w.CSeq().Value() || got.Recipient.String() != w.Recipient.String() {
			t.Fatalf("delivery %d: Call-ID %s body %q, want %s %q", i, got.CallID().Value(), got.Body(), w.CallID().Value(), w.Body())
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(st.State().Queue("netb")) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := len(st.State().Queue("netb")); d != 0 {
		t.Fatalf("queue depth %d after delivery", d)
	}
	// Each delivery attempt is audited as a request of the hub tied to the
	// stored one.
	if es := au.find(ledger.KindRequest, "MESSAGE", 0, sent[0].CallID().Value()); len(es) < 2 || es[len(es)-1].Reason == "" {
		t.Errorf("delivery attempt entries %v", es)
	}
}
