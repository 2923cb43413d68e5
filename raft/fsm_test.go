package raft

import (
	"bytes"
	"errors"
	"io"
	"testing"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// applyLog feeds cmd to f as Raft would, at index.
func applyLog(t *testing.T, f *FSM, index uint64, c *hubv1.Command) *ApplyResult {
	t.Helper()
	data, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.Apply(&hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data}).(*ApplyResult)
	if !ok {
		t.Fatalf("Apply returned %T", res)
	}
	if res.Index != index {
		t.Fatalf("ApplyResult.Index = %d, want %d", res.Index, index)
	}
	return res
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// Every command type applies with the intended effect, times come from the
// command, and a snapshot restored into a fresh FSM is the same state.
func TestFSMCommandsSnapshotRestore(t *testing.T) {
	var seen []*State
	f := NewFSM(discardLogger(), func(s *State) { seen = append(seen, s) })
	sub, cancel := f.Subscribe()
	defer cancel()

	t0 := int64(1_000)
	steps := []*hubv1.Command{
		cmdAt(t0+1, &hubv1.AddNetwork{Network: testNetwork("a", "A.Example")}),
		cmdAt(t0+2, &hubv1.AddNetwork{Network: testNetwork("b")}),
		cmdAt(t0+3, &hubv1.AddNetwork{Network: func() *hubv1.Network {
			n := testNetwork("c")
			n.Identity = &hubv1.Identity{Cidrs: []string{"10.3.0.9/16"}}
			return n
		}()}),
		cmdAt(t0+4, &hubv1.UpdateNetwork{Network: func() *hubv1.Network {
			n := testNetwork("a", "a.example", "a2.example")
			n.DisplayName = "Alpha"
			n.Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED // ignored by update
			n.CreatedUnixNano = 99                                  // ignored
			return n
		}()}),
		cmdAt(t0+5, &hubv1.SetNetworkStatus{Id: "b", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED}),
		cmdAt(t0+6, &hubv1.SetNetworkStatus{Id: "b", Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE}),
		cmdAt(t0+7, &hubv1.PolicyAllow{Destination: "a", Source: "c", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}),
		cmdAt(t0+8, &hubv1.PolicyAllow{Destination: "a", Source: "b"}), // empty: every service
		cmdAt(t0+9, &hubv1.PolicyAllow{Destination: "b", All: true, Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM}}),
		cmdAt(t0+10, &hubv1.PolicyDeny{Destination: "a", Source: "b", Services: []hubv1.Service{hubv1.Service_SERVICE_FILE}}),
		cmdAt(t0+11, &hubv1.PolicyDeny{Destination: "b", All: true, Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}),
		cmdAt(t0+12, &hubv1.PolicyAllow{Destination: "c", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_CHAT}}),
		cmdAt(t0+13, &hubv1.PutNode{Node: &hubv1.Node{Id: "n1", RaftAddr: "127.0.0.1:7001", AdminAddr: "127.0.0.1:9443"}}),
		cmdAt(t0+14, &hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "127.0.0.1:7002"}}),
		cmdAt(t0+15, &hubv1.PutNode{Node: &hubv1.Node{Id: "n1", RaftAddr: "127.0.0.1:7011"}}),
		cmdAt(t0+16, &hubv1.RemoveNode{Id: "n2"}),
		// c is a source in a's policy and has its own policy: both go.
		cmdAt(t0+17, &hubv1.RemoveNetwork{Id: "c"}),
	}
	for i, c := range steps {
		if res := applyLog(t, f, uint64(i+1), c); res.Err != nil {
			t.Fatalf("step %d: %v", i+1, res.Err)
		}
	}
	s := f.State()
	if s.Index != uint64(len(steps)) {
		t.Errorf("Index = %d, want %d", s.Index, len(steps))
	}
	if len(seen) != len(steps) || seen[len(seen)-1] != s {
		t.Errorf("OnApply saw %d states, want %d ending in the current one", len(seen), len(steps))
	}
	if got := <-sub; got != s {
		t.Errorf("subscriber got index %d, want the latest %d", got.Index, s.Index)
	}

	a := s.Network("a")
	switch {
	case a == nil:
		t.Fatal("network a missing")
	case a.GetDisplayName() != "Alpha" || len(a.GetDomains()) != 2 || a.GetDomains()[0] != "a.example":
		t.Errorf("a after update = %v", a.Network)
	case a.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE:
		t.Errorf("update changed status to %v", a.GetStatus())
	case a.GetCreatedUnixNano() != t0+1 || a.GetUpdatedUnixNano() != t0+4:
		t.Errorf("a times = %d/%d, want %d/%d", a.GetCreatedUnixNano(), a.GetUpdatedUnixNano(), t0+1, t0+4)
	}
	if s.DomainOwner("A2.EXAMPLE") != a {
		t.Error("a2.example not owned by a")
	}
	if b := s.Network("b"); !b.Active() || b.GetUpdatedUnixNano() != t0+6 {
		t.Errorf("b active=%v updated=%d", b.Active(), b.GetUpdatedUnixNano())
	}
	if s.Network("c") != nil || s.DomainOwner("c.example") != nil || s.Policy("c") != nil {
		t.Error("network c or its policy survived removal")
	}
	for _, r := range s.Policy("a").GetRules() {
		if r.GetSource() == "c" {
			t.Error("rule with removed source c survived")
		}
	}
	allowed := []struct {
		src, dst string
		svc      hubv1.Service
		want     bool
	}{
		{"b", "a", hubv1.Service_SERVICE_IM, true},
		{"b", "a", hubv1.Service_SERVICE_CHAT, true},
		{"b", "a", hubv1.Service_SERVICE_FILE, false}, // denied at t0+10
		{"a", "b", hubv1.Service_SERVICE_PRESENCE, true},
		{"a", "b", hubv1.Service_SERVICE_IM, false}, // denied at t0+11
		{"c", "a", hubv1.Service_SERVICE_IM, false}, // c removed
		{"a", "a", hubv1.Service_SERVICE_FILE, true},
	}
	for _, tt := range allowed {
		if got := s.Allowed(tt.src, tt.dst, tt.svc); got != tt.want {
			t.Errorf("Allowed(%s, %s, %v) = %v, want %v", tt.src, tt.dst, tt.svc, got, tt.want)
		}
	}
	if n := s.Nodes(); len(n) != 1 || n[0].GetRaftAddr() != "127.0.0.1:7011" {
		t.Errorf("nodes = %v", n)
	}

	// Deny everything for b's only rule source: the policy empties and goes.
	applyLog(t, f, 100, cmdAt(t0+20, &hubv1.PolicyDeny{Destination: "a", Source: "b"}))
	if f.State().Policy("a") != nil {
		t.Errorf("empty policy kept: %v", f.State().Policy("a"))
	}

	data := snapshotBytes(t, f)
	if again := snapshotBytes(t, f); !bytes.Equal(data, again) {
		t.Error("snapshot encoding is not deterministic")
	}
	g := NewFSM(discardLogger(), nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.State().Proto(), f.State().Proto()) {
		t.Errorf("restored state differs:\n got %v\nwant %v", g.State().Proto(), f.State().Proto())
	}
	if g.State().Index != f.State().Index {
		t.Errorf("restored index %d, want %d", g.State().Index, f.State().Index)
	}
	if g.State().DomainOwner("a2.example") == nil {
		t.Error("restored state lost its domain index")
	}

	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("junk")))); err == nil {
		t.Error("Restore accepted junk")
	}
}

// Invalid commands are refused with the same error on every replica and
// leave the state content as it was.
func TestFSMRejectsDeterministically(t *testing.T) {
	setup := []*hubv1.Command{addNet("a"), addNet("b")}
	bad := []struct {
		name string
		data []byte
		cmd  *hubv1.Command
		want error
	}{
		{"garbage bytes", []byte{0xff, 0xff, 0xff}, nil, ErrInvalid},
		{"unknown version", nil, &hubv1.Command{Version: 9, TimeUnixNano: 1, Op: addNet("c").Op}, ErrUnknownVersion},
		{"duplicate id", nil, addNet("a", "x.example"), ErrAlreadyExists},
		{"domain taken", nil, addNet("c", "b.example"), ErrAlreadyExists},
		{"remove unknown", nil, cmd(&hubv1.RemoveNetwork{Id: "zz"}), ErrNotFound},
		{"policy source and all", nil, cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b", All: true}), ErrInvalid},
		{"invalid network", nil, cmd(&hubv1.AddNetwork{Network: &hubv1.Network{Id: "c"}}), ErrInvalid},
	}
	var errs [2][]string
	for r := range 2 {
		f := NewFSM(discardLogger(), nil)
		for i, c := range setup {
			if res := applyLog(t, f, uint64(i+1), c); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		before := f.State().Proto()
		for i, tt := range bad {
			idx := uint64(10 + i)
			data := tt.data
			if tt.cmd != nil {
				data, _ = proto.Marshal(tt.cmd)
			}
			res, _ := f.Apply(&hraft.Log{Index: idx, Type: hraft.LogCommand, Data: data}).(*ApplyResult)
			if res == nil || !errors.Is(res.Err, tt.want) {
				t.Fatalf("%s: result %+v, want %v", tt.name, res, tt.want)
			}
			errs[r] = append(errs[r], res.Err.Error())
			if f.State().Index != idx {
				t.Errorf("%s: Index = %d, want %d (applied index still advances)", tt.name, f.State().Index, idx)
			}
		}
		if !proto.Equal(before, f.State().Proto()) {
			t.Errorf("rejected commands changed the state")
		}
	}
	for i := range errs[0] {
		if errs[0][i] != errs[1][i] {
			t.Errorf("replicas disagree: %q vs %q", errs[0][i], errs[1][i])
		}
	}
}

// ApplyTo does not touch the state it is given.
func TestApplyToLeavesInputAlone(t *testing.T) {
	s, err := ApplyTo(Empty(), 1, addNet("a"))
	if err != nil {
		t.Fatal(err)
	}
	before := s.Proto()
	if _, err := ApplyTo(s, 2, cmd(&hubv1.UpdateNetwork{Network: testNetwork("a", "z.example")})); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, s.Proto()) || s.DomainOwner("z.example") != nil {
		t.Error("ApplyTo modified its input state")
	}
}

// hashicorp/raft's hclog output lands in slog at Info and above.
func TestHCLogAdapter(t *testing.T) {
	logger, count := newRecorder()
	hl := newHCLogger(logger, 3 /* hclog.Info */)
	hl.Debug("debug line")
	hl.Named("snapshot").With("k", "v").Info("info line", "x", 1)
	hl.StandardLogger(nil).Print("[WARN] std line")
	if count("debug line") != 0 || count("info line") != 1 || count("std line") != 1 {
		t.Errorf("debug=%d info=%d std=%d, want 0 1 1", count("debug line"), count("info line"), count("std line"))
	}
	if hl.IsDebug() || !hl.IsInfo() {
		t.Error("level checks wrong")
	}
}
