package lists

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// countingSender answers everything with 200 and counts by method; it
// keeps the back-end SUBSCRIBEs so the benchmark can NOTIFY on them.
type countingSender struct {
	notifies, subscribes atomic.Int64
	mu                   sync.Mutex
	backs                []sent
}

func (c *countingSender) Send(_ context.Context, req *sip.Request, src, dst, _ string, _ bool) (*sip.Response, error) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	switch req.Method {
	case sip.NOTIFY:
		c.notifies.Add(1)
	case sip.SUBSCRIBE:
		c.subscribes.Add(1)
		c.mu.Lock()
		c.backs = append(c.backs, sent{req: req, src: src, dst: dst})
		c.mu.Unlock()
	}
	return res, nil
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// listScenario subscribes watchers in network a, each to a personal list
// of the same presentities in b, and returns the service once every first
// NOTIFY has gone out.
func listScenario(tb testing.TB, watchers, presentities int, share bool) (*Service, *countingSender, *fakeClock) {
	tb.Helper()
	var pres []*hubv1.ListEntry
	for p := range presentities {
		pres = append(pres, &hubv1.ListEntry{Uri: fmt.Sprintf("sip:p%d@b.example", p)})
	}
	ls := make([]*hubv1.ResourceList, watchers)
	for w := range ls {
		ls[w] = &hubv1.ResourceList{Uri: fmt.Sprintf("sip:w%d-buddies@lists.hub.example", w), Owner: fmt.Sprintf("sip:w%d@a.example", w), Entries: pres, Revision: 1}
	}
	st := labState(tb, share, ls...)
	snd, clock := &countingSender{}, newFakeClock()
	svc, err := New(Config{Domain: "lists.hub.example", Sender: snd, Clock: clock, State: func() *raft.State { return st },
		Contact:               func(u, _ string) sip.Uri { return sip.Uri{Scheme: "sip", User: u, Host: "hub.example"} },
		MaxBackendsPerNetwork: watchers * presentities, MaxSubscriptions: watchers})
	if err != nil {
		tb.Fatal(err)
	}
	contact := func(u string) sip.Uri { return sip.Uri{Scheme: "sip", User: u, Host: "hub.example"} }
	for w := range watchers {
		req := subscribeReq(tb, fmt.Sprintf("w%d", w), ls[w].Uri, subOpts{})
		svc.Serve(Request{Req: req, Source: "a", State: st, Respond: func(*sip.Response) {}, Contact: contact})
	}
	waitFor(tb, "first NOTIFYs", func() bool { return snd.notifies.Load() >= int64(watchers) })
	waitFor(tb, "back-end SUBSCRIBEs", func() bool { _, b := svc.Counts(); return snd.subscribes.Load() >= int64(b) })
	return svc, snd, clock
}

// BenchmarkViewSharing is issue 13's number: 10,000 watchers in a, each
// with a personal list of the same 50 presentities in b, view shared.
// Reported: back-end subscriptions toward b on this node (the Kamailio
// model needs watchers x presentities), NOTIFYs per second toward a's
// watchers when every presentity changes once a minute, and the memory of
// one list subscription.
func BenchmarkViewSharing(b *testing.B) {
	const watchers, presentities = 10000, 50
	for b.Loop() {
		before := heapInUse()
		svc, snd, clock := listScenario(b, watchers, presentities, true)
		perSub := float64(heapInUse()-before) / watchers
		backs := svc.BackendsToward("b")

		// Every presentity changes once within one minute (one every
		// 1.2 s): count the NOTIFYs that reach the watchers.
		start := snd.notifies.Load()
		snd.mu.Lock()
		bes := append([]sent(nil), snd.backs...)
		snd.mu.Unlock()
		for i, be := range bes {
			clock.Advance(1200 * time.Millisecond)
			var got *sip.Response
			svc.Serve(Request{Req: backendNotifyReq(be, "active", pidf(be.req.Recipient.String(), fmt.Sprint(i))), Source: "b",
				Respond: func(r *sip.Response) { got = r }})
			if got == nil || got.StatusCode != 200 {
				b.Fatalf("back-end NOTIFY answered %v", got)
			}
		}
		// A watcher's changes that arrive while its NOTIFY is in flight go
		// out together in the next one, so this is at most
		// presentities x watchers.
		waitFor(b, "fan-out done", func() bool { return idle(svc) })
		perMinute := float64(snd.notifies.Load() - start)
		svc.Close()

		b.ReportMetric(float64(backs), "backend-subs")
		b.ReportMetric(float64(watchers*presentities), "backend-subs-unshared")
		b.ReportMetric(perMinute/60, "notify/s")
		b.ReportMetric(perSub, "B/list-sub")
	}
}

// BenchmarkBackendMemory: the memory of one back-end subscription,
// measured with the default view (one per watcher per presentity) less the
// list subscriptions' own share.
func BenchmarkBackendMemory(b *testing.B) {
	const watchers, presentities = 1000, 50
	for b.Loop() {
		before := heapInUse()
		shared, _, _ := listScenario(b, watchers, presentities, true)
		sharedBytes := float64(heapInUse() - before)
		shared.Close()
		shared = nil

		before = heapInUse()
		unshared, _, _ := listScenario(b, watchers, presentities, false)
		unsharedBytes := float64(heapInUse() - before)
		n := unshared.BackendsToward("b")
		unshared.Close()
		b.ReportMetric((unsharedBytes-sharedBytes)/float64(n-presentities), "B/backend-sub")
		b.ReportMetric(float64(n), "backend-subs")
	}
}

// idle reports whether no subscription has a NOTIFY to send.
func idle(s *Service) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.sending || len(sub.dirty) > 0 {
			return false
		}
	}
	return true
}
