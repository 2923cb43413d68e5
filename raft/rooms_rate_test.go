package raft

import (
	"errors"
	"testing"

	"clearhub/proto/hubv1"
)

// The cluster-wide rate limit: a token bucket per sender and room in the
// replicated state, advanced only by command times, so every replica
// decides alike whichever node proposed.
func TestRoomRateLimitInFSM(t *testing.T) {
	const sec = int64(1e9)
	rp := func(at int64, callID string) *hubv1.Command {
		p := post("sip:bob@b.example", "x")
		p.RatePerMinute, p.Burst = 60, 2 // one a second, burst two
		p.Message.CallId = callID
		return roomCmdAt(at, p)
	}
	tests := []struct {
		name string
		cmds []*hubv1.Command
		err  error
	}{
		{"burst allowed", []*hubv1.Command{rp(clock, "1"), rp(clock, "2")}, nil},
		{"beyond the burst refused", []*hubv1.Command{rp(clock, "1"), rp(clock, "2"), rp(clock, "3")}, ErrRoomRateLimited},
		{"refilled after a second", []*hubv1.Command{rp(clock, "1"), rp(clock, "2"), rp(clock+sec, "3")}, nil},
		{"a lagging clock refills nothing", []*hubv1.Command{rp(clock, "1"), rp(clock+sec, "2"), rp(clock+sec, "3"), rp(clock-5*sec, "4")}, ErrRoomRateLimited},
		{"retransmission answered even when empty", []*hubv1.Command{rp(clock, "1"), rp(clock, "2"), rp(clock, "2")}, ErrAlreadyExists},
		{"another sender has its own bucket", []*hubv1.Command{rp(clock, "1"), rp(clock, "2"), func() *hubv1.Command {
			p := post("sip:carol@b.example", "y")
			p.RatePerMinute, p.Burst = 60, 2
			return roomCmdAt(clock, p)
		}()}, nil},
		{"no limit in the command: none applied", []*hubv1.Command{rp(clock, "1"), rp(clock, "2"), roomCmdAt(clock, post("sip:bob@b.example", "z"))}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := roomState(t, append(roomSetup(), tc.cmds...)...)
			if !errors.Is(err, tc.err) && !(tc.err == nil && err == nil) {
				t.Fatalf("error = %v, want %v", err, tc.err)
			}
			if errors.Is(err, ErrRoomRateLimited) && !errors.Is(err, ErrFailedPrecondition) {
				t.Fatal("rate limit must be a failed precondition")
			}
		})
	}
	// Buckets are dropped once full again: the state does not grow with
	// every sender ever seen.
	s, err := roomState(t, append(roomSetup(), rp(clock, "1"), func() *hubv1.Command {
		p := post("sip:carol@b.example", "y")
		p.RatePerMinute, p.Burst = 60, 2
		return roomCmdAt(clock+10*sec, p)
	}())...)
	if err != nil {
		t.Fatal(err)
	}
	if bs := s.Room(testRoom).GetBuckets(); len(bs) != 1 || bs[0].GetSender() != "sip:carol@b.example" {
		t.Fatalf("buckets = %v", bs)
	}
}
