package lists

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// drain reads NOTIFYs until none comes for a while.
func (l *lab) drain() {
	for {
		select {
		case <-l.snd.notify:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

// A full state larger than a datagram (RFC 3261 18.1.1) is sent whole over
// TCP/TLS only (streams); when no edge takes it that way it is sent again
// split into the smallest NOTIFYs the documents allow — the first
// fullState, the rest partial and not held by max-rate — and the
// subscription lives on. The resources add up to the whole list either
// way; small documents fit a datagram each.
func TestLargeNotify(t *testing.T) {
	cases := []struct {
		name        string
		failStreams bool // no edge takes TCP
		wantSplit   bool
	}{
		{"over TCP", false, false},
		{"no edge takes TCP", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var entries []string
			for i := range 6 {
				entries = append(entries, fmt.Sprintf("sip:p%d@b.example", i))
			}
			l := newLab(t, labState(t, false, publicList(buddies, entries...)), func(c *Config) {
				c.Throttle = -1
				c.MaxDatagram = 1800 // a datagram holds one resource and its small document
			})
			o := subOpts{event: "presence;max-rate=0.01", callID: "big", fromTag: "w1"}
			res := l.serve(subscribeReq(t, "alice", buddies, o), "a")
			waitFor(t, "back ends", func() bool { return len(l.snd.subscribes()) == 6 })
			for _, be := range l.snd.subscribes() {
				l.serve(backendNotifyReq(be, "active", pidf(be.req.Recipient.String(), "n")), "b")
			}
			l.clock.Advance(time.Minute) // past max-rate: the changes go out
			l.drain()
			if tc.failStreams {
				l.snd.mu.Lock()
				l.snd.answer = func(req *sip.Request, _ string) int {
					if req.Method == sip.NOTIFY && len(req.String())+viaMargin > 1800 {
						return 0 // only a stream edge would take it, and none answers
					}
					return 200
				}
				l.snd.mu.Unlock()
			}

			o.toTag = tagOf(res.To().Params)
			if r := l.serve(subscribeReq(t, "alice", buddies, o), "a"); r.StatusCode != 200 {
				t.Fatalf("refresh: %d", r.StatusCode)
			}
			seen := map[string]bool{}
			var notifies int
			var lastVersion uint32
			started := false
			for len(seen) < len(entries) {
				s, n := l.nextNotify()
				size := len(s.req.String()) + viaMargin
				if !started && tc.failStreams && s.streams {
					continue // the attempt the stream edges dropped
				}
				notifies++
				if !started {
					if !n.RLMI.FullState {
						t.Fatalf("first NOTIFY after the refresh is not full state: %+v", n.RLMI)
					}
					started = true
				} else if n.RLMI.FullState || n.RLMI.Version != lastVersion+1 {
					t.Fatalf("continuation: fullState %v version %d after %d", n.RLMI.FullState, n.RLMI.Version, lastVersion)
				}
				lastVersion = n.RLMI.Version
				if tc.wantSplit && (s.streams || size > 1800) {
					t.Errorf("NOTIFY as a datagram: streams %v, %d bytes", s.streams, size)
				}
				if !tc.wantSplit && !s.streams {
					t.Errorf("large NOTIFY not confined to stream edges (%d bytes)", size)
				}
				for _, r := range n.RLMI.Resources {
					if seen[r.URI] {
						t.Errorf("%s twice in one full state", r.URI)
					}
					seen[r.URI] = true
					if st := r.Instances[0].State; st != stateActive {
						t.Errorf("%s %s", r.URI, st)
					}
				}
			}
			if tc.wantSplit && notifies < 2 || !tc.wantSplit && notifies != 1 {
				t.Errorf("%d NOTIFYs for the full state", notifies)
			}
			l.noNotify()
		})
	}
}
