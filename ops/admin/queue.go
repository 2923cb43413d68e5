package admin

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// QueueBackend is the node's store and forward (*queue.Queue, hub/queue)
// as the QueueService needs it.
type QueueBackend interface {
	// Retry makes destination due now; true if this node delivers.
	Retry(destination string) bool
	// Drop removes one message (id) or all of destination's, audited.
	Drop(ctx context.Context, destination, id, actor string) (int, error)
}

// queueService: the store-and-forward queues (hub/queue). Reads come from
// the replicated state on any node; drop is a Raft command; retry acts on
// the delivering node (the leader).
type queueService struct {
	hubv1.UnimplementedQueueServiceServer
	s *Server
	q QueueBackend
}

func summary(st *raft.State, network string) *hubv1.QueueSummary {
	q := st.Queue(network)
	sum := &hubv1.QueueSummary{Network: network, Messages: uint32(len(q)), Bytes: st.QueueBytes(network)}
	for i, m := range q {
		if i == 0 || m.GetStoredUnixNano() < sum.OldestUnixNano {
			sum.OldestUnixNano = m.GetStoredUnixNano()
		}
	}
	return sum
}

func (q *queueService) network(st *raft.State, id string) error {
	if id == "" {
		return fieldErr("network", "required")
	}
	if st.Network(id) == nil && len(st.Queue(id)) == 0 {
		return fmt.Errorf("network %s: %w", id, raft.ErrNotFound)
	}
	return nil
}

// ListQueues summarises every non-empty queue, or one network's.
func (q *queueService) ListQueues(ctx context.Context, req *hubv1.ListQueuesRequest) (*hubv1.ListQueuesResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	st := q.s.store.State()
	out := &hubv1.ListQueuesResponse{}
	if n := req.GetNetwork(); n != "" {
		if err := q.network(st, n); err != nil {
			return nil, err
		}
		out.Queues = append(out.Queues, summary(st, n))
		return out, nil
	}
	for _, d := range st.QueueDestinations() {
		out.Queues = append(out.Queues, summary(st, d))
	}
	return out, nil
}

// ShowQueue lists one network's stored messages in delivery order.
func (q *queueService) ShowQueue(ctx context.Context, req *hubv1.ShowQueueRequest) (*hubv1.ShowQueueResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	st := q.s.store.State()
	if err := q.network(st, req.GetNetwork()); err != nil {
		return nil, err
	}
	out := &hubv1.ShowQueueResponse{Summary: summary(st, req.GetNetwork())}
	for _, m := range st.Queue(req.GetNetwork()) {
		out.Messages = append(out.Messages, &hubv1.QueuedMessageInfo{
			Id: m.GetId(), Source: m.GetSource(), CallId: m.GetCallId(), Bytes: uint32(len(m.GetRequest())),
			StoredUnixNano: m.GetStoredUnixNano(), ExpiresUnixNano: m.GetExpiresUnixNano(), Seq: m.GetSeq(),
		})
	}
	return out, nil
}

// RetryQueue probes and delivers now. Deliveries run on the leader: a
// follower says which node that is.
func (q *queueService) RetryQueue(ctx context.Context, req *hubv1.RetryQueueRequest) (*hubv1.RetryQueueResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if q.q == nil {
		return nil, status.Error(codes.FailedPrecondition, "store and forward is not running on this node")
	}
	if err := q.network(q.s.store.State(), req.GetNetwork()); err != nil {
		return nil, err
	}
	if !q.q.Retry(req.GetNetwork()) {
		id, _ := q.s.store.Leader()
		return nil, status.Errorf(codes.FailedPrecondition, "deliveries run on the leader (%s), not on %s: retry there", id, q.s.nodeID)
	}
	q.s.audit(ctx, "QueueService.RetryQueue", c.Name, "retry store-and-forward queue of "+req.GetNetwork())
	return &hubv1.RetryQueueResponse{Node: q.s.nodeID}, nil
}

// DropQueued removes one stored message, or all of a network's; each one
// dropped is audited by the queue, the call itself here.
func (q *queueService) DropQueued(ctx context.Context, req *hubv1.DropQueuedRequest) (*hubv1.DropQueuedResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if q.q == nil {
		return nil, status.Error(codes.FailedPrecondition, "store and forward is not running on this node")
	}
	st := q.s.store.State()
	if err := q.network(st, req.GetNetwork()); err != nil {
		return nil, err
	}
	n, err := q.q.Drop(ctx, req.GetNetwork(), req.GetId(), c.actor())
	if err != nil {
		return nil, err
	}
	if n == 0 && req.GetId() != "" {
		return nil, fmt.Errorf("queued message %s of %s: %w", req.GetId(), req.GetNetwork(), raft.ErrNotFound)
	}
	what := "all stored messages"
	if req.GetId() != "" {
		what = "stored message " + req.GetId()
	}
	q.s.audit(ctx, "QueueService.DropQueued", c.Name, fmt.Sprintf("dropped %s of %s (%d)", what, req.GetNetwork(), n))
	return &hubv1.DropQueuedResponse{Dropped: uint32(n)}, nil
}
