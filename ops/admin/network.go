package admin

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// updatePaths are the update_mask paths UpdateNetwork accepts.
var updatePaths = []string{"display_name", "domains", "edges", "identity", "services", "keep_bodies", "rate_limits", "deferral", "room_create", "msrp"}

func requireID(field, id string) error {
	if id == "" {
		return fieldErr(field, "required")
	}
	if !raft.ValidID(id) {
		return &raft.FieldError{Field: field, Value: id, Reason: "must be 1..63 characters of [a-z0-9-]"}
	}
	return nil
}

// network returns the network id from the local state or a NotFound error.
func (s *Server) network(id string) (*hubv1.Network, error) {
	v := s.store.State().Network(id)
	if v == nil {
		return nil, fmt.Errorf("network %q: %w", id, raft.ErrNotFound)
	}
	// The MSRP relay password is write-only (raft/msrp.go).
	return raft.RedactNetwork(v.Network), nil
}

// AddNetwork onboards a member network.
func (s *Server) AddNetwork(ctx context.Context, req *hubv1.AddNetworkRequest) (*hubv1.Network, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetNetwork() == nil {
		return nil, fieldErr("network", "required")
	}
	n := raft.NormalizeNetwork(req.GetNetwork())
	if err := requireID("network.id", n.GetId()); err != nil {
		return nil, err
	}
	if err := raft.ValidateNetwork(n); err != nil {
		return nil, err
	}
	cmd := s.command(c.Name)
	cmd.Op = &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: n}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, "AddNetwork", c.Name, fmt.Sprintf("add network %s (domains %s)", n.GetId(), strings.Join(n.GetDomains(), ",")))
	return s.network(n.GetId())
}

// GetNetwork reads one network from this node's state.
func (s *Server) GetNetwork(ctx context.Context, req *hubv1.GetNetworkRequest) (*hubv1.Network, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	if err := requireID("id", req.GetId()); err != nil {
		return nil, err
	}
	return s.network(req.GetId())
}

// ListNetworks lists every network, sorted by id, from this node's state.
func (s *Server) ListNetworks(ctx context.Context, _ *hubv1.ListNetworksRequest) (*hubv1.ListNetworksResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	all := s.store.State().Networks()
	ns := make([]*hubv1.Network, len(all)) // the state's slice is shared
	for i, n := range all {
		ns[i] = raft.RedactNetwork(n)
	}
	return &hubv1.ListNetworksResponse{Networks: ns}, nil
}

// UpdateNetwork replaces the fields named in update_mask (all mutable fields
// when the mask is empty). Fields outside the mask keep the values this node
// last applied.
func (s *Server) UpdateNetwork(ctx context.Context, req *hubv1.UpdateNetworkRequest) (*hubv1.Network, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetNetwork()
	if in == nil {
		return nil, fieldErr("network", "required")
	}
	if err := requireID("network.id", in.GetId()); err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask()
	seen := map[string]bool{}
	for i, p := range mask {
		if !contains(updatePaths, p) {
			return nil, &raft.FieldError{Field: fmt.Sprintf("update_mask[%d]", i), Value: p,
				Reason: "unknown path (want one of " + strings.Join(updatePaths, ", ") + ")"}
		}
		seen[p] = true
	}
	if len(mask) == 0 {
		for _, p := range updatePaths {
			seen[p] = true
		}
	}
	// The stored network, secrets included: the merge keeps them.
	v := s.store.State().Network(in.GetId())
	if v == nil {
		return nil, fmt.Errorf("network %q: %w", in.GetId(), raft.ErrNotFound)
	}
	cur := v.Network
	// The merge below is of the version just read: the command carries
	// its updated time, so a concurrent update fails instead of being
	// silently overwritten (the FSM checks it on apply).
	version := cur.GetUpdatedUnixNano()
	if want := req.GetIfUpdatedUnixNano(); want != 0 {
		if want != version {
			return nil, fmt.Errorf("network %q changed since it was read (updated at %d, expected %d); read it again and retry: %w",
				in.GetId(), version, want, raft.ErrFailedPrecondition)
		}
	}
	n := proto.Clone(cur).(*hubv1.Network)
	if seen["display_name"] {
		n.DisplayName = in.GetDisplayName()
	}
	if seen["domains"] {
		n.Domains = append([]string(nil), in.GetDomains()...)
	}
	if seen["edges"] {
		n.Edges = append([]string(nil), in.GetEdges()...)
	}
	if seen["identity"] {
		n.Identity = nil
		if in.GetIdentity() != nil {
			n.Identity = proto.Clone(in.GetIdentity()).(*hubv1.Identity)
		}
	}
	if seen["services"] {
		n.Services = append([]hubv1.Service(nil), in.GetServices()...)
	}
	if seen["keep_bodies"] {
		n.KeepBodies = in.GetKeepBodies()
	}
	if seen["room_create"] {
		n.RoomCreate = in.GetRoomCreate() // chat rooms in band (docs/rooms.md)
	}
	if seen["rate_limits"] {
		n.RateLimits = nil
		for _, rl := range in.GetRateLimits() {
			n.RateLimits = append(n.RateLimits, proto.Clone(rl).(*hubv1.RateLimit))
		}
	}
	if seen["deferral"] {
		// Store-and-forward settings (queue.proto), as one message.
		n.Deferral = nil
		if d := in.GetDeferral(); d != nil && proto.Size(d) > 0 {
			n.Deferral = proto.Clone(d).(*hubv1.Deferral)
		}
	}
	if seen["msrp"] {
		// MSRP limits and relay (msrp.proto); an empty password keeps
		// the stored one (it is write-only).
		n.Msrp = nil
		if m := in.GetMsrp(); m != nil && proto.Size(m) > 0 {
			n.Msrp = proto.Clone(m).(*hubv1.MsrpSettings)
		}
		raft.KeepMsrpPassword(cur, n)
	}
	n = raft.NormalizeNetwork(n)
	if err := raft.ValidateNetwork(n); err != nil {
		return nil, err
	}
	cmd := s.command(c.Name)
	cmd.Op = &hubv1.Command_UpdateNetwork{UpdateNetwork: &hubv1.UpdateNetwork{Network: n, IfUpdatedUnixNano: version}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	fields := mask
	if len(fields) == 0 {
		fields = updatePaths
	}
	s.audit(ctx, "UpdateNetwork", c.Name, fmt.Sprintf("update network %s (%s)", n.GetId(), strings.Join(fields, ",")))
	return s.network(n.GetId())
}

// SuspendNetwork stops a network's traffic without forgetting it.
func (s *Server) SuspendNetwork(ctx context.Context, req *hubv1.NetworkRef) (*hubv1.Network, error) {
	return s.setStatus(ctx, "SuspendNetwork", req.GetId(), hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED)
}

// ResumeNetwork re-activates a suspended network.
func (s *Server) ResumeNetwork(ctx context.Context, req *hubv1.NetworkRef) (*hubv1.Network, error) {
	return s.setStatus(ctx, "ResumeNetwork", req.GetId(), hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE)
}

func (s *Server) setStatus(ctx context.Context, method, id string, st hubv1.NetworkStatus) (*hubv1.Network, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := requireID("id", id); err != nil {
		return nil, err
	}
	cmd := s.command(c.Name)
	cmd.Op = &hubv1.Command_SetNetworkStatus{SetNetworkStatus: &hubv1.SetNetworkStatus{Id: id, Status: st}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, method, c.Name, fmt.Sprintf("set network %s status %s", id, strings.TrimPrefix(st.String(), "NETWORK_STATUS_")))
	return s.network(id)
}

// RemoveNetwork deletes a network, its policy and every rule naming it.
func (s *Server) RemoveNetwork(ctx context.Context, req *hubv1.NetworkRef) (*hubv1.RemoveNetworkResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if err := requireID("id", id); err != nil {
		return nil, err
	}
	cmd := s.command(c.Name)
	cmd.Op = &hubv1.Command_RemoveNetwork{RemoveNetwork: &hubv1.RemoveNetwork{Id: id}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, "RemoveNetwork", c.Name, "remove network "+id)
	return &hubv1.RemoveNetworkResponse{Id: id}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
