package raft

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Store-and-forward queues (hub/queue): MESSAGEs held for a member network
// that cannot take them now. They live in the replicated state so that a
// stored message survives the loss of any node and the 202 is sent only
// once a quorum has it. A store or remove copies only the one destination's
// slice (applyQueueCommand), not the whole state: queues change at message
// rate, unlike networks and policy.

// Bounds checked alike on every replica (constants, not configuration; the
// per-destination limits travel in the command).
const (
	// MaxQueuedRequestBytes bounds one stored request (the hub's largest
	// accepted SIP message).
	MaxQueuedRequestBytes = 65535
	// MaxQueuedTotal bounds the messages of all queues together
	// (snapshot size).
	MaxQueuedTotal = 200000
	// MaxQueuedTotalBytes bounds the stored requests of all queues
	// together: they are held in memory on every node and in every
	// snapshot, so many full destinations must not add up without bound.
	MaxQueuedTotalBytes = 256 << 20
	// MaxQueueIDLen bounds a message id.
	MaxQueueIDLen = 96
	// MaxQueueRemove bounds the ids of one remove command.
	MaxQueueRemove = 1000
)

// ErrQueueFull marks a store refused by the destination's limits; the hub
// answers it with 503 and Retry-After. Its text ("queue full") survives a
// follower's forwarding through gRPC, which keeps only the message.
var ErrQueueFull = fmt.Errorf("queue full: %w", ErrFailedPrecondition)

// queueIndex is the part of State built from the queued messages. Slices
// of a published State are never modified in place.
type queueIndex struct {
	byDst      map[string][]*hubv1.QueuedMessage // sorted by seq
	bytes      map[string]uint64
	total      int
	totalBytes uint64
}

func newQueueIndex(cs *hubv1.ClusterState) queueIndex {
	x := queueIndex{byDst: map[string][]*hubv1.QueuedMessage{}, bytes: map[string]uint64{}}
	for _, m := range cs.GetQueued() {
		d := m.GetDestination()
		x.byDst[d] = append(x.byDst[d], m)
		x.bytes[d] += uint64(len(m.GetRequest()))
		x.total++
		x.totalBytes += uint64(len(m.GetRequest()))
	}
	for _, q := range x.byDst {
		slices.SortFunc(q, func(a, b *hubv1.QueuedMessage) int { return cmp.Compare(a.GetSeq(), b.GetSeq()) })
	}
	return x
}

// Queue returns destination's stored messages in delivery order (shared:
// do not modify).
func (s *State) Queue(destination string) []*hubv1.QueuedMessage { return s.queue.byDst[destination] }

// QueueBytes returns the bytes of destination's stored requests.
func (s *State) QueueBytes(destination string) uint64 { return s.queue.bytes[destination] }

// QueueDestinations returns the networks with a non-empty queue, sorted.
func (s *State) QueueDestinations() []string {
	out := make([]string, 0, len(s.queue.byDst))
	for d, q := range s.queue.byDst {
		if len(q) > 0 {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

func (s *State) queueProto(cs *hubv1.ClusterState) {
	for _, d := range s.QueueDestinations() {
		for _, m := range s.queue.byDst[d] {
			cs.Queued = append(cs.Queued, proto.Clone(m).(*hubv1.QueuedMessage))
		}
	}
}

func isQueueCommand(cmd *hubv1.Command) bool {
	switch cmd.GetOp().(type) {
	case *hubv1.Command_QueueStore, *hubv1.Command_QueueRemove:
		return true
	}
	return false
}

// checkQueueCommand validates a queue command against s (deterministic: no
// clock, the times come from the command).
func checkQueueCommand(s *State, cmd *hubv1.Command) error {
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_QueueStore:
		st := op.QueueStore
		m := st.GetMessage()
		switch {
		case m == nil:
			return invalid("queue_store.message", "", "required")
		case m.GetId() == "" || len(m.GetId()) > MaxQueueIDLen || strings.ContainsAny(m.GetId(), " \t\r\n"):
			return invalid("queue_store.message.id", m.GetId(), "1 to 96 bytes, no white space")
		case s.Network(m.GetDestination()) == nil:
			return fmt.Errorf("queue destination %q: %w", m.GetDestination(), ErrNotFound)
		case m.GetSource() != "" && s.Network(m.GetSource()) == nil:
			return fmt.Errorf("queue source %q: %w", m.GetSource(), ErrNotFound)
		case len(m.GetRequest()) == 0 || len(m.GetRequest()) > MaxQueuedRequestBytes:
			return invalid("queue_store.message.request", "", fmt.Sprintf("1 to %d bytes", MaxQueuedRequestBytes))
		case m.GetStoredUnixNano() <= 0 || m.GetExpiresUnixNano() <= m.GetStoredUnixNano():
			return invalid("queue_store.message.expires_unix_nano", "", "must follow stored_unix_nano")
		case st.GetMaxMessages() == 0 || st.GetMaxBytes() == 0:
			return invalid("queue_store.max_messages", "", "limits are required")
		}
		q := s.Queue(m.GetDestination())
		if slices.ContainsFunc(q, func(x *hubv1.QueuedMessage) bool { return x.GetId() == m.GetId() }) {
			return fmt.Errorf("queued message %s: %w", m.GetId(), ErrAlreadyExists)
		}
		if uint32(len(q)) >= st.GetMaxMessages() || s.QueueBytes(m.GetDestination())+uint64(len(m.GetRequest())) > st.GetMaxBytes() {
			return fmt.Errorf("network %s: %d messages, %d bytes stored: %w", m.GetDestination(), len(q), s.QueueBytes(m.GetDestination()), ErrQueueFull)
		}
		if s.queue.total >= MaxQueuedTotal || s.queue.totalBytes+uint64(len(m.GetRequest())) > MaxQueuedTotalBytes {
			return fmt.Errorf("%d messages, %d bytes stored in all: %w", s.queue.total, s.queue.totalBytes, ErrQueueFull)
		}
	case *hubv1.Command_QueueRemove:
		r := op.QueueRemove
		switch {
		case r.GetDestination() == "":
			return invalid("queue_remove.destination", "", "required")
		case len(r.GetIds()) == 0 || len(r.GetIds()) > MaxQueueRemove:
			return invalid("queue_remove.ids", "", fmt.Sprintf("1 to %d ids", MaxQueueRemove))
		case r.GetOutcome() == hubv1.QueueOutcome_QUEUE_OUTCOME_UNSPECIFIED:
			return invalid("queue_remove.outcome", "", "required")
		}
	}
	return nil
}

// applyQueueCommand applies a checked queue command to s, sharing
// everything but the one destination's queue. nil for other commands.
func applyQueueCommand(s *State, index uint64, cmd *hubv1.Command) *State {
	if !isQueueCommand(cmd) {
		return nil
	}
	next := *s
	next.Index = index
	qi := queueIndex{byDst: make(map[string][]*hubv1.QueuedMessage, len(s.queue.byDst)+1), bytes: make(map[string]uint64, len(s.queue.bytes)+1),
		total: s.queue.total, totalBytes: s.queue.totalBytes}
	for k, v := range s.queue.byDst {
		qi.byDst[k] = v
	}
	for k, v := range s.queue.bytes {
		qi.bytes[k] = v
	}
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_QueueStore:
		m := proto.Clone(op.QueueStore.GetMessage()).(*hubv1.QueuedMessage)
		m.Seq = index // commit order is delivery order
		d := m.GetDestination()
		old := s.queue.byDst[d]
		q := make([]*hubv1.QueuedMessage, len(old), len(old)+1)
		copy(q, old)
		qi.byDst[d] = append(q, m)
		qi.bytes[d] += uint64(len(m.GetRequest()))
		qi.total++
		qi.totalBytes += uint64(len(m.GetRequest()))
	case *hubv1.Command_QueueRemove:
		d := op.QueueRemove.GetDestination()
		drop := make(map[string]bool, len(op.QueueRemove.GetIds()))
		for _, id := range op.QueueRemove.GetIds() {
			drop[id] = true
		}
		var q []*hubv1.QueuedMessage
		var b uint64
		for _, m := range s.queue.byDst[d] {
			if drop[m.GetId()] {
				qi.total--
				qi.totalBytes -= uint64(len(m.GetRequest()))
				continue
			}
			q = append(q, m)
			b += uint64(len(m.GetRequest()))
		}
		if len(q) == 0 {
			delete(qi.byDst, d)
			delete(qi.bytes, d)
		} else {
			qi.byDst[d], qi.bytes[d] = q, b
		}
	}
	next.queue = qi
	return &next
}
