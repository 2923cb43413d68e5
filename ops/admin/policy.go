package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// AllowPolicy lets source (or every member, with all) reach destination for
// services (every service when empty). An empty list is refused with
// FailedPrecondition when it would widen a narrower existing grant.
func (s *Server) AllowPolicy(ctx context.Context, req *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
	return s.changePolicy(ctx, "AllowPolicy", req, true)
}

// DenyPolicy withdraws services (all, when empty) for source or the
// all-members switch from destination's policy.
func (s *Server) DenyPolicy(ctx context.Context, req *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
	return s.changePolicy(ctx, "DenyPolicy", req, false)
}

func (s *Server) changePolicy(ctx context.Context, method string, req *hubv1.PolicyChangeRequest, allow bool) (*hubv1.Policy, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	dst := req.GetDestination()
	if err := requireID("destination", dst); err != nil {
		return nil, err
	}
	switch {
	case req.GetAll() && req.GetSource() != "":
		return nil, fieldErr("source", "must be empty when all is set")
	case !req.GetAll():
		if err := requireID("source", req.GetSource()); err != nil {
			return nil, fmt.Errorf("%w (or set all)", err)
		}
	}
	svcs := append([]hubv1.Service(nil), req.GetServices()...)
	for i, sv := range svcs {
		if _, ok := hubv1.Service_name[int32(sv)]; !ok || sv == hubv1.Service_SERVICE_UNSPECIFIED {
			return nil, fieldErr(fmt.Sprintf("services[%d]", i), fmt.Sprintf("unknown service %d", sv))
		}
	}
	if allow && len(svcs) == 0 {
		if err := s.refuseWidening(req); err != nil {
			return nil, err
		}
	}
	cmd := s.command(c.Name)
	if allow {
		cmd.Op = &hubv1.Command_PolicyAllow{PolicyAllow: &hubv1.PolicyAllow{
			Destination: dst, Source: req.GetSource(), All: req.GetAll(), Services: svcs}}
	} else {
		cmd.Op = &hubv1.Command_PolicyDeny{PolicyDeny: &hubv1.PolicyDeny{
			Destination: dst, Source: req.GetSource(), All: req.GetAll(), Services: svcs}}
	}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	src := req.GetSource()
	if req.GetAll() {
		src = "*"
	}
	verb := "allow"
	if !allow {
		verb = "deny"
	}
	s.audit(ctx, method, c.Name, fmt.Sprintf("%s %s -> %s for %s", verb, src, dst, serviceList(svcs)))
	if p := s.store.State().Policy(dst); p != nil {
		return p, nil
	}
	return &hubv1.Policy{Destination: dst}, nil
}

// refuseWidening refuses an allow without services (which means every
// service) when source already holds a narrower grant on the destination:
// an operator who forgot the services would otherwise silently open every
// service to it. Listing every service widens on purpose (hubctl: --services
// all). The check reads this node's state; the window until the write
// applies is that of any read-then-write admin call.
func (s *Server) refuseWidening(req *hubv1.PolicyChangeRequest) error {
	p := s.store.State().Policy(req.GetDestination())
	if p == nil {
		return nil
	}
	var have []hubv1.Service
	who := fmt.Sprintf("source %q", req.GetSource())
	if req.GetAll() {
		if !p.GetAllowAll() {
			return nil
		}
		have, who = p.GetAllServices(), "every member (all)"
	} else {
		i := slices.IndexFunc(p.GetRules(), func(r *hubv1.PolicyRule) bool { return r.GetSource() == req.GetSource() })
		if i < 0 {
			return nil
		}
		have = p.GetRules()[i].GetServices()
	}
	if len(have) == 0 || len(have) >= len(raft.AllServices()) {
		return nil // nothing granted, or already every service: no widening
	}
	return &policyErr{
		msg: fmt.Sprintf("services: required: %s already has %s on %q, and an empty services list means every service; "+
			"list the services to add, or list every service to widen the grant on purpose (hubctl: --services all)",
			who, serviceList(have), req.GetDestination()),
		kind: raft.ErrFailedPrecondition,
	}
}

// policyErr is an error with an exact message that maps through toStatus
// like the sentinel it wraps.
type policyErr struct {
	msg  string
	kind error
}

func (e *policyErr) Error() string { return e.msg }
func (e *policyErr) Unwrap() error { return e.kind }

func serviceList(svcs []hubv1.Service) string {
	if len(svcs) == 0 {
		return "all services"
	}
	names := make([]string, len(svcs))
	for i, sv := range svcs {
		names[i] = strings.ToLower(strings.TrimPrefix(sv.String(), "SERVICE_"))
	}
	return strings.Join(names, ",")
}

// ListPolicies lists every policy, or only destination's, from this node's
// state.
func (s *Server) ListPolicies(ctx context.Context, req *hubv1.ListPoliciesRequest) (*hubv1.ListPoliciesResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	st := s.store.State()
	if dst := req.GetDestination(); dst != "" {
		if err := requireID("destination", dst); err != nil {
			return nil, err
		}
		if st.Network(dst) == nil {
			return nil, fmt.Errorf("network %q: %w", dst, raft.ErrNotFound)
		}
		resp := &hubv1.ListPoliciesResponse{}
		if p := st.Policy(dst); p != nil {
			resp.Policies = append(resp.Policies, p)
		}
		return resp, nil
	}
	return &hubv1.ListPoliciesResponse{Policies: st.Policies()}, nil
}
