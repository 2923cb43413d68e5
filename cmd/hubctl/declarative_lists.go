package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The lists: key of the declarative document: the hub's resource lists
// (RFC 4662 list subscriptions, RFC 4826 entries), public and personal.
// A document without the key leaves every list as it is, so files kept in
// git before lists were carried apply unchanged; only with the key present
// does --prune delete the lists it does not name.

// docList is one resource list. Revision, times and updated_by are the
// FSM's and left out, as created/updated are for networks.
type docList struct {
	URI         string         `json:"uri"`
	DisplayName string         `json:"display_name"`
	Owner       string         `json:"owner"` // "" = public
	Entries     []docListEntry `json:"entries"`
}

type docListEntry struct {
	URI         string `json:"uri"`
	DisplayName string `json:"display_name"`
}

func exportLists(ls []*hubv1.ResourceList) []docList {
	out := []docList{}
	for _, l := range ls {
		d := docList{URI: l.GetUri(), DisplayName: l.GetDisplayName(), Owner: l.GetOwner(), Entries: []docListEntry{}}
		for _, e := range l.GetEntries() {
			d.Entries = append(d.Entries, docListEntry{URI: e.GetUri(), DisplayName: e.GetDisplayName()})
		}
		out = append(out, d)
	}
	return out
}

var listKeys = []string{"uri", "display_name", "owner", "entries"}
var listEntryKeys = []string{"uri", "display_name"}

// Schemes as the FSM takes them (raft/lists.go): a list and its owner are
// SIP addresses; an entry may also be a pres: URI (RFC 3859).
var (
	docListSchemes  = []string{"sip", "sips"}
	docEntrySchemes = []string{"sip", "sips", "pres"}
)

// sipURI reads a URI and returns its canonical form (what the cluster
// stores), so that a case difference in the host is not a diff.
func (p *docParser) sipURI(n *yaml.Node, path string, schemes []string) string {
	before := len(p.errs)
	s := p.str(n, path)
	if len(p.errs) > before || s == "" {
		return s
	}
	c, prob := raft.CanonicalSIPURI(s, schemes...)
	if prob != "" {
		p.fail(n, path, "%q: %s", s, prob)
		return s
	}
	return c
}

// lists reads the lists: sequence into want.lists.
func (p *docParser) lists(n *yaml.Node, want *desiredState) {
	want.listsGiven = true
	want.listPaths = map[string]string{}
	for i, item := range p.seq(n, "lists") {
		path := fmt.Sprintf("lists[%d]", i)
		before := len(p.errs)
		f := p.mapping(item, path, listKeys)
		if f == nil {
			continue
		}
		l := &hubv1.ResourceList{
			Uri:         p.sipURI(f["uri"], path+".uri", docListSchemes),
			DisplayName: p.str(f["display_name"], path+".display_name"),
			Owner:       p.sipURI(f["owner"], path+".owner", docListSchemes),
		}
		if _, ok := f["uri"]; !ok || l.GetUri() == "" {
			p.fail(item, path+".uri", "required (the list's SIP URI, sip:name@lists-domain)")
		} else if j, dup := want.listPaths[l.GetUri()]; dup {
			p.fail(f["uri"], path+".uri", "%q: duplicate of %s", l.GetUri(), j)
			continue
		}
		entries := map[string]string{}
		for j, e := range p.seq(f["entries"], path+".entries") {
			ep := fmt.Sprintf("%s.entries[%d]", path, j)
			ef := p.mapping(e, ep, listEntryKeys)
			if ef == nil {
				continue
			}
			le := &hubv1.ListEntry{Uri: p.sipURI(ef["uri"], ep+".uri", docEntrySchemes), DisplayName: p.str(ef["display_name"], ep+".display_name")}
			switch k, dup := entries[le.GetUri()]; {
			case le.GetUri() == "":
				p.fail(e, ep+".uri", "required")
			case dup:
				p.fail(ef["uri"], ep+".uri", "%q: listed twice (also %s)", le.GetUri(), k)
			default:
				entries[le.GetUri()] = ep
			}
			l.Entries = append(l.Entries, le)
		}
		if l.GetUri() != "" {
			want.listPaths[l.GetUri()] = path
		}
		if len(p.errs) > before {
			continue
		}
		want.lists = append(want.lists, l)
	}
}

// listChange is one list added (+), changed (~) or removed (-).
type listChange struct {
	op     byte
	uri    string
	fields []fieldChange // +: every field; ~: the changed ones
}

// sameEntries reports whether two lists have the same entries in the same
// order (RFC 4826 lists are ordered; a reorder is a change).
func sameEntries(a, b []*hubv1.ListEntry) bool {
	return slices.EqualFunc(a, b, func(x, y *hubv1.ListEntry) bool {
		return x.GetUri() == y.GetUri() && x.GetDisplayName() == y.GetDisplayName()
	})
}

func ownerWord(o string) string {
	if o == "" {
		return "(public)"
	}
	return o
}

func entryWord(e *hubv1.ListEntry) string {
	if e.GetDisplayName() == "" {
		return e.GetUri()
	}
	return fmt.Sprintf("%s %q", e.GetUri(), e.GetDisplayName())
}

// listFields lists what differs between c and w (everything of w when c
// is nil). Entries are shown one per line: a list can hold hundreds.
func listFields(c, w *hubv1.ResourceList) []fieldChange {
	var out []fieldChange
	if c == nil || c.GetDisplayName() != w.GetDisplayName() {
		out = append(out, fieldChange{name: "display_name", old: fmt.Sprintf("%q", c.GetDisplayName()), new: fmt.Sprintf("%q", w.GetDisplayName())})
	}
	if c == nil || c.GetOwner() != w.GetOwner() {
		out = append(out, fieldChange{name: "owner", old: ownerWord(c.GetOwner()), new: ownerWord(w.GetOwner())})
	}
	if c == nil {
		for _, e := range w.GetEntries() {
			out = append(out, fieldChange{name: "entry", new: entryWord(e)})
		}
		return out
	}
	if sameEntries(c.GetEntries(), w.GetEntries()) {
		return out
	}
	have := map[string]*hubv1.ListEntry{}
	for _, e := range c.GetEntries() {
		have[e.GetUri()] = e
	}
	wantURIs := map[string]bool{}
	var common []string
	for _, e := range w.GetEntries() {
		wantURIs[e.GetUri()] = true
		switch o := have[e.GetUri()]; {
		case o == nil:
			out = append(out, fieldChange{name: "entry", old: "+", new: entryWord(e)})
		case o.GetDisplayName() != e.GetDisplayName():
			out = append(out, fieldChange{name: "entry " + e.GetUri(), old: fmt.Sprintf("%q", o.GetDisplayName()), new: fmt.Sprintf("%q", e.GetDisplayName())})
			common = append(common, e.GetUri())
		default:
			common = append(common, e.GetUri())
		}
	}
	var oldOrder []string
	for _, e := range c.GetEntries() {
		if !wantURIs[e.GetUri()] {
			out = append(out, fieldChange{name: "entry", old: "-", new: entryWord(e)})
		} else {
			oldOrder = append(oldOrder, e.GetUri())
		}
	}
	if !slices.Equal(oldOrder, common) {
		out = append(out, fieldChange{name: "entries", old: "order", new: "the file's order"})
	}
	return out
}

// planLists compares the cluster's lists with the file's. A change is one
// CreateList with replace (display name, owner and entries in one atomic
// write, so subscribers see one revision, not one per entry).
func planLists(cur []*hubv1.ResourceList, want *desiredState, prune bool) (changes []listChange, puts, deletes []step, kept []string) {
	if !want.listsGiven {
		return nil, nil, nil, nil
	}
	curByURI := map[string]*hubv1.ResourceList{}
	for _, l := range cur {
		curByURI[l.GetUri()] = l
	}
	for _, w := range want.lists {
		c := curByURI[w.GetUri()]
		if c == nil {
			changes = append(changes, listChange{op: '+', uri: w.GetUri(), fields: listFields(nil, w)})
			puts = append(puts, step{kind: stepPutList, id: w.GetUri(), list: w, file: -1})
			continue
		}
		if f := listFields(c, w); len(f) > 0 {
			changes = append(changes, listChange{op: '~', uri: w.GetUri(), fields: f})
			puts = append(puts, step{kind: stepPutList, id: w.GetUri(), list: w, replace: true, file: -1})
		}
	}
	for _, c := range cur {
		if _, ok := want.listPaths[c.GetUri()]; ok {
			continue
		}
		if !prune {
			kept = append(kept, c.GetUri())
			continue
		}
		changes = append(changes, listChange{op: '-', uri: c.GetUri()})
		deletes = append(deletes, step{kind: stepDeleteList, id: c.GetUri(), file: -1})
	}
	slices.SortFunc(changes, func(a, b listChange) int { return strings.Compare(a.uri, b.uri) })
	return changes, puts, deletes, kept
}

func writeListDiff(w io.Writer, pl *plan) {
	for _, l := range pl.lists {
		fmt.Fprintf(w, "%c list %s\n", l.op, l.uri)
		for _, f := range l.fields {
			switch {
			case l.op == '+':
				fmt.Fprintf(w, "+     %s: %s\n", f.name, f.new)
			case f.name == "entry":
				fmt.Fprintf(w, "%s     entry: %s\n", f.old, f.new)
			default:
				fmt.Fprintf(w, "~     %s: %s -> %s\n", f.name, f.old, f.new)
			}
		}
	}
	for _, u := range pl.keptLists {
		fmt.Fprintf(w, "# list %s is in the cluster but not in the file: kept (apply --prune removes it)\n", u)
	}
}

func listSummary(pl *plan) string {
	if len(pl.lists) == 0 {
		return ""
	}
	var add, change, remove int
	for _, l := range pl.lists {
		switch l.op {
		case '+':
			add++
		case '~':
			change++
		default:
			remove++
		}
	}
	return fmt.Sprintf("; lists: %d to add, %d to change, %d to remove", add, change, remove)
}
