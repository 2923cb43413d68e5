package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Cluster maintenance: leadership transfer, node drain, state snapshot and
// restore.

// LeaderAdminHeader is the response header in which a follower refusing
// TransferLeader names the leader's admin address; hubctl repeats the call
// there. (ClusterInternal has no method to forward a transfer with.)
const LeaderAdminHeader = "clearhub-leader-admin"

// StateIndexHeader is the response header of GetState carrying the Raft
// index of the state returned.
const StateIndexHeader = "clearhub-state-index"

// leaderTransferer is the part of the Store (*raft.Node) that moves
// leadership; optional so that test fakes need not have it.
type leaderTransferer interface {
	TransferLeadership(ctx context.Context, id string) (string, error)
}

// drainState is this node's maintenance drain. It is node-local soft state,
// not replicated: a drain is about one machine's maintenance window, and a
// restart (the maintenance itself, usually) clears it, so a forgotten drain
// cannot keep a node out of service for good.
type drainState struct {
	on   atomic.Bool
	mu   sync.Mutex // orders hook calls
	hook func(bool)
}

// OnDrain registers f (the SIP plane's SetDraining): it is called at once
// with the current drain state and again on every change.
func (s *Server) OnDrain(f func(draining bool)) {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	s.drain.hook = f
	if f != nil {
		f(s.drain.on.Load())
	}
}

// Draining reports whether this node is drained for maintenance.
func (s *Server) Draining() bool { return s.drain.on.Load() }

// errDraining is what the readiness check reports while drained.
var errDraining = errors.New("draining for maintenance (hubctl cluster drain NODE --undo ends it)")

// DrainCheck is a readiness check for /readyz: it fails while drained, so
// load balancers and orchestration take the node out too.
func (s *Server) DrainCheck() error {
	if s.Draining() {
		return errDraining
	}
	return nil
}

// setDraining drains or undrains this node. Draining the leader moves
// leadership to another voter first (a healthy, undrained one when the
// probes find one). A leadership that cannot move (a lone voter) leaves
// the node drained and says so in the returned status's error.
func (s *Server) setDraining(ctx context.Context, on bool) *hubv1.NodeStatus {
	s.drain.mu.Lock()
	changed := s.drain.on.Swap(on) != on
	if s.drain.hook != nil {
		s.drain.hook(on)
	}
	s.drain.mu.Unlock()
	if changed {
		if on {
			s.log.Warn("node drained for maintenance: new SIP requests refused with 503, readiness failing")
		} else {
			s.log.Info("node back in service after a drain")
		}
	}
	var warn string
	if id, _ := s.store.Leader(); on && id == s.nodeID {
		if to, err := s.transferLeadership(ctx, ""); err != nil {
			warn = "drained, but still the leader: " + err.Error()
			s.log.Warn("drain: leadership not moved", "err", err)
		} else {
			s.log.Info("drain: leadership moved", "to", to)
		}
	}
	ns := s.localStatus()
	if warn != "" {
		ns.Error = warn
	}
	return ns
}

// transferLeadership moves leadership from this node, the leader, to id,
// or (id empty) to the healthy undrained voter furthest ahead, else to
// whichever voter Raft picks.
func (s *Server) transferLeadership(ctx context.Context, id string) (string, error) {
	t, ok := s.store.(leaderTransferer)
	if !ok {
		return "", fmt.Errorf("this node's store cannot transfer leadership: %w", raft.ErrFailedPrecondition)
	}
	if id == "" {
		id = s.pickSuccessor(ctx)
	}
	return t.TransferLeadership(ctx, id)
}

// pickSuccessor probes the other voters and returns the healthy, undrained
// one with the highest applied index, or "" (let Raft choose).
func (s *Server) pickSuccessor(ctx context.Context) string {
	var best *hubv1.NodeStatus
	for _, n := range s.clusterStatus(ctx).GetNodes() {
		if n.GetId() == s.nodeID || n.GetSuffrage() != "voter" || !n.GetHealthy() || n.GetDraining() {
			continue
		}
		if best == nil || n.GetAppliedIndex() > best.GetAppliedIndex() {
			best = n
		}
	}
	if best == nil {
		return ""
	}
	return best.GetId()
}

// TransferLeader moves leadership (before the leader's maintenance). Only
// the leader can hand leadership over: a follower refuses with
// FailedPrecondition and the leader's admin address in LeaderAdminHeader.
func (s *Server) TransferLeader(ctx context.Context, req *hubv1.TransferLeaderRequest) (*hubv1.ClusterStatusResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetNodeId()
	if id != "" {
		if err := requireID("node_id", id); err != nil {
			return nil, err
		}
	}
	leader, _ := s.store.Leader()
	switch {
	case leader == "":
		return nil, fmt.Errorf("transfer leadership: %w", raft.ErrNoLeader)
	case leader != s.nodeID:
		n := s.store.State().Node(leader)
		if n.GetAdminAddr() == "" {
			return nil, fmt.Errorf("transfer leadership: this node is not the leader and the leader %s has no admin address recorded: %w", leader, raft.ErrFailedPrecondition)
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderAdminHeader, n.GetAdminAddr()))
		return nil, fmt.Errorf("transfer leadership: only the leader can hand it over; the leader is %s (admin %s): %w", leader, n.GetAdminAddr(), raft.ErrFailedPrecondition)
	}
	to, err := s.transferLeadership(ctx, id)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, "TransferLeader", c.Name, fmt.Sprintf("leadership from %s to %s", s.nodeID, to))
	return s.clusterStatus(ctx), nil
}

// DrainNode drains (or, with undrain, restores) the node node_id: this one
// directly, another through ClusterInternal.SetDraining at its recorded
// admin address.
func (s *Server) DrainNode(ctx context.Context, req *hubv1.DrainNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetNodeId()
	if err := requireID("node_id", id); err != nil {
		return nil, err
	}
	var ns *hubv1.NodeStatus
	if id == s.nodeID {
		ns = s.setDraining(ctx, !req.GetUndrain())
	} else {
		n := s.store.State().Node(id)
		switch {
		case n == nil:
			return nil, fmt.Errorf("node %q: %w", id, raft.ErrNotFound)
		case n.GetAdminAddr() == "":
			return nil, fmt.Errorf("node %q has no admin address recorded: %w", id, raft.ErrFailedPrecondition)
		}
		conn, err := s.conn(n.GetAdminAddr())
		if err != nil {
			return nil, fmt.Errorf("drain %s: %w", id, err)
		}
		ns, err = hubv1.NewClusterInternalClient(conn).SetDraining(ctx, &hubv1.DrainNodeRequest{NodeId: id, Undrain: req.GetUndrain()})
		if err != nil {
			return nil, fmt.Errorf("drain %s at %s: %w", id, n.GetAdminAddr(), err)
		}
	}
	verb := "drain"
	if req.GetUndrain() {
		verb = "undrain"
	}
	s.audit(ctx, "DrainNode", c.Name, verb+" node "+id)
	if ns.GetError() != "" && !req.GetUndrain() {
		_ = grpc.SetHeader(ctx, metadata.Pairs(WarningHeader, fmt.Sprintf("node %s: %s", id, ns.GetError())))
	}
	return s.clusterStatus(ctx), nil
}

// SetDraining drains or undrains the answering node (DrainNode on another
// node calls it).
func (ci *clusterInternal) SetDraining(ctx context.Context, req *hubv1.DrainNodeRequest) (*hubv1.NodeStatus, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	if id := req.GetNodeId(); id != "" && id != ci.s.nodeID {
		// A stale node record pointing at another machine must not drain
		// the wrong node.
		return nil, fieldErr("node_id", fmt.Sprintf("%q does not name this node (%s)", id, ci.s.nodeID))
	}
	return ci.s.setDraining(ctx, !req.GetUndrain()), nil
}

// GetState returns the answering node's replicated state (it may lag the
// leader by what is in flight); StateIndexHeader carries its Raft index.
func (s *Server) GetState(ctx context.Context, _ *hubv1.GetStateRequest) (*hubv1.ClusterState, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	st := s.store.State()
	_ = grpc.SetHeader(ctx, metadata.Pairs(StateIndexHeader, strconv.FormatUint(st.Index, 10)))
	return raft.RedactState(st.Proto()), nil // no MSRP relay passwords
}

// RestoreState replaces the networks and policies with those of a saved
// state through the log (raft's RestoreState command; nodes, revocations
// and join tokens stay). The changes are computed against this node's
// state; dry_run stops there.
func (s *Server) RestoreState(ctx context.Context, req *hubv1.RestoreStateRequest) (*hubv1.RestoreStateResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetState() == nil {
		return nil, fieldErr("state", "required")
	}
	cur := s.store.State()
	// A saved state has no MSRP relay passwords (GetState redacts them):
	// keep the stored ones for the same relay (raft/msrp.go).
	saved := proto.Clone(req.GetState()).(*hubv1.ClusterState)
	for _, n := range saved.GetNetworks() {
		if v := cur.Network(n.GetId()); v != nil {
			raft.KeepMsrpPassword(v.Network, n)
		}
	}
	cmd := s.command(c.Name)
	cmd.Op = &hubv1.Command_RestoreState{RestoreState: &hubv1.RestoreState{State: saved}}
	next, err := raft.ApplyTo(cur, cur.Index+1, cmd)
	if err != nil {
		return nil, err
	}
	resp := &hubv1.RestoreStateResponse{Changes: raft.StateChanges(cur, next)}
	if req.GetDryRun() {
		return resp, nil
	}
	if resp.Index, err = s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, "RestoreState", c.Name, fmt.Sprintf("restored %d networks and %d policies at index %d: %d changes",
		len(next.Networks()), len(next.Policies()), resp.Index, len(resp.Changes)))
	return resp, nil
}
