package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// fakeRooms records RoomService requests and answers with one room.
type fakeRooms struct {
	hubv1.UnimplementedRoomServiceServer
	mu    sync.Mutex
	calls []call
}

var fakeRoom = &hubv1.Room{Uri: "sip:team@rooms.hub.example", Subject: "Team", LastSeq: 3,
	Members: []*hubv1.RoomMember{{User: "sip:alice@a.example", Network: "a", Nickname: "alice", Role: hubv1.RoomRole_ROOM_ROLE_OWNER}},
	Bans:    []*hubv1.RoomBan{{Pattern: "*@spam.example", Reason: "spam", By: "op"}}}

func (f *fakeRooms) rec(m string, r proto.Message) *hubv1.Room {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{m, r})
	return fakeRoom
}

func (f *fakeRooms) CreateRoom(_ context.Context, r *hubv1.CreateRoomRequest) (*hubv1.Room, error) {
	return f.rec("CreateRoom", r), nil
}
func (f *fakeRooms) GetRoom(_ context.Context, r *hubv1.RoomRef) (*hubv1.Room, error) {
	return f.rec("GetRoom", r), nil
}
func (f *fakeRooms) ListRooms(_ context.Context, r *hubv1.ListRoomsRequest) (*hubv1.ListRoomsResponse, error) {
	return &hubv1.ListRoomsResponse{Rooms: []*hubv1.Room{f.rec("ListRooms", r)}}, nil
}
func (f *fakeRooms) DeleteRoom(_ context.Context, r *hubv1.RoomRef) (*hubv1.DeleteRoomResponse, error) {
	f.rec("DeleteRoom", r)
	return &hubv1.DeleteRoomResponse{}, nil
}
func (f *fakeRooms) AddRoomMember(_ context.Context, r *hubv1.AddRoomMemberRequest) (*hubv1.Room, error) {
	return f.rec("AddRoomMember", r), nil
}
func (f *fakeRooms) UpdateRoom(_ context.Context, r *hubv1.UpdateRoomRequest) (*hubv1.Room, error) {
	return f.rec("UpdateRoom", r), nil
}
func (f *fakeRooms) SetRoomMember(_ context.Context, r *hubv1.SetRoomMemberRequest) (*hubv1.Room, error) {
	return f.rec("SetRoomMember", r), nil
}
func (f *fakeRooms) RemoveRoomMember(_ context.Context, r *hubv1.RemoveRoomMemberRequest) (*hubv1.Room, error) {
	return f.rec("RemoveRoomMember", r), nil
}
func (f *fakeRooms) SetRoomRole(_ context.Context, r *hubv1.SetRoomRoleRequest) (*hubv1.Room, error) {
	return f.rec("SetRoomRole", r), nil
}
func (f *fakeRooms) BanRoom(_ context.Context, r *hubv1.BanRoomRequest) (*hubv1.Room, error) {
	return f.rec("BanRoom", r), nil
}
func (f *fakeRooms) UnbanRoom(_ context.Context, r *hubv1.UnbanRoomRequest) (*hubv1.Room, error) {
	return f.rec("UnbanRoom", r), nil
}
func (f *fakeRooms) RoomHistory(_ context.Context, r *hubv1.RoomHistoryRequest) (*hubv1.RoomHistoryResponse, error) {
	f.rec("RoomHistory", r)
	return &hubv1.RoomHistoryResponse{Messages: []*hubv1.RoomMessage{{Seq: 3, Sender: "sip:alice@a.example", Nickname: "alice",
		ContentType: "text/plain", Body: []byte("hi\r\nthere"), UnixNano: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).UnixNano()}}}, nil
}

func newRoomEnv(t *testing.T) (*testEnv, *fakeRooms) {
	t.Helper()
	data, ca, _ := newDataDir(t)
	pair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})))
	fa := &fakeAdmin{errs: map[string]error{}}
	fr := &fakeRooms{}
	hubv1.RegisterAdminServiceServer(srv, fa)
	hubv1.RegisterRoomServiceServer(srv, fr)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	return &testEnv{data: data, ca: ca, fake: fa, addr: lis.Addr().String()}, fr
}

// Each room command sends what its arguments say and prints the room.
func TestRoomCommands(t *testing.T) {
	env, fr := newRoomEnv(t)
	for _, tc := range []struct {
		args []string
		want []call
		out  string
	}{
		{[]string{"room", "create", "team", "--subject", "Team chat", "--owner", "alice@a.example", "--members-only", "--moderated", "--max-members", "50", "--history", "5", "--network", "a"},
			[]call{{"CreateRoom", &hubv1.CreateRoomRequest{Room: "team", Subject: "Team chat", Owner: "alice@a.example", MembersOnly: true, Moderated: true, MaxMembers: 50, HistoryLen: 5, Networks: []string{"a"}}}},
			"alice"},
		{[]string{"room", "get", "team"}, []call{{"GetRoom", &hubv1.RoomRef{Room: "team"}}}, "*@spam.example"},
		{[]string{"room", "list"}, []call{{"ListRooms", &hubv1.ListRoomsRequest{}}}, "sip:team@rooms.hub.example"},
		{[]string{"room", "delete", "team"}, []call{{"DeleteRoom", &hubv1.RoomRef{Room: "team"}}}, "deleted room team"},
		{[]string{"room", "add", "team", "bob@b.example", "--nick", "bobby", "--role", "moderator", "--invite", "--cpim"},
			[]call{{"AddRoomMember", &hubv1.AddRoomMemberRequest{Room: "team", User: "bob@b.example", Nickname: "bobby", Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR, Invite: true, Cpim: true}}}, ""},
		{[]string{"room", "remove", "team", "bob@b.example"}, []call{{"RemoveRoomMember", &hubv1.RemoveRoomMemberRequest{Room: "team", User: "bob@b.example"}}}, ""},
		{[]string{"room", "role", "team", "bob@b.example", "visitor"}, []call{{"SetRoomRole", &hubv1.SetRoomRoleRequest{Room: "team", User: "bob@b.example", Role: hubv1.RoomRole_ROOM_ROLE_VISITOR}}}, ""},
		{[]string{"room", "ban", "team", "network:b", "--reason", "abuse"}, []call{{"BanRoom", &hubv1.BanRoomRequest{Room: "team", Pattern: "network:b", Reason: "abuse"}}}, ""},
		{[]string{"room", "unban", "team", "network:b"}, []call{{"UnbanRoom", &hubv1.UnbanRoomRequest{Room: "team", Pattern: "network:b"}}}, ""},
		{[]string{"room", "update", "team", "--subject", "Ops", "--moderated=false", "--history", "0"},
			[]call{{"UpdateRoom", &hubv1.UpdateRoomRequest{Room: "team", Subject: proto.String("Ops"), Moderated: proto.Bool(false), HistoryLen: proto.Uint32(0)}}}, "alice"},
		{[]string{"room", "update", "team", "--network", "a", "--network", "b", "--max-members", "10", "--members-only"},
			[]call{{"UpdateRoom", &hubv1.UpdateRoomRequest{Room: "team", SetNetworks: true, Networks: []string{"a", "b"}, MaxMembers: proto.Uint32(10), MembersOnly: proto.Bool(true)}}}, ""},
		{[]string{"room", "update", "team", "--all-networks"}, []call{{"UpdateRoom", &hubv1.UpdateRoomRequest{Room: "team", SetNetworks: true}}}, ""},
		{[]string{"room", "member", "set", "team", "bob@b.example", "--nick", "bobby", "--role", "moderator", "--cpim=false"},
			[]call{{"SetRoomMember", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Nickname: proto.String("bobby"), Role: hubv1.RoomRole_ROOM_ROLE_MODERATOR.Enum(), Cpim: proto.Bool(false)}}}, ""},
		{[]string{"room", "member", "set", "team", "bob@b.example", "--role", "visitor"},
			[]call{{"SetRoomMember", &hubv1.SetRoomMemberRequest{Room: "team", User: "bob@b.example", Role: hubv1.RoomRole_ROOM_ROLE_VISITOR.Enum()}}}, ""},
		{[]string{"room", "history", "team", "--limit", "1"}, []call{{"RoomHistory", &hubv1.RoomHistoryRequest{Room: "team", Limit: 1}}}, "2026-12-01T10:00:00Z"},
	} {
		t.Run(strings.Join(tc.args[:min(3, len(tc.args))], " "), func(t *testing.T) {
			fr.mu.Lock()
			fr.calls = nil
			fr.mu.Unlock()
			out, errOut, code := env.hubctl(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			fr.mu.Lock()
			got := fr.calls
			fr.mu.Unlock()
			if d := cmp.Diff(tc.want, got, protocmp.Transform(), cmp.AllowUnexported(call{})); d != "" {
				t.Errorf("requests (-want +got):\n%s", d)
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}
	// -o json is the room message.
	out, errOut, code := env.hubctl(t, "room", "get", "team", "-o", "json")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["uri"] != "sip:team@rooms.hub.example" {
		t.Fatalf("json: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := env.hubctl(t, "room", "role", "team", "bob@b.example", "king"); code != exitUsage || !strings.Contains(errOut, "want owner, moderator") {
		t.Fatalf("bad role: %d %s", code, errOut)
	}
}
