package hub

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Timer E toward a UDP edge (RFC 3261 17.1.2.2): the hub retransmits the
// forwarded request at T1, 2*T1, ... while nothing comes back, and at T2
// once a provisional response came; a final response to a retransmission
// ends the transaction. (Test timers: T1 50 ms, T2 200 ms.)
func TestLeanTimerE(t *testing.T) {
	cases := []struct {
		name string
		// answer returns what the edge sends for the n-th copy (1-based):
		// nothing, a 100 or a 200.
		answer   func(n int) int
		copies   int           // copies the edge must see
		minGap   time.Duration // least spacing between the last two copies
		maxFirst time.Duration // the second copy comes within this
	}{
		{"silent, then answered", func(n int) int {
			if n == 3 {
				return 200
			}
			return 0
		}, 3, 80 * time.Millisecond, 150 * time.Millisecond},
		{"provisional moves to T2", func(n int) int {
			if n == 1 {
				return 100
			}
			return 200
		}, 2, 150 * time.Millisecond, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edge, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
			if err != nil {
				t.Fatal(err)
			}
			defer edge.Close()
			l := newLab(t, "udp")
			cs := labState(l.a, l.b)
			cs.Networks[1].Edges = []string{"sip:" + edge.LocalAddr().String() + ";transport=udp"}
			l.state.set(cs)

			var seen []time.Time
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 65535)
				var out bytes.Buffer
				for {
					edge.SetReadDeadline(time.Now().Add(3 * time.Second))
					n, from, err := edge.ReadFromUDP(buf)
					if err != nil {
						return
					}
					if !bytes.HasPrefix(buf[:n], []byte("MESSAGE ")) {
						continue
					}
					seen = append(seen, time.Now())
					switch tc.answer(len(seen)) {
					case 100:
						if answer200(buf[:n], &out) {
							b := bytes.Replace(out.Bytes(), []byte("SIP/2.0 200 OK"), []byte("SIP/2.0 100 Trying"), 1)
							edge.WriteToUDP(b, from)
						}
					case 200:
						if answer200(buf[:n], &out) {
							edge.WriteToUDP(out.Bytes(), from)
						}
						return
					}
				}
			}()
			res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp))
			<-done
			if res.StatusCode != 200 {
				t.Fatalf("got %d %s, want 200", res.StatusCode, res.Reason)
			}
			if len(seen) != tc.copies {
				t.Fatalf("edge saw %d copies, want %d", len(seen), tc.copies)
			}
			if g := seen[1].Sub(seen[0]); g > tc.maxFirst {
				t.Errorf("second copy after %s, want within %s", g, tc.maxFirst)
			}
			if g := seen[len(seen)-1].Sub(seen[len(seen)-2]); g < tc.minGap {
				t.Errorf("last copies %s apart, want at least %s", g, tc.minGap)
			}
		})
	}
}
