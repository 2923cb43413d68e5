package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// TestParseListsErrors: every problem of a lists: section names its YAML
// path, and unknown keys are refused.
func TestParseListsErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown key", "lists:\n- uri: sip:l@lists.example\n  colour: blue\n", "5:3: lists[0].colour: unknown key (valid: uri, display_name, owner, entries)"},
		{"uri required", "lists:\n- display_name: x\n", "lists[0].uri: required"},
		{"uri scheme", "lists:\n- uri: tel:123@x.example\n", `lists[0].uri: "tel:123@x.example": scheme "tel" not allowed here`},
		{"owner not a URI", "lists:\n- uri: sip:l@lists.example\n  owner: alice\n", `lists[0].owner: "alice": not a URI`},
		{"duplicate list", "lists:\n- uri: sip:l@lists.example\n- uri: sip:l@LISTS.example\n", `lists[1].uri: "sip:l@lists.example": duplicate of lists[0]`},
		{"entry twice", "lists:\n- uri: sip:l@lists.example\n  entries:\n  - uri: sip:bob@b.example\n  - uri: sip:bob@B.example\n",
			`lists[0].entries[1].uri: "sip:bob@b.example": listed twice (also lists[0].entries[0])`},
		{"entry uri required", "lists:\n- uri: sip:l@lists.example\n  entries:\n  - display_name: Bob\n", "lists[0].entries[0].uri: required"},
		{"entry unknown key", "lists:\n- uri: sip:l@lists.example\n  entries:\n  - {uri: sip:bob@b.example, nick: bob}\n", "lists[0].entries[0].nick: unknown key"},
		{"display name a number", "lists:\n- uri: sip:l@lists.example\n  display_name: 42\n", "lists[0].display_name: want a string"},
		{"lists not a list", "lists: {uri: sip:l@lists.example}\n", "lists: want a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDocument("f.yaml", []byte(docHeader+tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func storedList(uri, owner string, entries ...string) *hubv1.ResourceList {
	l := &hubv1.ResourceList{Uri: uri, Owner: owner, Revision: 3, CreatedUnixNano: 100, UpdatedUnixNano: 200, UpdatedBy: "CN=op"}
	for _, e := range entries {
		u, name, _ := strings.Cut(e, "=")
		l.Entries = append(l.Entries, &hubv1.ListEntry{Uri: u, DisplayName: name})
	}
	return l
}

// TestPlanLists: additions, replacements, kept and pruned lists, and a
// document without lists: that leaves them alone even with --prune; the
// steps, replayed with the hub's checks, reach the file's state.
func TestPlanLists(t *testing.T) {
	const (
		pub  = "sip:team@lists.example"
		mine = "sip:alice-buddies@lists.example"
	)
	tests := []struct {
		name      string
		cur       []*hubv1.ResourceList
		doc       string
		prune     bool
		wantSteps []string
		wantDiff  []string
		wantErr   string
	}{
		{
			name: "create",
			doc: "lists:\n- uri: SIP:team@Lists.Example\n  display_name: Team\n  entries:\n  - {uri: sip:bob@b.example, display_name: Bob}\n" +
				"- uri: " + mine + "\n  owner: sip:alice@a.example\n",
			wantSteps: []string{"create list " + pub, "create list " + mine},
			wantDiff: []string{"+ list " + mine, "+     owner: sip:alice@a.example", "+ list " + pub, `+     display_name: "Team"`,
				`+     entry: sip:bob@b.example "Bob"`, "lists: 2 to add, 0 to change, 0 to remove (2 calls)"},
		},
		{
			name:      "same list: no change",
			cur:       []*hubv1.ResourceList{storedList(pub, "", "sip:bob@b.example=Bob")},
			doc:       "lists:\n- uri: " + pub + "\n  entries: [{uri: sip:bob@b.example, display_name: Bob}]\n",
			wantSteps: nil,
			wantDiff:  []string{"no changes"},
		},
		{
			name: "entries added, removed, renamed and reordered: one replace",
			cur:  []*hubv1.ResourceList{storedList(pub, "", "sip:a@a.example", "sip:b@b.example=B", "sip:c@c.example")},
			doc: "lists:\n- uri: " + pub + "\n  owner: sip:alice@a.example\n  entries:\n  - {uri: sip:b@b.example, display_name: Bee}\n" +
				"  - {uri: sip:a@a.example}\n  - {uri: pres:d@d.example}\n",
			wantSteps: []string{"replace list " + pub},
			wantDiff: []string{"~ list " + pub, "~     owner: (public) -> sip:alice@a.example", `~     entry sip:b@b.example: "B" -> "Bee"`,
				"+     entry: pres:d@d.example", "-     entry: sip:c@c.example", "~     entries: order -> the file's order",
				"lists: 0 to add, 1 to change, 0 to remove (1 call)"},
		},
		{
			name:      "not in the file: kept without --prune",
			cur:       []*hubv1.ResourceList{storedList(pub, "")},
			doc:       "lists: []\n",
			wantDiff:  []string{"# list " + pub + " is in the cluster but not in the file: kept (apply --prune removes it)", "no changes"},
			wantSteps: nil,
		},
		{
			name:      "not in the file: deleted with --prune, last",
			cur:       []*hubv1.ResourceList{storedList(pub, ""), storedList(mine, "sip:alice@a.example")},
			doc:       "networks:\n" + yamlNet("a") + "lists:\n- uri: " + mine + "\n  owner: sip:alice@a.example\n",
			prune:     true,
			wantSteps: []string{"add network a", "delete list " + pub},
			wantDiff:  []string{"+ network a", "- list " + pub, "lists: 0 to add, 0 to change, 1 to remove (2 calls)"},
		},
		{
			name:      "no lists key: lists untouched even with --prune",
			cur:       []*hubv1.ResourceList{storedList(pub, "")},
			doc:       "networks: []\n",
			prune:     true,
			wantSteps: nil,
			wantDiff:  []string{"no changes"},
		},
		{
			name:    "a display name the hub refuses is found before any call",
			doc:     "lists:\n- uri: " + pub + "\n  display_name: \"bad\\u0000name\"\n",
			wantErr: "create list " + pub + " would be refused by the hub: put_list.list.display_name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := parseDocument("f.yaml", []byte(docHeader+tt.doc))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			cs := &hubv1.ClusterState{Lists: tt.cur}
			pl, err := planCluster(cs, want, tt.prune)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range pl.steps {
				got = append(got, s.String())
			}
			if diff := cmp.Diff(tt.wantSteps, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			var b bytes.Buffer
			writeDiff(&b, pl)
			text := b.String()
			at := 0
			for _, w := range tt.wantDiff {
				i := strings.Index(text[at:], w)
				if i < 0 {
					t.Errorf("diff lacks %q (in this order):\n%s", w, text)
					break
				}
				at += i + len(w)
			}
			end, err := simulateCluster(cs, pl.steps)
			if err != nil {
				t.Fatal(err)
			}
			again, err := planCluster(&hubv1.ClusterState{Networks: end.Networks(), Policies: end.Policies(), Lists: end.Lists()}, want, tt.prune)
			if err != nil {
				t.Fatal(err)
			}
			if !again.empty() {
				var b bytes.Buffer
				writeDiff(&b, again)
				t.Errorf("after the steps the cluster still differs:\n%s", b.String())
			}
		})
	}
}

// FuzzParseDocumentLists: whatever the lists: section holds, parsing does
// not panic, and an accepted document exports to one that parses to the
// same lists.
func FuzzParseDocumentLists(f *testing.F) {
	f.Add([]byte(docHeader + "lists: []\n"))
	f.Add([]byte(docHeader + "lists:\n- uri: sip:l@lists.example\n  owner: sip:a@a.example\n  entries: [{uri: pres:b@b.example, display_name: B}]\n"))
	f.Add([]byte(docHeader + "lists: [null, {uri: null}, {entries: [null, {}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, err := parseDocument("fuzz", data)
		if err != nil {
			return
		}
		d := exportDoc(nil, nil)
		d.Lists = exportLists(want.lists)
		j, err := toJSON(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseDocument("again", j)
		if err != nil {
			t.Fatalf("export of accepted lists does not parse: %v\n%s", err, j)
		}
		if len(again.lists) != len(want.lists) {
			t.Fatalf("%d lists, then %d", len(want.lists), len(again.lists))
		}
		for i := range want.lists {
			if !proto.Equal(want.lists[i], again.lists[i]) {
				t.Fatalf("list %d changed:\n%v\n%v", i, want.lists[i], again.lists[i])
			}
		}
	})
}
