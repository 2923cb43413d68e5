package raft

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Resource lists (RFC 4662 list subscriptions served by hub/lists): the
// list definitions are replicated like policy, because they change at
// human speed and every node must serve the same list. Subscriptions to
// them are node-local soft state and live in hub/lists.

// Limits on lists. Constants, not configuration: CheckCommand must decide
// alike on every replica, whatever each node's config says.
const (
	// MaxListEntries bounds the entries of one list (ejabberd's room size
	// default; each entry costs a back-end subscription per watcher or
	// per view).
	MaxListEntries = 200
	// MaxListsPerOwner bounds the personal lists of one user URI.
	MaxListsPerOwner = 20
	// MaxLists bounds all lists together (snapshot size).
	MaxLists = 100000
	// MaxListURILen bounds a list, owner or entry URI.
	MaxListURILen = 256
)

// listIndex is the part of State built from the lists.
type listIndex struct {
	lists   []*hubv1.ResourceList // sorted by uri
	byURI   map[string]*hubv1.ResourceList
	byOwner map[string]int // owner URI -> personal lists
}

func newListIndex(cs *hubv1.ClusterState) listIndex {
	x := listIndex{lists: slices.Clone(cs.GetLists()), byURI: map[string]*hubv1.ResourceList{}, byOwner: map[string]int{}}
	sortLists(x.lists)
	for _, l := range x.lists {
		x.byURI[l.GetUri()] = l
		if o := l.GetOwner(); o != "" {
			x.byOwner[o]++
		}
	}
	return x
}

func sortLists(ls []*hubv1.ResourceList) {
	slices.SortFunc(ls, func(a, b *hubv1.ResourceList) int { return strings.Compare(a.GetUri(), b.GetUri()) })
}

// List returns the list with the canonical uri (CanonicalSIPURI), or nil.
// Shared: do not modify it.
func (s *State) List(uri string) *hubv1.ResourceList { return s.lists.byURI[uri] }

// Lists returns every list sorted by uri (shared).
func (s *State) Lists() []*hubv1.ResourceList { return s.lists.lists }

// ShareViews reports whether destination has granted source's watchers a
// shared (domain-level) view of its presentities: the rule for source
// exists, admits presence and carries share_views. The all-members switch
// never grants it: sharing is a decision about one peer.
func (s *State) ShareViews(destination, source string) bool {
	p := s.policies[destination]
	if p == nil || source == destination {
		return false
	}
	for _, r := range p.GetRules() {
		if r.GetSource() == source {
			return r.GetShareViews() && hasService(r.GetServices(), hubv1.Service_SERVICE_PRESENCE)
		}
	}
	return false
}

func (s *State) listsProto(cs *hubv1.ClusterState) {
	for _, l := range s.lists.lists {
		cs.Lists = append(cs.Lists, proto.Clone(l).(*hubv1.ResourceList))
	}
}

// CanonicalSIPURI returns the canonical form of a list, owner or entry
// URI — scheme and host lower-case, user part kept (it is case-sensitive,
// RFC 3261 19.1.4) — or a problem. Only scheme:user@host[:port] is
// accepted: parameters and headers have no meaning in a list entry here and
// would make equal resources compare unequal. schemes lists the schemes
// allowed.
func CanonicalSIPURI(u string, schemes ...string) (string, string) {
	if len(u) > MaxListURILen {
		return "", fmt.Sprintf("longer than %d bytes", MaxListURILen)
	}
	i := strings.IndexByte(u, ':')
	if i <= 0 {
		return "", "not a URI (scheme:user@host)"
	}
	scheme := strings.ToLower(u[:i])
	if !slices.Contains(schemes, scheme) {
		return "", fmt.Sprintf("scheme %q not allowed here (%s)", scheme, strings.Join(schemes, ", "))
	}
	rest := u[i+1:]
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 {
		return "", "needs a user part (user@host)"
	}
	user, host := rest[:at], rest[at+1:]
	for j := 0; j < len(user); j++ {
		if !userChar(user[j]) {
			return "", fmt.Sprintf("character %q not allowed in the user part", user[j])
		}
	}
	port := ""
	if k := strings.LastIndexByte(host, ':'); k >= 0 {
		host, port = host[:k], host[k:]
		if p := validPort(port[1:]); p != "" {
			return "", "port " + p
		}
	}
	host = strings.ToLower(host)
	if !ValidDNSName(host) {
		return "", fmt.Sprintf("host %q is not a valid DNS name", host)
	}
	return scheme + ":" + user + "@" + host + port, ""
}

// userChar is RFC 3261 25.1's user: unreserved / escaped / user-unreserved.
func userChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()%&=+$,/", c) >= 0
}

var (
	listURISchemes  = []string{"sip", "sips"}
	entryURISchemes = []string{"sip", "sips", "pres"}
)

// checkListCommand validates the list operations; handled is false for any
// other operation.
func checkListCommand(s *State, cmd *hubv1.Command) (handled bool, err error) {
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutList:
		return true, checkPutList(s, op.PutList)
	case *hubv1.Command_DeleteList:
		_, err := needList(s, "delete_list.uri", op.DeleteList.GetUri())
		return true, err
	case *hubv1.Command_AddListEntries:
		a := op.AddListEntries
		l, err := needList(s, "add_list_entries.uri", a.GetUri())
		if err != nil {
			return true, err
		}
		if len(a.GetEntries()) == 0 {
			return true, invalid("add_list_entries.entries", "", "at least one entry is required")
		}
		merged, err := mergeEntries("add_list_entries.entries", l.GetEntries(), a.GetEntries())
		if err != nil {
			return true, err
		}
		return true, checkEntryCount(l.GetUri(), len(merged))
	case *hubv1.Command_RemoveListEntries:
		r := op.RemoveListEntries
		l, err := needList(s, "remove_list_entries.uri", r.GetUri())
		if err != nil {
			return true, err
		}
		if len(r.GetEntryUris()) == 0 {
			return true, invalid("remove_list_entries.entry_uris", "", "at least one entry uri is required")
		}
		for i, u := range r.GetEntryUris() {
			if !slices.ContainsFunc(l.GetEntries(), func(e *hubv1.ListEntry) bool { return e.GetUri() == u }) {
				return true, fmt.Errorf("remove_list_entries.entry_uris[%d]: entry %q in list %s: %w", i, u, l.GetUri(), ErrNotFound)
			}
		}
		return true, nil
	case *hubv1.Command_SetViewSharing:
		v := op.SetViewSharing
		if err := checkPolicy(s, "set_view_sharing", v.GetDestination(), v.GetSource(), false, nil); err != nil {
			return true, err
		}
		if v.GetShare() && !s.Allowed(v.GetSource(), v.GetDestination(), hubv1.Service_SERVICE_PRESENCE) {
			return true, fmt.Errorf("set_view_sharing: %q does not admit %q for presence; allow presence first: %w",
				v.GetDestination(), v.GetSource(), ErrFailedPrecondition)
		}
		if v.GetShare() && !slices.ContainsFunc(s.Policy(v.GetDestination()).GetRules(), func(r *hubv1.PolicyRule) bool {
			return r.GetSource() == v.GetSource()
		}) {
			// Admitted only through the all-members switch: sharing is
			// granted to one named peer, so it needs its own rule.
			return true, fmt.Errorf("set_view_sharing: %q admits %q only through --all; allow it by name first: %w",
				v.GetDestination(), v.GetSource(), ErrFailedPrecondition)
		}
		return true, nil
	}
	return false, nil
}

func needList(s *State, field, uri string) (*hubv1.ResourceList, error) {
	c, p := CanonicalSIPURI(uri, listURISchemes...)
	if p != "" {
		return nil, invalid(field, uri, p)
	}
	if c != uri {
		return nil, invalid(field, uri, "not in canonical form "+c)
	}
	l := s.List(uri)
	if l == nil {
		return nil, fmt.Errorf("list %s: %w", uri, ErrNotFound)
	}
	return l, nil
}

func checkPutList(s *State, p *hubv1.PutList) error {
	l := p.GetList()
	if l == nil {
		return invalid("put_list.list", "", "missing")
	}
	c, prob := CanonicalSIPURI(l.GetUri(), listURISchemes...)
	if prob != "" {
		return invalid("put_list.list.uri", l.GetUri(), prob)
	}
	if c != l.GetUri() {
		return invalid("put_list.list.uri", l.GetUri(), "not in canonical form "+c)
	}
	if prob := validDisplayName(l.GetDisplayName()); prob != "" {
		return invalid("put_list.list.display_name", l.GetDisplayName(), prob)
	}
	if o := l.GetOwner(); o != "" {
		co, prob := CanonicalSIPURI(o, listURISchemes...)
		if prob != "" {
			return invalid("put_list.list.owner", o, prob)
		}
		if co != o {
			return invalid("put_list.list.owner", o, "not in canonical form "+co)
		}
	}
	if _, err := mergeEntries("put_list.list.entries", nil, l.GetEntries()); err != nil {
		return err
	}
	if err := checkEntryCount(l.GetUri(), len(l.GetEntries())); err != nil {
		return err
	}
	old := s.List(l.GetUri())
	if old != nil && !p.GetReplace() {
		return fmt.Errorf("list %s: %w (replace it on purpose, e.g. hubctl list import --replace)", l.GetUri(), ErrAlreadyExists)
	}
	if old == nil && len(s.lists.lists) >= MaxLists {
		return fmt.Errorf("lists: %d defined, the most kept: %w", len(s.lists.lists), ErrFailedPrecondition)
	}
	if o := l.GetOwner(); o != "" && (old == nil || old.GetOwner() != o) && s.lists.byOwner[o] >= MaxListsPerOwner {
		return fmt.Errorf("owner %s already has %d personal lists, the most allowed: %w", o, s.lists.byOwner[o], ErrFailedPrecondition)
	}
	return nil
}

func checkEntryCount(uri string, n int) error {
	if n > MaxListEntries {
		return fmt.Errorf("list %s would have %d entries, the most allowed is %d: %w", uri, n, MaxListEntries, ErrFailedPrecondition)
	}
	return nil
}

// mergeEntries validates add and returns have with add merged in (an entry
// already listed takes the new display name); a uri twice in add is
// refused. It does not modify its arguments.
func mergeEntries(field string, have, add []*hubv1.ListEntry) ([]*hubv1.ListEntry, error) {
	out := make([]*hubv1.ListEntry, 0, len(have)+len(add))
	for _, e := range have {
		out = append(out, proto.Clone(e).(*hubv1.ListEntry))
	}
	seen := map[string]bool{}
	for i, e := range add {
		f := fmt.Sprintf("%s[%d]", field, i)
		c, prob := CanonicalSIPURI(e.GetUri(), entryURISchemes...)
		if prob != "" {
			return nil, invalid(f+".uri", e.GetUri(), prob)
		}
		if c != e.GetUri() {
			return nil, invalid(f+".uri", e.GetUri(), "not in canonical form "+c)
		}
		if seen[c] {
			return nil, invalid(f+".uri", c, "listed twice")
		}
		seen[c] = true
		if prob := validDisplayName(e.GetDisplayName()); prob != "" {
			return nil, invalid(f+".display_name", e.GetDisplayName(), prob)
		}
		if j := slices.IndexFunc(out, func(x *hubv1.ListEntry) bool { return x.GetUri() == c }); j >= 0 {
			out[j].DisplayName = e.GetDisplayName()
		} else {
			out = append(out, &hubv1.ListEntry{Uri: c, DisplayName: e.GetDisplayName()})
		}
	}
	return out, nil
}

// applyList applies a list operation (already checked) to cs; handled is
// false for any other operation.
func applyList(cs *hubv1.ClusterState, cmd *hubv1.Command) (handled bool) {
	now, actor := cmd.GetTimeUnixNano(), cmd.GetActor()
	find := func(uri string) int {
		return slices.IndexFunc(cs.Lists, func(l *hubv1.ResourceList) bool { return l.GetUri() == uri })
	}
	touch := func(l *hubv1.ResourceList) {
		l.UpdatedUnixNano, l.UpdatedBy = now, actor
		l.Revision++
	}
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutList:
		in := op.PutList.GetList()
		l := &hubv1.ResourceList{Uri: in.GetUri(), DisplayName: in.GetDisplayName(), Owner: in.GetOwner(), CreatedUnixNano: now}
		l.Entries, _ = mergeEntries("", nil, in.GetEntries())
		if i := find(l.Uri); i >= 0 {
			l.CreatedUnixNano, l.Revision = cs.Lists[i].GetCreatedUnixNano(), cs.Lists[i].GetRevision()
			cs.Lists[i] = l
		} else {
			cs.Lists = append(cs.Lists, l)
		}
		touch(l)
		sortLists(cs.Lists)
	case *hubv1.Command_DeleteList:
		cs.Lists = slices.DeleteFunc(cs.Lists, func(l *hubv1.ResourceList) bool { return l.GetUri() == op.DeleteList.GetUri() })
	case *hubv1.Command_AddListEntries:
		l := cs.Lists[find(op.AddListEntries.GetUri())]
		l.Entries, _ = mergeEntries("", l.Entries, op.AddListEntries.GetEntries())
		touch(l)
	case *hubv1.Command_RemoveListEntries:
		l := cs.Lists[find(op.RemoveListEntries.GetUri())]
		rm := op.RemoveListEntries.GetEntryUris()
		l.Entries = slices.DeleteFunc(l.Entries, func(e *hubv1.ListEntry) bool { return slices.Contains(rm, e.GetUri()) })
		touch(l)
	case *hubv1.Command_SetViewSharing:
		v := op.SetViewSharing
		if p := policyForExisting(cs, v.GetDestination()); p != nil {
			for _, r := range p.Rules {
				if r.GetSource() == v.GetSource() {
					r.ShareViews = v.GetShare()
				}
			}
		}
	default:
		return false
	}
	return true
}

func policyForExisting(cs *hubv1.ClusterState, dst string) *hubv1.Policy {
	for _, p := range cs.Policies {
		if p.GetDestination() == dst {
			return p
		}
	}
	return nil
}
