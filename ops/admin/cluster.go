package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// CreateJoinToken issues a join token valid for ttl_seconds (default one
// hour, at most 24 hours).
func (s *Server) CreateJoinToken(ctx context.Context, req *hubv1.CreateJoinTokenRequest) (*hubv1.JoinToken, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	ttl := DefaultTokenTTL
	switch t := req.GetTtlSeconds(); {
	case t < 0:
		return nil, fieldErr("ttl_seconds", "must not be negative")
	case t > int64(MaxTokenTTL/time.Second):
		return nil, fieldErr("ttl_seconds", fmt.Sprintf("at most %d (24h)", int64(MaxTokenTTL/time.Second)))
	case t > 0:
		ttl = time.Duration(t) * time.Second
	}
	tok, info, err := s.tokens.create(s.now(), ttl)
	if err != nil {
		return nil, err
	}
	if err := s.recordJoinToken(ctx, c, info); err != nil { // identity.go
		return nil, err
	}
	s.audit(ctx, "CreateJoinToken", c.Name, fmt.Sprintf("join token %s expires %s", info.ID, info.Expires.UTC().Format(time.RFC3339)))
	return &hubv1.JoinToken{Token: tok, ExpiresUnix: info.Expires.Unix(), CaFingerprint: info.CAFingerprint, Id: info.ID}, nil
}

// AddNode adds a voter by id and raft address. With admin_addr it first
// records the node (so followers can forward writes to it once it leads).
func (s *Server) AddNode(ctx context.Context, req *hubv1.AddNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireID("id", req.GetId()); err != nil {
		return nil, err
	}
	if req.GetRaftAddr() == "" {
		return nil, fieldErr("raft_addr", "required")
	}
	if req.GetAdminAddr() != "" {
		n := &hubv1.Node{Id: req.GetId(), RaftAddr: req.GetRaftAddr(), AdminAddr: req.GetAdminAddr()}
		if old := s.store.State().Node(req.GetId()); old != nil {
			n.SipAddrs, n.PublicKey = old.GetSipAddrs(), old.GetPublicKey()
		}
		cmd := s.command(c.Name)
		cmd.Op = &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: n}}
		if _, err := s.propose(ctx, cmd); err != nil {
			return nil, err
		}
	} else if err := checkHostPort("raft_addr", req.GetRaftAddr()); err != nil {
		return nil, err
	}
	if err := s.addVoter(ctx, req.GetId(), req.GetRaftAddr()); err != nil {
		return nil, err
	}
	s.audit(ctx, "AddNode", c.Name, fmt.Sprintf("add voter %s at %s", req.GetId(), req.GetRaftAddr()))
	return s.clusterStatus(ctx), nil
}

// RemoveNode forgets a node's record and removes it from the Raft
// configuration, in that order: while it is still a member the node itself
// applies the record's removal, and once removed it receives nothing more.
// (Waiting for a removed node, the one hubctl may be connected to, to apply
// anything is what made removing it time out.) Shrinking below three voters
// is done but answered with a warning (gRPC header WarningHeader): such a
// cluster no longer survives the loss of a node.
func (s *Server) RemoveNode(ctx context.Context, req *hubv1.RemoveNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if err := requireID("id", id); err != nil {
		return nil, err
	}
	inConfig, wasVoter, voters := false, false, 0
	for _, srv := range s.store.Status().Servers {
		if srv.Suffrage == "voter" {
			voters++
		}
		if srv.ID == id {
			inConfig, wasVoter = true, srv.Suffrage == "voter"
		}
	}
	hasRecord := s.store.State().Node(id) != nil
	if !inConfig && !hasRecord {
		return nil, fmt.Errorf("node %q: %w", id, raft.ErrNotFound)
	}
	if hasRecord {
		cmd := s.command(c.Name)
		cmd.Op = &hubv1.Command_RemoveNode{RemoveNode: &hubv1.RemoveNode{Id: id}}
		if _, err := s.propose(ctx, cmd); err != nil {
			return nil, fmt.Errorf("remove node record %s (raft configuration unchanged): %w", id, err)
		}
	}
	if inConfig {
		if err := s.removeServer(ctx, id); err != nil {
			return nil, fmt.Errorf("removed node record %s but not the raft server (run the removal again): %w", id, err)
		}
	}
	if left := voters - b2i(wasVoter); wasVoter && left < minSafeVoters {
		warn := fmt.Sprintf("the cluster now has %d voter(s): it needs %d to keep working when one node fails; add a node (hubctl cluster token, hubd --join)", left, minSafeVoters)
		s.log.Warn("cluster shrank below the safe size", "removed", id, "voters", left, "actor", c.Name)
		_ = grpc.SetHeader(ctx, metadata.Pairs(WarningHeader, warn))
	}
	s.audit(ctx, "RemoveNode", c.Name, "remove node "+id)
	return s.clusterStatus(ctx), nil
}

// WarningHeader is the gRPC response header in which an admin call that
// succeeded says what the operator should know (hubctl prints it).
const WarningHeader = "clearhub-warning"

// minSafeVoters is the smallest cluster that survives one failed node.
const minSafeVoters = 3

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ClusterStatus reports this node's view of Raft and probes every other
// member's health service in parallel (at most peerProbeTimeout each).
func (s *Server) ClusterStatus(ctx context.Context, _ *hubv1.ClusterStatusRequest) (*hubv1.ClusterStatusResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	return s.clusterStatus(ctx), nil
}

func (s *Server) clusterStatus(ctx context.Context) *hubv1.ClusterStatusResponse {
	st := s.store.Status()
	state := s.store.State()
	resp := &hubv1.ClusterStatusResponse{
		Leader:       st.LeaderID,
		LeaderAddr:   st.LeaderAddr,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		LastIndex:    st.LastIndex,
		NodeId:       s.nodeID,
		State:        strings.ToLower(st.State),
	}
	if st.Removed {
		// A removed node is not in the configuration it reports, so its
		// own entry is missing: say it here.
		resp.State = "removed"
	}
	var wg sync.WaitGroup
	for _, srv := range st.Servers {
		ns := &hubv1.NodeStatus{Id: srv.ID, RaftAddr: srv.Address, Suffrage: srv.Suffrage, State: "unknown"}
		if n := state.Node(srv.ID); n != nil {
			ns.AdminAddr, ns.SipAddrs, ns.PublicKey = n.GetAdminAddr(), n.GetSipAddrs(), n.GetPublicKey()
		}
		resp.Nodes = append(resp.Nodes, ns)
		switch {
		case srv.ID == s.nodeID:
			self := s.localStatus()
			ns.State, ns.Healthy, ns.AppliedIndex, ns.Error = self.State, self.Healthy, self.AppliedIndex, self.Error
			ns.Version = self.Version
			ns.Draining = self.Draining
		case ns.AdminAddr == "":
			ns.Error = "no admin address recorded"
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.probe(ctx, ns)
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(resp.Nodes, func(a, b *hubv1.NodeStatus) int { return strings.Compare(a.GetId(), b.GetId()) })
	return resp
}

// probe asks a peer for its own view (ClusterInternal.LocalStatus with the
// node certificate): raft state, applied index, whether it knows a leader.
func (s *Server) probe(ctx context.Context, ns *hubv1.NodeStatus) {
	c, err := s.conn(ns.AdminAddr)
	if err != nil {
		ns.State, ns.Error = "unreachable", err.Error()
		return
	}
	pctx, cancel := context.WithTimeout(ctx, peerProbeTimeout)
	defer cancel()
	r, err := hubv1.NewClusterInternalClient(c).LocalStatus(pctx, &hubv1.LocalStatusRequest{})
	if err != nil {
		ns.State, ns.Error = "unreachable", err.Error()
		return
	}
	ns.State, ns.Healthy, ns.AppliedIndex, ns.Error = r.GetState(), r.GetHealthy(), r.GetAppliedIndex(), r.GetError()
	ns.Version = r.GetVersion() // "" from a node built before versions were reported
	ns.Draining = r.GetDraining()
}

// localStatus is this node's own entry in a cluster status: healthy when
// it is a member, has restored the state it had at start and knows a
// leader.
func (s *Server) localStatus() *hubv1.NodeStatus {
	st := s.store.Status()
	ns := &hubv1.NodeStatus{Id: s.nodeID, State: strings.ToLower(st.State), AppliedIndex: st.AppliedIndex, Version: s.version}
	ns.Draining = s.Draining() // clusterops.go
	switch {
	case st.Removed:
		ns.State, ns.Error = "removed", "removed from the cluster: state frozen, not serving SIP"
	case st.Restoring():
		ns.Error = fmt.Sprintf("not ready: restoring state (applied %d of %d)", st.StateIndex, st.RestoreTarget)
	case st.LeaderID == "":
		ns.Error = "knows no leader"
	default:
		ns.Healthy = true
	}
	return ns
}

// LocalStatus answers a peer's ClusterStatus probe.
func (ci *clusterInternal) LocalStatus(ctx context.Context, _ *hubv1.LocalStatusRequest) (*hubv1.NodeStatus, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	return ci.s.localStatus(), nil
}

// clusterInternal serves ClusterInternal (node certificates only).
type clusterInternal struct {
	hubv1.UnimplementedClusterInternalServer
	s *Server
}

// Propose applies a command a follower forwarded. FSM verdicts travel in
// the response's code and message; only transport-level failures are RPC
// errors.
func (ci *clusterInternal) Propose(ctx context.Context, req *hubv1.ProposeRequest) (*hubv1.ProposeResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	s := ci.s
	var cmd hubv1.Command
	if err := proto.Unmarshal(req.GetCommand(), &cmd); err != nil {
		return proposeResponse(0, fieldErr("command", "not a marshalled Command: "+err.Error())), nil
	}
	if err := raft.CheckCommand(s.store.State(), &cmd); err != nil {
		return proposeResponse(0, err), nil
	}
	idx, err := s.store.ApplyBytes(ctx, req.GetCommand())
	return proposeResponse(idx, err), nil
}

// AddVoter adds the caller-named voter; a follower forwards it to the
// leader. Joiners call it with their new node certificate.
func (ci *clusterInternal) AddVoter(ctx context.Context, req *hubv1.AddVoterRequest) (*hubv1.ProposeResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireID("id", req.GetId()); err != nil {
		return proposeResponse(0, err), nil
	}
	if err := checkHostPort("raft_addr", req.GetRaftAddr()); err != nil {
		return proposeResponse(0, err), nil
	}
	err = ci.s.addVoter(ctx, req.GetId(), req.GetRaftAddr())
	if err == nil && !isForwarded(ctx) {
		ci.s.audit(ctx, "AddVoter", c.Name, fmt.Sprintf("add voter %s at %s", req.GetId(), req.GetRaftAddr()))
	}
	return proposeResponse(0, err), nil
}

// RemoveServer removes a server from the Raft configuration; a follower
// forwards it to the leader.
func (ci *clusterInternal) RemoveServer(ctx context.Context, req *hubv1.RemoveNodeRequest) (*hubv1.ProposeResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireID("id", req.GetId()); err != nil {
		return proposeResponse(0, err), nil
	}
	err = ci.s.removeServer(ctx, req.GetId())
	if err == nil && !isForwarded(ctx) {
		ci.s.audit(ctx, "RemoveServer", c.Name, "remove server "+req.GetId())
	}
	return proposeResponse(0, err), nil
}

// healthService answers grpc.health.v1 from the Store: SERVING while a
// leader is known (writes can be made) and the node is a member that has
// restored its state, NOT_SERVING otherwise. Computed on
// each call, so no goroutine keeps it current.
type healthService struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

// healthServices are the service names Check knows ("" is the whole node).
var healthServices = []string{"", "clearhub.v1.AdminService", "clearhub.v1.JoinService", "clearhub.v1.ClusterInternal"}

func (h *healthService) status() healthpb.HealthCheckResponse_ServingStatus {
	if st := h.s.store.Status(); st.Removed || st.Restoring() {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	if id, _ := h.s.store.Leader(); id != "" {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

func (h *healthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !contains(healthServices, req.GetService()) {
		return nil, fmt.Errorf("health service %q: %w", req.GetService(), raft.ErrNotFound)
	}
	return &healthpb.HealthCheckResponse{Status: h.status()}, nil
}

func (h *healthService) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	st := h.status()
	resp := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, name := range healthServices {
		resp.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return resp, nil
}

// healthWatchInterval is how often Watch re-reads the leader.
const healthWatchInterval = time.Second

// Watch sends the status now and on every change until the client goes
// away; the stream's goroutine is gRPC's.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	st := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	if contains(healthServices, req.GetService()) {
		st = h.status()
	}
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
		return err
	}
	if !contains(healthServices, req.GetService()) {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	t := time.NewTicker(healthWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-t.C:
			if now := h.status(); now != st {
				st = now
				if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
					return err
				}
			}
		}
	}
}

// checkHostPort validates a dialable host:port through the same rules the
// FSM applies to node records.
func checkHostPort(field, addr string) error {
	if addr == "" {
		return fieldErr(field, "required")
	}
	err := raft.CheckCommand(raft.Empty(), &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: 1,
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: "x", RaftAddr: addr}}}})
	var fe *raft.FieldError
	if errors.As(err, &fe) {
		return &raft.FieldError{Field: field, Value: fe.Value, Reason: fe.Reason}
	}
	return err
}
