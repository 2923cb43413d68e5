package lists

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock runs AfterFunc callbacks when Advance passes their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves time on and runs the timers due, in time order, each on
// the caller's goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var due *fakeTimer
		for i, t := range c.timers {
			if t.stopped {
				continue
			}
			if !t.at.After(end) {
				due = t
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				c.now = t.at
			}
			break
		}
		if due == nil {
			c.now = end
			c.timers = removeStopped(c.timers)
			c.mu.Unlock()
			return
		}
		due.stopped = true
		c.mu.Unlock()
		due.f()
	}
}

func removeStopped(ts []*fakeTimer) []*fakeTimer {
	out := ts[:0]
	for _, t := range ts {
		if !t.stopped {
			out = append(out, t)
		}
	}
	return out
}

// sent is one request the service sent through the fake Sender.
type sent struct {
	req      *sip.Request
	src, dst string
	streams  bool // sent over stream edges only
}

// fakeSender answers back-end SUBSCRIBEs with 200 (To tag, Expires) and
// watcher NOTIFYs with 200, unless answer says otherwise, and records
// everything.
type fakeSender struct {
	mu     sync.Mutex
	reqs   []sent
	answer func(req *sip.Request, dst string) int
	resHdr func(req *sip.Request) []sip.Header // extra headers for a response
	notify chan sent
}

func newFakeSender() *fakeSender { return &fakeSender{notify: make(chan sent, 10000)} }

func (f *fakeSender) Send(_ context.Context, req *sip.Request, src, dst, _ string, streams bool) (*sip.Response, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, sent{req: req, src: src, dst: dst, streams: streams})
	answer, resHdr := f.answer, f.resHdr
	f.mu.Unlock()
	code := 200
	if answer != nil {
		code = answer(req, dst)
	}
	if code == 0 {
		return nil, fmt.Errorf("fake: no edge answered")
	}
	res := sip.NewResponseFromRequest(req, code, "Fake", nil)
	if to := res.To(); to != nil && !to.Params.Has("tag") {
		to.Params.Add("tag", "be"+sip.GenerateTagN(6))
	}
	if req.Method == sip.SUBSCRIBE && code == 200 {
		res.AppendHeader(sip.NewHeader("Expires", "600"))
	}
	if resHdr != nil {
		for _, h := range resHdr(req) {
			res.AppendHeader(h)
		}
	}
	if req.Method == sip.NOTIFY {
		f.notify <- sent{req: req, src: src, dst: dst, streams: streams}
	}
	return res, nil
}

// subscribes returns the back-end SUBSCRIBEs sent (not the un-SUBSCRIBEs).
func (f *fakeSender) subscribes() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sent
	for _, s := range f.reqs {
		if s.req.Method == sip.SUBSCRIBE && headerValue(s.req, "Expires") != "0" {
			out = append(out, s)
		}
	}
	return out
}

// labState: network a (a.example) watches network b (b.example) under
// presence policy; b grants a shared view when share is set; network c has
// no presence policy toward anyone.
func labState(t testing.TB, share bool, lists ...*hubv1.ResourceList) *raft.State {
	t.Helper()
	net := func(id string) *hubv1.Network {
		return &hubv1.Network{Id: id, Domains: []string{id + ".example"}, Edges: []string{"sip:edge." + id + ".example"},
			Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE}
	}
	cs := &hubv1.ClusterState{
		Networks: []*hubv1.Network{net("a"), net("b"), net("c")},
		Policies: []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a",
			Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}, ShareViews: share}}}},
		Lists: lists,
	}
	return raft.NewState(1, cs)
}

type lab struct {
	t     *testing.T
	svc   *Service
	snd   *fakeSender
	clock *fakeClock
	mu    sync.Mutex
	state *raft.State
}

func newLab(t *testing.T, st *raft.State, mod func(*Config)) *lab {
	t.Helper()
	l := &lab{t: t, snd: newFakeSender(), clock: newFakeClock(), state: st}
	cfg := Config{
		Domain: "lists.hub.example", Sender: l.snd, Clock: l.clock,
		State: func() *raft.State { l.mu.Lock(); defer l.mu.Unlock(); return l.state },
		Contact: func(user, _ string) sip.Uri {
			p := sip.NewParams()
			p.Add("chsvc", "lists.hub.example")
			return sip.Uri{Scheme: "sip", User: user, Host: "hub.example", Port: 5060, UriParams: p}
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.svc = svc
	t.Cleanup(svc.Close)
	return l
}

func (l *lab) setState(st *raft.State) {
	l.mu.Lock()
	l.state = st
	l.mu.Unlock()
	l.svc.StateChanged(st)
}

// serve passes req to the service as the core would and returns the
// response.
func (l *lab) serve(req *sip.Request, source string) *sip.Response {
	l.t.Helper()
	var got *sip.Response
	l.svc.Serve(Request{Req: req, Source: source, State: l.state,
		Respond: func(r *sip.Response) {
			if got == nil && r.StatusCode >= 200 {
				got = r
			}
		},
		Contact: func(user string) sip.Uri {
			return sip.Uri{Scheme: "sip", User: user, Host: "hub.example", Port: 5060}
		}})
	if got == nil {
		l.t.Fatalf("%s: no final response", req.Method)
	}
	return got
}

// watcherSubscribe builds a list SUBSCRIBE from user@a.example.
type subOpts struct {
	event     string
	supported string
	require   string
	expires   string
	body      []byte
	encoding  string
	ctype     string
	toTag     string
	callID    string
	fromTag   string
}

func subscribeReq(t testing.TB, user, target string, o subOpts) *sip.Request {
	t.Helper()
	var ru sip.Uri
	if err := sip.ParseUri(target, &ru); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.SUBSCRIBE, ru)
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "edge.a.example", Port: 5060, Params: func() sip.HeaderParams {
		p := sip.NewParams()
		p.Add("branch", sip.GenerateBranch())
		return p
	}()})
	fp := sip.NewParams()
	if o.fromTag == "" {
		o.fromTag = sip.GenerateTagN(8)
	}
	fp.Add("tag", o.fromTag)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "a.example"}, Params: fp})
	tp := sip.NewParams()
	if o.toTag != "" {
		tp.Add("tag", o.toTag)
	}
	req.AppendHeader(&sip.ToHeader{Address: ru, Params: tp})
	if o.callID == "" {
		o.callID = sip.GenerateTagN(12)
	}
	cid := sip.CallIDHeader(o.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "10.0.0.1", Port: 5070}})
	rr := sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "edge.a.example", UriParams: func() sip.HeaderParams {
		p := sip.NewParams()
		p.Add("lr", "")
		return p
	}()}}
	req.AppendHeader(&rr)
	if o.event == "" {
		o.event = "presence"
	}
	req.AppendHeader(sip.NewHeader("Event", o.event))
	if o.supported != "-" {
		if o.supported == "" {
			o.supported = "eventlist"
		}
		req.AppendHeader(sip.NewHeader("Supported", o.supported))
	}
	if o.require != "" {
		req.AppendHeader(sip.NewHeader("Require", o.require))
	}
	if o.expires != "" {
		req.AppendHeader(sip.NewHeader("Expires", o.expires))
	}
	if o.body != nil {
		if o.ctype == "" {
			o.ctype = "application/resource-lists+xml"
		}
		req.AppendHeader(sip.NewHeader("Content-Type", o.ctype))
		if o.encoding != "" {
			req.AppendHeader(sip.NewHeader("Content-Encoding", o.encoding))
		}
		req.AppendHeader(sip.NewHeader("Content-Disposition", "recipient-list"))
		req.SetBody(o.body)
	} else {
		req.SetBody(nil)
	}
	return req
}

// backendNotify builds the NOTIFY the presentity's network sends on the
// back-end dialog of s (a SUBSCRIBE the hub sent).
func backendNotifyReq(s sent, state string, pidf string) *sip.Request {
	sreq := s.req
	req := sip.NewRequest(sip.NOTIFY, sreq.Contact().Address)
	tag, _ := sreq.From().Params.Get("tag")
	tp := sip.NewParams()
	tp.Add("tag", tag)
	req.AppendHeader(&sip.ToHeader{Address: sreq.From().Address, Params: tp})
	fp := sip.NewParams()
	fp.Add("tag", "pres"+tag)
	req.AppendHeader(&sip.FromHeader{Address: sreq.To().Address, Params: fp})
	cid := sip.CallIDHeader(sreq.CallID().Value())
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "ps." + s.dst + ".example"}})
	if pidf != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
		req.SetBody([]byte(pidf))
	} else {
		req.SetBody(nil)
	}
	return req
}

func pidf(entity, note string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + entity +
		`"><tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`
}

// nextNotify waits for the next watcher NOTIFY and parses its body.
func (l *lab) nextNotify() (sent, *Notify) {
	l.t.Helper()
	select {
	case s := <-l.snd.notify:
		ct := headerValue(s.req, "Content-Type")
		if s.req.GetHeader("Event").Value() != "presence" && !strings.HasPrefix(s.req.GetHeader("Event").Value(), "presence;") {
			return s, nil
		}
		n, err := ParseNotify(ct, s.req.Body())
		if err != nil {
			l.t.Fatalf("NOTIFY body does not parse: %v\n%s", err, s.req.Body())
		}
		checkShape(l.t, ct, n)
		return s, n
	case <-time.After(5 * time.Second):
		l.t.Fatal("no NOTIFY")
	}
	return sent{}, nil
}

// noNotify checks that no NOTIFY is sent within a short while.
func (l *lab) noNotify() {
	l.t.Helper()
	select {
	case s := <-l.snd.notify:
		l.t.Fatalf("unexpected NOTIFY:\n%s", s.req.String())
	case <-time.After(100 * time.Millisecond):
	}
}

// checkShape: the RLMI root is the start part, every active instance's cid
// names a part, and nothing else has one.
func checkShape(t testing.TB, ct string, n *Notify) {
	t.Helper()
	if !strings.HasPrefix(ct, `multipart/related;type="application/rlmi+xml";start="<`) || strings.Contains(ct, `boundary="`) ||
		strings.Index(ct, ";boundary=") < strings.Index(ct, "start=") {
		t.Errorf("Content-Type not in the belle-sip-safe form: %s", ct)
	}
	cids := 0
	for _, r := range n.RLMI.Resources {
		for _, in := range r.Instances {
			switch in.State {
			case stateActive:
				if _, ok := n.Parts[in.CID]; !ok || in.CID == "" {
					t.Errorf("active instance of %s: cid %q names no part", r.URI, in.CID)
				}
				cids++
			default:
				if in.CID != "" {
					t.Errorf("%s instance of %s has a cid", in.State, r.URI)
				}
			}
		}
	}
	if cids != len(n.Parts) {
		t.Errorf("%d parts for %d active instances", len(n.Parts), cids)
	}
}

// waitFor polls cond (the service's goroutines run asynchronously).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func resourceStates(n *Notify) map[string]string {
	out := map[string]string{}
	for _, r := range n.RLMI.Resources {
		for _, in := range r.Instances {
			out[r.URI] = in.State + "/" + in.Reason
		}
	}
	return out
}
