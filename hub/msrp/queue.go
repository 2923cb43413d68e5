package msrp

import (
	"sync"
	"sync/atomic"
)

// outQueue holds the wire bytes waiting for one leg's writer. Data (SEND
// chunks) counts against limit: a reader pushing data into a full queue
// waits, so the hub stops reading the sending leg while the receiving one
// is slow (backpressure through TCP). Responses and REPORTs never wait,
// so a blocked reader cannot stall its own hop-by-hop answers; they are
// capped by count instead.
type outQueue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	q        []outItem
	data     int // data bytes queued or being written
	limit    int
	controls int
	closed   bool
	peak     *atomic.Int64 // the relay's highest data backlog on any leg
}

type outItem struct {
	b    []byte
	data bool
}

const maxQueuedControls = 4096

func newOutQueue(limit int, peak *atomic.Int64) *outQueue {
	q := &outQueue{limit: limit, peak: peak}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push queues b; it reports false when the queue is closed (the leg is
// gone) or, for a control frame, when too many are waiting.
func (q *outQueue) push(b []byte, data bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for data && q.data >= q.limit && !q.closed {
		q.cond.Wait()
	}
	if q.closed || !data && q.controls >= maxQueuedControls {
		return false
	}
	if data {
		q.data += len(b)
		for p := q.peak.Load(); int64(q.data) > p && !q.peak.CompareAndSwap(p, int64(q.data)); p = q.peak.Load() {
		}
	} else {
		q.controls++
	}
	q.q = append(q.q, outItem{b, data})
	q.cond.Broadcast()
	return true
}

// pop takes everything queued, waiting while the queue is empty; nil once
// closed.
func (q *outQueue) pop() []outItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.q) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	items := q.q
	q.q = nil
	return items
}

// done releases the budget of written items.
func (q *outQueue) done(items []outItem) {
	q.mu.Lock()
	for _, it := range items {
		if it.data {
			q.data -= len(it.b)
		} else {
			q.controls--
		}
	}
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.q = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}
