package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// transferStore is a fakeStore that can hand leadership over, like
// raft.Node.TransferLeadership: leader only; "" picks the first other
// voter by id.
type transferStore struct{ *fakeStore }

func (s transferStore) TransferLeadership(_ context.Context, id string) (string, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.leaderID != s.id {
		return "", raft.ErrNotLeader
	}
	if id == "" {
		ids := []string{}
		for _, srv := range s.c.servers {
			if srv.ID != s.id {
				ids = append(ids, srv.ID)
			}
		}
		slices.Sort(ids)
		if len(ids) == 0 {
			return "", fmt.Errorf("no other voter: %w", raft.ErrFailedPrecondition)
		}
		id = ids[0]
	}
	if !slices.ContainsFunc(s.c.servers, func(x raft.Server) bool { return x.ID == id }) {
		return "", fmt.Errorf("server %q: %w", id, raft.ErrNotFound)
	}
	s.c.leaderID = id
	return id, nil
}

// opsNode is a testNode whose store transfers leadership and whose drain
// hook is recorded.
type opsNode struct {
	*testNode
	mu    sync.Mutex
	hooks []bool
}

func (n *opsNode) hookCalls() []bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.hooks)
}

func startOpsNode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string) *opsNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &opsNode{testNode: &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), audit: &fakeAuditor{},
		reg: prometheus.NewRegistry(), clock: newTestClock(), logs: &logRecorder{}}}
	n.srv, err = NewServer(Options{
		NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: transferStore{n.store},
		Auditor: n.audit, Registerer: n.reg, Now: n.clock.Now, Logger: slog.New(n.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.srv.OnDrain(func(on bool) {
		n.mu.Lock()
		n.hooks = append(n.hooks, on)
		n.mu.Unlock()
	})
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))
	raftAddr := "127.0.0.1:7000"
	cl.mu.Lock()
	if cl.leaderID == "" {
		cl.leaderID = id
	}
	cl.addrs[id] = raftAddr
	cl.mu.Unlock()
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "test",
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: raftAddr, AdminAddr: n.addr}}}}); err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	cl.servers = append(cl.servers, raftServer(id, raftAddr))
	cl.mu.Unlock()
	return n
}

func threeOpsNodes(t *testing.T) (*fakeCluster, []*opsNode) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	var ns []*opsNode
	for _, id := range []string{"node-a", "node-b", "node-c"} {
		ns = append(ns, startOpsNode(t, ca, cl, id))
	}
	return cl, ns
}

func nodeByID(st *hubv1.ClusterStatusResponse, id string) *hubv1.NodeStatus {
	for _, n := range st.GetNodes() {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

// TransferLeader runs on the leader and returns the new status; a follower
// refuses and names the leader's admin address (hubctl retries there).
// Without a target, a drained voter is passed over.
func TestTransferLeader(t *testing.T) {
	ca := sharedCA(t)
	_, ns := threeOpsNodes(t)
	a, b := ns[0], ns[1]
	ctx := ctxT(t)

	var hdr metadata.MD
	_, err := operatorConn(t, ca, b.testNode).TransferLeader(ctx, &hubv1.TransferLeaderRequest{NodeId: "node-c"}, grpc.Header(&hdr))
	wantStatus(t, err, codes.FailedPrecondition, "only the leader", "node-a")
	if got := hdr.Get(LeaderAdminHeader); len(got) != 1 || got[0] != a.addr {
		t.Fatalf("%s = %v, want [%s]", LeaderAdminHeader, got, a.addr)
	}

	st, err := operatorConn(t, ca, a.testNode).TransferLeader(ctx, &hubv1.TransferLeaderRequest{NodeId: "node-c"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeader() != "node-c" {
		t.Fatalf("leader after transfer %q, want node-c", st.GetLeader())
	}
	if !slices.Contains(a.audit.methods(), "TransferLeader") {
		t.Errorf("no TransferLeader audit entry: %v", a.audit.methods())
	}
	_, err = operatorConn(t, ca, ns[2].testNode).TransferLeader(ctx, &hubv1.TransferLeaderRequest{NodeId: "node-x"})
	wantStatus(t, err, codes.NotFound, "node-x")

	// node-a (first by id) is drained: "any voter" must pick node-b.
	if _, err := operatorConn(t, ca, b.testNode).DrainNode(ctx, &hubv1.DrainNodeRequest{NodeId: "node-a"}); err != nil {
		t.Fatal(err)
	}
	st, err = operatorConn(t, ca, ns[2].testNode).TransferLeader(ctx, &hubv1.TransferLeaderRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeader() != "node-b" {
		t.Fatalf("leader %q, want node-b (node-a is drained)", st.GetLeader())
	}
}

// DrainNode drains the named node (through ClusterInternal.SetDraining when
// it is another one): its SIP hook and readiness follow, cluster status
// shows it, a drained leader hands leadership over, --undo restores it.
func TestDrainNode(t *testing.T) {
	ca := sharedCA(t)
	cl, ns := threeOpsNodes(t)
	a, b, c := ns[0], ns[1], ns[2]
	ctx := ctxT(t)
	op := operatorConn(t, ca, a.testNode)

	cases := []struct {
		name        string
		req         *hubv1.DrainNodeRequest
		node        *opsNode
		wantDrained bool
		wantLeader  string
	}{
		{"drain a follower through the leader", &hubv1.DrainNodeRequest{NodeId: "node-b"}, b, true, "node-a"},
		{"drain the leader itself", &hubv1.DrainNodeRequest{NodeId: "node-a"}, a, true, "node-c"}, // node-b is drained
		{"undo on the follower", &hubv1.DrainNodeRequest{NodeId: "node-b", Undrain: true}, b, false, "node-c"},
		{"undo on the old leader", &hubv1.DrainNodeRequest{NodeId: "node-a", Undrain: true}, a, false, "node-c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := op.DrainNode(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.node.srv.Draining(); got != tc.wantDrained {
				t.Fatalf("%s Draining() = %v", tc.node.id, got)
			}
			if h := tc.node.hookCalls(); h[len(h)-1] != tc.wantDrained {
				t.Fatalf("%s SIP hook calls %v", tc.node.id, h)
			}
			if err := tc.node.srv.DrainCheck(); (err != nil) != tc.wantDrained || (err != nil && !strings.Contains(err.Error(), "draining")) {
				t.Fatalf("DrainCheck = %v", err)
			}
			if n := nodeByID(st, tc.node.id); n == nil || n.GetDraining() != tc.wantDrained || !n.GetHealthy() {
				t.Fatalf("status of %s: %v", tc.node.id, n)
			}
			if st.GetLeader() != tc.wantLeader {
				t.Fatalf("leader %q, want %q", st.GetLeader(), tc.wantLeader)
			}
		})
	}
	if h := c.hookCalls(); len(h) != 1 || h[0] {
		t.Errorf("undrained node-c hook calls %v, want only the initial false", h)
	}
	if n := slices.Index(a.audit.methods(), "DrainNode"); n < 0 {
		t.Errorf("no DrainNode audit entry: %v", a.audit.methods())
	}

	_, err := op.DrainNode(ctx, &hubv1.DrainNodeRequest{NodeId: "node-x"})
	wantStatus(t, err, codes.NotFound, "node-x")
	_, err = op.DrainNode(ctx, &hubv1.DrainNodeRequest{})
	wantStatus(t, err, codes.InvalidArgument, "node_id")

	// A stale record pointing at another node's address must not drain it.
	nodeCert := issue(t, ca, pki.RoleNode, "node-a")
	ci := hubv1.NewClusterInternalClient(dialT(t, b.addr, NodeClientTLS(ca, nodeCert)))
	_, err = ci.SetDraining(ctx, &hubv1.DrainNodeRequest{NodeId: "node-c"})
	wantStatus(t, err, codes.InvalidArgument, "does not name this node")
	if b.srv.Draining() {
		t.Error("node-b drained by a request naming node-c")
	}

	// A lone voter stays leader: drained anyway, with a warning.
	cl.mu.Lock()
	cl.servers = cl.servers[:1] // node-a alone
	cl.leaderID = "node-a"
	cl.mu.Unlock()
	var hdr metadata.MD
	if _, err := op.DrainNode(ctx, &hubv1.DrainNodeRequest{NodeId: "node-a"}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if w := hdr.Get(WarningHeader); len(w) != 1 || !strings.Contains(w[0], "still the leader") {
		t.Errorf("warning header %v", w)
	}
	if !a.srv.Draining() {
		t.Error("lone leader not drained")
	}
}

// GetState returns the whole state and its index; RestoreState dry-runs
// (changes listed, nothing applied), refuses an invalid state naming the
// field, and applies a valid one through the log.
func TestGetAndRestoreState(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	leader := startNode(t, ca, cl, "node-a")
	follower := startNode(t, ca, cl, "node-b")
	ctx := ctxT(t)
	for _, id := range []string{"neta", "netb"} {
		n := testNetworkFor(id)
		if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 5, Actor: "test",
			Op: &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: n}}}); err != nil {
			t.Fatal(err)
		}
	}
	op := operatorConn(t, ca, follower)
	var hdr metadata.MD
	saved, err := op.GetState(ctx, &hubv1.GetStateRequest{}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.GetNetworks()) != 2 || len(saved.GetNodes()) != 2 {
		t.Fatalf("GetState: %v", saved)
	}
	if idx := hdr.Get(StateIndexHeader); len(idx) != 1 || idx[0] != strconv.FormatUint(cl.fsm.State().Index, 10) {
		t.Errorf("%s = %v, want %d", StateIndexHeader, idx, cl.fsm.State().Index)
	}

	// The operator removes netb and renames neta afterwards; the snapshot
	// brings both back.
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 6, Actor: "test",
		Op: &hubv1.Command_RemoveNetwork{RemoveNetwork: &hubv1.RemoveNetwork{Id: "netb"}}}); err != nil {
		t.Fatal(err)
	}
	before := cl.fsm.State().Index

	res, err := op.RestoreState(ctx, &hubv1.RestoreStateRequest{State: saved, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetIndex() != 0 || !slices.Equal(res.GetChanges(), []string{"add network netb (domains netb.example)"}) {
		t.Fatalf("dry run: %v", res)
	}
	if cl.fsm.State().Index != before || cl.fsm.State().Network("netb") != nil {
		t.Fatal("dry run changed the state")
	}

	bad := proto.Clone(saved).(*hubv1.ClusterState)
	bad.Networks[1].Domains = []string{"neta.example"}
	_, err = op.RestoreState(ctx, &hubv1.RestoreStateRequest{State: bad})
	wantStatus(t, err, codes.AlreadyExists, "networks[1]", "owned by network")
	_, err = op.RestoreState(ctx, &hubv1.RestoreStateRequest{})
	wantStatus(t, err, codes.InvalidArgument, "state")

	res, err = op.RestoreState(ctx, &hubv1.RestoreStateRequest{State: saved})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetIndex() <= before || cl.fsm.State().Network("netb") == nil || len(cl.fsm.State().Nodes()) != 2 {
		t.Fatalf("restore: %v; state %v", res, cl.fsm.State().Proto())
	}
	if !slices.Contains(follower.audit.methods(), "RestoreState") {
		t.Errorf("no RestoreState audit entry on the answering node: %v", follower.audit.methods())
	}
	_ = leader
}

// testNetworkFor is a network the FSM accepts: one domain, one edge, a pin.
func testNetworkFor(id string) *hubv1.Network {
	return &hubv1.Network{
		Id: id, Domains: []string{id + ".example"}, Edges: []string{"sip:edge." + id + ".example"},
		Identity: &hubv1.Identity{Pins: []string{strings.Repeat(fmt.Sprintf("%02x", len(id)+int(id[len(id)-1])), 32)}},
	}
}
