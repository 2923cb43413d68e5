package chatroom

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// memStore is a one-node cluster in memory: Propose applies through the
// real FSM rules (raft.ApplyTo) in one order.
type memStore struct {
	mu     sync.Mutex
	st     *raft.State
	subs   map[chan *raft.State]bool
	leader bool
	fail   error         // Propose fails with it when set
	delay  time.Duration // each Propose takes this long (a commit)
}

func newMemStore() *memStore {
	return &memStore{st: raft.Empty(), subs: map[chan *raft.State]bool{}, leader: true}
}

func (m *memStore) State() *raft.State { m.mu.Lock(); defer m.mu.Unlock(); return m.st }
func (m *memStore) IsLeader() bool     { m.mu.Lock(); defer m.mu.Unlock(); return m.leader }

func (m *memStore) Propose(_ context.Context, c *hubv1.Command) (uint64, error) {
	m.mu.Lock()
	if d := m.delay; d > 0 {
		m.mu.Unlock()
		time.Sleep(d)
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	next, err := raft.ApplyTo(m.st, m.st.Index+1, c)
	if err != nil {
		return 0, err
	}
	m.st = next
	for ch := range m.subs {
		select {
		case <-ch:
		default:
		}
		ch <- next
	}
	return next.Index, nil
}

func (m *memStore) Subscribe() (<-chan *raft.State, func()) {
	ch := make(chan *raft.State, 1)
	m.mu.Lock()
	m.subs[ch] = true
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		})
	}
}

func (m *memStore) must(t testing.TB, op any) {
	t.Helper()
	if _, err := m.Propose(context.Background(), cmdOf(op)); err != nil {
		t.Fatal(err)
	}
}

func cmdOf(op any) *hubv1.Command {
	s := &Service{now: time.Now}
	switch op := op.(type) {
	case *hubv1.AddNetwork:
		return &hubv1.Command{Version: 1, TimeUnixNano: time.Now().UnixNano(), Actor: "test", Op: &hubv1.Command_AddNetwork{AddNetwork: op}}
	case *hubv1.SetNetworkStatus:
		return &hubv1.Command{Version: 1, TimeUnixNano: time.Now().UnixNano(), Actor: "test", Op: &hubv1.Command_SetNetworkStatus{SetNetworkStatus: op}}
	default:
		return s.command("test", op)
	}
}

// sent is one request the service sent.
type sent struct {
	req *sip.Request
	dst string
	o   SendOptions
}

// fakeSender records requests; answer decides the status per request
// (default 200).
type fakeSender struct {
	mu     sync.Mutex
	sent   []sent
	answer func(req *sip.Request) int
	notify chan struct{}
}

func newFakeSender() *fakeSender { return &fakeSender{notify: make(chan struct{}, 1000)} }

func (f *fakeSender) Send(_ context.Context, req *sip.Request, dst string, o SendOptions) (*sip.Response, error) {
	f.mu.Lock()
	f.sent = append(f.sent, sent{req: req, dst: dst, o: o})
	ans := f.answer
	f.mu.Unlock()
	code := 200
	if ans != nil {
		code = ans(req)
	}
	select {
	case f.notify <- struct{}{}:
	default:
	}
	return sip.NewResponseFromRequest(req, code, "test", nil), nil
}

// to returns the requests sent to user so far.
func (f *fakeSender) to(user string) []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sent
	for _, s := range f.sent {
		if s.req.Recipient.User+"@"+s.req.Recipient.Host == strings.TrimPrefix(user, "sip:") {
			out = append(out, s)
		}
	}
	return out
}

// waitFor polls cond for up to 5 s.
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

type memAudit struct {
	mu      sync.Mutex
	entries []*ledger.Entry
}

func (a *memAudit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return uint64(len(a.entries)), nil
}

func (a *memAudit) reasons() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.entries {
		out = append(out, e.Reason)
	}
	return out
}

const (
	domain = "rooms.hub.example"
	room   = "sip:team@rooms.hub.example"
	alice  = "sip:alice@a.example"
	bob    = "sip:bob@b.example"
	carol  = "sip:carol@b.example"
)

type env struct {
	store *memStore
	snd   *fakeSender
	aud   *memAudit
	svc   *Service
}

func testNet(id string, roomCreate bool) *hubv1.Network {
	return &hubv1.Network{Id: id, Domains: []string{id + ".example"}, Edges: []string{"sip:edge." + id + ".example:5060"},
		Services:   []hubv1.Service{hubv1.Service_SERVICE_CHAT, hubv1.Service_SERVICE_IM},
		Identity:   &hubv1.Identity{Pins: []string{fmt.Sprintf("%x", sha256.Sum256([]byte(id)))}},
		RoomCreate: roomCreate}
}

// newEnv starts a service over networks a and b with room team holding
// alice (owner, a), bob and carol (b).
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{store: newMemStore(), snd: newFakeSender(), aud: &memAudit{}}
	e.store.must(t, &hubv1.AddNetwork{Network: testNet("a", true)})
	e.store.must(t, &hubv1.AddNetwork{Network: testNet("b", false)})
	e.store.must(t, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: room, Subject: "Team"},
		FirstMember: &hubv1.RoomMember{User: alice, Network: "a", Nickname: "alice", Role: hubv1.RoomRole_ROOM_ROLE_OWNER}}})
	for _, m := range []*hubv1.RoomMember{{User: bob, Network: "b", Nickname: "bob"}, {User: carol, Network: "b", Nickname: "carol"}} {
		e.store.must(t, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room, Member: m}})
	}
	cfg := Config{Domain: domain, NodeID: "n1", Store: e.store, Sender: e.snd, Auditor: e.aud, Rate: 1000, Burst: 1000,
		RosterCoalesce: 20 * time.Millisecond, TakeoverAfter: 200 * time.Millisecond, RetryDelays: []time.Duration{}}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.Start()
	t.Cleanup(svc.Stop)
	e.svc = svc
	return e
}

// msg builds a MESSAGE from user to the room.
func msg(from, to, ct, body string, hdrs ...sip.Header) *sip.Request {
	var ru, fu sip.Uri
	_ = sip.ParseUri(to, &ru)
	_ = sip.ParseUri(from, &fu)
	req := sip.NewRequest(sip.MESSAGE, ru)
	fp := sip.NewParams()
	fp.Add("tag", "ft"+sip.GenerateTagN(4))
	req.AppendHeader(&sip.FromHeader{Address: fu, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: ru, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(12) + "@test")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK"+sip.GenerateTagN(8)))
	if ct != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", ct))
	}
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody([]byte(body))
	return req
}

// serve runs req through the service from network src and returns the
// final response.
func (e *env) serve(req *sip.Request, src string) *sip.Response {
	var res *sip.Response
	e.svc.Serve(&Request{Req: req, Source: src, Transport: "udp",
		Respond: func(r *sip.Response) {
			if res == nil && r.StatusCode >= 200 {
				res = r
			}
		},
		Contact: func(user string) sip.Uri {
			p := sip.NewParams()
			p.Add("chsvc", domain)
			return sip.Uri{Scheme: "sip", User: user, Host: "hub.example", Port: 5060, UriParams: p}
		}})
	return res
}

func (e *env) say(t *testing.T, from, src, body string) {
	t.Helper()
	if res := e.serve(msg(from, room, "text/plain", body), src); res == nil || res.StatusCode != 200 {
		t.Fatalf("MESSAGE from %s: %v", from, res)
	}
}

func bodies(ss []sent) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s.req.Body()))
	}
	return out
}
