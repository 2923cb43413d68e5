package hub

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// recTap copies what involves user alice.
type recTap struct {
	mu  sync.Mutex
	evs []TapEvent
}

func (r *recTap) Wants(_ *raft.State, _, _ string, from, to *sip.Uri) bool {
	return from != nil && from.User == "alice" || to != nil && to.User == "alice"
}

func (r *recTap) Tap(ev TapEvent) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *recTap) wait(t *testing.T, n int) []TapEvent {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r.mu.Lock()
		evs := append([]TapEvent(nil), r.evs...)
		r.mu.Unlock()
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The tap sees a forwarded request and its relayed response, as received
// and oriented; traffic it does not want is never marshalled for it.
func TestTapSeesForwardedTraffic(t *testing.T) {
	tap := &recTap{}
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "udp"})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "udp"})
	l.state.set(labState(l.a, l.b))
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", RouteSecret: []byte("s"), Tap: tap}, l.state, l.audit)
	hubAddr := l.hub.Addrs()[0].String()

	req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	req.SetBody([]byte("hello bob"))
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	if res := l.a.do(req); res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d", res.StatusCode)
	}
	evs := tap.wait(t, 2)
	if len(evs) != 2 {
		t.Fatalf("tap saw %d messages, want request and response", len(evs))
	}
	cid := req.CallID().Value()
	for i, want := range []struct {
		resp bool
		src  string
		line string
	}{{false, l.a.ip, "MESSAGE sip:bob@b.example SIP/2.0"}, {true, l.b.ip, "SIP/2.0 200 OK"}} {
		ev := evs[i]
		if ev.Response != want.resp || ev.SrcNet != "neta" || ev.DstNet != "netb" || ev.CallID != cid || ev.Method != "MESSAGE" ||
			hostOf(ev.Src) != want.src || hostOf(ev.Dst) != "127.0.0.1" || ev.Transport != "udp" || ev.State == nil {
			t.Errorf("event %d: %+v", i, ev)
		}
		if !strings.HasPrefix(string(ev.Wire), want.line) {
			t.Errorf("event %d wire starts %q, want %q", i, firstLine(ev.Wire), want.line)
		}
	}
	if body := string(evs[0].Wire[evs[0].BodyOffset:]); body != "hello bob" {
		t.Errorf("request body at offset = %q", body)
	}

	// carol -> bob: not wanted, not copied.
	other := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	other.From().Address.User = "carol"
	if res := l.a.do(other); res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d", res.StatusCode)
	}
	if evs := tap.wait(t, 3); len(evs) != 2 {
		t.Fatalf("tap copied unwanted traffic: %d events", len(evs))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}
