package admin

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

func testNetwork(id string) *hubv1.Network {
	return &hubv1.Network{
		Id:          id,
		DisplayName: "Network " + id,
		Domains:     []string{id + ".example"},
		Edges:       []string{"sips:edge." + id + ".example:5061"},
		Identity:    &hubv1.Identity{Cidrs: []string{"10.0.0." + map[string]string{"a": "0", "b": "64", "c": "128"}[id] + "/26"}},
		Services:    []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE},
	}
}

// Every network and policy RPC succeeds over real mutual TLS with an
// operator certificate, responses reflect the write, and each change is
// audited and counted.
func TestNetworkAndPolicyLifecycle(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)

	got, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetId() != "a" || got.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE || got.GetCreatedUnixNano() == 0 {
		t.Fatalf("AddNetwork returned %v", got)
	}
	if _, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("b")}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "b"}); err != nil || got.GetDomains()[0] != "b.example" {
		t.Fatalf("GetNetwork = %v, %v", got, err)
	}
	list, err := c.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err != nil || len(list.GetNetworks()) != 2 {
		t.Fatalf("ListNetworks = %v, %v", list, err)
	}

	// A masked update changes only the named field.
	upd, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{
		Network:    &hubv1.Network{Id: "a", DisplayName: "Renamed", Domains: []string{"ignored.example"}},
		UpdateMask: []string{"display_name"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetDisplayName() != "Renamed" || upd.GetDomains()[0] != "a.example" {
		t.Fatalf("UpdateNetwork returned %v", upd)
	}
	// An empty mask replaces every mutable field.
	full := testNetwork("a")
	full.Domains = []string{"a2.example"}
	if upd, err = c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: full}); err != nil || upd.GetDomains()[0] != "a2.example" || upd.GetDisplayName() != "Network a" {
		t.Fatalf("UpdateNetwork (no mask) = %v, %v", upd, err)
	}

	if got, err := c.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: "a"}); err != nil || got.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED {
		t.Fatalf("SuspendNetwork = %v, %v", got, err)
	}
	if got, err := c.ResumeNetwork(ctx, &hubv1.NetworkRef{Id: "a"}); err != nil || got.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE {
		t.Fatalf("ResumeNetwork = %v, %v", got, err)
	}

	p, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "b", Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetDestination() != "b" || len(p.GetRules()) != 1 || p.GetRules()[0].GetSource() != "a" {
		t.Fatalf("AllowPolicy returned %v", p)
	}
	if _, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a", All: true}); err != nil {
		t.Fatal(err)
	}
	pl, err := c.ListPolicies(ctx, &hubv1.ListPoliciesRequest{})
	if err != nil || len(pl.GetPolicies()) != 2 {
		t.Fatalf("ListPolicies = %v, %v", pl, err)
	}
	if pl, err = c.ListPolicies(ctx, &hubv1.ListPoliciesRequest{Destination: "a"}); err != nil || len(pl.GetPolicies()) != 1 || !pl.GetPolicies()[0].GetAllowAll() {
		t.Fatalf("ListPolicies(a) = %v, %v", pl, err)
	}
	if p, err = c.DenyPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "b", Source: "a"}); err != nil || len(p.GetRules()) != 0 {
		t.Fatalf("DenyPolicy = %v, %v", p, err)
	}

	if r, err := c.RemoveNetwork(ctx, &hubv1.NetworkRef{Id: "b"}); err != nil || r.GetId() != "b" {
		t.Fatalf("RemoveNetwork = %v, %v", r, err)
	}
	_, err = c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "b"})
	wantStatus(t, err, codes.NotFound, `"b"`)

	want := []string{"AddNetwork", "AddNetwork", "UpdateNetwork", "UpdateNetwork", "SuspendNetwork", "ResumeNetwork",
		"AllowPolicy", "AllowPolicy", "DenyPolicy", "RemoveNetwork"}
	if got := n.audit.methods(); !slices.Equal(got, want) {
		t.Fatalf("audited %v, want %v", got, want)
	}
	n.audit.mu.Lock()
	if e := n.audit.entries[0]; e.From != "alice;role=admin" || e.Kind != "admin" || !strings.Contains(e.Reason, "a.example") {
		t.Errorf("first audit entry %+v", e)
	}
	n.audit.mu.Unlock()
	if v := counterValue(t, n, "AdminService/AddNetwork", "OK"); v != 2 {
		t.Errorf("requests_total{AddNetwork,OK} = %v, want 2", v)
	}
	if v := counterValue(t, n, "AdminService/GetNetwork", "NotFound"); v != 1 {
		t.Errorf("requests_total{GetNetwork,NotFound} = %v, want 1", v)
	}
}

func counterValue(t *testing.T, n *testNode, method, code string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clearhub_admin_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Every refusal carries the right code and names the field at fault.
func TestValidationErrors(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)
	if _, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*hubv1.Network)) *hubv1.Network {
		nw := testNetwork("b")
		f(nw)
		return nw
	}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		subs []string
	}{
		{"invalid domain", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: mod(func(n *hubv1.Network) { n.Domains = []string{"bad..domain"} })})
			return err
		}, codes.InvalidArgument, []string{"network.domains[0]", "bad..domain"}},
		{"domain owned by another network", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: mod(func(n *hubv1.Network) { n.Domains = []string{"b.example", "A.example"} })})
			return err
		}, codes.AlreadyExists, []string{"network.domains[1]", `"a"`}},
		{"unparseable edge URI", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: mod(func(n *hubv1.Network) { n.Edges = []string{"http://x y"} })})
			return err
		}, codes.InvalidArgument, []string{"network.edges[0]"}},
		{"bad PEM", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: mod(func(n *hubv1.Network) { n.Identity.CaPem = []string{"-----BEGIN NONSENSE"} })})
			return err
		}, codes.InvalidArgument, []string{"network.identity.ca_pem[0]"}},
		{"bad CIDR", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: mod(func(n *hubv1.Network) { n.Identity.Cidrs = []string{"10.1.0.0/33"} })})
			return err
		}, codes.InvalidArgument, []string{"network.identity.cidrs[0]", "10.1.0.0/33"}},
		{"network already exists", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")})
			return err
		}, codes.AlreadyExists, []string{`"a"`}},
		{"missing network", func() error {
			_, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{})
			return err
		}, codes.InvalidArgument, []string{"network: required"}},
		{"unknown network id", func() error {
			_, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "nope"})
			return err
		}, codes.NotFound, []string{`"nope"`}},
		{"empty id", func() error {
			_, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{})
			return err
		}, codes.InvalidArgument, []string{"id: required"}},
		{"suspend unknown network", func() error {
			_, err := c.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: "nope"})
			return err
		}, codes.NotFound, []string{`"nope"`}},
		{"remove unknown network", func() error {
			_, err := c.RemoveNetwork(ctx, &hubv1.NetworkRef{Id: "nope"})
			return err
		}, codes.NotFound, []string{`"nope"`}},
		{"unknown update_mask path", func() error {
			_, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a"}, UpdateMask: []string{"status"}})
			return err
		}, codes.InvalidArgument, []string{"update_mask[0]", "status"}},
		{"update unknown network", func() error {
			_, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: testNetwork("zz")})
			return err
		}, codes.NotFound, []string{`"zz"`}},
		{"update of a stale version", func() error {
			_, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", DisplayName: "x"},
				UpdateMask: []string{"display_name"}, IfUpdatedUnixNano: 1})
			return err
		}, codes.FailedPrecondition, []string{`"a"`, "changed since it was read"}},
		{"update with bad edge", func() error {
			_, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", Edges: []string{"sip:"}}, UpdateMask: []string{"edges"}})
			return err
		}, codes.InvalidArgument, []string{"network.edges[0]"}},
		{"policy for unknown destination", func() error {
			_, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "nope", All: true})
			return err
		}, codes.NotFound, []string{`"nope"`}},
		{"policy for unknown source", func() error {
			_, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a", Source: "ghost"})
			return err
		}, codes.NotFound, []string{`"ghost"`}},
		{"policy with source and all", func() error {
			_, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a", Source: "b", All: true})
			return err
		}, codes.InvalidArgument, []string{"source"}},
		{"policy without source", func() error {
			_, err := c.DenyPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a"})
			return err
		}, codes.InvalidArgument, []string{"source: required"}},
		{"policy unknown service", func() error {
			_, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a", All: true, Services: []hubv1.Service{99}})
			return err
		}, codes.InvalidArgument, []string{"services[0]"}},
		{"token ttl too long", func() error {
			_, err := c.CreateJoinToken(ctx, &hubv1.CreateJoinTokenRequest{TtlSeconds: 86401})
			return err
		}, codes.InvalidArgument, []string{"ttl_seconds"}},
		{"token ttl negative", func() error {
			_, err := c.CreateJoinToken(ctx, &hubv1.CreateJoinTokenRequest{TtlSeconds: -1})
			return err
		}, codes.InvalidArgument, []string{"ttl_seconds"}},
		{"add node without id", func() error {
			_, err := c.AddNode(ctx, &hubv1.AddNodeRequest{RaftAddr: "127.0.0.1:7001"})
			return err
		}, codes.InvalidArgument, []string{"id: required"}},
		{"add node bad raft addr", func() error {
			_, err := c.AddNode(ctx, &hubv1.AddNodeRequest{Id: "n2", RaftAddr: "0.0.0.0:7001"})
			return err
		}, codes.InvalidArgument, []string{"raft_addr"}},
		{"remove unknown node", func() error {
			_, err := c.RemoveNode(ctx, &hubv1.RemoveNodeRequest{Id: "ghost"})
			return err
		}, codes.NotFound, []string{`"ghost"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(), tt.code, tt.subs...)
		})
	}
	if got := n.audit.methods(); !slices.Equal(got, []string{"AddNetwork"}) {
		t.Errorf("failed calls were audited: %v", got)
	}
}

// The one listener admits each service only to the right certificate role.
func TestAuthorization(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	ctx := ctxT(t)
	member := issue(t, ca, pki.RoleMember, "member-a")
	node := issue(t, ca, pki.RoleNode, "node-b")
	op := issue(t, ca, pki.RoleOperator, "alice")

	noCert := dialT(t, n.addr, clientTLS(ca, nil))
	_, err := hubv1.NewAdminServiceClient(noCert).ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.Unauthenticated, "client certificate required")
	_, err = hubv1.NewClusterInternalClient(noCert).Propose(ctx, &hubv1.ProposeRequest{})
	wantStatus(t, err, codes.Unauthenticated, "client certificate required")
	// Reflection is an operator tool.
	rs, err := reflectionpb.NewServerReflectionClient(noCert).ServerReflectionInfo(ctx)
	if err == nil {
		_, err = rs.Recv()
	}
	wantStatus(t, err, codes.Unauthenticated, "client certificate required")
	// Health needs no certificate.
	if r, err := healthpb.NewHealthClient(noCert).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", r, err)
	}

	_, err = hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &member))).ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.PermissionDenied, "certificate role member may not call AdminService")
	_, err = hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &node))).ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.PermissionDenied, "certificate role node may not call AdminService")
	opConn := dialT(t, n.addr, clientTLS(ca, &op))
	_, err = hubv1.NewClusterInternalClient(opConn).Propose(ctx, &hubv1.ProposeRequest{})
	wantStatus(t, err, codes.PermissionDenied, "certificate role operator may not call ClusterInternal")
	if _, err := hubv1.NewAdminServiceClient(opConn).ListNetworks(ctx, &hubv1.ListNetworksRequest{}); err != nil {
		t.Fatalf("operator ListNetworks: %v", err)
	}
	rs, err = reflectionpb.NewServerReflectionClient(opConn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil || !strings.Contains(r.String(), "clearhub.v1.AdminService") {
		t.Fatalf("reflection list = %v, %v", r, err)
	}

	// A certificate from another CA fails the handshake.
	other, err := pki.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := issue(t, other, pki.RoleOperator, "mallory")
	_, err = hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &foreign))).ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err == nil {
		t.Fatal("foreign operator certificate accepted")
	}
}

// A Server registered on a grpc.Server without its interceptors serves
// nothing rather than everything.
func TestHandlersRefuseWithoutInterceptors(t *testing.T) {
	ca := sharedCA(t)
	s, err := NewServer(Options{NodeID: "node-a", CA: ca, NodeClientTLS: &tls.Config{}, Store: newFakeCluster().store("node-a")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ListNetworks(t.Context(), &hubv1.ListNetworksRequest{})
	if code, _ := codeOf(err); code != codes.Unauthenticated {
		t.Fatalf("got %v", err)
	}
}
