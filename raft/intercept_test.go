package raft

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func liCmd(op any) *hubv1.Command {
	c := &hubv1.Command{Version: 1, TimeUnixNano: clock, Actor: "lea-1;role=lawful-intercept"}
	switch op := op.(type) {
	case *hubv1.PutWarrant:
		c.Op = &hubv1.Command_PutWarrant{PutWarrant: op}
	case *hubv1.DeleteWarrant:
		c.Op = &hubv1.Command_DeleteWarrant{DeleteWarrant: op}
	case *hubv1.SetCapture:
		c.Op = &hubv1.Command_SetCapture{SetCapture: op}
	default:
		return cmd(op)
	}
	return c
}

func userWarrant(id, target string) *hubv1.Warrant {
	return &hubv1.Warrant{Id: id, Kind: hubv1.WarrantTargetKind_WARRANT_TARGET_USER, Target: target,
		StartUnixNano: clock, EndUnixNano: clock + 3600e9, Signalling: true, Bodies: true, Reference: "order 7/2026"}
}

func TestInterceptCommands(t *testing.T) {
	base := Empty()
	var err error
	if base, err = ApplyTo(base, 1, addNet("a")); err != nil {
		t.Fatal(err)
	}
	bad := func(mut func(w *hubv1.Warrant)) *hubv1.PutWarrant {
		w := userWarrant("w1", "sip:alice@a.example")
		mut(w)
		return &hubv1.PutWarrant{Warrant: w}
	}
	for _, tc := range []struct {
		name string
		op   any
		want error
	}{
		{"user warrant", &hubv1.PutWarrant{Warrant: userWarrant("w1", "sip:alice@a.example")}, nil},
		{"no warrant", &hubv1.PutWarrant{}, ErrInvalid},
		{"bad id", bad(func(w *hubv1.Warrant) { w.Id = "W 1" }), ErrInvalid},
		{"target not canonical", bad(func(w *hubv1.Warrant) { w.Target = "sip:alice@A.example" }), ErrInvalid},
		{"target not a uri", bad(func(w *hubv1.Warrant) { w.Target = "alice" }), ErrInvalid},
		{"end before start", bad(func(w *hubv1.Warrant) { w.EndUnixNano = w.StartUnixNano }), ErrInvalid},
		{"delivers nothing", bad(func(w *hubv1.Warrant) { w.Signalling, w.Bodies = false, false }), ErrInvalid},
		{"control chars in reference", bad(func(w *hubv1.Warrant) { w.Reference = "a\nb" }), ErrInvalid},
		{"no kind", bad(func(w *hubv1.Warrant) { w.Kind = 0 }), ErrInvalid},
		{"domain", bad(func(w *hubv1.Warrant) { w.Kind, w.Target = hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN, "a.example" }), nil},
		{"network", bad(func(w *hubv1.Warrant) { w.Kind, w.Target = hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK, "a" }), nil},
		{"delete unknown", &hubv1.DeleteWarrant{Id: "nope"}, ErrNotFound},
		{"capture network", &hubv1.SetCapture{Network: "a", On: true}, nil},
		{"capture unknown network", &hubv1.SetCapture{Network: "zz", On: true}, ErrNotFound},
		{"capture both", &hubv1.SetCapture{Network: "a", All: true, On: true}, ErrInvalid},
		{"capture neither", &hubv1.SetCapture{On: true}, ErrInvalid},
		{"capture all", &hubv1.SetCapture{All: true, On: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCommand(base, liCmd(tc.op))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckCommand = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCanonicalWarrantTarget(t *testing.T) {
	for _, tc := range []struct {
		kind       hubv1.WarrantTargetKind
		in, want   string
		wantErrStr bool
	}{
		{hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@A.Example", "sip:alice@a.example", false},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sips:alice@a.example:5061", "sip:alice@a.example", false},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "tel:+123", "", true},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN, "A.Example", "a.example", false},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN, "a..b", "", true},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK, "net-a", "net-a", false},
		{hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK, "Net A", "", true},
	} {
		got, err := CanonicalWarrantTarget(tc.kind, tc.in)
		if (err != nil) != tc.wantErrStr || got != tc.want {
			t.Errorf("CanonicalWarrantTarget(%v, %q) = %q, %v; want %q (error %v)", tc.kind, tc.in, got, err, tc.want, tc.wantErrStr)
		}
	}
}

// Warrants live in the replicated state and its snapshots but never in
// Proto, the copy admin reads (GetState) return.
func TestWarrantsConfidentialAndSnapshotted(t *testing.T) {
	f := NewFSM(nil, nil)
	idx := uint64(0)
	apply := func(op any) {
		t.Helper()
		idx++
		if r := applyLog(t, f, idx, liCmd(op)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	apply(&hubv1.AddNetwork{Network: testNetwork("a")})
	apply(&hubv1.PutWarrant{Warrant: userWarrant("w2", "sip:alice@a.example")})
	apply(&hubv1.PutWarrant{Warrant: userWarrant("w1", "sip:bob@a.example")})
	apply(&hubv1.SetCapture{Network: "a", On: true})
	// An unrelated change keeps the warrants (ApplyTo works on the full copy).
	apply(&hubv1.PolicyAllow{Destination: "a", All: true})
	s := f.State()
	if n := len(s.Warrants()); n != 2 || s.Warrants()[0].GetId() != "w1" || s.Warrant("w2").GetCreatedBy() == "" {
		t.Fatalf("warrants = %v", s.Warrants())
	}
	if got := s.Proto().GetWarrants(); len(got) != 0 {
		t.Fatalf("Proto leaks %d warrants", len(got))
	}
	if !s.Captured("a") || s.Captured("b") || !s.CaptureOn() || s.Proto().GetCapture() == nil {
		t.Fatal("capture switch for a not set")
	}
	restored := NewFSM(nil, nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(restored.State().fullProto(), s.fullProto()) || len(restored.State().Warrants()) != 2 {
		t.Fatal("snapshot lost warrants or capture")
	}
	// A restore (an operator's saved state) can neither inject nor drop warrants.
	rs := s.Proto()
	rs.Warrants = []*hubv1.Warrant{userWarrant("evil", "sip:carol@a.example")}
	idx++
	rc := cmd(nil)
	rc.Op = &hubv1.Command_RestoreState{RestoreState: &hubv1.RestoreState{State: rs}}
	if r := applyLog(t, f, idx, rc); r.Err != nil {
		t.Fatal(r.Err)
	}
	if f.State().Warrant("evil") != nil || len(f.State().Warrants()) != 2 {
		t.Fatalf("restore changed warrants: %v", f.State().Warrants())
	}
	// Updating keeps the creator; delete removes; capture off clears.
	w := userWarrant("w1", "sip:bob@a.example")
	w.EndUnixNano = clock + 1
	apply(&hubv1.PutWarrant{Warrant: w})
	if got := f.State().Warrant("w1"); got.GetEndUnixNano() != clock+1 || got.GetCreatedBy() != "lea-1;role=lawful-intercept" {
		t.Fatalf("updated warrant = %v", got)
	}
	apply(&hubv1.DeleteWarrant{Id: "w1"})
	apply(&hubv1.SetCapture{Network: "a", On: false})
	if f.State().Warrant("w1") != nil || f.State().Captured("a") || f.State().CaptureOn() {
		t.Fatal("delete or capture off did not apply")
	}
}
