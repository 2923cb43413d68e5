package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	s.audit(ctx, "CreateJoinToken", c.Name, fmt.Sprintf("join token %s expires %s", info.ID, info.Expires.UTC().Format(time.RFC3339)))
	return &hubv1.JoinToken{Token: tok, ExpiresUnix: info.Expires.Unix(), CaFingerprint: info.CAFingerprint}, nil
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

// RemoveNode removes a server from the Raft configuration and forgets its
// node record.
func (s *Server) RemoveNode(ctx context.Context, req *hubv1.RemoveNodeRequest) (*hubv1.ClusterStatusResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if err := requireID("id", id); err != nil {
		return nil, err
	}
	inConfig := false
	for _, srv := range s.store.Status().Servers {
		inConfig = inConfig || srv.ID == id
	}
	hasRecord := s.store.State().Node(id) != nil
	if !inConfig && !hasRecord {
		return nil, fmt.Errorf("node %q: %w", id, raft.ErrNotFound)
	}
	if inConfig {
		if err := s.removeServer(ctx, id); err != nil {
			return nil, err
		}
	}
	if hasRecord {
		cmd := s.command(c.Name)
		cmd.Op = &hubv1.Command_RemoveNode{RemoveNode: &hubv1.RemoveNode{Id: id}}
		if _, err := s.propose(ctx, cmd); err != nil {
			return nil, fmt.Errorf("removed %s from raft but not its node record: %w", id, err)
		}
	}
	s.audit(ctx, "RemoveNode", c.Name, "remove node "+id)
	return s.clusterStatus(ctx), nil
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
}

// localStatus is this node's own entry in a cluster status.
func (s *Server) localStatus() *hubv1.NodeStatus {
	st := s.store.Status()
	ns := &hubv1.NodeStatus{Id: s.nodeID, State: strings.ToLower(st.State), AppliedIndex: st.AppliedIndex, Healthy: st.LeaderID != ""}
	if !ns.Healthy {
		ns.Error = "knows no leader"
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
// leader is known (writes can be made), NOT_SERVING otherwise. Computed on
// each call, so no goroutine keeps it current.
type healthService struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

// healthServices are the service names Check knows ("" is the whole node).
var healthServices = []string{"", "clearhub.v1.AdminService", "clearhub.v1.JoinService", "clearhub.v1.ClusterInternal"}

func (h *healthService) status() healthpb.HealthCheckResponse_ServingStatus {
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
