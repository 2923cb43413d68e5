package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The write path is a pipeline with one owner per stage:
//
//   - Append (each caller's goroutine) validates the entry, builds its
//     canonical encoding with placeholders for seq and prev_hash, and
//     normalises the users for the index.
//   - run (the writer goroutine) owns the chain: it stamps seq and prev_hash
//     into each record as it arrives, hashes it, pushes the leaf onto the
//     Merkle frontier and groups index rows. This is the only serial CPU
//     work per entry (two SHA-256 over a few hundred bytes).
//   - walStage (its own goroutine) writes one sealed batch at a time to the
//     write-ahead log as one frame and fdatasyncs it (wal.go). Then the
//     writer acknowledges the batch's callers.
//   - applier (its own goroutine) writes the WAL-durable batches to bbolt:
//     entries, Merkle nodes, index rows, checkpoint; all batches queued
//     since its last commit in one synced transaction.
//
// While batch N is being committed, batch N+1 gathers and is hashed against
// the state N will leave (the chain only needs N's hashes, not N's
// durability). Nobody is acknowledged before their own batch is in the WAL.
// If N's WAL write fails, the writer rolls its state back to the last
// durable batch and re-stamps N+1 from there, so a failed commit never
// leaves a gap or a dangling prev_hash. bbolt trails the WAL by at most
// maxLagBatches batches; a failed apply stops the ledger (see applied).

type appendReq struct {
	e *Entry
	// rec is Canonical(e) || Hash: the entries bucket value and the Merkle
	// leaf data. Seq, PrevHash and Hash are placeholders until stamped.
	rec   []byte
	users [2]string // normalised From and To for the user index ("" = none)
	done  chan error
	// bg, when set, is called instead of sending on done: an entry nobody
	// waits for (AppendBackground). It does not make a commit happen on
	// its own (see backgroundLinger).
	bg func(error)
}

// complete tells r's caller how its commit ended.
func (r *appendReq) complete(err error) {
	if r.bg != nil {
		r.bg(err)
		return
	}
	r.done <- err
}

type ckptResult struct {
	cp  *Checkpoint
	err error
}

// seqOffset is where Seq sits in the canonical encoding: after str(magic).
const seqOffset = 4 + len(canonMagic)

func (l *Ledger) newReq(e *Entry, bg func(error)) *appendReq {
	e.Node = l.opts.NodeID
	if e.Time == 0 {
		e.Time = l.opts.Now().UnixNano()
	}
	e.PrevHash = zeroHash // placeholder of the right length
	rec := appendCanonical(make([]byte, 0, canonSize(e)+HashSize), e)
	rec = append(rec, zeroHash...)
	r := &appendReq{e: e, rec: rec, bg: bg}
	if bg == nil {
		r.done = make(chan error, 1)
	}
	r.users[0] = NormalizeUser(e.From)
	if u := NormalizeUser(e.To); u != r.users[0] {
		r.users[1] = u
	}
	return r
}

type writerState struct {
	lastHash     []byte
	tree         frontier
	ckptSize     uint64
	lastCkptTime time.Time
}

func (s writerState) clone() writerState {
	s.tree = s.tree.clone()
	return s
}

// stamp gives r the next seq in st, hashes it and pushes its leaf.
func stamp(r *appendReq, st *writerState, nodes []mnode) []mnode {
	seq := st.tree.size + 1
	rec := r.rec
	n := len(rec)
	binary.BigEndian.PutUint64(rec[seqOffset:], seq)
	copy(rec[n-2*HashSize:n-HashSize], st.lastHash)
	h := sha256.Sum256(rec[:n-HashSize])
	copy(rec[n-HashSize:], h[:])
	r.e.Seq = seq
	r.e.PrevHash = rec[n-2*HashSize : n-HashSize : n-HashSize]
	r.e.Hash = rec[n-HashSize:]
	st.lastHash = r.e.Hash
	return st.tree.push(leafHashOf(rec), nodes)
}

// batch is one group commit's worth of entries: one WAL frame, later part
// of one bbolt transaction.
type batch struct {
	reqs []*appendReq
	// urgent: someone waits for an entry of this batch; a batch of
	// background entries only is sealed after backgroundLinger.
	urgent  bool
	since   time.Time // when its first entry came
	nodes   []mnode
	after   writerState // chain state once the batch is in
	cp      *Checkpoint // stored in the same bbolt transaction, or nil
	waiters []chan ckptResult
	extra   func(tx *bolt.Tx) error // more writes in the same transaction
	hook    func() error            // test hook: runs before the WAL write

	rows []rowSet // index rows, built at seal
	err  error
	took time.Duration
}

type rowSet struct {
	bucket []byte
	fill   float64
	kvs    []kv
}

type kv struct{ k, v []byte }

// pipeline is the writer goroutine's state.
type pipeline struct {
	spec     writerState // including batches not yet durable
	pending  *batch      // gathering, already stamped
	inflight *batch      // with the WAL stage
	waiters  []chan ckptResult
	ckptDue  bool
	// WAL-durable batches not yet in bbolt: applying is with the applier,
	// toApply waits for it; lag counts their entries.
	applying []*batch
	toApply  []*batch
	lag      int
	broken   error // sticky: bbolt apply failed
}

// There is no group-commit linger (waiting after a commit for the writers
// it just acknowledged, so closed-loop writers share the next commit): with
// a WAL commit costing one small fdatasync, its wait cost open-loop traffic
// (the hub's) more latency than it saved (BenchmarkAppendLatency20k p50
// 0.6 ms without, 1.8 ms with a 150 µs cap, since short timers fire late on
// a busy machine), for ~25% more throughput at 16 closed-loop writers.

// maxLagBatches bounds how far (in MaxBatch units) bbolt may fall behind
// the WAL before the writer stops sealing new batches and waits for it.
const maxLagBatches = 16

// applyEvery paces bbolt applies: a group is handed to the applier at most
// this often (sooner when the lag passes half of maxLagBatches or someone
// waits for bbolt: a checkpoint, a cut, Close). Every bbolt commit costs
// two fdatasyncs and rewrites the tree's right edge, so fewer, larger
// commits leave more CPU and disk to the WAL that callers wait for. Readers
// wait for bbolt, so this bounds their added wait. 25 ms rather than 5:
// BenchmarkAppendCPU at 10,000 appends/s, median of 5, 51 -> 43 µs of
// process CPU per append (a commit's fixed cost over 5x the entries).
// Durability does not change: callers are acknowledged from the WAL.
const applyEvery = 25 * time.Millisecond

// backgroundLinger is how long entries nobody waits for (AppendBackground:
// the hub's response entries) may wait for an entry somebody waits for, so
// they share its WAL commit instead of costing an fdatasync of their own.
// At the hub's rates the next request entry comes well within it; on a
// quiet node they are committed after it. No caller's acknowledgement
// depends on them (the response they record is relayed before they are
// durable either way); a crash within the linger loses at most the
// response entries of its last few milliseconds, which the request entries
// before them still account for.
const backgroundLinger = 5 * time.Millisecond

func (p *pipeline) add(r *appendReq) {
	if p.pending == nil {
		p.pending = &batch{since: time.Now()}
	}
	if r.bg == nil {
		p.pending.urgent = true
	}
	p.pending.reqs = append(p.pending.reqs, r)
	p.pending.nodes = stamp(r, &p.spec, p.pending.nodes)
}

func (p *pipeline) idle() bool {
	return p.inflight == nil && p.pending == nil && p.applying == nil && len(p.toApply) == 0
}

type applyResult struct {
	grp  []*batch
	err  error
	took time.Duration
}

// run is the single writer. See the comment at the top of this file.
func (l *Ledger) run() {
	defer close(l.done)
	walCh, walRes := make(chan *batch), make(chan *batch)
	applyCh, applyRes := make(chan []*batch, 1), make(chan applyResult)
	walDone, applyDone := make(chan struct{}), make(chan struct{})
	go l.walStage(walCh, walRes, walDone)
	go l.applier(applyCh, applyRes, applyDone)
	defer func() {
		close(walCh)
		<-walDone
		close(applyCh)
		<-applyDone
	}()
	var tick <-chan time.Time
	if l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	p := &pipeline{spec: l.w.clone()}
	closing := false
	var pruning *pruneReq
	maxLag := maxLagBatches * l.opts.MaxBatch
	var applyT, lingerT *time.Timer
	var lastApply time.Time
	for {
		var applyC <-chan time.Time
		if p.applying == nil && len(p.toApply) > 0 {
			wait := time.Until(lastApply.Add(applyEvery))
			if wait <= 0 || p.lag >= maxLag/2 || closing || pruning != nil || len(p.waiters) > 0 || p.ckptDue {
				p.applying, p.toApply = p.toApply, nil
				applyCh <- p.applying // buffered; the applier is free
			} else {
				if applyT == nil {
					applyT = time.NewTimer(wait)
				} else {
					applyT.Reset(wait)
				}
				applyC = applyT.C
			}
		}
		var lingerC <-chan time.Time
		if p.inflight == nil && p.pending != nil && p.lag < maxLag {
			wait := l.linger - time.Since(p.pending.since)
			if p.pending.urgent || wait <= 0 || closing || pruning != nil || len(p.waiters) > 0 || p.ckptDue || len(p.pending.reqs) >= l.opts.MaxBatch {
				b := p.pending
				p.pending = nil
				l.seal(p, b)
				p.inflight = b
				walCh <- b
			} else {
				if lingerT == nil {
					lingerT = time.NewTimer(wait)
				} else {
					lingerT.Reset(wait)
				}
				lingerC = lingerT.C
			}
		}
		if p.idle() {
			// Idle: everything stamped is durable and in bbolt.
			if len(p.waiters) > 0 || (p.ckptDue && l.w.tree.size > l.w.ckptSize) {
				cp, err := l.checkpointNow()
				if err != nil {
					l.log.Error("ledger checkpoint failed", "err", err)
				}
				for _, w := range p.waiters {
					w <- ckptResult{cp, err}
				}
				p.waiters, p.ckptDue = nil, false
				p.spec = l.w.clone()
			}
			if pruning != nil {
				if p.broken != nil {
					pruning.reply <- pruneResult{err: p.broken}
				} else {
					pruning.reply <- l.anchorNow(pruning)
				}
				pruning = nil
				p.spec = l.w.clone()
			}
			if closing {
				if p.broken == nil {
					l.finalCheckpoint()
				}
				return
			}
		}
		reqCh := l.reqs
		if closing || pruning != nil || (p.pending != nil && len(p.pending.reqs) >= l.opts.MaxBatch) {
			reqCh = nil
		}
		var resCh chan *batch
		if p.inflight != nil {
			resCh = walRes
		}
		var appliedCh chan applyResult
		if p.applying != nil {
			appliedCh = applyRes
		}
		select {
		case r, ok := <-reqCh:
			if !ok {
				closing = true
				continue
			}
			p.add(r)
		drain:
			for len(p.pending.reqs) < l.opts.MaxBatch {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						closing = true
						break drain
					}
					p.add(r)
				default:
					break drain
				}
			}
		case b := <-resCh:
			p.inflight = nil
			l.finish(p, b)
		case <-applyC:
		case <-lingerC:
		case res := <-appliedCh:
			lastApply = time.Now()
			p.applying = nil
			l.applied(p, res)
		case <-tick:
			p.ckptDue = true
		case w := <-l.ckptReq:
			p.waiters = append(p.waiters, w)
		case pr := <-l.pruneReq:
			pruning = pr
		}
	}
}

// seal decides the batch's checkpoint and builds its index rows.
func (l *Ledger) seal(p *pipeline, b *batch) {
	st := &p.spec
	due := l.opts.CheckpointEvery > 0 && st.tree.size-st.ckptSize >= uint64(l.opts.CheckpointEvery)
	if due || len(p.waiters) > 0 || p.ckptDue {
		cp, err := l.signCheckpoint(st.tree)
		if err != nil {
			b.err = err
		} else {
			b.cp = cp
			st.ckptSize = cp.Size
		}
		b.waiters, p.waiters, p.ckptDue = p.waiters, nil, false
	}
	if p.broken != nil {
		b.err = p.broken
	}
	b.after = st.clone()
	b.rows = buildRows(b.reqs, l.opts.SegmentSize)
	b.hook = l.commitHook
}

// walStage makes one batch at a time durable in the WAL.
func (l *Ledger) walStage(in <-chan *batch, out chan<- *batch, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		if b.err == nil {
			start := time.Now()
			if b.hook != nil {
				b.err = b.hook()
			}
			if b.err == nil {
				b.err = l.wal.append(b)
			}
			b.took = time.Since(start)
		}
		out <- b
	}
}

// applier writes WAL-durable batches to bbolt, every group handed over in
// one synced transaction, and then lets the WAL drop what bbolt now holds.
func (l *Ledger) applier(in <-chan []*batch, out chan<- applyResult, done chan<- struct{}) {
	defer close(done)
	for grp := range in {
		start := time.Now()
		err := l.db.Update(func(tx *bolt.Tx) error {
			if h := l.applyHook.Load(); h != nil {
				if err := (*h)(); err != nil {
					return err
				}
			}
			for _, b := range grp {
				if err := b.write(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			l.wal.release(grp[len(grp)-1].after.tree.size)
		}
		out <- applyResult{grp, err, time.Since(start)}
	}
}

func (b *batch) write(tx *bolt.Tx) error {
	eb := tx.Bucket(bEntries)
	eb.FillPercent = 1.0 // sequential keys: bbolt appends
	for _, r := range b.reqs {
		if err := eb.Put(seqKey(r.e.Seq), r.rec); err != nil {
			return err
		}
	}
	mb := tx.Bucket(bMerkle)
	mb.FillPercent = 1.0 // sequential within each level
	for _, n := range b.nodes {
		if n.level < minStoredLevel {
			continue
		}
		if err := mb.Put(merkleKey(n.level, n.index), n.hash); err != nil {
			return err
		}
	}
	for _, rs := range b.rows {
		if err := putAll(tx.Bucket(rs.bucket), rs.kvs, rs.fill); err != nil {
			return err
		}
	}
	if b.cp != nil {
		if err := tx.Bucket(bCkpt).Put(seqKey(b.cp.Size), b.cp.Note); err != nil {
			return err
		}
	}
	if b.extra != nil {
		return b.extra(tx)
	}
	return nil
}

// finish acknowledges a batch made durable in the WAL and queues it for
// bbolt, or fails it and re-stamps what gathered behind it.
func (l *Ledger) finish(p *pipeline, b *batch) {
	if l.opts.Metrics != nil && len(b.reqs) > 0 {
		l.opts.Metrics.Committed(len(b.reqs), b.took, b.err)
	}
	if b.err != nil {
		err := fmt.Errorf("ledger: commit %d entries: %w", len(b.reqs), b.err)
		l.log.Error("ledger commit failed", "err", err)
		for _, r := range b.reqs {
			r.complete(err)
		}
		for _, w := range b.waiters {
			w <- ckptResult{nil, err}
		}
		p.spec = l.w.clone()
		if q := p.pending; q != nil {
			p.pending = nil
			for _, r := range q.reqs {
				p.add(r)
			}
		}
		return
	}
	l.w = b.after
	l.committedStats(b)
	l.pubMu.Lock()
	l.size = l.w.tree.size
	l.pubMu.Unlock()
	for _, r := range b.reqs {
		r.complete(nil)
	}
	p.toApply = append(p.toApply, b)
	p.lag += len(b.reqs)
}

// applied publishes a group bbolt now holds: readers may see it, its
// checkpoints are stored. A failed apply leaves the entries durable in the
// WAL only; the ledger then refuses new entries until it is reopened (Open
// replays the WAL).
func (l *Ledger) applied(p *pipeline, res applyResult) {
	for _, b := range res.grp {
		p.lag -= len(b.reqs)
	}
	if res.err != nil {
		p.broken = fmt.Errorf("%w: %w", errApplyFailed, res.err)
		l.log.Error("ledger apply failed", "err", res.err)
		for _, b := range append(res.grp, p.toApply...) {
			for _, w := range b.waiters {
				w <- ckptResult{nil, p.broken}
			}
		}
		p.toApply, p.lag = nil, 0
		l.pubMu.Lock()
		l.applyErr = p.broken
		close(l.notify)
		l.notify = make(chan struct{})
		l.pubMu.Unlock()
		return
	}
	for _, b := range res.grp {
		if b.cp != nil {
			l.checkpointed(b.cp)
		}
		for _, w := range b.waiters {
			w <- ckptResult{b.cp, nil}
		}
	}
	l.pubMu.Lock()
	l.appliedSize = res.grp[len(res.grp)-1].after.tree.size
	close(l.notify)
	l.notify = make(chan struct{})
	l.pubMu.Unlock()
}

// publish makes l.w visible when it is durable in bbolt itself (anchors).
func (l *Ledger) publish() {
	l.pubMu.Lock()
	l.size = l.w.tree.size
	l.appliedSize = l.w.tree.size
	close(l.notify)
	l.notify = make(chan struct{})
	l.pubMu.Unlock()
}

// waitApplied blocks until bbolt holds the first n entries, so reads of
// acknowledged entries see them (at most one bbolt commit's wait).
func (l *Ledger) waitApplied(ctx context.Context, n uint64) error {
	for {
		l.pubMu.Lock()
		applied, ch, err := l.appliedSize, l.notify, l.applyErr
		l.pubMu.Unlock()
		switch {
		case applied >= n:
			return nil
		case err != nil:
			return err
		case ch == nil:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *Ledger) finalCheckpoint() {
	if l.w.tree.size > l.w.ckptSize {
		if _, err := l.checkpointNow(); err != nil {
			l.log.Error("ledger final checkpoint failed", "err", err)
		}
	}
}

// checkpointNow signs the durable tree (if it grew) in its own transaction.
// Only the writer calls it, with nothing in flight.
func (l *Ledger) checkpointNow() (*Checkpoint, error) {
	if l.w.tree.size == l.w.ckptSize {
		l.pubMu.Lock()
		cp := l.latest
		l.pubMu.Unlock()
		if cp != nil {
			return cp, nil
		}
	}
	cp, err := l.signCheckpoint(l.w.tree)
	if err != nil {
		return nil, err
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bCkpt).Put(seqKey(cp.Size), cp.Note)
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: store checkpoint: %w", err)
	}
	l.checkpointed(cp)
	return cp, nil
}

func (l *Ledger) checkpointed(cp *Checkpoint) {
	l.w.ckptSize = max(l.w.ckptSize, cp.Size)
	l.w.lastCkptTime = l.opts.Now()
	l.stats.lastCkpt.Store(l.w.lastCkptTime.UnixNano())
	l.pubMu.Lock()
	l.latest = cp
	l.pubMu.Unlock()
	if l.opts.Metrics != nil {
		l.opts.Metrics.Checkpointed(cp.Size)
	}
}

func (l *Ledger) signCheckpoint(t frontier) (*Checkpoint, error) {
	root := t.root()
	note, err := SignCheckpoint(l.opts.Origin, t.size, root, l.opts.KeyName, l.opts.Signer)
	if err != nil {
		return nil, err
	}
	return &Checkpoint{Origin: l.opts.Origin, Size: t.size, Root: root, Note: note}, nil
}

var empty = []byte{}

func putAll(b *bolt.Bucket, kvs []kv, fill float64) error {
	b.FillPercent = fill
	for _, p := range kvs {
		v := p.v
		if v == nil {
			v = empty
		}
		if err := b.Put(p.k, v); err != nil {
			return err
		}
	}
	return nil
}
