package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// TestApplyListsEndToEnd drives export and apply of resource lists against
// a real node: the round trip is a no-op, an edited list is one CreateList
// (replace), a new one one CreateList, a file written before lists were
// exported leaves them alone (also with --prune), and --prune deletes a
// list the file's lists: does not name.
func TestApplyListsEndToEnd(t *testing.T) {
	h := newRealHub(t)
	h.must(t, "network", "add", "a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5060", "--cidr", "127.0.0.2")
	h.must(t, "list", "create", "sip:team@lists.example", "--name", "Team", "--entry", "sip:bob@a.example=Bob", "--entry", "pres:carol@a.example")
	h.must(t, "list", "create", "sip:alice-buddies@lists.example", "--owner", "sip:alice@a.example", "--entry", "sip:dave@a.example")
	h.writes()

	dir := t.TempDir()
	file := filepath.Join(dir, "membership.yaml")
	exported := h.must(t, "export")
	for _, want := range []string{"lists:\n", "  - uri: sip:team@lists.example\n    display_name: Team\n    owner: \"\"\n    entries:\n      - uri: sip:bob@a.example\n        display_name: Bob\n",
		"    owner: sip:alice@a.example\n"} {
		if !strings.Contains(exported, want) {
			t.Fatalf("export lacks %q:\n%s", want, exported)
		}
	}
	writeFile(t, file, []byte(exported), 0o644)
	edit := func(t *testing.T, old, new string) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("file lacks %q:\n%s", old, b)
		}
		writeFile(t, file, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
	}

	t.Run("round trip", func(t *testing.T) {
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("apply of the export:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
	})

	t.Run("edit and add", func(t *testing.T) {
		edit(t, "display_name: Bob\n", "display_name: Robert\n")
		edit(t, "lists:\n", "lists:\n  - uri: sip:support@lists.example\n    entries: [{uri: sip:erin@a.example}]\n")
		out, _, code := h.hubctl(t, "apply", "-f", file, "--dry-run", "--exit-code")
		if code != exitDiffers || !strings.Contains(out, "~ list sip:team@lists.example\n~     entry sip:bob@a.example: \"Bob\" -> \"Robert\"\n") ||
			!strings.Contains(out, "+ list sip:support@lists.example\n") {
			t.Errorf("dry run: exit %d\n%s", code, out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("dry run writes %v", w)
		}
		out = h.must(t, "apply", "-f", file)
		if w := h.writes(); !slices.Equal(w, []string{"CreateList", "CreateList"}) {
			t.Errorf("writes %v, want two CreateList\n%s", w, out)
		}
		if e := h.node.State().List("sip:team@lists.example").GetEntries(); len(e) != 2 || e[0].GetDisplayName() != "Robert" || e[1].GetUri() != "pres:carol@a.example" {
			t.Errorf("team entries after apply: %v", e)
		}
		if h.node.State().List("sip:support@lists.example") == nil {
			t.Error("support list not created")
		}
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("second apply:\n%s", out)
		}
		// What export now writes is what the file says.
		writeFile(t, file, []byte(h.must(t, "export")), 0o644)
		h.writes()
	})

	t.Run("file without lists leaves them alone", func(t *testing.T) {
		old := filepath.Join(dir, "old.yaml")
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		before, _, _ := strings.Cut(string(b), "lists:\n")
		writeFile(t, old, []byte(before), 0o644)
		if out := h.must(t, "apply", "-f", old, "--prune"); strings.TrimSpace(out) != "no changes" {
			t.Errorf("apply --prune of a file without lists:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
	})

	t.Run("prune", func(t *testing.T) {
		edit(t, "  - uri: sip:team@lists.example\n", "  - uri: sip:team-x@lists.example\n")
		h.writes()
		out := h.must(t, "apply", "-f", file)
		if !strings.Contains(out, "# list sip:team@lists.example is in the cluster but not in the file: kept (apply --prune removes it)") {
			t.Errorf("apply without --prune:\n%s", out)
		}
		if w := h.writes(); !slices.Equal(w, []string{"CreateList"}) {
			t.Errorf("writes without --prune %v, want one CreateList (team-x)", w)
		}
		out = h.must(t, "apply", "-f", file, "--prune")
		if !strings.Contains(out, "- list sip:team@lists.example\n") {
			t.Errorf("apply --prune:\n%s", out)
		}
		if w := h.writes(); !slices.Equal(w, []string{"DeleteList"}) {
			t.Errorf("writes %v, want exactly one DeleteList", w)
		}
		if h.node.State().List("sip:team@lists.example") != nil {
			t.Error("team still exists after --prune")
		}
	})
}

// TestApplyRoomsEndToEnd drives export and apply of rooms against a real
// node: the round trip is a no-op (history is never exported), a room
// made from the file gets its owner, participants and bans through the
// RoomService calls, a role edit is one SetRoomRole, a settings edit is
// refused before any call, and --prune deletes a room the file's rooms:
// does not name.
func TestApplyRoomsEndToEnd(t *testing.T) {
	h := newRealHub(t)
	h.must(t, "network", "add", "a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5060", "--cidr", "127.0.0.2")
	h.must(t, "network", "add", "b", "--domain", "b.example", "--edge", "sip:127.0.0.3:5060", "--cidr", "127.0.0.3")
	h.must(t, "room", "create", "sip:team@rooms.example", "--subject", "Team chat", "--owner", "alice@a.example", "--network", "a", "--network", "b", "--history", "50")
	h.must(t, "room", "add", "sip:team@rooms.example", "bob@b.example", "--nick", "Bobby", "--role", "moderator")
	h.must(t, "room", "add", "sip:team@rooms.example", "carol@b.example", "--invite", "--cpim")
	h.must(t, "room", "ban", "sip:team@rooms.example", "*@spam.example", "--reason", "spam")
	post := &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: time.Now().UnixNano(), Actor: "sip",
		Op: &hubv1.Command_PostRoomMessage{PostRoomMessage: &hubv1.PostRoomMessage{Room: "sip:team@rooms.example", Owner: "n1",
			Message: &hubv1.RoomMessage{Sender: "sip:bob@b.example", Nickname: "Bobby", Network: "b", ContentType: "text/plain", Body: []byte("secret plans")}}}}
	if _, err := h.node.Apply(t.Context(), post); err != nil {
		t.Fatalf("post: %v", err)
	}
	h.writes()

	dir := t.TempDir()
	file := filepath.Join(dir, "membership.yaml")
	exported := h.must(t, "export")
	for _, want := range []string{"rooms:\n  - uri: sip:team@rooms.example\n    subject: Team chat\n    owner: sip:alice@a.example\n",
		"      - uri: sip:bob@b.example\n        nickname: Bobby\n        role: moderator\n        invited: false\n        cpim: false\n",
		"        invited: true\n        cpim: true\n", "    bans:\n      - pattern: '*@spam.example'\n        reason: spam\n"} {
		if !strings.Contains(exported, want) {
			t.Fatalf("export lacks %q:\n%s", want, exported)
		}
	}
	// Message history is not membership.
	for _, leak := range []string{"secret plans", base64.StdEncoding.EncodeToString([]byte("secret plans")), "history:", "last_seq", "fanout"} {
		if strings.Contains(exported, leak) {
			t.Fatalf("export carries %q:\n%s", leak, exported)
		}
	}
	writeFile(t, file, []byte(exported), 0o644)
	edit := func(t *testing.T, old, new string) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("file lacks %q:\n%s", old, b)
		}
		writeFile(t, file, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
	}

	t.Run("round trip", func(t *testing.T) {
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("apply of the export:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
		if n := len(h.node.State().Room("sip:team@rooms.example").GetHistory()); n != 1 {
			t.Errorf("history has %d messages after the round trip, want 1", n)
		}
	})

	t.Run("a new room from the file", func(t *testing.T) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, room, _ := strings.Cut(string(b), "rooms:\n")
		edit(t, "rooms:\n", "rooms:\n"+strings.Replace(strings.Replace(room, "sip:team@rooms.example", "sip:ops@rooms.example", 1), "nickname: alice", "nickname: Al", 1))
		out := h.must(t, "apply", "-f", file)
		want := []string{"CreateRoom", "RemoveRoomMember", "AddRoomMember", "AddRoomMember", "AddRoomMember", "BanRoom"}
		if w := h.writes(); !slices.Equal(w, want) {
			t.Errorf("writes %v, want %v\n%s", w, want, out)
		}
		r := h.node.State().Room("sip:ops@rooms.example")
		if r == nil || r.GetSubject() != "Team chat" || r.GetHistoryLen() != 50 || len(r.GetMembers()) != 3 || len(r.GetBans()) != 1 || r.GetOwner() != "sip:alice@a.example" {
			t.Fatalf("ops room after apply: %v", r)
		}
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("second apply:\n%s", out)
		}
		h.writes()
	})

	t.Run("role edit", func(t *testing.T) {
		edit(t, "nickname: Bobby\n        role: moderator\n", "nickname: Bobby\n        role: visitor\n")
		out := h.must(t, "apply", "-f", file)
		if w := h.writes(); !slices.Equal(w, []string{"SetRoomRole"}) {
			t.Errorf("writes %v, want one SetRoomRole\n%s", w, out)
		}
	})

	t.Run("settings edit applied with one UpdateRoom", func(t *testing.T) {
		edit(t, "subject: Team chat\n", "subject: Renamed\n")
		out := h.must(t, "apply", "-f", file)
		if w := h.writes(); !slices.Equal(w, []string{"UpdateRoom"}) {
			t.Errorf("writes %v, want one UpdateRoom\n%s", w, out)
		}
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("second apply:\n%s", out)
		}
		edit(t, "subject: Renamed\n", "subject: Team chat\n")
		h.must(t, "apply", "-f", file)
		h.writes()
	})

	t.Run("owner edit refused before any call", func(t *testing.T) {
		edit(t, "owner: sip:alice@a.example\n", "owner: sip:bob@b.example\n")
		_, errOut, code := h.hubctl(t, "apply", "-f", file)
		if code == 0 || !strings.Contains(errOut, "RoomService has no call that changes an existing room's owner") {
			t.Errorf("exit %d, stderr:\n%s", code, errOut)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
		edit(t, "owner: sip:bob@b.example\n", "owner: sip:alice@a.example\n")
	})

	t.Run("prune", func(t *testing.T) {
		edit(t, "  - uri: sip:team@rooms.example\n", "  - uri: sip:team2@rooms.example\n")
		out := h.must(t, "apply", "-f", file, "--dry-run")
		if !strings.Contains(out, "# room sip:team@rooms.example is in the cluster but not in the file: kept") || !strings.Contains(out, "+ room sip:team2@rooms.example") {
			t.Errorf("dry run:\n%s", out)
		}
		out = h.must(t, "apply", "-f", file, "--prune")
		if !strings.Contains(out, "- room sip:team@rooms.example\n") {
			t.Errorf("apply --prune:\n%s", out)
		}
		if w := h.writes(); len(w) == 0 || w[len(w)-1] != "DeleteRoom" || slices.Index(w, "DeleteRoom") != len(w)-1 {
			t.Errorf("writes %v, want DeleteRoom last and once", w)
		}
		if h.node.State().Room("sip:team@rooms.example") != nil {
			t.Error("team still exists after --prune")
		}
	})
}
