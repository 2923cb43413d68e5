package admin

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// fakeFSM is the replicated state shared by the fake stores of one test
// cluster: a write applied through the leader is instantly visible on every
// node, which is what WaitForApplied promises after forwarding.
type fakeFSM struct {
	mu    sync.Mutex
	cs    *hubv1.ClusterState
	state *raft.State
}

func newFakeFSM() *fakeFSM {
	return &fakeFSM{cs: &hubv1.ClusterState{}, state: raft.Empty()}
}

func (f *fakeFSM) State() *raft.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// apply is a minimal FSM: enough of each operation for the admin tests.
func (f *fakeFSM) apply(cmd *hubv1.Command) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := raft.CheckCommand(f.state, cmd); err != nil {
		return 0, err
	}
	switch cmd.GetOp().(type) {
	case *hubv1.Command_RevokeCertificate, *hubv1.Command_RecordJoinToken, *hubv1.Command_RevokeJoinToken, *hubv1.Command_RestoreState,
		*hubv1.Command_PutList, *hubv1.Command_DeleteList, *hubv1.Command_AddListEntries, *hubv1.Command_RemoveListEntries, *hubv1.Command_SetViewSharing,
		*hubv1.Command_QueueStore, *hubv1.Command_QueueRemove,
		*hubv1.Command_PutRoom, *hubv1.Command_DeleteRoom, *hubv1.Command_PutRoomMember, *hubv1.Command_RemoveRoomMember,
		*hubv1.Command_BanRoom, *hubv1.Command_UnbanRoom,
		*hubv1.Command_PutWarrant, *hubv1.Command_DeleteWarrant, *hubv1.Command_SetCapture:
		// Identity records, restores and lists: the real FSM's code.
		next, err := raft.ApplyTo(f.state, f.state.Index+1, cmd)
		if err != nil {
			return 0, err
		}
		f.state, f.cs = next, next.Proto()
		return next.Index, nil
	}
	cs := proto.Clone(f.cs).(*hubv1.ClusterState)
	t := cmd.GetTimeUnixNano()
	netIdx := func(id string) int {
		return slices.IndexFunc(cs.Networks, func(n *hubv1.Network) bool { return n.GetId() == id })
	}
	policy := func(dst string) *hubv1.Policy {
		for _, p := range cs.Policies {
			if p.GetDestination() == dst {
				return p
			}
		}
		p := &hubv1.Policy{Destination: dst}
		cs.Policies = append(cs.Policies, p)
		return p
	}
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_AddNetwork:
		n := raft.NormalizeNetwork(op.AddNetwork.GetNetwork())
		n.Status, n.CreatedUnixNano, n.UpdatedUnixNano = hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, t, t
		cs.Networks = append(cs.Networks, n)
	case *hubv1.Command_UpdateNetwork:
		n := raft.NormalizeNetwork(op.UpdateNetwork.GetNetwork())
		old := cs.Networks[netIdx(n.GetId())]
		n.Status, n.CreatedUnixNano, n.UpdatedUnixNano = old.GetStatus(), old.GetCreatedUnixNano(), t
		cs.Networks[netIdx(n.GetId())] = n
	case *hubv1.Command_SetNetworkStatus:
		n := cs.Networks[netIdx(op.SetNetworkStatus.GetId())]
		n.Status, n.UpdatedUnixNano = op.SetNetworkStatus.GetStatus(), t
	case *hubv1.Command_RemoveNetwork:
		cs.Networks = slices.Delete(cs.Networks, netIdx(op.RemoveNetwork.GetId()), netIdx(op.RemoveNetwork.GetId())+1)
	case *hubv1.Command_PolicyAllow:
		a := op.PolicyAllow
		p := policy(a.GetDestination())
		svcs := a.GetServices()
		if len(svcs) == 0 {
			svcs = raft.AllServices()
		}
		if a.GetAll() {
			p.AllowAll, p.AllServices = true, svcs
		} else {
			p.Rules = append(p.Rules, &hubv1.PolicyRule{Source: a.GetSource(), Services: svcs})
		}
	case *hubv1.Command_PolicyDeny:
		d := op.PolicyDeny
		p := policy(d.GetDestination())
		if d.GetAll() {
			p.AllowAll, p.AllServices = false, nil
		} else {
			p.Rules = slices.DeleteFunc(p.Rules, func(r *hubv1.PolicyRule) bool { return r.GetSource() == d.GetSource() })
		}
	case *hubv1.Command_PutNode:
		n := op.PutNode.GetNode()
		cs.Nodes = slices.DeleteFunc(cs.Nodes, func(x *hubv1.Node) bool { return x.GetId() == n.GetId() })
		cs.Nodes = append(cs.Nodes, n)
	case *hubv1.Command_RemoveNode:
		cs.Nodes = slices.DeleteFunc(cs.Nodes, func(x *hubv1.Node) bool { return x.GetId() == op.RemoveNode.GetId() })
	}
	f.cs = cs
	f.state = raft.NewState(f.state.Index+1, proto.Clone(cs).(*hubv1.ClusterState))
	return f.state.Index, nil
}

// fakeCluster is the shared Raft view: who leads and who is configured.
type fakeCluster struct {
	fsm *fakeFSM

	mu       sync.Mutex
	leaderID string
	servers  []raft.Server
	addrs    map[string]string // id -> raft addr
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{fsm: newFakeFSM(), addrs: map[string]string{}}
}

func (c *fakeCluster) store(id string) *fakeStore { return &fakeStore{c: c, id: id} }

// fakeStore is one node's view of a fakeCluster.
type fakeStore struct {
	c  *fakeCluster
	id string
}

func (s *fakeStore) isLeader() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.leaderID == s.id
}

func (s *fakeStore) State() *raft.State { return s.c.fsm.State() }

func (s *fakeStore) Apply(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	if !s.isLeader() {
		return 0, raft.ErrNotLeader
	}
	return s.c.fsm.apply(proto.Clone(cmd).(*hubv1.Command))
}

func (s *fakeStore) ApplyBytes(ctx context.Context, b []byte) (uint64, error) {
	if !s.isLeader() {
		return 0, raft.ErrNotLeader
	}
	var cmd hubv1.Command
	if err := proto.Unmarshal(b, &cmd); err != nil {
		return 0, err
	}
	return s.c.fsm.apply(&cmd)
}

func (s *fakeStore) AddVoter(ctx context.Context, id, addr string) error {
	if !s.isLeader() {
		return raft.ErrNotLeader
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.servers = slices.DeleteFunc(s.c.servers, func(x raft.Server) bool { return x.ID == id })
	s.c.servers = append(s.c.servers, raft.Server{ID: id, Address: addr, Suffrage: "voter"})
	return nil
}

func (s *fakeStore) RemoveServer(ctx context.Context, id string) error {
	if !s.isLeader() {
		return raft.ErrNotLeader
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	n := len(s.c.servers)
	s.c.servers = slices.DeleteFunc(s.c.servers, func(x raft.Server) bool { return x.ID == id })
	if len(s.c.servers) == n {
		return raft.ErrNotFound
	}
	return nil
}

func (s *fakeStore) Status() raft.Status {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	st := raft.Status{NodeID: s.id, State: "Follower", LeaderID: s.c.leaderID, LeaderAddr: s.c.addrs[s.c.leaderID],
		Term: 3, Servers: slices.Clone(s.c.servers)}
	if s.c.leaderID == s.id {
		st.State = "Leader"
	}
	idx := s.c.fsm.State().Index
	st.CommitIndex, st.AppliedIndex, st.LastIndex = idx, idx, idx
	return st
}

func (s *fakeStore) Leader() (string, string) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.leaderID, s.c.addrs[s.c.leaderID]
}

func (s *fakeStore) WaitForApplied(ctx context.Context, index uint64) error {
	if s.State().Index < index {
		return context.DeadlineExceeded
	}
	return ctx.Err()
}

// fakeAuditor records entries.
type fakeAuditor struct {
	mu      sync.Mutex
	entries []ledger.Entry
}

func (a *fakeAuditor) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, *e)
	return uint64(len(a.entries)), nil
}

func (a *fakeAuditor) methods() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.entries {
		out = append(out, e.Method)
	}
	return out
}

var _ Store = (*fakeStore)(nil)

func raftServer(id, addr string) raft.Server {
	return raft.Server{ID: id, Address: addr, Suffrage: "voter"}
}
