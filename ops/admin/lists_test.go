package admin

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Every ListService method has a row in the access table, writes are
// changes for admin and operator, reads are open to readonly too.
func TestListServiceAccess(t *testing.T) {
	d := &hubv1.ListService_ServiceDesc
	for _, m := range d.Methods {
		full := "/" + d.ServiceName + "/" + m.MethodName
		a, ok := methodAccess[full]
		if !ok {
			t.Errorf("%s has no entry in methodAccess", full)
			continue
		}
		read := m.MethodName == "GetList" || m.MethodName == "ListLists"
		if a.kind != pki.RoleOperator || !a.roles.has(pki.AdminRoleAdmin) || !a.roles.has(pki.AdminRoleOperator) ||
			a.roles.has(pki.AdminRoleReadonly) != read || a.change == read {
			t.Errorf("%s: access %+v", full, a)
		}
	}
}

// Lists through the API: canonical URIs, limits refused with a clear
// message, every change audited, view sharing only on a presence grant.
func TestListServiceCRUD(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	op := issue(t, ca, pki.RoleOperator, "alice")
	conn := dialT(t, n.addr, clientTLS(ca, &op))
	admin, lists := hubv1.NewAdminServiceClient(conn), hubv1.NewListServiceClient(conn)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := admin.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork(id)}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := lists.CreateList(ctx, &hubv1.CreateListRequest{List: &hubv1.ResourceList{
		Uri: "sip:alice-buddies@LISTS.hub.example", Owner: "sip:alice@A.example",
		Entries: []*hubv1.ListEntry{{Uri: "SIP:bob@B.example", DisplayName: "Bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if l.GetUri() != "sip:alice-buddies@lists.hub.example" || l.GetOwner() != "sip:alice@a.example" || l.GetEntries()[0].GetUri() != "sip:bob@b.example" {
		t.Fatalf("not canonical: %v", l)
	}
	_, err = lists.CreateList(ctx, &hubv1.CreateListRequest{List: &hubv1.ResourceList{Uri: l.GetUri()}})
	wantStatus(t, err, codes.AlreadyExists, "--replace")
	many := make([]*hubv1.ListEntry, 250)
	for i := range many {
		many[i] = &hubv1.ListEntry{Uri: "sip:u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@b.example"}
	}
	_, err = lists.AddListEntries(ctx, &hubv1.ListEntriesRequest{Uri: l.GetUri(), Entries: many})
	wantStatus(t, err, codes.FailedPrecondition, "the most allowed is 200")
	if l, err = lists.AddListEntries(ctx, &hubv1.ListEntriesRequest{Uri: l.GetUri(), Entries: []*hubv1.ListEntry{{Uri: "sip:carol@b.example"}}}); err != nil || len(l.GetEntries()) != 2 {
		t.Fatalf("add: %v %v", l, err)
	}
	if l, err = lists.RemoveListEntries(ctx, &hubv1.RemoveListEntriesRequest{Uri: l.GetUri(), EntryUris: []string{"sip:bob@b.example"}}); err != nil || len(l.GetEntries()) != 1 {
		t.Fatalf("remove: %v %v", l, err)
	}
	if resp, err := lists.ListLists(ctx, &hubv1.ListListsRequest{Owner: "-"}); err != nil || len(resp.GetLists()) != 0 {
		t.Fatalf("public lists: %v %v", resp, err)
	}
	if resp, err := lists.ListLists(ctx, &hubv1.ListListsRequest{Owner: "sip:alice@a.example"}); err != nil || len(resp.GetLists()) != 1 {
		t.Fatalf("alice's lists: %v %v", resp, err)
	}

	_, err = lists.SetViewSharing(ctx, &hubv1.SetViewSharingRequest{Destination: "b", Source: "a", Share: true})
	wantStatus(t, err, codes.FailedPrecondition, "allow presence first")
	if _, err := admin.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}}); err != nil {
		t.Fatal(err)
	}
	if r, err := lists.SetViewSharing(ctx, &hubv1.SetViewSharingRequest{Destination: "b", Source: "a", Share: true}); err != nil || !r.GetShareViews() {
		t.Fatalf("share: %v %v", r, err)
	}
	if _, err := lists.DeleteList(ctx, &hubv1.DeleteListRequest{Uri: l.GetUri()}); err != nil {
		t.Fatal(err)
	}
	_, err = lists.GetList(ctx, &hubv1.GetListRequest{Uri: l.GetUri()})
	wantStatus(t, err, codes.NotFound)

	got := n.audit.methods()
	for _, m := range []string{"CreateList", "AddListEntries", "RemoveListEntries", "SetViewSharing", "DeleteList"} {
		if !slices.Contains(got, m) {
			t.Errorf("no audit entry for %s (have %v)", m, got)
		}
	}
}
