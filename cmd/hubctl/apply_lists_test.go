package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
