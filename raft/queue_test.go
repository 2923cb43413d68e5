package raft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func queueStore(id, dst string, size int, maxN uint32, maxB uint64) *hubv1.Command {
	return &hubv1.Command{Version: 1, TimeUnixNano: 1000, Actor: "test", Op: &hubv1.Command_QueueStore{QueueStore: &hubv1.QueueStore{
		Message: &hubv1.QueuedMessage{Id: id, Destination: dst, Source: "a", Request: bytes.Repeat([]byte("x"), size),
			StoredUnixNano: 1000, ExpiresUnixNano: 2000, CallId: "c-" + id},
		MaxMessages: maxN, MaxBytes: maxB,
	}}}
}

func queueRemove(dst string, outcome hubv1.QueueOutcome, ids ...string) *hubv1.Command {
	return &hubv1.Command{Version: 1, TimeUnixNano: 3000, Actor: "test", Op: &hubv1.Command_QueueRemove{QueueRemove: &hubv1.QueueRemove{
		Destination: dst, Ids: ids, Outcome: outcome}}}
}

// Stores keep commit order per destination, limits refuse with
// ErrQueueFull, removes take exactly the named messages, and the queues
// survive a snapshot round trip.
func TestQueueCommands(t *testing.T) {
	f := NewFSM(discardLogger(), nil)
	applyLog(t, f, 1, addNet("a"))
	applyLog(t, f, 2, addNet("b"))
	steps := []struct {
		name string
		cmd  *hubv1.Command
		want error
	}{
		{"first", queueStore("m1", "b", 10, 3, 100), nil},
		{"second", queueStore("m2", "b", 10, 3, 100), nil},
		{"duplicate id", queueStore("m2", "b", 10, 3, 100), ErrAlreadyExists},
		{"bytes full", queueStore("m3", "b", 81, 3, 100), ErrQueueFull},
		{"third", queueStore("m3", "b", 80, 3, 100), nil},
		{"count full", queueStore("m4", "b", 1, 3, 1000), ErrQueueFull},
		{"other destination", queueStore("m5", "a", 1, 3, 100), nil},
		{"unknown destination", queueStore("m6", "zz", 1, 3, 100), ErrNotFound},
		{"no limits", queueStore("m7", "a", 1, 0, 0), ErrInvalid},
		{"empty request", queueStore("m8", "a", 0, 3, 100), ErrInvalid},
		{"remove middle and unknown", queueRemove("b", hubv1.QueueOutcome_QUEUE_OUTCOME_DELIVERED, "m2", "nope"), nil},
		{"remove without outcome", queueRemove("b", hubv1.QueueOutcome_QUEUE_OUTCOME_UNSPECIFIED, "m1"), ErrInvalid},
		{"after remove", queueStore("m9", "b", 1, 3, 100), nil},
	}
	for i, st := range steps {
		res := applyLog(t, f, uint64(10+i), st.cmd)
		if st.want == nil && res.Err != nil || st.want != nil && !errors.Is(res.Err, st.want) {
			t.Fatalf("%s: got %v, want %v", st.name, res.Err, st.want)
		}
	}
	s := f.State()
	var ids []string
	var last uint64
	for _, m := range s.Queue("b") {
		ids = append(ids, m.GetId())
		if m.GetSeq() <= last {
			t.Errorf("seq %d after %d", m.GetSeq(), last)
		}
		last = m.GetSeq()
	}
	if got := ids; len(got) != 3 || got[0] != "m1" || got[1] != "m3" || got[2] != "m9" {
		t.Errorf("queue b = %v, want [m1 m3 m9]", got)
	}
	if b := s.QueueBytes("b"); b != 91 {
		t.Errorf("bytes %d, want 91", b)
	}
	if d := s.QueueDestinations(); len(d) != 2 {
		t.Errorf("destinations %v", d)
	}
	// Draining a queue empties it entirely.
	applyLog(t, f, 40, queueRemove("a", hubv1.QueueOutcome_QUEUE_OUTCOME_EXPIRED, "m5"))
	if q := f.State().Queue("a"); len(q) != 0 || f.State().QueueBytes("a") != 0 {
		t.Errorf("queue a not empty: %v", q)
	}

	data := snapshotBytes(t, f)
	g := NewFSM(discardLogger(), nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.State().Proto(), f.State().Proto()) {
		t.Errorf("restored state differs")
	}
	if q := g.State().Queue("b"); len(q) != 3 || q[2].GetId() != "m9" || g.State().QueueBytes("b") != 91 {
		t.Errorf("restored queue %v", q)
	}
	// A non-queue command keeps the queues (the slow path rebuilds them).
	applyLog(t, f, 41, addNet("c"))
	if q := f.State().Queue("b"); len(q) != 3 {
		t.Errorf("queue lost on an ordinary command: %v", q)
	}
}

// All queues together are bounded in bytes, whatever each destination's
// own limit says (memory on every node, snapshot size).
func TestQueueTotalBytes(t *testing.T) {
	f := NewFSM(discardLogger(), nil)
	applyLog(t, f, 1, addNet("a"))
	applyLog(t, f, 2, addNet("b"))
	per := MaxQueuedRequestBytes
	n := MaxQueuedTotalBytes / per
	idx := uint64(3)
	for i := 0; i < n; i++ {
		if res := applyLog(t, f, idx, queueStore(fmt.Sprintf("m%d", i), []string{"a", "b"}[i%2], per, 1<<20, 1<<40)); res.Err != nil {
			t.Fatalf("store %d: %v", i, res.Err)
		}
		idx++
	}
	if res := applyLog(t, f, idx, queueStore("over", "a", per, 1<<20, 1<<40)); !errors.Is(res.Err, ErrQueueFull) {
		t.Fatalf("over the total: %v, want ErrQueueFull", res.Err)
	}
	idx++
	// Removing makes room again; the count follows removals.
	applyLog(t, f, idx, queueRemove("a", hubv1.QueueOutcome_QUEUE_OUTCOME_DELIVERED, "m0"))
	if res := applyLog(t, f, idx+1, queueStore("again", "a", per, 1<<20, 1<<40)); res.Err != nil {
		t.Fatalf("after a removal: %v", res.Err)
	}
}
