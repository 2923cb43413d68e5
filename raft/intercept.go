package raft

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Lawful interception warrants and SIP capture switches. Both are
// replicated, so every node intercepts the same targets and mirrors the
// same networks. Warrants are confidential: Proto (what GetState returns to
// operators) leaves them out; only the FSM's own copy (fullProto: ApplyTo
// and snapshots) and Warrants carry them.

// Limits on warrants; constants so CheckCommand decides alike everywhere.
const (
	MaxWarrants         = 1000
	MaxWarrantRefLen    = 256
	MaxCaptureNetworks  = 1000
	maxWarrantTargetLen = MaxListURILen
)

// interceptIndex is the part of State built from warrants and capture.
type interceptIndex struct {
	warrants []*hubv1.Warrant // sorted by id
	byID     map[string]*hubv1.Warrant
	capture  *hubv1.CaptureSettings
	captured map[string]bool
}

func newInterceptIndex(cs *hubv1.ClusterState) interceptIndex {
	x := interceptIndex{capture: cs.GetCapture()}
	if len(cs.GetWarrants()) > 0 {
		x.warrants = slices.Clone(cs.GetWarrants())
		slices.SortFunc(x.warrants, func(a, b *hubv1.Warrant) int { return strings.Compare(a.GetId(), b.GetId()) })
		x.byID = make(map[string]*hubv1.Warrant, len(x.warrants))
		for _, w := range x.warrants {
			x.byID[w.GetId()] = w
		}
	}
	if n := x.capture.GetNetworks(); len(n) > 0 {
		x.captured = make(map[string]bool, len(n))
		for _, id := range n {
			x.captured[id] = true
		}
	}
	return x
}

// Warrants returns every warrant sorted by id (shared: do not modify).
// Confidential: hand them only to the lawful-intercept role and to the
// node's own interception tap.
func (s *State) Warrants() []*hubv1.Warrant { return s.intercept.warrants }

// Warrant returns the warrant with id, or nil.
func (s *State) Warrant(id string) *hubv1.Warrant { return s.intercept.byID[id] }

// Capture returns the capture switches (nil: nothing captured).
func (s *State) Capture() *hubv1.CaptureSettings { return s.intercept.capture }

// Captured reports whether traffic of network id is mirrored to the
// capture collector. Allocation-free: the SIP hot path asks it.
func (s *State) Captured(id string) bool {
	return s.intercept.capture.GetAll() || (id != "" && s.intercept.captured[id])
}

// CaptureOn reports whether any capture is switched on.
func (s *State) CaptureOn() bool {
	return s.intercept.capture.GetAll() || len(s.intercept.captured) > 0
}

// captureProto adds the (non-confidential) capture switches to cs.
func (s *State) captureProto(cs *hubv1.ClusterState) {
	if c := s.intercept.capture; c != nil {
		cs.Capture = proto.Clone(c).(*hubv1.CaptureSettings)
	}
}

// fullProto is Proto with the warrants: the FSM's working copy (ApplyTo)
// and the snapshot encoding. Never hand it to a caller.
func (s *State) fullProto() *hubv1.ClusterState {
	cs := s.Proto()
	for _, w := range s.intercept.warrants {
		cs.Warrants = append(cs.Warrants, proto.Clone(w).(*hubv1.Warrant))
	}
	return cs
}

// CanonicalWarrantTarget checks a warrant target and returns its canonical
// form: sip:user@host (sips becomes sip: the address is the same), a
// lower-case domain, or a network id.
func CanonicalWarrantTarget(kind hubv1.WarrantTargetKind, target string) (string, error) {
	switch kind {
	case hubv1.WarrantTargetKind_WARRANT_TARGET_USER:
		c, why := CanonicalSIPURI(target, "sip", "sips")
		if why != "" {
			return "", invalid("warrant.target", target, why)
		}
		c = "sip:" + strings.TrimPrefix(strings.TrimPrefix(c, "sips:"), "sip:")
		if i := strings.LastIndexByte(c, ':'); i > len("sip:") && !strings.Contains(c[i:], "@") {
			c = c[:i] // the address of record has no port
		}
		return c, nil
	case hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN:
		d := strings.ToLower(target)
		if len(d) > maxWarrantTargetLen || !ValidDNSName(d) {
			return "", invalid("warrant.target", target, "must be a DNS domain")
		}
		return d, nil
	case hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK:
		if !ValidID(target) {
			return "", invalid("warrant.target", target, "must be a network id (1..63 characters of [a-z0-9-])")
		}
		return target, nil
	}
	return "", invalid("warrant.kind", kind.String(), "must be USER, DOMAIN or NETWORK")
}

// NormalizeWarrant returns a copy of w with a canonical target; CheckCommand
// refuses a PutWarrant whose target is not already canonical, so admin
// handlers normalize first.
func NormalizeWarrant(w *hubv1.Warrant) *hubv1.Warrant {
	c := proto.Clone(w).(*hubv1.Warrant)
	if t, err := CanonicalWarrantTarget(c.GetKind(), c.GetTarget()); err == nil {
		c.Target = t
	}
	return c
}

func checkInterceptCommand(s *State, cmd *hubv1.Command) error {
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutWarrant:
		w := op.PutWarrant.GetWarrant()
		if w == nil {
			return invalid("put_warrant.warrant", "", "required")
		}
		if !ValidID(w.GetId()) {
			return invalid("warrant.id", w.GetId(), "must be 1..63 characters of [a-z0-9-]")
		}
		t, err := CanonicalWarrantTarget(w.GetKind(), w.GetTarget())
		if err != nil {
			return err
		}
		if t != w.GetTarget() {
			return invalid("warrant.target", w.GetTarget(), "not canonical (want "+t+")")
		}
		if w.GetStartUnixNano() <= 0 || w.GetEndUnixNano() <= w.GetStartUnixNano() {
			return invalid("warrant.end_unix_nano", fmt.Sprint(w.GetEndUnixNano()), "must be after a positive start")
		}
		if !w.GetSignalling() && !w.GetBodies() && !w.GetMsrp() {
			return invalid("warrant", w.GetId(), "delivers nothing: set signalling, bodies or msrp")
		}
		if len(w.GetReference()) > MaxWarrantRefLen || !validText(w.GetReference()) {
			return invalid("warrant.reference", w.GetReference(), fmt.Sprintf("must be printable UTF-8 of at most %d bytes", MaxWarrantRefLen))
		}
		if s.Warrant(w.GetId()) == nil && len(s.Warrants()) >= MaxWarrants {
			return fmt.Errorf("warrant %q: %w: at most %d warrants", w.GetId(), ErrFailedPrecondition, MaxWarrants)
		}
		return nil
	case *hubv1.Command_DeleteWarrant:
		id := op.DeleteWarrant.GetId()
		if s.Warrant(id) == nil {
			return fmt.Errorf("warrant %q: %w", id, ErrNotFound)
		}
		return nil
	case *hubv1.Command_SetCapture:
		c := op.SetCapture
		if c.GetAll() == (c.GetNetwork() != "") {
			return invalid("set_capture", "", "exactly one of network and all must be set")
		}
		if c.GetNetwork() != "" {
			if c.GetOn() {
				if len(s.Capture().GetNetworks()) >= MaxCaptureNetworks {
					return fmt.Errorf("capture: %w: at most %d networks", ErrFailedPrecondition, MaxCaptureNetworks)
				}
				return needNetwork(s, "set_capture.network", c.GetNetwork())
			}
			if !ValidID(c.GetNetwork()) {
				return invalid("set_capture.network", c.GetNetwork(), "must be 1..63 characters of [a-z0-9-]")
			}
		}
		return nil
	}
	return invalid("command.op", fmt.Sprintf("%T", cmd.GetOp()), "not an interception command")
}

// validText refuses control characters (the reference lands in the
// interception ledger and in hubctl's tables).
func validText(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// applyIntercept applies a checked interception command to cs (the
// FSM's full copy); false if cmd is not one.
func applyIntercept(cs *hubv1.ClusterState, cmd *hubv1.Command) bool {
	now := cmd.GetTimeUnixNano()
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_PutWarrant:
		w := proto.Clone(op.PutWarrant.GetWarrant()).(*hubv1.Warrant)
		w.CreatedUnixNano, w.CreatedBy, w.UpdatedUnixNano = now, cmd.GetActor(), now
		i := slices.IndexFunc(cs.Warrants, func(x *hubv1.Warrant) bool { return x.GetId() == w.GetId() })
		if i >= 0 {
			w.CreatedUnixNano, w.CreatedBy = cs.Warrants[i].GetCreatedUnixNano(), cs.Warrants[i].GetCreatedBy()
			cs.Warrants[i] = w
		} else {
			cs.Warrants = append(cs.Warrants, w)
		}
		slices.SortFunc(cs.Warrants, func(a, b *hubv1.Warrant) int { return strings.Compare(a.GetId(), b.GetId()) })
	case *hubv1.Command_DeleteWarrant:
		id := op.DeleteWarrant.GetId()
		cs.Warrants = slices.DeleteFunc(cs.Warrants, func(x *hubv1.Warrant) bool { return x.GetId() == id })
	case *hubv1.Command_SetCapture:
		c := op.SetCapture
		st := cs.Capture
		if st == nil {
			st = &hubv1.CaptureSettings{}
		}
		if c.GetAll() {
			st.All = c.GetOn()
		} else if c.GetOn() {
			st.Networks = append(st.Networks, c.GetNetwork())
			slices.Sort(st.Networks)
			st.Networks = slices.Compact(st.Networks)
		} else {
			st.Networks = slices.DeleteFunc(st.Networks, func(n string) bool { return n == c.GetNetwork() })
		}
		if len(st.Networks) == 0 {
			st.Networks = nil
		}
		st.UpdatedUnixNano, st.UpdatedBy = now, cmd.GetActor()
		cs.Capture = st
	default:
		return false
	}
	return true
}
