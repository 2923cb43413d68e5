package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The write path is a two-stage pipeline with one owner per stage:
//
//   - Append (each caller's goroutine) validates the entry, builds its
//     canonical encoding with placeholders for seq and prev_hash, and
//     normalises the users for the index.
//   - run (the writer goroutine) owns the chain: it stamps seq and prev_hash
//     into each record as it arrives, hashes it, pushes the leaf onto the
//     Merkle frontier and groups index rows. This is the only serial CPU
//     work per entry (two SHA-256 over a few hundred bytes).
//   - committer (its own goroutine) runs the bbolt transaction of one
//     sealed batch: puts, write, fsync.
//
// While batch N is being committed, batch N+1 gathers and is hashed against
// the state N will leave (the chain only needs N's hashes, not N's
// durability). Nobody is acknowledged before their own batch committed. If
// N fails, the writer rolls its state back to the last durable batch and
// re-stamps N+1 from there, so a failed commit never leaves a gap or a
// dangling prev_hash.

type appendReq struct {
	e *Entry
	// rec is Canonical(e) || Hash: the entries bucket value and the Merkle
	// leaf data. Seq, PrevHash and Hash are placeholders until stamped.
	rec   []byte
	users [2]string // normalised From and To for the user index ("" = none)
	done  chan error
}

type ckptResult struct {
	cp  *Checkpoint
	err error
}

// seqOffset is where Seq sits in the canonical encoding: after str(magic).
const seqOffset = 4 + len(canonMagic)

func (l *Ledger) newReq(e *Entry) *appendReq {
	e.Node = l.opts.NodeID
	if e.Time == 0 {
		e.Time = l.opts.Now().UnixNano()
	}
	e.PrevHash = zeroHash // placeholder of the right length
	rec := appendCanonical(make([]byte, 0, canonSize(e)+HashSize), e)
	rec = append(rec, zeroHash...)
	r := &appendReq{e: e, rec: rec, done: make(chan error, 1)}
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

// batch is one bbolt transaction's worth of entries.
type batch struct {
	reqs    []*appendReq
	nodes   []mnode
	after   writerState // chain state once the batch is in
	cp      *Checkpoint // signed in the same transaction, or nil
	waiters []chan ckptResult
	extra   func(tx *bolt.Tx) error // more writes in the same transaction
	onDone  func(err error)         // after commit, in the writer goroutine

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
	inflight *batch      // with the committer
	waiters  []chan ckptResult
	ckptDue  bool
	// Group-commit linger: after a commit of n entries, the n writers just
	// acknowledged usually append again within microseconds. Committing what
	// is pending at once would split the writers into two alternating
	// half-size batches; since a commit costs two fsyncs almost regardless
	// of its size, waiting briefly for them doubles throughput. target is
	// how many entries to wait for, lingerUntil the latest start.
	target      int
	lingerUntil time.Time
}

// maxLinger bounds the group-commit wait (see pipeline.target).
const maxLinger = time.Millisecond

func (p *pipeline) add(r *appendReq) {
	if p.pending == nil {
		p.pending = &batch{}
	}
	p.pending.reqs = append(p.pending.reqs, r)
	p.pending.nodes = stamp(r, &p.spec, p.pending.nodes)
}

// run is the single writer. See the comment at the top of this file.
func (l *Ledger) run() {
	defer close(l.done)
	commitCh, resultCh := make(chan *batch), make(chan *batch)
	committerDone := make(chan struct{})
	go l.committer(commitCh, resultCh, committerDone)
	defer func() {
		close(commitCh)
		<-committerDone
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
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for {
		var lingerC <-chan time.Time
		if p.inflight == nil && p.pending != nil {
			if len(p.pending.reqs) < p.target && !closing && pruning == nil && len(p.waiters) == 0 {
				if d := time.Until(p.lingerUntil); d > 0 {
					if linger == nil {
						linger = time.NewTimer(d)
					} else {
						linger.Reset(d)
					}
					lingerC = linger.C
				}
			}
			if lingerC == nil {
				b := p.pending
				p.pending, p.target = nil, 0
				l.seal(p, b)
				p.inflight = b
				commitCh <- b
			}
		}
		if p.inflight == nil && p.pending == nil {
			// Idle: everything stamped is durable.
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
				pruning.reply <- l.anchorNow(pruning)
				pruning = nil
				p.spec = l.w.clone()
			}
			if closing {
				l.finalCheckpoint()
				return
			}
		}
		reqCh := l.reqs
		if closing || pruning != nil || (p.pending != nil && len(p.pending.reqs) >= l.opts.MaxBatch) {
			reqCh = nil
		}
		var resCh chan *batch
		if p.inflight != nil {
			resCh = resultCh
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
			if n := len(b.reqs); n > 1 {
				pending := 0
				if p.pending != nil {
					pending = len(p.pending.reqs)
				}
				p.target = min(l.opts.MaxBatch, n+pending)
				p.lingerUntil = time.Now().Add(min(b.took/2, maxLinger))
			}
		case <-lingerC:
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
	b.after = st.clone()
	b.rows = buildRows(b.reqs, l.opts.SegmentSize)
	b.extra = l.commitHook
}

// committer runs one batch's transaction at a time.
func (l *Ledger) committer(in <-chan *batch, out chan<- *batch, done chan<- struct{}) {
	defer close(done)
	for b := range in {
		if b.err == nil {
			start := time.Now()
			b.err = l.db.Update(b.write)
			b.took = time.Since(start)
		}
		out <- b
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

// finish acknowledges a committed batch, or fails it and re-stamps what
// gathered behind it.
func (l *Ledger) finish(p *pipeline, b *batch) {
	if l.opts.Metrics != nil && len(b.reqs) > 0 {
		l.opts.Metrics.Committed(len(b.reqs), b.took, b.err)
	}
	if b.onDone != nil {
		b.onDone(b.err)
	}
	if b.err != nil {
		err := fmt.Errorf("ledger: commit %d entries: %w", len(b.reqs), b.err)
		l.log.Error("ledger commit failed", "err", err)
		for _, r := range b.reqs {
			r.done <- err
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
	if b.cp != nil {
		l.checkpointed(b.cp)
	}
	l.publish()
	for _, r := range b.reqs {
		r.done <- nil
	}
	for _, w := range b.waiters {
		w <- ckptResult{b.cp, nil}
	}
}

func (l *Ledger) publish() {
	l.pubMu.Lock()
	l.size = l.w.tree.size
	close(l.notify)
	l.notify = make(chan struct{})
	l.pubMu.Unlock()
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
	l.w.ckptSize = cp.Size
	l.w.lastCkptTime = l.opts.Now()
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
