package hub

import (
	"runtime"
	"sync"
)

// workerPool runs short-lived hub work (a lean transaction, an
// asynchronous audit append) on goroutines that outlive it. A fresh
// goroutine starts with a small stack that the transaction's first deep
// call (sipgo's header accessors, the ledger encoder) has to grow and copy:
// ~5% of the CPU per forwarded MESSAGE in the issue 10 profile, plus the
// goroutine's creation. A parked worker keeps its grown stack and is handed
// the next job through its own channel.
//
// Parked workers are LIFO (the most recently used stack is the warmest) and
// bounded by maxIdle (~16-32 KiB of stack each); trim, called about once a second, stops half of those
// that stayed unused through the last interval, so a burst's workers do not
// linger. Every worker stops when done closes. Admission (enter/leave, the
// overload limits) stays with the callers: the pool never refuses work and
// holds no more workers than there are jobs running plus maxIdle.
type workerPool struct {
	done    <-chan struct{}
	maxIdle int

	mu   sync.Mutex
	idle []chan func() // parked workers, most recent last
	low  int           // fewest parked since the last trim
}

func newWorkerPool(done <-chan struct{}, maxIdle int) *workerPool {
	return &workerPool{done: done, maxIdle: maxIdle}
}

// run runs f on a parked worker, or on a new one.
func (p *workerPool) run(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.low = min(p.low, n-1)
		p.mu.Unlock()
		ch <- f // buffered: never blocks
		return
	}
	p.low = 0
	p.mu.Unlock()
	go p.workDeep(f)
}

// workerPad is stack a worker holds while parked. The GC halves the stack
// of a goroutine using less than a quarter of it, so a worker parked in a
// shallow frame would lose its grown stack at every GC cycle (every few ms
// under load) and grow it again in its next job; below a pad this size a
// stack of up to 4*workerPad stays as it is.
const workerPad = 8 << 10

//go:noinline
func (p *workerPool) workDeep(f func()) {
	var pad [workerPad]byte
	p.work(f)
	runtime.KeepAlive(&pad)
}

func (p *workerPool) work(f func()) {
	ch := make(chan func(), 1)
	for f != nil {
		f()
		f = nil // let the job's closure be collected while parked
		p.mu.Lock()
		if len(p.idle) >= p.maxIdle {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		select {
		case f = <-ch: // nil: trimmed
		case <-p.done:
			return
		}
	}
}

// trim stops half of the workers that stayed parked since the last call:
// the oldest ones, at the front.
func (p *workerPool) trim() {
	p.mu.Lock()
	n := p.low / 2
	if n == 0 && p.low == 1 {
		n = 1
	}
	stop := make([]chan func(), n)
	copy(stop, p.idle[:n])
	k := copy(p.idle, p.idle[n:])
	clear(p.idle[k:])
	p.idle = p.idle[:k]
	p.low = k
	p.mu.Unlock()
	for _, ch := range stop {
		ch <- nil
	}
}

// parked is the number of idle workers (for tests).
func (p *workerPool) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
