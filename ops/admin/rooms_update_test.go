package admin

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// UpdateRoom changes only the settings named and keeps participants;
// SetRoomMember changes role, nickname and delivery; refusals are
// specific; every change audited.
func TestRoomUpdateAndSetMember(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	n.srv.roomsDomain = "rooms.hub.example"
	n.srv.roomsMaxMembers = 500
	op := issue(t, ca, pki.RoleOperator, "alice")
	conn := dialT(t, n.addr, clientTLS(ca, &op))
	admin, rooms := hubv1.NewAdminServiceClient(conn), hubv1.NewRoomServiceClient(conn)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := admin.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rooms.CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: "team", Subject: "Team", Owner: "alice@a.example", HistoryLen: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: "team", User: "bob@b.example"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		req   *hubv1.UpdateRoomRequest
		code  codes.Code
		check func(r *hubv1.Room) bool
	}{
		{"subject only", &hubv1.UpdateRoomRequest{Room: "team", Subject: proto.String("Ops")},
			codes.OK, func(r *hubv1.Room) bool {
				return r.GetSubject() == "Ops" && r.GetHistoryLen() == 5 && len(r.GetMembers()) == 2
			}},
		{"flags", &hubv1.UpdateRoomRequest{Room: "team", MembersOnly: proto.Bool(true), Moderated: proto.Bool(true), MaxMembers: proto.Uint32(50)},
			codes.OK, func(r *hubv1.Room) bool {
				return r.GetMembersOnly() && r.GetModerated() && r.GetMaxMembers() == 50 && r.GetSubject() == "Ops"
			}},
		{"history off", &hubv1.UpdateRoomRequest{Room: "team", HistoryLen: proto.Uint32(0)},
			codes.OK, func(r *hubv1.Room) bool { return r.GetNoHistory() && raft.RoomHistoryLen(r) == 0 }},
		{"networks", &hubv1.UpdateRoomRequest{Room: "team", SetNetworks: true, Networks: []string{"b", "a"}},
			codes.OK, func(r *hubv1.Room) bool { return fmt.Sprint(r.GetNetworks()) == "[a b]" }},
		{"networks back to all", &hubv1.UpdateRoomRequest{Room: "team", SetNetworks: true},
			codes.OK, func(r *hubv1.Room) bool { return len(r.GetNetworks()) == 0 && r.GetModerated() }},
		{"networks without set_networks", &hubv1.UpdateRoomRequest{Room: "team", Networks: []string{"a"}}, codes.InvalidArgument, nil},
		{"unknown network", &hubv1.UpdateRoomRequest{Room: "team", SetNetworks: true, Networks: []string{"zz"}}, codes.NotFound, nil},
		{"over the hub cap", &hubv1.UpdateRoomRequest{Room: "team", MaxMembers: proto.Uint32(501)}, codes.InvalidArgument, nil},
		{"nothing", &hubv1.UpdateRoomRequest{Room: "team"}, codes.InvalidArgument, nil},
		{"no room", &hubv1.UpdateRoomRequest{Room: "nope", Subject: proto.String("x")}, codes.NotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rooms.UpdateRoom(ctx, tc.req)
			if tc.code != codes.OK {
				wantStatus(t, err, tc.code)
				return
			}
			if err != nil || !tc.check(r) {
				t.Fatalf("UpdateRoom: %v %v", r, err)
			}
		})
	}
	members := []struct {
		name  string
		req   *hubv1.SetRoomMemberRequest
		code  codes.Code
		check func(m *hubv1.RoomMember) bool
	}{
		{"role", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR.Enum()},
			codes.OK, func(m *hubv1.RoomMember) bool {
				return m.GetRole() == hubv1.RoomRole_ROOM_ROLE_MODERATOR && m.GetNickname() == "bob"
			}},
		{"nickname and cpim", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Nickname: proto.String("bobby"), Cpim: proto.Bool(true)},
			codes.OK, func(m *hubv1.RoomMember) bool {
				return m.GetNickname() == "bobby" && m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM && m.GetRole() == hubv1.RoomRole_ROOM_ROLE_MODERATOR
			}},
		{"nickname taken", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Nickname: proto.String("ALICE")}, codes.AlreadyExists, nil},
		{"bad nickname", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Nickname: proto.String("no spaces")}, codes.InvalidArgument, nil},
		{"not a participant", &hubv1.SetRoomMemberRequest{Room: "team", User: "carol@b.example", Cpim: proto.Bool(true)}, codes.NotFound, nil},
		{"nothing", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example"}, codes.InvalidArgument, nil},
	}
	for _, tc := range members {
		t.Run("member "+tc.name, func(t *testing.T) {
			r, err := rooms.SetRoomMember(ctx, tc.req)
			if tc.code != codes.OK {
				wantStatus(t, err, tc.code)
				return
			}
			if err != nil || !tc.check(raft.RoomMember(r, "sip:bob@b.example")) {
				t.Fatalf("SetRoomMember: %v %v", r, err)
			}
		})
	}
	var got []string
	for _, m := range n.audit.methods() {
		if m == "UpdateRoom" || m == "SetRoomMember" {
			got = append(got, m)
		}
	}
	if want := slices.Repeat([]string{"UpdateRoom"}, 5); fmt.Sprint(got) != fmt.Sprint(append(want, "SetRoomMember", "SetRoomMember")) {
		t.Fatalf("audited %v", got)
	}
}
