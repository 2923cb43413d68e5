package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// logRecorder is a slog.Handler keeping every record's message, level and
// attributes (as strings) for assertions.
type logRecorder struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, rec)
	return nil
}

// find returns the records with msg whose attributes include want.
func (l *logRecorder) find(msg string, want map[string]string) []logRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRec
next:
	for _, r := range l.recs {
		if r.msg != msg {
			continue
		}
		for k, v := range want {
			if r.attrs[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func issueOperator(t *testing.T, ca *pki.CA, name string, role pki.AdminRole) tls.Certificate {
	t.Helper()
	c, _, _, err := ca.IssueOperatorKeyPair(name, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func adminClient(t *testing.T, ca *pki.CA, n *testNode, cert tls.Certificate) hubv1.AdminServiceClient {
	t.Helper()
	return hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &cert)))
}

func serialOf(c tls.Certificate) string { return raft.SerialString(c.Leaf.SerialNumber) }

// Every method the admin port serves has an entry in the one access table,
// and every entry names a served method: adding an RPC without deciding
// who may call it fails here.
func TestAccessTableCovers(t *testing.T) {
	served := map[string]bool{}
	for _, d := range []*grpc.ServiceDesc{&hubv1.AdminService_ServiceDesc, &hubv1.ClusterInternal_ServiceDesc, &hubv1.JoinService_ServiceDesc,
		&hubv1.ListService_ServiceDesc, &hubv1.QueueService_ServiceDesc, &hubv1.RoomService_ServiceDesc, &hubv1.MemberAuditService_ServiceDesc,
		&hubv1.ConsoleService_ServiceDesc, &hubv1.InterceptService_ServiceDesc, &hubv1.CaptureService_ServiceDesc} {
		for _, m := range d.Methods {
			served["/"+d.ServiceName+"/"+m.MethodName] = true
		}
		for _, s := range d.Streams {
			served["/"+d.ServiceName+"/"+s.StreamName] = true
		}
	}
	for m := range served {
		if _, ok := methodAccess[m]; !ok {
			t.Errorf("%s has no entry in methodAccess: decide which roles may call it", m)
		}
	}
	for m, a := range methodAccess {
		if !served[m] {
			t.Errorf("methodAccess names %s, which is not served", m)
		}
		if strings.HasPrefix(m, "/clearhub.v1.AdminService/") && (a.kind != pki.RoleOperator || !a.roles.has(pki.AdminRoleAdmin)) {
			t.Errorf("%s: admin must be able to call every AdminService method (%+v)", m, a)
		}
	}
	if _, ok := accessFor("/clearhub.v1.AdminService/NoSuchMethod"); ok {
		t.Error("an unknown method is served")
	}
}

// Over real mutual TLS, every AdminService method answers PermissionDenied
// exactly to the roles the table leaves out, with a message naming the
// caller and the roles needed. The development operator certificate (no
// role OU) is admin.
func TestRolesPerRPC(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	callers := []struct {
		name string
		role pki.AdminRole
		cert tls.Certificate
	}{
		{"operator", pki.AdminRoleAdmin, issue(t, ca, pki.RoleOperator, "operator")}, // as hubd writes it
		{"ann", pki.AdminRoleAdmin, issueOperator(t, ca, "ann", pki.AdminRoleAdmin)},
		{"otto", pki.AdminRoleOperator, issueOperator(t, ca, "otto", pki.AdminRoleOperator)},
		{"audrey", pki.AdminRoleAuditor, issueOperator(t, ca, "audrey", pki.AdminRoleAuditor)},
		{"rita", pki.AdminRoleReadonly, issueOperator(t, ca, "rita", pki.AdminRoleReadonly)},
	}
	d := &hubv1.AdminService_ServiceDesc
	type method struct {
		full   string
		stream bool
	}
	var methods []method
	for _, m := range d.Methods {
		methods = append(methods, method{"/" + d.ServiceName + "/" + m.MethodName, false})
	}
	for _, s := range d.Streams {
		methods = append(methods, method{"/" + d.ServiceName + "/" + s.StreamName, true})
	}
	for _, c := range callers {
		conn := dialT(t, n.addr, clientTLS(ca, &c.cert))
		for _, m := range methods {
			t.Run(c.name+methodLabel(m.full)[len("AdminService"):], func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				// An empty message is every request type's zero value: the
				// handler refuses most of them, but only the interceptor
				// answers PermissionDenied.
				var err error
				if m.stream {
					var st grpc.ClientStream
					st, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, m.full)
					if err == nil {
						if err = st.SendMsg(&emptypb.Empty{}); err == nil {
							_ = st.CloseSend()
							err = st.RecvMsg(&emptypb.Empty{})
						}
					}
				} else {
					err = conn.Invoke(ctx, m.full, &emptypb.Empty{}, &emptypb.Empty{})
				}
				allowed := methodAccess[m.full].roles.has(c.role)
				denied := status.Code(err) == codes.PermissionDenied
				if allowed == denied {
					t.Fatalf("role %s: allowed=%v but got %v", c.role, allowed, err)
				}
				if denied {
					wantStatus(t, err, codes.PermissionDenied, c.name, "role "+string(c.role), "it needs role ", methodLabel(m.full))
				}
			})
		}
	}
}

// A certificate revoked through one node is refused by every node: calls
// on a connection made before the revocation get Unauthenticated
// "certificate revoked", new connections fail the handshake. By name it
// covers every certificate of that name; a certificate cannot revoke
// itself; only admin may revoke.
func TestRevocationAcrossNodes(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	a := startNode(t, ca, cl, "node-a") // leader
	b := startNode(t, ca, cl, "node-b")
	c := startNode(t, ca, cl, "node-c")
	ctx := ctxT(t)
	root := issueOperator(t, ca, "root", pki.AdminRoleAdmin)
	alice := issueOperator(t, ca, "alice", pki.AdminRoleOperator)
	bob := issueOperator(t, ca, "bob", pki.AdminRoleReadonly)
	rootB := adminClient(t, ca, b, root)

	aliceOnC := adminClient(t, ca, c, alice)
	bobOnC := adminClient(t, ca, c, bob)
	for _, cl := range []hubv1.AdminServiceClient{aliceOnC, bobOnC} {
		if _, err := cl.ListNetworks(ctx, &hubv1.ListNetworksRequest{}); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}

	// Through a follower (forwarded to the leader), by serial with colons
	// as openssl prints it.
	serial := serialOf(alice)
	colons := strings.ToUpper(serial)
	if len(colons)%2 == 1 {
		colons = "0" + colons
	}
	var parts []string
	for i := 0; i < len(colons); i += 2 {
		parts = append(parts, colons[i:i+2])
	}
	rev, err := rootB.RevokeCertificate(ctx, &hubv1.RevokeCertificateRequest{Serial: strings.Join(parts, ":"), Reason: "laptop stolen"})
	if err != nil {
		t.Fatalf("RevokeCertificate: %v", err)
	}
	if rev.GetSerial() != serial || rev.GetRevokedBy() != "root;role=admin" || rev.GetReason() != "laptop stolen" {
		t.Fatalf("revocation %v", rev)
	}
	_, err = aliceOnC.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.Unauthenticated, "certificate revoked", `"alice"`, serial, "laptop stolen")
	if _, err := bobOnC.ListNetworks(ctx, &hubv1.ListNetworksRequest{}); err != nil {
		t.Fatalf("bob refused after alice's revocation: %v", err)
	}
	for _, n := range []*testNode{a, c} {
		_, err := adminClient(t, ca, n, alice).ListNetworks(ctx, &hubv1.ListNetworksRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: new connection with a revoked certificate: %v", n.id, err)
		}
		if got := n.logs.find("admin TLS handshake refused: certificate revoked", map[string]string{"actor": "alice", "serial": serial}); len(got) == 0 {
			t.Errorf("%s: no handshake refusal logged", n.id)
		}
	}
	if got := c.logs.find("admin request refused", map[string]string{"actor": "alice", "role": "operator", "code": "Unauthenticated"}); len(got) == 0 {
		t.Error("refusal on the old connection not logged")
	}

	// By name, through the leader.
	if _, err := adminClient(t, ca, a, root).RevokeCertificate(ctx, &hubv1.RevokeCertificateRequest{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	_, err = bobOnC.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.Unauthenticated, "certificate revoked", `every certificate named "bob"`)

	// Refusals.
	tests := []struct {
		name string
		req  *hubv1.RevokeCertificateRequest
		code codes.Code
		subs []string
	}{
		{"own serial", &hubv1.RevokeCertificateRequest{Serial: serialOf(root)}, codes.FailedPrecondition, []string{"making this request"}},
		{"own name", &hubv1.RevokeCertificateRequest{Name: "root"}, codes.FailedPrecondition, []string{"making this request"}},
		{"twice", &hubv1.RevokeCertificateRequest{Serial: serial}, codes.AlreadyExists, []string{serial}},
		{"nothing", &hubv1.RevokeCertificateRequest{}, codes.InvalidArgument, []string{"serial"}},
		{"both", &hubv1.RevokeCertificateRequest{Serial: "ab", Name: "x"}, codes.InvalidArgument, []string{"not both"}},
		{"bad serial", &hubv1.RevokeCertificateRequest{Serial: "xyz"}, codes.InvalidArgument, []string{"serial", "xyz"}},
		{"bad name", &hubv1.RevokeCertificateRequest{Name: "x\ny"}, codes.InvalidArgument, []string{"revoke_certificate.name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rootB.RevokeCertificate(ctx, tt.req)
			wantStatus(t, err, tt.code, tt.subs...)
		})
	}
	_, err = adminClient(t, ca, c, issueOperator(t, ca, "otto", pki.AdminRoleOperator)).RevokeCertificate(ctx, &hubv1.RevokeCertificateRequest{Name: "root"})
	wantStatus(t, err, codes.PermissionDenied, "otto (role operator)", "needs role admin")

	list, err := adminClient(t, ca, c, issueOperator(t, ca, "carol", pki.AdminRoleAuditor)).ListRevocations(ctx, &hubv1.ListRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 2 {
		t.Fatalf("ListRevocations = %v, %v", list, err)
	}

	// The follower that was asked audited it, naming the person and role.
	b.audit.mu.Lock()
	var found bool
	for _, e := range b.audit.entries {
		found = found || e.Method == "RevokeCertificate" && e.From == "root;role=admin" && strings.Contains(e.Reason, serial)
	}
	b.audit.mu.Unlock()
	if !found {
		t.Errorf("no RevokeCertificate audit entry naming root;role=admin: %v", b.audit.methods())
	}
	// The role rides as a parameter, so 'audit export --user root' still
	// selects the person's entries.
	if ledger.NormalizeUser("root;role=admin") != ledger.NormalizeUser("root") {
		t.Error("the actor's role breaks the ledger's user filter")
	}
}

// Join tokens are recorded when created, listed with their creator, and a
// revoked or unrecorded token is refused at Join on any node.
func TestJoinTokenRecords(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	a := startNode(t, ca, cl, "node-a")
	b := startNode(t, ca, cl, "node-b")
	ctx := ctxT(t)
	root := issueOperator(t, ca, "root", pki.AdminRoleAdmin)
	onB := adminClient(t, ca, b, root)
	tok, err := onB.CreateJoinToken(ctx, &hubv1.CreateJoinTokenRequest{TtlSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseJoinToken(tok.GetToken())
	if err != nil || tok.GetId() != info.ID {
		t.Fatalf("token id %q, parsed %v, %v", tok.GetId(), info, err)
	}
	list, err := adminClient(t, ca, a, issueOperator(t, ca, "rita", pki.AdminRoleReadonly)).ListJoinTokens(ctx, &hubv1.ListJoinTokensRequest{})
	if err != nil || len(list.GetTokens()) != 1 {
		t.Fatalf("ListJoinTokens = %v, %v", list, err)
	}
	if r := list.GetTokens()[0]; r.GetId() != info.ID || r.GetCreatedBy() != "root;role=admin" || r.GetExpiresUnix() != tok.GetExpiresUnix() || r.GetRevoked() {
		t.Fatalf("record %v", r)
	}
	if strings.Contains(list.String(), strings.Split(tok.GetToken(), ".")[3]) {
		t.Fatal("the token's MAC is in the state")
	}

	// A token with a valid MAC that was never recorded (minted with the
	// key alone) is refused.
	unrecorded, _, err := a.srv.tokens.create(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := JoinParams{NodeID: "node-c", RaftAddr: "127.0.0.1:7003", AdminAddr: "127.0.0.1:9003"}
	_, err = JoinCluster(ctx, a.addr, unrecorded, p)
	wantStatus(t, errors.Unwrap(err), codes.Unauthenticated, "not recorded")

	rev, err := adminClient(t, ca, a, root).RevokeJoinToken(ctx, &hubv1.RevokeJoinTokenRequest{Id: info.ID, Reason: "pasted in chat"})
	if err != nil || !rev.GetRevoked() || rev.GetRevokedBy() != "root;role=admin" {
		t.Fatalf("RevokeJoinToken = %v, %v", rev, err)
	}
	for _, n := range []*testNode{a, b} {
		_, err = JoinCluster(ctx, n.addr, tok.GetToken(), p)
		wantStatus(t, errors.Unwrap(err), codes.Unauthenticated, "join token "+info.ID+": revoked", "pasted in chat")
	}
	if cl.fsm.State().Node("node-c") != nil {
		t.Fatal("a revoked token admitted a node")
	}
	_, err = onB.RevokeJoinToken(ctx, &hubv1.RevokeJoinTokenRequest{Id: info.ID})
	wantStatus(t, err, codes.AlreadyExists, "already revoked")
	_, err = onB.RevokeJoinToken(ctx, &hubv1.RevokeJoinTokenRequest{Id: "0123456789abcdef"})
	wantStatus(t, err, codes.NotFound, "0123456789abcdef")
	_, err = onB.RevokeJoinToken(ctx, &hubv1.RevokeJoinTokenRequest{})
	wantStatus(t, err, codes.InvalidArgument, "id")
}

// Every change and every refusal is one structured log line naming the
// actor, role, method and code; successful reads are not logged.
func TestAdminLogLines(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	ctx := ctxT(t)
	root := adminClient(t, ca, n, issueOperator(t, ca, "root", pki.AdminRoleAdmin))
	rita := adminClient(t, ca, n, issueOperator(t, ca, "rita", pki.AdminRoleReadonly))

	if _, err := root.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	_, err := root.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")})
	wantStatus(t, err, codes.AlreadyExists)
	_, err = rita.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("b")})
	wantStatus(t, err, codes.PermissionDenied, "rita (role readonly)", "needs role admin or operator")
	if _, err := rita.ListNetworks(ctx, &hubv1.ListNetworksRequest{}); err != nil {
		t.Fatal(err)
	}
	noCert := hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, nil)))
	_, err = noCert.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	wantStatus(t, err, codes.Unauthenticated)

	tests := []struct {
		msg   string
		attrs map[string]string
		level slog.Level
	}{
		{"admin change", map[string]string{"actor": "root", "role": "admin", "method": "AdminService/AddNetwork", "code": "OK"}, slog.LevelInfo},
		{"admin change refused", map[string]string{"actor": "root", "role": "admin", "method": "AdminService/AddNetwork", "code": "AlreadyExists"}, slog.LevelInfo},
		{"admin request refused", map[string]string{"actor": "rita", "role": "readonly", "method": "AdminService/AddNetwork", "code": "PermissionDenied"}, slog.LevelWarn},
		{"admin request refused", map[string]string{"actor": "", "role": "none", "method": "AdminService/ListNetworks", "code": "Unauthenticated"}, slog.LevelWarn},
	}
	for _, tt := range tests {
		got := n.logs.find(tt.msg, tt.attrs)
		if len(got) != 1 || got[0].level != tt.level {
			t.Errorf("%s %v: %d lines %v", tt.msg, tt.attrs, len(got), got)
		}
		if len(got) == 1 && got[0].attrs["serial"] == "" && tt.attrs["actor"] != "" {
			t.Errorf("%s: no serial in %v", tt.msg, got[0].attrs)
		}
	}
	if got := n.logs.find("admin change", map[string]string{"method": "AdminService/ListNetworks"}); len(got) != 0 {
		t.Errorf("a read was logged as a change: %v", got)
	}
}

// WhoAmI reports the caller's name, role and serial.
func TestWhoAmI(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	for _, tt := range []struct {
		cert tls.Certificate
		name string
		role string
	}{
		{issueOperator(t, ca, "audrey", pki.AdminRoleAuditor), "audrey", "auditor"},
		{issue(t, ca, pki.RoleOperator, "operator"), "operator", "admin"},
	} {
		w, err := adminClient(t, ca, n, tt.cert).WhoAmI(ctxT(t), &hubv1.WhoAmIRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if w.GetName() != tt.name || w.GetRole() != tt.role || w.GetKind() != "operator" || w.GetSerial() != serialOf(tt.cert) || w.GetNotAfterUnix() != tt.cert.Leaf.NotAfter.Unix() {
			t.Errorf("WhoAmI = %v", w)
		}
	}
}

func TestRoleSetString(t *testing.T) {
	for _, tt := range []struct {
		r    roleSet
		want string
	}{
		{rAdmin, "admin"},
		{rAdmin | rOperator, "admin or operator"},
		{rAll, "admin, operator, auditor or readonly"},
		{0, "(no role)"},
	} {
		if got := fmt.Sprint(tt.r); got != tt.want {
			t.Errorf("%d: %q, want %q", tt.r, got, tt.want)
		}
	}
}
