package admin

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// removableStore behaves like a real node once removed from the
// configuration: it receives no more log entries, so waiting for one blocks
// until the caller gives up.
type removableStore struct{ *fakeStore }

func (s removableStore) member() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return slices.ContainsFunc(s.c.servers, func(x raft.Server) bool { return x.ID == s.id })
}

func (s removableStore) WaitForApplied(ctx context.Context, index uint64) error {
	if !s.member() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.fakeStore.WaitForApplied(ctx, index)
}

// startRemovableNode is startNode with a removableStore.
func startRemovableNode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), audit: &fakeAuditor{},
		reg: prometheus.NewRegistry(), clock: newTestClock()}
	n.srv, err = NewServer(Options{
		NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: removableStore{n.store},
		Auditor: n.audit, Registerer: n.reg, Now: n.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))
	raftAddr := "127.0.0.1:7009"
	cl.mu.Lock()
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

// Removing the node the operator is connected to answers at once (the old
// order waited for the removed node to apply its record's removal, which
// it never receives: DeadlineExceeded after the full deadline), and
// shrinking below three voters comes with a warning header.
func TestRemoveConnectedNode(t *testing.T) {
	cases := []struct {
		name     string
		nodes    int // voters before the removal, the connected one included
		wantWarn string
	}{
		{"four to three: no warning", 4, ""},
		{"three to two: warning", 3, "2 voter(s)"},
		{"two to one: warning", 2, "1 voter(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := sharedCA(t)
			cl := newFakeCluster()
			startNode(t, ca, cl, "node-a") // leads
			for i := 2; i < tc.nodes; i++ {
				startNode(t, ca, cl, "node-"+string(rune('a'+i)))
			}
			self := startRemovableNode(t, ca, cl, "node-b")
			c := operatorConn(t, ca, self)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var hdr metadata.MD
			start := time.Now()
			st, err := c.RemoveNode(ctx, &hubv1.RemoveNodeRequest{Id: "node-b"}, grpc.Header(&hdr))
			if err != nil {
				t.Fatalf("RemoveNode of the connected node after %v: %v", time.Since(start), err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("RemoveNode took %v", d)
			}
			if cl.fsm.State().Node("node-b") != nil {
				t.Error("node record still present")
			}
			for _, n := range st.GetNodes() {
				if n.GetId() == "node-b" {
					t.Errorf("removed node still listed: %v", n)
				}
			}
			warn := strings.Join(hdr.Get(WarningHeader), " ")
			if tc.wantWarn == "" && warn != "" || !strings.Contains(warn, tc.wantWarn) {
				t.Errorf("warning header = %q, want %q", warn, tc.wantWarn)
			}
		})
	}
}

// A node's own status entry says when it is restoring or removed.
func TestLocalStatusRestoringAndRemoved(t *testing.T) {
	cases := []struct {
		name    string
		st      raft.Status
		healthy bool
		want    string
	}{
		{"healthy", raft.Status{LeaderID: "a", Restored: true}, true, ""},
		{"restoring", raft.Status{LeaderID: "a", StateIndex: 3, RestoreTarget: 8}, false, "restoring state (applied 3 of 8)"},
		{"removed", raft.Status{Restored: true, Removed: true}, false, "removed from the cluster"},
		{"no leader", raft.Status{Restored: true}, false, "knows no leader"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{nodeID: "a", store: statusStore{st: tc.st}}
			ns := s.localStatus()
			if ns.GetHealthy() != tc.healthy || !strings.Contains(ns.GetError(), tc.want) {
				t.Fatalf("localStatus = %v, want healthy=%v error containing %q", ns, tc.healthy, tc.want)
			}
		})
	}
}

type statusStore struct {
	Store
	st raft.Status
}

func (s statusStore) Status() raft.Status { return s.st }
