package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub"
	"clearhub/hub/queue"
	"clearhub/ops/admin"
)

// queueWiring joins store and forward (hub/queue) to the SIP plane and the
// admin API, which are built in an order that needs it before it exists:
// the admin server (QueueBackend) first, then the hub (Deferrer), then
// the queue itself (Sender = the hub's Originate). Until the queue is set,
// Defer fails and the proxy answers as it would without deferral.
type queueWiring struct {
	q    atomic.Pointer[queue.Queue]
	sip  atomic.Pointer[hub.Hub]
	done chan struct{}
}

var (
	_ hub.Deferrer       = (*queueWiring)(nil)
	_ admin.QueueBackend = (*queueWiring)(nil)
	_ queue.Sender       = (*queueWiring)(nil)
)

var errQueueNotRunning = errors.New("store and forward not running")

// Defer stores a MESSAGE for the proxy (hub.Deferrer).
func (w *queueWiring) Defer(ctx context.Context, m *hub.DeferredMessage) (string, error) {
	q := w.q.Load()
	if q == nil {
		return "", errQueueNotRunning
	}
	id, err := q.Store(ctx, m.Req, m.Source, m.Destination, m.AuditSeq, m.Received)
	if errors.Is(err, queue.ErrFull) {
		return "", fmt.Errorf("%w: %w", hub.ErrDeferFull, err)
	}
	return id, err
}

// Alive is the proxy seeing a network with a queue answer (hub.Deferrer).
func (w *queueWiring) Alive(destination string) {
	if q := w.q.Load(); q != nil {
		q.Alive(destination)
	}
}

// Retry and Drop serve the admin QueueService.
func (w *queueWiring) Retry(destination string) bool {
	if q := w.q.Load(); q != nil {
		return q.Retry(destination)
	}
	return false
}

func (w *queueWiring) Drop(ctx context.Context, destination, id, actor string) (int, error) {
	q := w.q.Load()
	if q == nil {
		return 0, errQueueNotRunning
	}
	return q.Drop(ctx, destination, id, actor)
}

// Send delivers through the hub's own client side (queue.Sender).
func (w *queueWiring) Send(ctx context.Context, req *sip.Request, source, destination, note string) (*sip.Response, error) {
	h := w.sip.Load()
	if h == nil {
		return nil, errQueueNotRunning
	}
	res, err := h.Originate(ctx, req, destination, hub.OriginateOptions{Source: source, Note: note})
	if errors.Is(err, hub.ErrOriginateRefused) {
		return nil, fmt.Errorf("%w: %w", queue.ErrRefused, err)
	}
	return res, err
}

// startQueue builds the queue over the running node and starts its loop
// on ctx; wait blocks until it has stopped.
func (n *hubNode) startQueue(ctx context.Context, w *queueWiring, h *hub.Hub, hostname string, reg prometheus.Registerer) error {
	c := n.cfg.Queue
	q, err := queue.New(queue.Config{
		NodeID: n.id, Hostname: hostname,
		MaxMessages: c.MaxMessages, MaxBytes: c.MaxBytes, TTL: c.TTL,
		Rate: float64(c.Rate), Burst: c.Burst, MinBackoff: c.MinBackoff, MaxBackoff: c.MaxBackoff,
		Logger: n.log.With("component", "queue"), Registerer: reg,
	}, n.raft, n.admin, n.raft, w, n.ledger)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	w.sip.Store(h)
	w.q.Store(q)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		q.Run(ctx)
	}()
	return nil
}

// wait blocks until the queue loop started by startQueue has ended.
func (w *queueWiring) wait() {
	if w != nil && w.done != nil {
		<-w.done
	}
}

// sipHostname is the host the hub's own requests name in From.
func sipHostname(cfg Config, h *hub.Hub) string {
	if cfg.SIP.Hostname != "" {
		return cfg.SIP.Hostname
	}
	if as := h.Addrs(); len(as) > 0 {
		if host, _, err := net.SplitHostPort(as[0].String()); err == nil {
			return host
		}
	}
	return ""
}
