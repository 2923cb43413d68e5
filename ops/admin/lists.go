package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// ListService: resource lists hosted by the hub (hub/lists serves them over
// SIP) and the view-sharing grant on a peering rule. Every change is
// proposed through Raft and audited like the network and policy calls.
type listService struct {
	hubv1.UnimplementedListServiceServer
	s *Server
}

// canonList canonicalises a list, owner or entry URI for the request field.
func canonListURI(field, u string, schemes ...string) (string, error) {
	if u == "" {
		return "", fieldErr(field, "required")
	}
	c, prob := raft.CanonicalSIPURI(u, schemes...)
	if prob != "" {
		return "", &raft.FieldError{Field: field, Value: u, Reason: prob}
	}
	return c, nil
}

// canonEntries canonicalises entry URIs so "SIP:Bob@B.example" and
// "sip:Bob@b.example" are one resource.
func canonEntries(field string, in []*hubv1.ListEntry) ([]*hubv1.ListEntry, error) {
	out := make([]*hubv1.ListEntry, len(in))
	for i, e := range in {
		u, err := canonListURI(fmt.Sprintf("%s[%d].uri", field, i), e.GetUri(), "sip", "sips", "pres")
		if err != nil {
			return nil, err
		}
		out[i] = &hubv1.ListEntry{Uri: u, DisplayName: e.GetDisplayName()}
	}
	return out, nil
}

func (l *listService) list(uri string) (*hubv1.ResourceList, error) {
	if r := l.s.store.State().List(uri); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("list %s: %w", uri, raft.ErrNotFound)
}

// CreateList creates a list (or, with replace, replaces one: import).
func (l *listService) CreateList(ctx context.Context, req *hubv1.CreateListRequest) (*hubv1.ResourceList, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetList() == nil {
		return nil, fieldErr("list", "required")
	}
	in := proto.Clone(req.GetList()).(*hubv1.ResourceList)
	if in.Uri, err = canonListURI("list.uri", in.GetUri(), "sip", "sips"); err != nil {
		return nil, err
	}
	if in.GetOwner() != "" {
		if in.Owner, err = canonListURI("list.owner", in.GetOwner(), "sip", "sips"); err != nil {
			return nil, err
		}
	}
	if in.Entries, err = canonEntries("list.entries", in.GetEntries()); err != nil {
		return nil, err
	}
	// Times, revision and actor are the FSM's to set.
	in.CreatedUnixNano, in.UpdatedUnixNano, in.UpdatedBy, in.Revision = 0, 0, "", 0
	cmd := l.s.command(c.Name)
	cmd.Op = &hubv1.Command_PutList{PutList: &hubv1.PutList{List: in, Replace: req.GetReplace()}}
	if _, err := l.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	verb := "create"
	if req.GetReplace() {
		verb = "create or replace"
	}
	owner := "public"
	if in.GetOwner() != "" {
		owner = "owner " + in.GetOwner()
	}
	l.s.audit(ctx, "CreateList", c.Name, fmt.Sprintf("%s list %s (%s, %d entries)", verb, in.GetUri(), owner, len(in.GetEntries())))
	return l.list(in.GetUri())
}

// GetList returns one list from this node's state.
func (l *listService) GetList(ctx context.Context, req *hubv1.GetListRequest) (*hubv1.ResourceList, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	uri, err := canonListURI("uri", req.GetUri(), "sip", "sips")
	if err != nil {
		return nil, err
	}
	return l.list(uri)
}

// ListLists returns every list, or an owner's, or only the public ones.
func (l *listService) ListLists(ctx context.Context, req *hubv1.ListListsRequest) (*hubv1.ListListsResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	owner := req.GetOwner()
	if owner != "" && owner != "-" {
		var err error
		if owner, err = canonListURI("owner", owner, "sip", "sips"); err != nil {
			return nil, err
		}
	}
	resp := &hubv1.ListListsResponse{}
	for _, r := range l.s.store.State().Lists() {
		switch {
		case owner == "", owner == "-" && r.GetOwner() == "", owner == r.GetOwner():
			resp.Lists = append(resp.Lists, r)
		}
	}
	return resp, nil
}

// DeleteList removes a list; live subscriptions to it end (hub/lists sends
// them a terminated NOTIFY with reason noresource).
func (l *listService) DeleteList(ctx context.Context, req *hubv1.DeleteListRequest) (*hubv1.DeleteListResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := canonListURI("uri", req.GetUri(), "sip", "sips")
	if err != nil {
		return nil, err
	}
	cmd := l.s.command(c.Name)
	cmd.Op = &hubv1.Command_DeleteList{DeleteList: &hubv1.DeleteList{Uri: uri}}
	if _, err := l.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	l.s.audit(ctx, "DeleteList", c.Name, "delete list "+uri)
	return &hubv1.DeleteListResponse{}, nil
}

// AddListEntries adds entries (or renames listed ones).
func (l *listService) AddListEntries(ctx context.Context, req *hubv1.ListEntriesRequest) (*hubv1.ResourceList, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := canonListURI("uri", req.GetUri(), "sip", "sips")
	if err != nil {
		return nil, err
	}
	if len(req.GetEntries()) == 0 {
		return nil, fieldErr("entries", "required")
	}
	es, err := canonEntries("entries", req.GetEntries())
	if err != nil {
		return nil, err
	}
	cmd := l.s.command(c.Name)
	cmd.Op = &hubv1.Command_AddListEntries{AddListEntries: &hubv1.AddListEntries{Uri: uri, Entries: es}}
	if _, err := l.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	l.s.audit(ctx, "AddListEntries", c.Name, fmt.Sprintf("add to list %s: %s", uri, entryURIs(es)))
	return l.list(uri)
}

// RemoveListEntries removes entries by URI.
func (l *listService) RemoveListEntries(ctx context.Context, req *hubv1.RemoveListEntriesRequest) (*hubv1.ResourceList, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	uri, err := canonListURI("uri", req.GetUri(), "sip", "sips")
	if err != nil {
		return nil, err
	}
	if len(req.GetEntryUris()) == 0 {
		return nil, fieldErr("entry_uris", "required")
	}
	rm := make([]string, len(req.GetEntryUris()))
	for i, u := range req.GetEntryUris() {
		if rm[i], err = canonListURI(fmt.Sprintf("entry_uris[%d]", i), u, "sip", "sips", "pres"); err != nil {
			return nil, err
		}
	}
	cmd := l.s.command(c.Name)
	cmd.Op = &hubv1.Command_RemoveListEntries{RemoveListEntries: &hubv1.RemoveListEntries{Uri: uri, EntryUris: rm}}
	if _, err := l.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	l.s.audit(ctx, "RemoveListEntries", c.Name, fmt.Sprintf("remove from list %s: %s", uri, strings.Join(rm, ",")))
	return l.list(uri)
}

// SetViewSharing grants (or withdraws) a shared presence view: source's
// watchers of destination's presentities may share one back-end
// subscription per presentity per hub node. The rule must exist by name
// and admit presence (the FSM checks).
func (l *listService) SetViewSharing(ctx context.Context, req *hubv1.SetViewSharingRequest) (*hubv1.SetViewSharingResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireID("destination", req.GetDestination()); err != nil {
		return nil, err
	}
	if err := requireID("source", req.GetSource()); err != nil {
		return nil, err
	}
	cmd := l.s.command(c.Name)
	cmd.Op = &hubv1.Command_SetViewSharing{SetViewSharing: &hubv1.SetViewSharing{
		Destination: req.GetDestination(), Source: req.GetSource(), Share: req.GetShare()}}
	if _, err := l.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	verb := "grant"
	if !req.GetShare() {
		verb = "withdraw"
	}
	l.s.audit(ctx, "SetViewSharing", c.Name, fmt.Sprintf("%s shared presence view of %s to %s", verb, req.GetDestination(), req.GetSource()))
	return &hubv1.SetViewSharingResponse{Destination: req.GetDestination(), Source: req.GetSource(),
		ShareViews: l.s.store.State().ShareViews(req.GetDestination(), req.GetSource())}, nil
}

func entryURIs(es []*hubv1.ListEntry) string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.GetUri()
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
