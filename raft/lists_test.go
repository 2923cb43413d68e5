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

func listCmd(op any) *hubv1.Command {
	c := &hubv1.Command{Version: 1, TimeUnixNano: clock, Actor: "test"}
	switch op := op.(type) {
	case *hubv1.PutList:
		c.Op = &hubv1.Command_PutList{PutList: op}
	case *hubv1.DeleteList:
		c.Op = &hubv1.Command_DeleteList{DeleteList: op}
	case *hubv1.AddListEntries:
		c.Op = &hubv1.Command_AddListEntries{AddListEntries: op}
	case *hubv1.RemoveListEntries:
		c.Op = &hubv1.Command_RemoveListEntries{RemoveListEntries: op}
	case *hubv1.SetViewSharing:
		c.Op = &hubv1.Command_SetViewSharing{SetViewSharing: op}
	default:
		return cmd(op)
	}
	return c
}

func entries(uris ...string) []*hubv1.ListEntry {
	out := make([]*hubv1.ListEntry, len(uris))
	for i, u := range uris {
		out[i] = &hubv1.ListEntry{Uri: u}
	}
	return out
}

func manyEntries(n int) []*hubv1.ListEntry {
	out := make([]*hubv1.ListEntry, n)
	for i := range out {
		out[i] = &hubv1.ListEntry{Uri: fmt.Sprintf("sip:u%d@b.example", i)}
	}
	return out
}

// Each list command applies as described, or is refused with the sentinel
// an admin caller can map (and the state stays unchanged).
func TestListCommands(t *testing.T) {
	const uri = "sip:alice-buddies@lists.hub.example"
	steps := []struct {
		name    string
		op      any
		wantErr error
		check   func(t *testing.T, s *State)
	}{
		{"create personal", &hubv1.PutList{List: &hubv1.ResourceList{Uri: uri, Owner: "sip:alice@a.example",
			Entries: []*hubv1.ListEntry{{Uri: "sip:bob@b.example", DisplayName: "Bob"}}}}, nil,
			func(t *testing.T, s *State) {
				l := s.List(uri)
				if l == nil || l.GetRevision() != 1 || l.GetCreatedUnixNano() != clock || len(l.GetEntries()) != 1 || l.GetUpdatedBy() != "test" {
					t.Fatalf("list %v", l)
				}
			}},
		{"create twice", &hubv1.PutList{List: &hubv1.ResourceList{Uri: uri}}, ErrAlreadyExists, nil},
		{"non-canonical uri", &hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:x@LISTS.hub.example"}}, ErrInvalid, nil},
		{"uri with params", &hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:x@lists.hub.example;transport=udp"}}, ErrInvalid, nil},
		{"entry twice", &hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:y@lists.hub.example", Entries: entries("sip:a@b.example", "sip:a@b.example")}}, ErrInvalid, nil},
		{"too many entries", &hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:y@lists.hub.example", Entries: manyEntries(MaxListEntries + 1)}}, ErrFailedPrecondition, nil},
		{"add", &hubv1.AddListEntries{Uri: uri, Entries: []*hubv1.ListEntry{{Uri: "sip:carol@b.example"}, {Uri: "sip:bob@b.example", DisplayName: "Robert"}}}, nil,
			func(t *testing.T, s *State) {
				l := s.List(uri)
				if l.GetRevision() != 2 || len(l.GetEntries()) != 2 || l.GetEntries()[0].GetDisplayName() != "Robert" || l.GetEntries()[1].GetUri() != "sip:carol@b.example" {
					t.Fatalf("after add: %v", l)
				}
			}},
		{"add past the limit", &hubv1.AddListEntries{Uri: uri, Entries: manyEntries(MaxListEntries - 1)}, ErrFailedPrecondition, nil},
		{"add to a missing list", &hubv1.AddListEntries{Uri: "sip:nope@lists.hub.example", Entries: entries("sip:a@b.example")}, ErrNotFound, nil},
		{"remove absent entry", &hubv1.RemoveListEntries{Uri: uri, EntryUris: []string{"sip:zed@b.example"}}, ErrNotFound, nil},
		{"remove", &hubv1.RemoveListEntries{Uri: uri, EntryUris: []string{"sip:bob@b.example"}}, nil,
			func(t *testing.T, s *State) {
				if l := s.List(uri); l.GetRevision() != 3 || len(l.GetEntries()) != 1 {
					t.Fatalf("after remove: %v", l)
				}
			}},
		{"replace keeps created time and counts the revision", &hubv1.PutList{Replace: true, List: &hubv1.ResourceList{Uri: uri, Owner: "sip:alice@a.example", Entries: entries("sip:dave@b.example")}}, nil,
			func(t *testing.T, s *State) {
				if l := s.List(uri); l.GetRevision() != 4 || l.GetEntries()[0].GetUri() != "sip:dave@b.example" || l.GetCreatedUnixNano() != clock {
					t.Fatalf("after replace: %v", l)
				}
			}},
		{"delete", &hubv1.DeleteList{Uri: uri}, nil, func(t *testing.T, s *State) {
			if s.List(uri) != nil || len(s.Lists()) != 0 {
				t.Fatal("list still there")
			}
		}},
		{"delete again", &hubv1.DeleteList{Uri: uri}, ErrNotFound, nil},
	}
	s := Empty()
	for i, st := range steps {
		next, err := ApplyTo(s, uint64(i+1), listCmd(st.op))
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if err == nil {
			s = next
		}
		if st.check != nil {
			st.check(t, s)
		}
	}
}

// An owner's personal lists are bounded; replacing one of them is not a
// new list.
func TestListsPerOwnerLimit(t *testing.T) {
	s := Empty()
	put := func(i int, replace bool) error {
		next, err := ApplyTo(s, uint64(i+1), listCmd(&hubv1.PutList{Replace: replace, List: &hubv1.ResourceList{
			Uri: fmt.Sprintf("sip:l%d@lists.hub.example", i), Owner: "sip:alice@a.example"}}))
		if err == nil {
			s = next
		}
		return err
	}
	for i := range MaxListsPerOwner {
		if err := put(i, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(MaxListsPerOwner, false); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("list past the per-owner limit: %v", err)
	}
	if err := put(0, true); err != nil {
		t.Fatalf("replacing an owned list: %v", err)
	}
}

// Sharing needs a named presence grant; taking presence back takes the
// shared view with it; lists and sharing survive a snapshot.
func TestViewSharingAndSnapshot(t *testing.T) {
	f := NewFSM(nil, nil)
	idx := uint64(0)
	apply := func(op any) error {
		idx++
		return applyLog(t, f, idx, listCmd(op)).Err
	}
	for _, c := range []*hubv1.Command{addNet("a"), addNet("b")} {
		idx++
		if r := applyLog(t, f, idx, c); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	share := &hubv1.SetViewSharing{Destination: "b", Source: "a", Share: true}
	if err := apply(share); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("sharing without a presence grant: %v", err)
	}
	if err := apply(&hubv1.PolicyAllow{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(share); err != nil {
		t.Fatal(err)
	}
	if !f.State().ShareViews("b", "a") || f.State().ShareViews("a", "b") {
		t.Fatal("sharing not granted b->a only")
	}
	if err := apply(&hubv1.PutList{List: &hubv1.ResourceList{Uri: "sip:team@lists.hub.example", DisplayName: "Team", Entries: entries("sip:bob@b.example")}}); err != nil {
		t.Fatal(err)
	}

	restored := NewFSM(nil, nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(restored.State().Proto(), f.State().Proto()) || !restored.State().ShareViews("b", "a") || restored.State().List("sip:team@lists.hub.example") == nil {
		t.Fatal("snapshot lost lists or sharing")
	}

	if err := apply(&hubv1.PolicyDeny{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}}); err != nil {
		t.Fatal(err)
	}
	if f.State().ShareViews("b", "a") {
		t.Fatal("shared view outlived the presence grant")
	}
	if err := apply(&hubv1.PolicyAllow{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}}); err != nil {
		t.Fatal(err)
	}
	if f.State().ShareViews("b", "a") {
		t.Fatal("re-allowing presence revived an old shared view")
	}
}

func TestCanonicalSIPURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SIP:Bob@B.Example", "sip:Bob@b.example"},
		{"sips:bob@b.example:5061", "sips:bob@b.example:5061"},
		{"pres:bob@b.example", ""}, // not a list scheme
		{"sip:b.example", ""},
		{"sip:bo b@b.example", ""},
		{"sip:bob@b.example;user=phone", ""},
		{"sip:bob@b.example:99999", ""},
		{"bob", ""},
	} {
		got, prob := CanonicalSIPURI(tc.in, "sip", "sips")
		if got != tc.want || (tc.want == "") != (prob != "") {
			t.Errorf("CanonicalSIPURI(%q) = %q, %q; want %q", tc.in, got, prob, tc.want)
		}
	}
}
