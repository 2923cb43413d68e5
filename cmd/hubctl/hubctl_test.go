package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// call is one request the fake server received.
type call struct {
	method string
	req    proto.Message
}

// fakeAdmin records every request and answers with canned messages; errs
// makes a method fail.
type fakeAdmin struct {
	hubv1.UnimplementedAdminServiceServer

	mu    sync.Mutex
	calls []call
	errs  map[string]error
}

func (f *fakeAdmin) record(method string, req proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method, req})
	return f.errs[method]
}

func (f *fakeAdmin) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeAdmin) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// sampleNetwork is what the fake answers for any network call.
func sampleNetwork(id string) *hubv1.Network {
	return &hubv1.Network{
		Id:          id,
		DisplayName: "Net " + id,
		Domains:     []string{id + ".example"},
		Edges:       []string{"sip:127.0.0.1:5070"},
		Identity:    &hubv1.Identity{Cidrs: []string{"127.0.0.1/32"}, Pins: []string{strings.Repeat("ab", 32)}},
		Services:    []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM},
		Status:      hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
	}
}

func sampleStatus() *hubv1.ClusterStatusResponse {
	return &hubv1.ClusterStatusResponse{
		Leader: "n1", LeaderAddr: "127.0.0.1:7000", Term: 3, CommitIndex: 42, AppliedIndex: 41,
		NodeId: "n1", State: "leader",
		Nodes: []*hubv1.NodeStatus{
			{Id: "n1", RaftAddr: "127.0.0.1:7000", State: "leader", Suffrage: "voter", Healthy: true, AppliedIndex: 41, Version: "v1.2.3"},
			{Id: "n2", RaftAddr: "127.0.0.1:7001", State: "unreachable", Suffrage: "voter", Error: "dial refused"},
		},
	}
}

func (f *fakeAdmin) AddNetwork(_ context.Context, r *hubv1.AddNetworkRequest) (*hubv1.Network, error) {
	if err := f.record("AddNetwork", r); err != nil {
		return nil, err
	}
	return r.GetNetwork(), nil
}

func (f *fakeAdmin) GetNetwork(_ context.Context, r *hubv1.GetNetworkRequest) (*hubv1.Network, error) {
	if err := f.record("GetNetwork", r); err != nil {
		return nil, err
	}
	return sampleNetwork(r.GetId()), nil
}

func (f *fakeAdmin) ListNetworks(_ context.Context, r *hubv1.ListNetworksRequest) (*hubv1.ListNetworksResponse, error) {
	if err := f.record("ListNetworks", r); err != nil {
		return nil, err
	}
	b := sampleNetwork("bee")
	b.Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
	b.DisplayName = ""
	return &hubv1.ListNetworksResponse{Networks: []*hubv1.Network{sampleNetwork("a"), b}}, nil
}

func (f *fakeAdmin) UpdateNetwork(_ context.Context, r *hubv1.UpdateNetworkRequest) (*hubv1.Network, error) {
	if err := f.record("UpdateNetwork", r); err != nil {
		return nil, err
	}
	return sampleNetwork(r.GetNetwork().GetId()), nil
}

func (f *fakeAdmin) SuspendNetwork(_ context.Context, r *hubv1.NetworkRef) (*hubv1.Network, error) {
	if err := f.record("SuspendNetwork", r); err != nil {
		return nil, err
	}
	return sampleNetwork(r.GetId()), nil
}

func (f *fakeAdmin) ResumeNetwork(_ context.Context, r *hubv1.NetworkRef) (*hubv1.Network, error) {
	if err := f.record("ResumeNetwork", r); err != nil {
		return nil, err
	}
	return sampleNetwork(r.GetId()), nil
}

func (f *fakeAdmin) RemoveNetwork(_ context.Context, r *hubv1.NetworkRef) (*hubv1.RemoveNetworkResponse, error) {
	if err := f.record("RemoveNetwork", r); err != nil {
		return nil, err
	}
	return &hubv1.RemoveNetworkResponse{Id: r.GetId()}, nil
}

func (f *fakeAdmin) AllowPolicy(_ context.Context, r *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
	if err := f.record("AllowPolicy", r); err != nil {
		return nil, err
	}
	return &hubv1.Policy{Destination: r.GetDestination(), Rules: []*hubv1.PolicyRule{{Source: r.GetSource(), Services: r.GetServices()}}}, nil
}

func (f *fakeAdmin) DenyPolicy(_ context.Context, r *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
	if err := f.record("DenyPolicy", r); err != nil {
		return nil, err
	}
	return &hubv1.Policy{Destination: r.GetDestination()}, nil
}

func (f *fakeAdmin) ListPolicies(_ context.Context, r *hubv1.ListPoliciesRequest) (*hubv1.ListPoliciesResponse, error) {
	if err := f.record("ListPolicies", r); err != nil {
		return nil, err
	}
	return &hubv1.ListPoliciesResponse{Policies: []*hubv1.Policy{{
		Destination: "b",
		AllowAll:    true,
		AllServices: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE},
		Rules:       []*hubv1.PolicyRule{{Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_CHAT}}},
	}}}, nil
}

func (f *fakeAdmin) CreateJoinToken(_ context.Context, r *hubv1.CreateJoinTokenRequest) (*hubv1.JoinToken, error) {
	if err := f.record("CreateJoinToken", r); err != nil {
		return nil, err
	}
	return &hubv1.JoinToken{Token: "chj1.secret-token", ExpiresUnix: 1_900_000_000, CaFingerprint: "cafe"}, nil
}

func (f *fakeAdmin) AddNode(_ context.Context, r *hubv1.AddNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	if err := f.record("AddNode", r); err != nil {
		return nil, err
	}
	return sampleStatus(), nil
}

func (f *fakeAdmin) RemoveNode(_ context.Context, r *hubv1.RemoveNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	if err := f.record("RemoveNode", r); err != nil {
		return nil, err
	}
	return sampleStatus(), nil
}

func (f *fakeAdmin) ClusterStatus(_ context.Context, r *hubv1.ClusterStatusRequest) (*hubv1.ClusterStatusResponse, error) {
	if err := f.record("ClusterStatus", r); err != nil {
		return nil, err
	}
	return sampleStatus(), nil
}

// testEnv is a data directory laid out like a dev hub's plus a running
// fake admin server that requires operator certificates.
type testEnv struct {
	data string
	ca   *pki.CA
	fake *fakeAdmin
	addr string
}

// newDataDir lays out a dev hub's data directory: DATA/pki with a fresh CA
// and an operator certificate, as hubd writes them.
func newDataDir(t *testing.T) (data string, ca *pki.CA, operator tls.Certificate) {
	t.Helper()
	data = t.TempDir()
	pkiDir := filepath.Join(data, "pki")
	ca, err := pki.LoadOrCreateCA(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	operator, opCert, opKey, err := ca.IssueKeyPair(pki.RoleOperator, "operator", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(pkiDir, "operator.crt"), opCert, 0o644)
	writeFile(t, filepath.Join(pkiDir, "operator.key"), opKey, 0o600)
	return data, ca, operator
}

// newTestEnv starts a fake AdminService over mutual TLS on 127.0.0.1:0
// whose certificate carries serverRole, and writes DATA/admin.addr.
func newTestEnv(t *testing.T, serverRole pki.Role) *testEnv {
	t.Helper()
	data, ca, _ := newDataDir(t)
	serverPair, _, _, err := ca.IssueKeyPair(serverRole, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{serverPair},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        ca.Pool(),
		VerifyConnection: pki.VerifyRole(pki.RoleOperator),
	})
	srv := grpc.NewServer(grpc.Creds(creds))
	fake := &fakeAdmin{errs: map[string]error{}}
	hubv1.RegisterAdminServiceServer(srv, fake)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	return &testEnv{data: data, ca: ca, fake: fake, addr: lis.Addr().String()}
}

func writeFile(t *testing.T, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
}

// hubctl runs the CLI in-process against env and returns stdout, stderr and
// the exit status.
func (e *testEnv) hubctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--data", e.data, "--timeout", "5s"}, args...)
	code := run(t.Context(), full, &out, &errb)
	return out.String(), errb.String(), code
}

// TestRequestMapping checks that each command sends exactly the request its
// flags describe.
func TestRequestMapping(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	caFile := filepath.Join(t.TempDir(), "member-ca.pem")
	writeFile(t, caFile, env.ca.CertPEM, 0o644)
	pin := strings.Repeat("0A", 32)
	pinColons := strings.TrimSuffix(strings.Repeat("0A:", 32), ":")
	all := allServices()

	tests := []struct {
		name string
		args []string
		// method and req of the last call the server saw.
		method string
		req    proto.Message
	}{
		{
			name: "network add all flags",
			args: []string{"network", "add", "a", "--domain", "a.example", "--domain", "a2.example,a3.example",
				"--edge", "sip:127.0.0.1:5070", "--edge", "sips:edge.a.example:5061",
				"--cidr", "127.0.0.1", "--cidr", "10.0.0.0/8", "--member-ca", caFile, "--pin", pinColons,
				"--tls-cidr", "192.0.2.0/24,2001:db8::1", "--tls-cidr", "198.51.100.7",
				"--name", "Net A", "--services", "im,presence", "--keep-bodies"},
			method: "AddNetwork",
			req: &hubv1.AddNetworkRequest{Network: &hubv1.Network{
				Id: "a", DisplayName: "Net A",
				Domains: []string{"a.example", "a2.example", "a3.example"},
				Edges:   []string{"sip:127.0.0.1:5070", "sips:edge.a.example:5061"},
				Identity: &hubv1.Identity{CaPem: []string{string(env.ca.CertPEM)}, Pins: []string{strings.ToLower(pin)}, Cidrs: []string{"127.0.0.1/32", "10.0.0.0/8"},
					TlsCidrs: []string{"192.0.2.0/24", "2001:db8::1/128", "198.51.100.7/32"}},
				Services:   []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM},
				KeepBodies: true,
			}},
		},
		{
			name:   "network add minimal",
			args:   []string{"network", "add", "b", "--domain", "b.example", "--edge", "sip:127.0.0.1:5080"},
			method: "AddNetwork",
			req: &hubv1.AddNetworkRequest{Network: &hubv1.Network{
				Id: "b", Domains: []string{"b.example"}, Edges: []string{"sip:127.0.0.1:5080"}, Identity: &hubv1.Identity{},
				Services: []hubv1.Service{},
			}},
		},
		{name: "network get", args: []string{"network", "get", "a"}, method: "GetNetwork", req: &hubv1.GetNetworkRequest{Id: "a"}},
		{name: "network list", args: []string{"network", "list"}, method: "ListNetworks", req: &hubv1.ListNetworksRequest{}},
		{name: "network suspend", args: []string{"network", "suspend", "a"}, method: "SuspendNetwork", req: &hubv1.NetworkRef{Id: "a"}},
		{name: "network resume", args: []string{"network", "resume", "a"}, method: "ResumeNetwork", req: &hubv1.NetworkRef{Id: "a"}},
		{name: "network remove", args: []string{"network", "remove", "a"}, method: "RemoveNetwork", req: &hubv1.NetworkRef{Id: "a"}},
		{
			name:   "network update only given flags",
			args:   []string{"network", "update", "a", "--edge", "sip:127.0.0.1:5071", "--keep-bodies=false", "--services", "all"},
			method: "UpdateNetwork",
			req: &hubv1.UpdateNetworkRequest{
				Network:    &hubv1.Network{Id: "a", Edges: []string{"sip:127.0.0.1:5071"}, Services: all},
				UpdateMask: []string{"edges", "services", "keep_bodies"},
			},
		},
		{
			name:   "network update room-create",
			args:   []string{"network", "update", "a", "--room-create"},
			method: "UpdateNetwork",
			req: &hubv1.UpdateNetworkRequest{
				Network:    &hubv1.Network{Id: "a", RoomCreate: true},
				UpdateMask: []string{"room_create"},
			},
		},
		{
			name:   "network update name and domains",
			args:   []string{"network", "update", "a", "--name", "A!", "--domain", "x.example"},
			method: "UpdateNetwork",
			req: &hubv1.UpdateNetworkRequest{
				Network:    &hubv1.Network{Id: "a", DisplayName: "A!", Domains: []string{"x.example"}},
				UpdateMask: []string{"display_name", "domains"},
			},
		},
		{
			// --pin replaces the pins only; the cidrs come from GetNetwork.
			name:   "network update pins keeps cidrs",
			args:   []string{"network", "update", "a", "--pin", pin},
			method: "UpdateNetwork",
			req: &hubv1.UpdateNetworkRequest{
				Network: &hubv1.Network{Id: "a", Identity: &hubv1.Identity{
					Pins: []string{strings.ToLower(pin)}, Cidrs: []string{"127.0.0.1/32"},
				}},
				UpdateMask: []string{"identity"},
			},
		},
		{
			// --tls-cidr replaces only the TLS prefixes; pins and cidrs
			// come from GetNetwork.
			name:   "network update tls cidrs keeps the rest",
			args:   []string{"network", "update", "a", "--tls-cidr", "192.0.2.0/24"},
			method: "UpdateNetwork",
			req: &hubv1.UpdateNetworkRequest{
				Network: &hubv1.Network{Id: "a", Identity: &hubv1.Identity{
					Pins: []string{strings.Repeat("ab", 32)}, Cidrs: []string{"127.0.0.1/32"}, TlsCidrs: []string{"192.0.2.0/24"},
				}},
				UpdateMask: []string{"identity"},
			},
		},
		{
			// The global --ca is the cluster CA, also after the subcommand:
			// it must not end up in the network as a member CA.
			name:   "network add --ca is the global flag",
			args:   []string{"network", "add", "c", "--domain", "c.example", "--edge", "sip:127.0.0.1:5090", "--ca", filepath.Join(env.data, "pki", "ca.crt")},
			method: "AddNetwork",
			req: &hubv1.AddNetworkRequest{Network: &hubv1.Network{
				Id: "c", Domains: []string{"c.example"}, Edges: []string{"sip:127.0.0.1:5090"}, Identity: &hubv1.Identity{},
				Services: []hubv1.Service{},
			}},
		},
		{
			name:   "policy allow all services on purpose",
			args:   []string{"policy", "allow", "b", "--from", "a", "--services", "all"},
			method: "AllowPolicy",
			req:    &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: all},
		},
		{
			name:   "policy allow default all services",
			args:   []string{"policy", "allow", "b", "--from", "a"},
			method: "AllowPolicy",
			req:    &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: []hubv1.Service{}},
		},
		{
			name:   "policy allow all members some services",
			args:   []string{"policy", "allow", "b", "--all", "--services", "session", "--services", "chat,file"},
			method: "AllowPolicy",
			req: &hubv1.PolicyChangeRequest{Destination: "b", All: true, Services: []hubv1.Service{
				hubv1.Service_SERVICE_SESSION, hubv1.Service_SERVICE_CHAT, hubv1.Service_SERVICE_FILE}},
		},
		{
			name:   "policy deny",
			args:   []string{"policy", "deny", "b", "--from", "a", "--services", "IM"},
			method: "DenyPolicy",
			req:    &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}},
		},
		{name: "policy list", args: []string{"policy", "list"}, method: "ListPolicies", req: &hubv1.ListPoliciesRequest{}},
		{name: "policy list dst", args: []string{"policy", "list", "b"}, method: "ListPolicies", req: &hubv1.ListPoliciesRequest{Destination: "b"}},
		{name: "cluster token default ttl", args: []string{"cluster", "token"}, method: "CreateJoinToken", req: &hubv1.CreateJoinTokenRequest{TtlSeconds: 3600}},
		{name: "cluster token ttl", args: []string{"cluster", "token", "--ttl", "30m"}, method: "CreateJoinToken", req: &hubv1.CreateJoinTokenRequest{TtlSeconds: 1800}},
		{name: "cluster status", args: []string{"cluster", "status"}, method: "ClusterStatus", req: &hubv1.ClusterStatusRequest{}},
		{
			name:   "cluster join",
			args:   []string{"cluster", "join", "n2", "127.0.0.1:7001", "--admin-addr", "127.0.0.1:9444"},
			method: "AddNode",
			req:    &hubv1.AddNodeRequest{Id: "n2", RaftAddr: "127.0.0.1:7001", AdminAddr: "127.0.0.1:9444"},
		},
		{name: "cluster remove", args: []string{"cluster", "remove", "n2"}, method: "RemoveNode", req: &hubv1.RemoveNodeRequest{Id: "n2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(env.fake.recorded())
			out, errOut, code := env.hubctl(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if out == "" {
				t.Error("no output")
			}
			calls := env.fake.recorded()[before:]
			if len(calls) == 0 {
				t.Fatal("server saw no call")
			}
			last := calls[len(calls)-1]
			if last.method != tt.method {
				t.Fatalf("method %s, want %s", last.method, tt.method)
			}
			if d := cmp.Diff(tt.req, last.req, protocmp.Transform(), protocmp.IgnoreEmptyMessages()); d != "" {
				t.Errorf("request mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestNetworkListOutputs(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)

	out, _, code := env.hubctl(t, "network", "list")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want header + 2:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "SERVICES") {
		t.Errorf("header %q", lines[0])
	}
	// Aligned: STATUS starts at the same column on every line.
	col := strings.Index(lines[0], "STATUS")
	if got := lines[1][col:]; !strings.HasPrefix(got, "active ") {
		t.Errorf("row 1 not aligned under STATUS: %q", lines[1])
	}
	if got := lines[2][col:]; !strings.HasPrefix(got, "suspended ") {
		t.Errorf("row 2 not aligned under STATUS: %q", lines[2])
	}
	if f := strings.Fields(lines[2]); f[0] != "bee" || f[1] != "-" || f[5] != "presence,im" {
		t.Errorf("row 2 fields %q", f)
	}

	out, _, code = env.hubctl(t, "network", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("json exit %d", code)
	}
	var nets []map[string]any
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Fatalf("json output is not an array: %v\n%s", err, out)
	}
	if len(nets) != 2 || nets[0]["id"] != "a" || nets[1]["status"] != "suspended" {
		t.Errorf("json %v", nets)
	}
	if _, ok := nets[0]["keep_bodies"]; !ok {
		t.Error("json omits unpopulated keep_bodies")
	}

	out, _, code = env.hubctl(t, "network", "list", "--output", "yaml")
	if code != 0 {
		t.Fatalf("yaml exit %d", code)
	}
	var ynets []map[string]any
	if err := yaml.Unmarshal([]byte(out), &ynets); err != nil {
		t.Fatalf("yaml: %v\n%s", err, out)
	}
	if len(ynets) != 2 || ynets[1]["id"] != "bee" || ynets[0]["keep_bodies"] != false {
		t.Errorf("yaml %v", ynets)
	}
	if strings.Contains(out, "{") {
		t.Errorf("yaml output uses flow style:\n%s", out)
	}
}

func TestClusterOutputs(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)

	out, _, code := env.hubctl(t, "cluster", "token")
	if code != 0 || out != "chj1.secret-token\n" {
		t.Errorf("token table output %q (exit %d), want the token alone", out, code)
	}

	out, _, code = env.hubctl(t, "cluster", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"leader": "n1", "term": 3.0, "commit_index": 42.0, "applied_index": 41.0, "healthy": false} {
		if st[k] != want {
			t.Errorf("%s = %v, want %v", k, st[k], want)
		}
	}
	if nodes, ok := st["nodes"].([]any); !ok || len(nodes) != 2 {
		t.Errorf("nodes = %v", st["nodes"])
	}

	out, _, code = env.hubctl(t, "cluster", "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"LEADER:", "n1 (127.0.0.1:7000)", "TERM:", "unreachable", "dial refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}

	out, _, code = env.hubctl(t, "policy", "list")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !regexpRow(out, "b", "*", "presence") {
		t.Errorf("policy table lacks the all-members row:\n%s", out)
	}
	if !regexpRow(out, "b", "a", "im,chat") {
		t.Errorf("policy table lacks the a row:\n%s", out)
	}
}

// regexpRow reports whether some line of a table has exactly these fields.
func regexpRow(table string, fields ...string) bool {
	for _, l := range strings.Split(table, "\n") {
		if cmp.Equal(strings.Fields(l), fields) {
			return true
		}
	}
	return false
}

func TestErrors(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	env.fake.setErr("AddNetwork", status.Error(codes.InvalidArgument, `network.domains[0] "bad..x": not a valid DNS name`))

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string // substrings of stderr
	}{
		{
			name:     "server InvalidArgument",
			args:     []string{"network", "add", "x", "--domain", "bad..x", "--edge", "sip:127.0.0.1:5070"},
			wantCode: exitFailure,
			wantErr:  []string{`hubctl: InvalidArgument: network.domains[0] "bad..x": not a valid DNS name`},
		},
		{
			name:     "missing cert file",
			args:     []string{"--cert", filepath.Join(env.data, "nope.crt"), "network", "list"},
			wantCode: exitFailure,
			wantErr:  []string{"hubctl: --cert: open ", "nope.crt", "pass --data or --cert/--key/--ca"},
		},
		{
			name:     "missing ca file",
			args:     []string{"--ca", filepath.Join(env.data, "nope-ca.crt"), "network", "list"},
			wantCode: exitFailure,
			wantErr:  []string{"hubctl: --ca: open "},
		},
		{
			name:     "bad services",
			args:     []string{"policy", "allow", "b", "--from", "a", "--services", "presence,voice"},
			wantCode: exitUsage,
			wantErr:  []string{`hubctl: --services: unknown service "voice"`, "presence, im, session, chat, file"},
		},
		{
			name:     "bad output format",
			args:     []string{"network", "list", "-o", "xml"},
			wantCode: exitUsage,
			wantErr:  []string{"--output"},
		},
		{
			name:     "bad pin",
			args:     []string{"network", "add", "x", "--domain", "x.example", "--edge", "sip:h", "--pin", "abc"},
			wantCode: exitUsage,
			wantErr:  []string{"--pin"},
		},
		{
			name:     "from and all",
			args:     []string{"policy", "deny", "b", "--from", "a", "--all"},
			wantCode: exitUsage,
			wantErr:  []string{"from", "all"},
		},
		{
			name:     "missing required flag",
			args:     []string{"network", "add", "x", "--domain", "x.example"},
			wantCode: exitUsage,
			wantErr:  []string{`"edge"`},
		},
		{
			name:     "unknown flag",
			args:     []string{"network", "list", "--bogus"},
			wantCode: exitUsage,
			wantErr:  []string{"--bogus"},
		},
		{
			name:     "wrong arg count",
			args:     []string{"network", "get"},
			wantCode: exitUsage,
			wantErr:  []string{"hubctl: ", "arg"},
		},
		{
			name:     "update with nothing",
			args:     []string{"network", "update", "a"},
			wantCode: exitUsage,
			wantErr:  []string{"nothing to change"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := len(env.fake.recorded())
			out, errOut, code := env.hubctl(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if out != "" {
				t.Errorf("stdout on error: %q", out)
			}
			if tt.wantCode == exitUsage && len(env.fake.recorded()) > calls {
				t.Errorf("usage error reached the server")
			}
		})
	}
}

// TestServerMustBeNode: a certificate from the same CA but of another role
// (a lab member's) must not pass for the admin API.
func TestServerMustBeNode(t *testing.T) {
	env := newTestEnv(t, pki.RoleMember)
	_, errOut, code := env.hubctl(t, "network", "list")
	if code != exitFailure || !strings.Contains(errOut, "Unavailable") || !strings.Contains(errOut, "role") {
		t.Errorf("exit %d stderr %q, want Unavailable naming the role", code, errOut)
	}
	if n := len(env.fake.recorded()); n != 0 {
		t.Errorf("server saw %d calls", n)
	}
}

func TestAddrFlagOverridesFile(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	// admin.addr points nowhere useful; --addr wins.
	writeFile(t, filepath.Join(env.data, "admin.addr"), []byte("127.0.0.1:1\n"), 0o644)
	if _, errOut, code := env.hubctl(t, "--addr", env.addr, "network", "get", "a"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code := env.hubctl(t, "--timeout", "2s", "network", "get", "a")
	if code != exitFailure || !strings.Contains(errOut, "Unavailable") {
		t.Errorf("dead admin.addr: exit %d stderr %q", code, errOut)
	}
}

func TestCertsMember(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	out, errOut, code := env.hubctl(t, "certs", "member", "alice", "--host", "127.0.0.1", "--host", "alice.example", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res memberCert
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	wantCert := filepath.Join(env.data, "members", "alice.crt")
	wantKey := filepath.Join(env.data, "members", "alice.key")
	if res.Certificate != wantCert || res.Key != wantKey {
		t.Errorf("paths %q %q", res.Certificate, res.Key)
	}
	fi, err := os.Stat(wantKey)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(wantCert, wantKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: env.ca.Pool(), DNSName: "alice.example",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("member certificate does not chain to the CA: %v", err)
	}
	if r := pki.RoleOf(leaf); r != pki.RoleMember {
		t.Errorf("role %q", r)
	}
	if leaf.VerifyHostname("127.0.0.1") != nil {
		t.Error("IP host missing")
	}
	if res.Fingerprint != pki.Fingerprint(leaf) || len(res.Fingerprint) != 64 {
		t.Errorf("fingerprint %q, want %q", res.Fingerprint, pki.Fingerprint(leaf))
	}

	// Again: refuses to replace the key unless --force.
	_, errOut, code = env.hubctl(t, "certs", "member", "alice")
	if code != exitFailure || !strings.Contains(errOut, "--force") {
		t.Errorf("overwrite without --force: exit %d %q", code, errOut)
	}
	outDir := t.TempDir()
	out, errOut, code = env.hubctl(t, "certs", "member", "bob", "--out", outDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, filepath.Join(outDir, "bob.crt")) || !regexpRow(out, "HOSTS:", "bob") {
		t.Errorf("table output:\n%s", out)
	}
	if !strings.Contains(out, "FINGERPRINT:") {
		t.Errorf("no fingerprint:\n%s", out)
	}

	// No CA: names --data.
	var errb bytes.Buffer
	code = run(t.Context(), []string{"--data", t.TempDir(), "certs", "member", "carol"}, &bytes.Buffer{}, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "--data") {
		t.Errorf("no CA: exit %d %q", code, errb.String())
	}
	// A path as NAME is a usage error.
	if _, _, code := env.hubctl(t, "certs", "member", "../evil"); code != exitUsage {
		t.Errorf("NAME with slash: exit %d", code)
	}
}

// TestRegisterCommand: files of this package (audit.go) can add top-level
// commands that reuse the plumbing.
func TestRegisterCommand(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	saved := commandFactories
	t.Cleanup(func() { commandFactories = saved })
	registerCommand(func() *cobra.Command {
		return &cobra.Command{
			Use: "probe",
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, cc, err := dialAdmin(cmd)
				if err != nil {
					return err
				}
				defer cc.Close()
				ctx, cancel := cmdContext(cmd)
				defer cancel()
				st, err := c.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
				if err != nil {
					return err
				}
				return printOutput(cmd, st, func(w io.Writer) { fmt.Fprintln(w, "leader", st.GetLeader()) })
			},
		}
	})
	out, errOut, code := env.hubctl(t, "probe")
	if code != 0 || out != "leader n1\n" {
		t.Errorf("probe: exit %d out %q err %q", code, out, errOut)
	}
	env.fake.setErr("ClusterStatus", status.Error(codes.Unavailable, "no leader"))
	if _, errOut, code := env.hubctl(t, "probe"); code != exitFailure || !strings.Contains(errOut, "hubctl: Unavailable: no leader") {
		t.Errorf("probe error: exit %d %q", code, errOut)
	}
}
