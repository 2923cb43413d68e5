package raft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"clearhub/proto/hubv1"
)

// The RestoreState command replaces the membership with that of a saved
// state (hubctl cluster snapshot restore): the networks, the policies
// (with their share_views grants), the resource lists, and each room's
// configuration, participants and bans. It goes through the log like every
// other change, so every replica applies it alike.
//
// What stays as it is:
//   - nodes, revocations and join-token records: they describe this
//     cluster's members and operators, not the membership being restored,
//     and rolling a revocation back would re-admit a leaked key;
//   - the store-and-forward queues: stored messages are traffic in flight,
//     not configuration;
//   - of a room that exists both now and in the saved state: its message
//     history, last sequence number and unfinished fan-outs (messages are
//     not membership; putting old history back would re-number messages
//     that participants have already seen).
//
// A room only in the saved state is created with no history (its saved
// history and fan-outs are ignored: their deliveries were owned by nodes
// that may not exist any more); a room or list not in the saved state is
// deleted, history included. A participant whose network is not an active
// network of the restored state is dropped, as when a network is removed.

// checkRestoreState is CheckCommand for RestoreState: every restored
// network passes ValidateNetwork, ids are unique, each domain, pin and lab
// prefix belongs to one restored network (the current networks are
// replaced, so only the restored set counts), and every policy names
// restored networks and known services. Deterministic: the walk follows the
// command's own order.
func checkRestoreState(cs *hubv1.ClusterState) error {
	if cs == nil {
		return invalid("restore_state.state", "", "missing")
	}
	ids := map[string]bool{}
	domains := map[string]string{}
	pins := map[string]string{}
	cidrs := map[netip.Prefix]string{}
	for i, n := range cs.GetNetworks() {
		at := func(err error) error {
			return fmt.Errorf("restore_state.state.networks[%d] (%q): %w", i, n.GetId(), err)
		}
		if err := ValidateNetwork(n); err != nil {
			return at(err)
		}
		id := n.GetId()
		if ids[id] {
			return at(fmt.Errorf("network %q twice: %w", id, ErrAlreadyExists))
		}
		ids[id] = true
		for j, d := range n.GetDomains() {
			ld := strings.ToLower(d)
			if o, ok := domains[ld]; ok {
				return at(fmt.Errorf("network.domains[%d] %q: %w: owned by network %q", j, ld, ErrAlreadyExists, o))
			}
			domains[ld] = id
		}
		for j, p := range n.GetIdentity().GetPins() {
			lp := strings.ToLower(p)
			if o, ok := pins[lp]; ok {
				return at(fmt.Errorf("network.identity.pins[%d] %q: %w: pinned by network %q", j, lp, ErrAlreadyExists, o))
			}
			pins[lp] = id
		}
		for j, c := range n.GetIdentity().GetCidrs() {
			p, _ := netip.ParsePrefix(c) // ValidateNetwork checked it
			p = p.Masked()
			if o, ok := cidrs[p]; ok {
				return at(fmt.Errorf("network.identity.cidrs[%d] %q: %w: used by network %q", j, p, ErrAlreadyExists, o))
			}
			cidrs[p] = id
		}
	}
	if err := checkRestoreRooms(cs.GetRooms(), domains); err != nil {
		return err
	}
	if err := checkRestoreLists(cs.GetLists()); err != nil {
		return err
	}
	dsts := map[string]bool{}
	for i, p := range cs.GetPolicies() {
		f := fmt.Sprintf("restore_state.state.policies[%d]", i)
		dst := p.GetDestination()
		if !ids[dst] {
			return invalid(f+".destination", dst, "not a network of the restored state")
		}
		if dsts[dst] {
			return invalid(f+".destination", dst, "two policies for one destination")
		}
		dsts[dst] = true
		if err := validServices(f+".all_services", p.GetAllServices()); err != nil {
			return err
		}
		srcs := map[string]bool{}
		for j, r := range p.GetRules() {
			rf := fmt.Sprintf("%s.rules[%d]", f, j)
			src := r.GetSource()
			switch {
			case src == dst:
				return invalid(rf+".source", src, "a network always reaches itself")
			case !ids[src]:
				return invalid(rf+".source", src, "not a network of the restored state")
			case srcs[src]:
				return invalid(rf+".source", src, "two rules for one source")
			}
			srcs[src] = true
			if err := validServices(rf+".services", r.GetServices()); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyRestoreState puts the restored networks, policies, rooms and lists
// into cs (a copy of cur's content), in canonical form. A network that
// differs from the current one of the same id gets the command's time as
// its update time, so an update conditional on the version read before the
// restore fails instead of silently overwriting the restored one.
func applyRestoreState(cur *State, cs, rs *hubv1.ClusterState, cmd *hubv1.Command) {
	now := cmd.GetTimeUnixNano()
	restoreRooms(cs, rs.GetRooms(), now)
	restoreLists(cur, cs, rs.GetLists(), now, cmd.GetActor())
	cs.Networks = cs.Networks[:0]
	for _, n := range rs.GetNetworks() {
		c := NormalizeNetwork(n)
		if c.Status == hubv1.NetworkStatus_NETWORK_STATUS_UNSPECIFIED {
			c.Status = hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE
		}
		if c.CreatedUnixNano == 0 {
			c.CreatedUnixNano = now
		}
		if old := cur.Network(c.GetId()); old == nil || !proto.Equal(old.Network, c) {
			c.UpdatedUnixNano = now
		}
		cs.Networks = append(cs.Networks, c)
	}
	cs.Policies = cs.Policies[:0]
	for _, p := range rs.GetPolicies() {
		c := &hubv1.Policy{Destination: p.GetDestination(), AllServices: normServices(p.GetAllServices())}
		c.AllowAll = p.GetAllowAll() && len(c.AllServices) > 0
		if !c.AllowAll {
			c.AllServices = nil
		}
		for _, r := range p.GetRules() {
			if svcs := normServices(r.GetServices()); len(svcs) > 0 {
				c.Rules = append(c.Rules, &hubv1.PolicyRule{Source: r.GetSource(), Services: svcs,
					ShareViews: r.GetShareViews() && hasService(svcs, hubv1.Service_SERVICE_PRESENCE)})
			}
		}
		slices.SortFunc(c.Rules, func(a, b *hubv1.PolicyRule) int { return cmpString(a.GetSource(), b.GetSource()) })
		cs.Policies = append(cs.Policies, c) // ApplyTo drops those that admit nothing
	}
}

// StateChanges describes, one line each, how the networks, policies, rooms
// (configuration, participants, bans) and lists of next differ from those
// of old: what a restore (or its dry run) changes. Nodes, revocations, join
// tokens, queues and room history are not compared. Sorted: networks by
// id, policies by destination, rooms, then lists by uri.
func StateChanges(old, next *State) []string {
	var out []string
	for _, n := range next.Networks() {
		o := old.Network(n.GetId())
		if o == nil {
			out = append(out, fmt.Sprintf("add network %s (domains %s)", n.GetId(), strings.Join(n.GetDomains(), ", ")))
			continue
		}
		if f := changedFields(o.Network, n); len(f) > 0 {
			out = append(out, fmt.Sprintf("update network %s: %s", n.GetId(), strings.Join(f, ", ")))
		}
	}
	for _, o := range old.Networks() {
		if next.Network(o.GetId()) == nil {
			out = append(out, "remove network "+o.GetId())
		}
	}
	for _, p := range next.Policies() {
		o := old.Policy(p.GetDestination())
		switch {
		case o == nil:
			out = append(out, fmt.Sprintf("add policy of %s (%s)", p.GetDestination(), describePolicy(p)))
		case !proto.Equal(o, p):
			out = append(out, fmt.Sprintf("change policy of %s (now %s)", p.GetDestination(), describePolicy(p)))
		}
	}
	for _, o := range old.Policies() {
		if next.Policy(o.GetDestination()) == nil {
			out = append(out, "remove policy of "+o.GetDestination())
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		// Networks before policies; within each kind by name (the verb
		// comes first, so sort on what follows it).
		pa, pb := strings.Contains(a, " policy of "), strings.Contains(b, " policy of ")
		if pa != pb {
			if pa {
				return 1
			}
			return -1
		}
		return cmpString(subject(a), subject(b))
	})
	out = append(out, roomChanges(old, next)...) // restorerooms.go
	return append(out, listChanges(old, next)...)
}

// subject is the id a StateChanges line is about.
func subject(line string) string {
	for _, k := range []string{" network ", " policy of "} {
		if _, rest, ok := strings.Cut(line, k); ok {
			id, _, _ := strings.Cut(rest, " ")
			return strings.TrimSuffix(id, ":")
		}
	}
	return line
}

// changedFields names the fields of a network that differ, ignoring the
// update time (which a restore sets itself).
func changedFields(a, b *hubv1.Network) []string {
	var out []string
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Name() == "updated_unix_nano" {
			continue
		}
		if !equalField(fd, ra.Get(fd), rb.Get(fd)) {
			out = append(out, string(fd.Name()))
		}
	}
	return out
}

func equalField(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) bool {
	switch {
	case fd.IsList():
		la, lb := a.List(), b.List()
		if la.Len() != lb.Len() {
			return false
		}
		for i := range la.Len() {
			if !equalScalar(fd, la.Get(i), lb.Get(i)) {
				return false
			}
		}
		return true
	case fd.IsMap():
		return false // Network has no maps; a future one counts as changed
	}
	return equalScalar(fd, a, b)
}

func equalScalar(fd protoreflect.FieldDescriptor, a, b protoreflect.Value) bool {
	if fd.Kind() == protoreflect.MessageKind {
		return proto.Equal(a.Message().Interface(), b.Message().Interface())
	}
	return a.Equal(b)
}

// describePolicy is a short text of what a policy admits, e.g.
// "all members: im; netb: im, presence".
func describePolicy(p *hubv1.Policy) string {
	var parts []string
	if p.GetAllowAll() {
		parts = append(parts, "all members: "+serviceWords(p.GetAllServices()))
	}
	for _, r := range p.GetRules() {
		parts = append(parts, r.GetSource()+": "+serviceWords(r.GetServices()))
	}
	return strings.Join(parts, "; ")
}

func serviceWords(svcs []hubv1.Service) string {
	w := make([]string, len(svcs))
	for i, s := range svcs {
		w[i] = strings.ToLower(strings.TrimPrefix(s.String(), "SERVICE_"))
	}
	return strings.Join(w, ", ")
}
