package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// startLINode is startNode with an interception ledger.
func startLINode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string, li InterceptLedger) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), audit: &fakeAuditor{},
		reg: prometheus.NewRegistry(), clock: newTestClock(), logs: &logRecorder{}}
	n.srv, err = NewServer(Options{NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: n.store,
		Auditor: n.audit, Registerer: n.reg, Now: n.clock.Now, Logger: slog.New(n.logs), InterceptLedger: li})
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))
	cl.mu.Lock()
	if cl.leaderID == "" {
		cl.leaderID = id
	}
	cl.mu.Unlock()
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "test",
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: "127.0.0.1:7000", AdminAddr: n.addr}}}}); err != nil {
		t.Fatal(err)
	}
	return n
}

func testWarrant(id, target string) *hubv1.Warrant {
	now := time.Now()
	return &hubv1.Warrant{Id: id, Kind: hubv1.WarrantTargetKind_WARRANT_TARGET_USER, Target: target,
		StartUnixNano: now.Add(-time.Minute).UnixNano(), EndUnixNano: now.Add(time.Hour).UnixNano(), Signalling: true, Reference: "order-42"}
}

// Only the lawful-intercept role sees or changes warrants; no other
// operator and no member can, and no admin answer carries them.
func TestInterceptOnlyForItsRole(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	li := openTestLedger(t, "node-a", 7)
	n := startLINode(t, ca, cl, "node-a", li)
	lea := issueOperator(t, ca, "lea", pki.AdminRoleLawfulIntercept)
	leaConn := dialT(t, n.addr, clientTLS(ca, &lea))
	ic := hubv1.NewInterceptServiceClient(leaConn)

	// The operator adds a network (before the warrant: the fake FSM's own
	// network code rebuilds the state from what admin reads see).
	admin := operatorConn(t, ca, n)
	if _, err := admin.AddNetwork(ctxT(t), &hubv1.AddNetworkRequest{Network: &hubv1.Network{Id: "neta", Domains: []string{"a.example"},
		Edges: []string{"sip:127.0.0.2:5060"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}}}); err != nil {
		t.Fatal(err)
	}
	w, err := ic.PutWarrant(ctxT(t), &hubv1.PutWarrantRequest{Warrant: testWarrant("w1", "sip:alice@A.Example")})
	if err != nil {
		t.Fatal(err)
	}
	if w.GetTarget() != "sip:alice@a.example" || w.GetCreatedBy() != "lea;role=lawful-intercept" {
		t.Fatalf("stored warrant %v", w)
	}
	lw, err := ic.ListWarrants(ctxT(t), &hubv1.ListWarrantsRequest{})
	if err != nil || len(lw.GetWarrants()) != 1 {
		t.Fatalf("ListWarrants = %v, %v", lw, err)
	}

	// Every other role: PermissionDenied on every InterceptService method.
	others := []tls.Certificate{
		issue(t, ca, pki.RoleOperator, "operator"), // role-less: admin
		issueOperator(t, ca, "ann", pki.AdminRoleAdmin),
		issueOperator(t, ca, "otto", pki.AdminRoleOperator),
		issueOperator(t, ca, "audrey", pki.AdminRoleAuditor),
		issueOperator(t, ca, "rita", pki.AdminRoleReadonly),
	}
	for _, cert := range others {
		c := hubv1.NewInterceptServiceClient(dialT(t, n.addr, clientTLS(ca, &cert)))
		calls := map[string]func() error{
			"ListWarrants": func() error { _, err := c.ListWarrants(ctxT(t), &hubv1.ListWarrantsRequest{}); return err },
			"PutWarrant": func() error {
				_, err := c.PutWarrant(ctxT(t), &hubv1.PutWarrantRequest{Warrant: testWarrant("w2", "sip:bob@a.example")})
				return err
			},
			"DeleteWarrant": func() error { _, err := c.DeleteWarrant(ctxT(t), &hubv1.DeleteWarrantRequest{Id: "w1"}); return err },
			"InterceptCheckpoint": func() error {
				_, err := c.InterceptCheckpoint(ctxT(t), &hubv1.InterceptCheckpointRequest{})
				return err
			},
			"ExportInterceptAudit": func() error {
				st, err := c.ExportInterceptAudit(ctxT(t), &hubv1.ExportInterceptAuditRequest{})
				if err != nil {
					return err
				}
				_, err = st.Recv()
				return err
			},
		}
		for m, call := range calls {
			if err := call(); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s %s: %v, want PermissionDenied", cnOf(t, cert), m, err)
			}
		}
		// GetState, what `hubctl cluster snapshot save` and exports read,
		// carries no warrant (for the roles that may call it).
		if st, err := hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &cert))).GetState(ctxT(t), &hubv1.GetStateRequest{}); err == nil {
			b, _ := proto.Marshal(st)
			if len(st.GetWarrants()) != 0 || bytes.Contains(b, []byte("alice")) || bytes.Contains(b, []byte("order-42")) {
				t.Errorf("%s: GetState leaks the warrant", cnOf(t, cert))
			}
		} else if status.Code(err) != codes.PermissionDenied {
			t.Errorf("GetState: %v", err)
		}
	}
	if cl.fsm.State().Warrant("w1") == nil || cl.fsm.State().Warrant("w2") != nil {
		t.Fatal("a refused caller changed the warrants")
	}

	// The lawful-intercept role reaches nothing else.
	if _, err := hubv1.NewAdminServiceClient(leaConn).ListNetworks(ctxT(t), &hubv1.ListNetworksRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("lawful-intercept ListNetworks: %v", err)
	}
	if _, err := hubv1.NewAdminServiceClient(leaConn).GetState(ctxT(t), &hubv1.GetStateRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("lawful-intercept GetState: %v", err)
	}

	// The change is in the interception ledger, not in the main one, and
	// not in the node's log.
	recs := exportLI(t, ic)
	if len(recs) != 1 || !strings.Contains(recs[0], `"method":"PutWarrant"`) || !strings.Contains(recs[0], "sip:alice@a.example") {
		t.Fatalf("interception ledger: %q", recs)
	}
	for _, m := range n.audit.methods() {
		if strings.Contains(m, "Warrant") {
			t.Errorf("main ledger names %s", m)
		}
	}
	n.logs.mu.Lock()
	for _, r := range n.logs.recs {
		if strings.Contains(r.attrs["method"], "InterceptService") && r.msg != "admin request refused" {
			t.Errorf("node log names an interception call: %s %v", r.msg, r.attrs)
		}
	}
	n.logs.mu.Unlock()
	cp, err := ic.InterceptCheckpoint(ctxT(t), &hubv1.InterceptCheckpointRequest{})
	if err != nil || cp.GetTreeSize() != 1 || !bytes.Equal(cp.GetPublicKey(), li.PublicKey()) {
		t.Fatalf("checkpoint %v, %v", cp, err)
	}
	if _, err := ic.DeleteWarrant(ctxT(t), &hubv1.DeleteWarrantRequest{Id: "w1"}); err != nil {
		t.Fatal(err)
	}
	if got := exportLI(t, ic); len(got) != 2 || !strings.Contains(got[1], `"method":"DeleteWarrant"`) {
		t.Fatalf("interception ledger after delete: %q", got)
	}
}

func exportLI(t *testing.T, c hubv1.InterceptServiceClient) []string {
	t.Helper()
	st, err := c.ExportInterceptAudit(ctxT(t), &hubv1.ExportInterceptAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(r.GetJson()))
	}
}

// Members cannot reach InterceptService either.
func TestInterceptRefusesMembers(t *testing.T) {
	e := newMemberEnv(t)
	c := e.memberCert(t, e.caA, "neta.example")
	ic := hubv1.NewInterceptServiceClient(dialT(t, e.n1.addr, clientTLS(e.ca, &c)))
	if _, err := ic.ListWarrants(ctxT(t), &hubv1.ListWarrantsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("member ListWarrants: %v", err)
	}
}

// Without an interception ledger no warrant is set: interception is never
// unaudited.
func TestInterceptNeedsItsLedger(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	lea := issueOperator(t, ca, "lea", pki.AdminRoleLawfulIntercept)
	ic := hubv1.NewInterceptServiceClient(dialT(t, n.addr, clientTLS(ca, &lea)))
	_, err := ic.PutWarrant(ctxT(t), &hubv1.PutWarrantRequest{Warrant: testWarrant("w1", "sip:alice@a.example")})
	wantStatus(t, err, codes.FailedPrecondition, "interception ledger")
}

func cnOf(t *testing.T, c tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestCaptureSwitch(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	admin := operatorConn(t, ca, n)
	if _, err := admin.AddNetwork(ctxT(t), &hubv1.AddNetworkRequest{Network: &hubv1.Network{Id: "neta", Domains: []string{"a.example"},
		Edges: []string{"sip:127.0.0.2:5060"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}}}); err != nil {
		t.Fatal(err)
	}
	otto := issueOperator(t, ca, "otto", pki.AdminRoleOperator)
	rita := issueOperator(t, ca, "rita", pki.AdminRoleReadonly)
	op := hubv1.NewCaptureServiceClient(dialT(t, n.addr, clientTLS(ca, &otto)))
	ro := hubv1.NewCaptureServiceClient(dialT(t, n.addr, clientTLS(ca, &rita)))
	if _, err := op.SetCapture(ctxT(t), &hubv1.SetCaptureRequest{Network: "nope", On: true}); status.Code(err) != codes.NotFound {
		t.Errorf("capture of an unknown network: %v", err)
	}
	got, err := op.SetCapture(ctxT(t), &hubv1.SetCaptureRequest{Network: "neta", On: true})
	if err != nil || len(got.GetNetworks()) != 1 || got.GetUpdatedBy() != "otto" {
		t.Fatalf("SetCapture = %v, %v", got, err)
	}
	if _, err := ro.SetCapture(ctxT(t), &hubv1.SetCaptureRequest{All: true, On: true}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("readonly SetCapture: %v", err)
	}
	st, err := ro.CaptureStatus(ctxT(t), &hubv1.CaptureStatusRequest{})
	if err != nil || len(st.GetSettings().GetNetworks()) != 1 || !cl.fsm.State().Captured("neta") {
		t.Fatalf("CaptureStatus = %v, %v", st, err)
	}
	if ms := n.audit.methods(); !strings.Contains(strings.Join(ms, ","), "SetCapture") {
		t.Errorf("capture switch not audited: %v", ms)
	}
	if _, err := op.SetCapture(ctxT(t), &hubv1.SetCaptureRequest{Network: "neta"}); err != nil || cl.fsm.State().CaptureOn() {
		t.Fatalf("capture off: %v", err)
	}
}
