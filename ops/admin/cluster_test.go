package admin

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// A write sent to a follower is forwarded to the leader over ClusterInternal
// with the follower's node certificate, and the follower's answer reflects
// it; FSM refusals come back with their code and field.
func TestFollowerForwarding(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	leader := startNode(t, ca, cl, "node-a") // first node leads
	follower := startNode(t, ca, cl, "node-b")
	c := operatorConn(t, ca, follower)
	ctx := ctxT(t)

	got, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")})
	if err != nil {
		t.Fatalf("AddNetwork via follower: %v", err)
	}
	if got.GetId() != "a" || got.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE {
		t.Fatalf("AddNetwork via follower returned %v", got)
	}
	if _, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("b")}); err != nil {
		t.Fatal(err)
	}
	if p, err := c.AllowPolicy(ctx, &hubv1.PolicyChangeRequest{Destination: "a", Source: "b"}); err != nil || len(p.GetRules()) != 1 {
		t.Fatalf("AllowPolicy via follower = %v, %v", p, err)
	}

	// A conflict the follower's own check cannot see (its state is the
	// leader's here, so force it through Propose directly) comes back with
	// its code and field.
	nodeB := issue(t, ca, pki.RoleNode, "node-b")
	ci := hubv1.NewClusterInternalClient(dialT(t, leader.addr, clientTLS(ca, &nodeB)))
	dup := &hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "x", Op: &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: func() *hubv1.Network {
		n := testNetwork("c")
		n.Domains = []string{"a.example"}
		return n
	}()}}}
	b, _ := protoMarshal(dup)
	resp, err := ci.Propose(ctx, &hubv1.ProposeRequest{Command: b})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, responseError(resp), codes.AlreadyExists, "network.domains[0]")
	resp, err = ci.Propose(ctx, &hubv1.ProposeRequest{Command: []byte{0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, responseError(resp), codes.InvalidArgument, "command")

	// Leader's auditor saw nothing (the follower audits what it was asked);
	// the follower audited its three changes.
	if got := follower.audit.methods(); len(got) != 3 {
		t.Errorf("follower audited %v", got)
	}

	// Membership changes forward too.
	st, err := c.AddNode(ctx, &hubv1.AddNodeRequest{Id: "node-c", RaftAddr: "127.0.0.1:7003", AdminAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("AddNode via follower: %v", err)
	}
	if len(st.GetNodes()) != 3 {
		t.Fatalf("after AddNode: %v", st)
	}
	if cl.fsm.State().Node("node-c").GetAdminAddr() != "127.0.0.1:1" {
		t.Fatal("AddNode did not record the node")
	}
	st, err = c.RemoveNode(ctx, &hubv1.RemoveNodeRequest{Id: "node-c"})
	if err != nil || len(st.GetNodes()) != 2 || cl.fsm.State().Node("node-c") != nil {
		t.Fatalf("RemoveNode via follower = %v, %v", st, err)
	}

	// Without a leader, a follower answers Unavailable.
	cl.mu.Lock()
	cl.leaderID = ""
	cl.mu.Unlock()
	_, err = c.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: "a"})
	wantStatus(t, err, codes.Unavailable, "no raft leader")
}

// ClusterStatus lists every configured node with its admin address, probes
// peers' health, and reports the answering node's own raft view.
func TestClusterStatus(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	startNode(t, ca, cl, "node-a")
	follower := startNode(t, ca, cl, "node-b")
	cl.mu.Lock()
	cl.servers = append(cl.servers, raftServer("node-c", "127.0.0.1:7003")) // configured, no admin addr
	cl.mu.Unlock()
	c := operatorConn(t, ca, follower)
	ctx := ctxT(t)
	// Each peer probe is bounded by peerProbeTimeout (500 ms); the first one
	// also dials and TLS-handshakes node-a, which under -race on a loaded
	// 2-core machine has taken longer than that (node-a then reported
	// "unreachable: DeadlineExceeded"). Ask again until node-a's probe
	// answers or ctx's 10 s run out; every assertion below still applies
	// to the answer.
	var st *hubv1.ClusterStatusResponse
	for {
		var err error
		st, err = c.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if probeAnswered(st, "node-a") || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.GetLeader() != "node-a" || st.GetNodeId() != "node-b" || st.GetState() != "follower" || st.GetTerm() != 3 {
		t.Fatalf("status %v", st)
	}
	byID := map[string]*hubv1.NodeStatus{}
	for _, n := range st.GetNodes() {
		byID[n.GetId()] = n
	}
	if n := byID["node-a"]; n == nil || !n.GetHealthy() || n.GetState() != "leader" || n.GetAdminAddr() == "" {
		t.Errorf("node-a: %v", n)
	}
	if n := byID["node-b"]; n == nil || !n.GetHealthy() || n.GetState() != "follower" || n.GetAppliedIndex() == 0 {
		t.Errorf("node-b: %v", n)
	}
	if n := byID["node-c"]; n == nil || n.GetHealthy() || n.GetError() == "" {
		t.Errorf("node-c: %v", n)
	}
}

// probeAnswered reports whether st has an entry for id whose probe got an
// answer (a timed-out probe reports State "unreachable").
func probeAnswered(st *hubv1.ClusterStatusResponse, id string) bool {
	for _, n := range st.GetNodes() {
		if n.GetId() == id {
			return n.GetState() != "unreachable"
		}
	}
	return false
}

// A node joins with a token: it pins the CA, gets a node certificate for
// its own key, is recorded, and adds itself as a voter through a follower
// with that certificate.
func TestJoin(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	leader := startNode(t, ca, cl, "node-a")
	follower := startNode(t, ca, cl, "node-b")
	ctx := ctxT(t)
	c := operatorConn(t, ca, follower)
	tok, err := c.CreateJoinToken(ctx, &hubv1.CreateJoinTokenRequest{TtlSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if tok.GetCaFingerprint() != ca.Fingerprint() || !strings.HasPrefix(tok.GetToken(), "chj1.") {
		t.Fatalf("token %v", tok)
	}
	params := JoinParams{NodeID: "node-c", RaftAddr: "127.0.0.1:7003", AdminAddr: "127.0.0.1:9003", SIPAddrs: []string{"127.0.0.2:5060"}}

	// The token verifies on a node that did not issue it (stateless).
	res, err := JoinCluster(ctx, leader.addr, tok.GetToken(), params)
	if err != nil {
		t.Fatalf("JoinCluster: %v", err)
	}
	if pki.RoleOf(res.Cert.Leaf) != pki.RoleNode || res.Cert.Leaf.Subject.CommonName != "node-c" {
		t.Fatalf("issued %v", res.Cert.Leaf.Subject)
	}
	if err := res.Cert.Leaf.VerifyHostname("127.0.0.2"); err != nil {
		t.Errorf("SIP address not in certificate: %v", err)
	}
	if res.CA.Fingerprint() != ca.Fingerprint() || res.LeaderAdminAddr != leader.addr {
		t.Fatalf("join result CA %s leader %q", res.CA.Fingerprint(), res.LeaderAdminAddr)
	}
	if n := cl.fsm.State().Node("node-c"); n == nil || n.GetAdminAddr() != "127.0.0.1:9003" {
		t.Fatalf("node record %v", n)
	}
	if err := AddSelfAsVoter(ctx, follower.addr, NodeClientTLS(res.CA, res.Cert), "node-c", "127.0.0.1:7003"); err != nil {
		t.Fatalf("AddSelfAsVoter: %v", err)
	}
	if st := cl.store("x").Status(); len(st.Servers) != 3 {
		t.Fatalf("servers after AddSelfAsVoter: %v", st.Servers)
	}
	// Joining again with the same id is refused.
	_, err = JoinCluster(ctx, leader.addr, tok.GetToken(), params)
	wantStatus(t, errors.Unwrap(err), codes.AlreadyExists, "node_id")

	fresh := JoinParams{NodeID: "node-d", RaftAddr: "127.0.0.1:7004", AdminAddr: "127.0.0.1:9004"}
	parts := strings.Split(tok.GetToken(), ".")
	tampered := append([]string(nil), parts...)
	tampered[2] = "0000000000000000" // id is covered by the MAC
	_, err = JoinCluster(ctx, leader.addr, strings.Join(tampered, "."), fresh)
	wantStatus(t, errors.Unwrap(err), codes.Unauthenticated, "join token: invalid")

	forged, _, err := mustTokenKey(t, pki.NewCA).create(time.Now(), time.Hour) // right shape, other key
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Split(forged, ".")
	fp[4] = ca.Fingerprint() // claims our CA, but the MAC is the other key's
	_, err = JoinCluster(ctx, leader.addr, strings.Join(fp, "."), fresh)
	wantStatus(t, errors.Unwrap(err), codes.Unauthenticated, "join token: invalid")

	malformed := append([]string(nil), parts...)
	malformed[1] = "!!"
	_, err = JoinCluster(ctx, leader.addr, strings.Join(malformed, "."), fresh)
	if !errors.Is(err, ErrTokenMalformed) || !strings.Contains(err.Error(), "expiry") {
		t.Fatalf("malformed token: %v", err) // refused client-side, before dialling
	}
	_, err = hubv1.NewJoinServiceClient(dialT(t, leader.addr, &tls.Config{InsecureSkipVerify: true})).Join(ctx,
		&hubv1.JoinRequest{Token: strings.Join(malformed, "."), NodeId: "node-d"})
	wantStatus(t, err, codes.InvalidArgument, "join token: expiry")

	// Expired: the server's clock moves past the expiry.
	leader.clock.Advance(11 * time.Minute)
	_, err = JoinCluster(ctx, leader.addr, tok.GetToken(), fresh)
	wantStatus(t, errors.Unwrap(err), codes.Unauthenticated, "join token: expired at")
}

// The joiner refuses a server whose chain does not contain the CA the token
// names, before sending the token.
func TestJoinRefusesWrongCA(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	other, err := pki.NewCA("impostor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, err := newTokenKey(other)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := k.create(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = JoinCluster(ctxT(t), n.addr, tok, JoinParams{NodeID: "node-z", RaftAddr: "127.0.0.1:7009", AdminAddr: "127.0.0.1:9009"})
	if err == nil || !strings.Contains(err.Error(), other.Fingerprint()) {
		t.Fatalf("joiner accepted a server of another CA: %v", err)
	}
	if got := n.audit.methods(); len(got) != 0 {
		t.Fatalf("server handled the join: %v", got)
	}
	if cl.fsm.State().Node("node-z") != nil {
		t.Fatal("node recorded")
	}
}

func mustTokenKey(t *testing.T, newCA func(string, time.Duration) (*pki.CA, error)) *tokenKey {
	t.Helper()
	ca, err := newCA("x", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, err := newTokenKey(ca)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
