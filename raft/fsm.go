package raft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// ApplyResult is what FSM.Apply returns for every command log, and what
// hashicorp/raft hands back through ApplyFuture.Response. Err is
// deterministic: every replica computes the same one, and a command with an
// error left the state unchanged.
type ApplyResult struct {
	Index uint64
	Err   error
}

// ApplyTo returns the state after applying cmd at index to s, or the
// CheckCommand error. s is not modified. Created/updated times come from
// cmd.time_unix_nano, never from the local clock, so every replica computes
// the same state. Admin handlers may call it for a dry run.
func ApplyTo(s *State, index uint64, cmd *hubv1.Command) (*State, error) {
	if err := CheckCommand(s, cmd); err != nil {
		return nil, err
	}
	if next := applyRoomCommand(s, index, cmd); next != nil {
		return next, nil // rooms.go: copies only the room it changes
	}
	if next := applyQueueCommand(s, index, cmd); next != nil {
		return next, nil // queue.go: copies only the destination's queue
	}
	cs := s.fullProto() // deep copy, sorted, warrants included (intercept.go)
	now := cmd.GetTimeUnixNano()
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_AddNetwork:
		n := NormalizeNetwork(op.AddNetwork.GetNetwork())
		n.CreatedUnixNano, n.UpdatedUnixNano = now, now
		if n.Status == hubv1.NetworkStatus_NETWORK_STATUS_UNSPECIFIED {
			n.Status = hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE
		}
		cs.Networks = append(cs.Networks, n)
	case *hubv1.Command_UpdateNetwork:
		n := NormalizeNetwork(op.UpdateNetwork.GetNetwork())
		i := networkIndex(cs, n.GetId())
		old := cs.Networks[i]
		n.Status, n.CreatedUnixNano, n.UpdatedUnixNano = old.GetStatus(), old.GetCreatedUnixNano(), now
		cs.Networks[i] = n
	case *hubv1.Command_SetNetworkStatus:
		n := cs.Networks[networkIndex(cs, op.SetNetworkStatus.GetId())]
		n.Status, n.UpdatedUnixNano = op.SetNetworkStatus.GetStatus(), now
		evictRoomMembers(cs) // rooms.go: a suspended network's users leave every room
	case *hubv1.Command_RemoveNetwork:
		id := op.RemoveNetwork.GetId()
		cs.Networks = slices.DeleteFunc(cs.Networks, func(n *hubv1.Network) bool { return n.GetId() == id })
		// Drop its own policy and every rule naming it as a source, so no
		// dangling reference survives (a later network reusing the id must
		// not inherit old permissions).
		cs.Policies = slices.DeleteFunc(cs.Policies, func(p *hubv1.Policy) bool { return p.GetDestination() == id })
		for _, p := range cs.Policies {
			p.Rules = slices.DeleteFunc(p.Rules, func(r *hubv1.PolicyRule) bool { return r.GetSource() == id })
		}
		evictRoomMembers(cs) // rooms.go
	case *hubv1.Command_PolicyAllow:
		a := op.PolicyAllow
		svcs := normServices(a.GetServices())
		if len(svcs) == 0 {
			svcs = AllServices()
		}
		p := policyFor(cs, a.GetDestination())
		if a.GetAll() {
			p.AllowAll = true
			p.AllServices = normServices(append(p.AllServices, svcs...))
		} else {
			r := ruleFor(p, a.GetSource())
			r.Services = normServices(append(r.Services, svcs...))
		}
	case *hubv1.Command_PolicyDeny:
		d := op.PolicyDeny
		i := slices.IndexFunc(cs.Policies, func(p *hubv1.Policy) bool { return p.GetDestination() == d.GetDestination() })
		if i < 0 {
			break // nothing allowed, nothing to deny
		}
		p := cs.Policies[i]
		if d.GetAll() {
			p.AllServices = without(p.AllServices, d.GetServices())
			p.AllowAll = len(p.AllServices) > 0
		} else {
			p.Rules = slices.DeleteFunc(p.Rules, func(r *hubv1.PolicyRule) bool {
				if r.GetSource() != d.GetSource() {
					return false
				}
				r.Services = without(r.Services, d.GetServices())
				// A shared view is a presence grant: it goes with presence.
				r.ShareViews = r.ShareViews && hasService(r.Services, hubv1.Service_SERVICE_PRESENCE)
				return len(r.Services) == 0
			})
		}
	case *hubv1.Command_PutNode:
		n := proto.Clone(op.PutNode.GetNode()).(*hubv1.Node)
		if i := slices.IndexFunc(cs.Nodes, func(x *hubv1.Node) bool { return x.GetId() == n.GetId() }); i >= 0 {
			cs.Nodes[i] = n
		} else {
			cs.Nodes = append(cs.Nodes, n)
		}
	case *hubv1.Command_RemoveNode:
		cs.Nodes = slices.DeleteFunc(cs.Nodes, func(x *hubv1.Node) bool { return x.GetId() == op.RemoveNode.GetId() })
	case *hubv1.Command_RestoreState:
		applyRestoreState(s, cs, op.RestoreState.GetState(), cmd) // restorestate.go
		evictRoomMembers(cs)                                      // rooms.go
	default:
		if !applyList(cs, cmd) && !applyIntercept(cs, cmd) { // lists.go, intercept.go
			applyIdentity(cs, cmd) // revocations and join tokens (identity.go)
		}
	}
	// A policy that admits nothing is the same as no policy (default deny);
	// dropping it keeps the state canonical.
	cs.Policies = slices.DeleteFunc(cs.Policies, func(p *hubv1.Policy) bool {
		return !p.GetAllowAll() && len(p.GetRules()) == 0
	})
	return NewState(index, cs), nil
}

func networkIndex(cs *hubv1.ClusterState, id string) int {
	return slices.IndexFunc(cs.Networks, func(n *hubv1.Network) bool { return n.GetId() == id })
}

func policyFor(cs *hubv1.ClusterState, dst string) *hubv1.Policy {
	for _, p := range cs.Policies {
		if p.GetDestination() == dst {
			return p
		}
	}
	p := &hubv1.Policy{Destination: dst}
	cs.Policies = append(cs.Policies, p)
	return p
}

// ruleFor returns source's rule in p, adding one in source order if needed
// (the schema keeps rules sorted by source).
func ruleFor(p *hubv1.Policy, src string) *hubv1.PolicyRule {
	i, found := slices.BinarySearchFunc(p.Rules, src, func(r *hubv1.PolicyRule, s string) int {
		return cmpString(r.GetSource(), s)
	})
	if found {
		return p.Rules[i]
	}
	r := &hubv1.PolicyRule{Source: src}
	p.Rules = slices.Insert(p.Rules, i, r)
	return r
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// without returns have minus remove; an empty remove means everything.
func without(have, remove []hubv1.Service) []hubv1.Service {
	if len(remove) == 0 {
		return nil
	}
	out := slices.DeleteFunc(slices.Clone(have), func(s hubv1.Service) bool { return slices.Contains(remove, s) })
	if len(out) == 0 {
		return nil
	}
	return out
}

// FSM is the hashicorp/raft state machine over the cluster state. Raft calls
// Apply, Snapshot and Restore from its single FSM goroutine (never
// concurrently with each other); State and Subscribe are for everyone else
// and never block on Raft.
type FSM struct {
	logger  *slog.Logger
	onApply func(*State)
	state   atomic.Pointer[State]
	// applied is closed and replaced after every publish, waking
	// waitIndex callers.
	applied atomic.Pointer[chan struct{}]

	mu   sync.Mutex
	subs map[chan *State]struct{}
}

var (
	_ hraft.FSM         = (*FSM)(nil)
	_ hraft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// NewFSM returns an FSM holding the empty state. onApply, if not nil, is
// called on the FSM goroutine after every state change (a successful command
// or a restore) with the new state; it must be quick and must not call back
// into Raft (Apply, Barrier...), or it stalls replication.
func NewFSM(logger *slog.Logger, onApply func(*State)) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &FSM{logger: logger, onApply: onApply, subs: map[chan *State]struct{}{}}
	f.state.Store(Empty())
	ch := make(chan struct{})
	f.applied.Store(&ch)
	return f
}

// State returns the current immutable state. Safe from any goroutine; it
// never blocks.
func (f *FSM) State() *State { return f.state.Load() }

// Subscribe returns a channel that receives the newest state after every
// change. It holds at most one value: a slow reader skips intermediate states
// but always ends up with the latest. cancel unsubscribes and closes the
// channel; call it exactly once when done.
func (f *FSM) Subscribe() (states <-chan *State, cancel func()) {
	ch := make(chan *State, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			f.mu.Unlock()
			close(ch)
		})
	}
}

// waitIndex waits until State().Index >= index or ctx ends.
func (f *FSM) waitIndex(ctx context.Context, index uint64) error {
	for {
		ch := *f.applied.Load() // load before checking: no lost wake-up
		if f.State().Index >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("raft: waiting for index %d (at %d): %w", index, f.State().Index, ctx.Err())
		}
	}
}

// publish swaps in s and, if changed, tells the hook and subscribers.
func (f *FSM) publish(s *State, changed bool) {
	f.state.Store(s)
	next := make(chan struct{})
	close(*f.applied.Swap(&next))
	if !changed {
		return
	}
	if f.onApply != nil {
		f.onApply(s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select { // drop the stale value, if any, and put the new one
		case <-ch:
		default:
		}
		ch <- s // cannot block: the buffer is empty and only we send, under mu
	}
}

// Apply is called by Raft on the FSM goroutine for each committed command
// log. It decodes the command, re-runs CheckCommand against the current
// state and publishes the new state. It returns *ApplyResult; a rejected
// command leaves the content unchanged (State().Index still advances).
func (f *FSM) Apply(l *hraft.Log) any {
	cur := f.State()
	cmd := &hubv1.Command{}
	var err error
	if uerr := proto.Unmarshal(l.Data, cmd); uerr != nil {
		err = fmt.Errorf("%w: decoding command: %v", ErrInvalid, uerr)
	} else {
		var next *State
		if next, err = ApplyTo(cur, l.Index, cmd); err == nil {
			f.publish(next, true)
			return &ApplyResult{Index: l.Index}
		}
	}
	f.logger.Debug("raft command rejected", "index", l.Index, "error", err)
	same := *cur // immutable: sharing maps is fine
	same.Index = l.Index
	f.publish(&same, false)
	return &ApplyResult{Index: l.Index, Err: err}
}

// Snapshot format: magic, then the applied index (big-endian uint64), then
// the deterministic protobuf encoding of hubv1.ClusterState.
var snapshotMagic = []byte("clearhub-state/1\n")

// maxSnapshotSize bounds what Restore reads: a snapshot may come from the
// leader over the network.
const maxSnapshotSize = 256 << 20

// Snapshot is called by Raft on the FSM goroutine. It only captures the
// current immutable state; Persist does the encoding on Raft's snapshot
// goroutine.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.State()}, nil
}

// Restore is called by Raft on the FSM goroutine to replace the whole state
// (on start-up from the latest snapshot, or when the leader installs one).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("raft restore: reading snapshot: %w", err)
	}
	s, err := DecodeSnapshot(data)
	if err != nil {
		return err
	}
	f.publish(s, true)
	f.logger.Info("raft state restored from snapshot", "index", s.Index, "networks", len(s.Networks()), "nodes", len(s.Nodes()))
	return nil
}

// EncodeSnapshot returns the snapshot encoding of s. Deterministic: equal
// states encode to equal bytes.
func EncodeSnapshot(s *State) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.fullProto())
	if err != nil {
		return nil, fmt.Errorf("raft snapshot: encoding state: %w", err)
	}
	out := make([]byte, 0, len(snapshotMagic)+8+len(body))
	out = append(out, snapshotMagic...)
	out = binary.BigEndian.AppendUint64(out, s.Index)
	return append(out, body...), nil
}

// DecodeSnapshot parses what EncodeSnapshot wrote.
func DecodeSnapshot(data []byte) (*State, error) {
	if len(data) > maxSnapshotSize {
		return nil, fmt.Errorf("raft restore: snapshot larger than %d bytes", maxSnapshotSize)
	}
	if !bytes.HasPrefix(data, snapshotMagic) || len(data) < len(snapshotMagic)+8 {
		return nil, errors.New("raft restore: not a clearhub state snapshot (bad header)")
	}
	data = data[len(snapshotMagic):]
	index := binary.BigEndian.Uint64(data)
	cs := &hubv1.ClusterState{}
	if err := proto.Unmarshal(data[8:], cs); err != nil {
		return nil, fmt.Errorf("raft restore: decoding state: %w", err)
	}
	return NewState(index, cs), nil
}

type fsmSnapshot struct{ state *State }

// Persist is called by Raft on its snapshot goroutine.
func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	data, err := EncodeSnapshot(s.state)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raft snapshot: %w", err)
	}
	return sink.Close()
}

// Release is called by Raft when it is done with the snapshot.
func (s *fsmSnapshot) Release() {}
