package admin

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Every RoomService method has a row in the access table: writes are
// changes for admin and operator; reads for readonly too, except the
// history (bodies), which is for the audit roles.
func TestRoomServiceAccess(t *testing.T) {
	d := &hubv1.RoomService_ServiceDesc
	for _, m := range d.Methods {
		full := "/" + d.ServiceName + "/" + m.MethodName
		a, ok := methodAccess[full]
		if !ok {
			t.Errorf("%s has no entry in methodAccess", full)
			continue
		}
		read := m.MethodName == "GetRoom" || m.MethodName == "ListRooms" || m.MethodName == "RoomHistory"
		readonly := m.MethodName == "GetRoom" || m.MethodName == "ListRooms"
		if a.kind != pki.RoleOperator || !a.roles.has(pki.AdminRoleAdmin) || !a.roles.has(pki.AdminRoleOperator) ||
			a.roles.has(pki.AdminRoleReadonly) != readonly || a.change == read {
			t.Errorf("%s: access %+v", full, a)
		}
	}
}

// Rooms through the API: bare names under the rooms domain, owner made a
// participant, add/role/ban/unban/remove/delete, every change audited.
func TestRoomServiceLifecycle(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	n.srv.roomsDomain = "rooms.hub.example"
	op := issue(t, ca, pki.RoleOperator, "alice")
	conn := dialT(t, n.addr, clientTLS(ca, &op))
	admin, rooms := hubv1.NewAdminServiceClient(conn), hubv1.NewRoomServiceClient(conn)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := admin.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork(id)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := rooms.CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: "team", Subject: "Team", Owner: "alice@A.example"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetUri() != "sip:team@rooms.hub.example" || r.GetOwner() != "sip:alice@a.example" || len(r.GetMembers()) != 1 ||
		r.GetMembers()[0].GetRole() != hubv1.RoomRole_ROOM_ROLE_OWNER || r.GetMembers()[0].GetNetwork() != "a" {
		t.Fatalf("created %v", r)
	}
	_, err = rooms.CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: "sip:team@rooms.hub.example"})
	wantStatus(t, err, codes.AlreadyExists)
	_, err = rooms.CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: "Bad Name"})
	wantStatus(t, err, codes.InvalidArgument)
	if r, err = rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: "team", User: "bob@b.example", Cpim: true}); err != nil {
		t.Fatal(err)
	}
	if m := raft.RoomMember(r, "sip:bob@b.example"); m.GetNickname() != "bob" || m.GetNetwork() != "b" || m.GetDelivery() != hubv1.RoomDelivery_ROOM_DELIVERY_CPIM {
		t.Fatalf("bob = %v", m)
	}
	_, err = rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: "team", User: "x@nowhere.example"})
	wantStatus(t, err, codes.NotFound, "no member network owns")
	if r, err = rooms.SetRoomRole(ctx, &hubv1.SetRoomRoleRequest{Room: "team", User: "bob@b.example", Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR}); err != nil || raft.RoleOf(raft.RoomMember(r, "sip:bob@b.example")) != hubv1.RoomRole_ROOM_ROLE_MODERATOR {
		t.Fatalf("role: %v %v", r, err)
	}
	if r, err = rooms.BanRoom(ctx, &hubv1.BanRoomRequest{Room: "team", Pattern: "*@B.example", Reason: "spam"}); err != nil || len(r.GetMembers()) != 1 || r.GetBans()[0].GetPattern() != "*@b.example" {
		t.Fatalf("ban: %v %v", r, err)
	}
	_, err = rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: "team", User: "bob@b.example"})
	wantStatus(t, err, codes.FailedPrecondition, "banned")
	if r, err = rooms.UnbanRoom(ctx, &hubv1.UnbanRoomRequest{Room: "team", Pattern: "*@b.example"}); err != nil || len(r.GetBans()) != 0 {
		t.Fatalf("unban: %v %v", r, err)
	}
	if _, err = rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: "team", User: "bob@b.example", Invite: true}); err != nil {
		t.Fatal(err)
	}
	if r, err = rooms.RemoveRoomMember(ctx, &hubv1.RemoveRoomMemberRequest{Room: "team", User: "bob@b.example"}); err != nil || len(r.GetMembers()) != 1 {
		t.Fatalf("remove: %v %v", r, err)
	}
	list, err := rooms.ListRooms(ctx, &hubv1.ListRoomsRequest{})
	if err != nil || len(list.GetRooms()) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	h, err := rooms.RoomHistory(ctx, &hubv1.RoomHistoryRequest{Room: "team"})
	if err != nil || len(h.GetMessages()) != 0 {
		t.Fatalf("history: %v %v", h, err)
	}
	if _, err := rooms.DeleteRoom(ctx, &hubv1.RoomRef{Room: "team"}); err != nil {
		t.Fatal(err)
	}
	_, err = rooms.GetRoom(ctx, &hubv1.RoomRef{Room: "team"})
	wantStatus(t, err, codes.NotFound)
	want := []string{"CreateRoom", "AddRoomMember", "SetRoomRole", "BanRoom", "UnbanRoom", "AddRoomMember", "RemoveRoomMember", "DeleteRoom"}
	var got []string
	for _, m := range n.audit.methods() {
		if slices.Contains(want, m) {
			got = append(got, m)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audited %v, want %v", got, want)
	}
	// Readonly reads rooms but not their history.
	ro := issueOperator(t, ca, "rita", pki.AdminRoleReadonly)
	roRooms := hubv1.NewRoomServiceClient(dialT(t, n.addr, clientTLS(ca, &ro)))
	if _, err := roRooms.ListRooms(ctx, &hubv1.ListRoomsRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = roRooms.RoomHistory(ctx, &hubv1.RoomHistoryRequest{Room: "sip:team@rooms.hub.example"})
	wantStatus(t, err, codes.PermissionDenied)
}

// A network's room_create flag (in-band #create) is set through the
// update mask and kept by other updates.
func TestUpdateNetworkRoomCreate(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	op := issue(t, ca, pki.RoleOperator, "alice")
	admin := hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &op)))
	ctx := ctxT(t)
	if _, err := admin.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	got, err := admin.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", RoomCreate: true}, UpdateMask: []string{"room_create"}})
	if err != nil || !got.GetRoomCreate() {
		t.Fatalf("room_create: %v %v", got, err)
	}
	got, err = admin.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", DisplayName: "A"}, UpdateMask: []string{"display_name"}})
	if err != nil || !got.GetRoomCreate() {
		t.Fatalf("another update dropped room_create: %v %v", got, err)
	}
}
