package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"
)

// The scrub re-verifies the whole stored log: every entry's encoding, hash,
// node and chain link, every stored Merkle node against its children, the
// newest retention anchor and the newest checkpoint's root. Open verifies
// only the tail (VerifyTail) and a proof only the nodes it uses, so without
// the scrub an entry or tree node changed in the bbolt file while the node
// runs, or long ago, would go unnoticed until someone asked for it.
//
// It reads in chunks of scrubChunk entries, one short read transaction each
// (bbolt readers never block the writer; short ones keep the file from
// growing behind them), aligned so that every level-4 Merkle node's leaves
// are in the chunk that completes it. The background pass (Options.
// ScrubInterval) is paced by a token bucket at Options.ScrubRate entries per
// second and saves its position in the meta bucket about every
// scrubSaveEvery, so a restart resumes the pass instead of starting over.
// A pass goes on past a break (counting them) so its totals mean something,
// and reports the first. Scrub runs a full pass on demand, unpaced.

const (
	scrubChunk     = 256 // entries per read transaction; a multiple of 16
	scrubSaveEvery = 30 * time.Second
	// Default of Options.ScrubRate.
	defaultScrubRate = 2000
)

var kScrubNext = []byte("scrub_next")

// ScrubResult is one scrub pass.
type ScrubResult struct {
	Node string
	// From..To are the seqs the pass covered (a resumed background pass
	// starts where the last one stopped).
	From, To         uint64
	EntriesChecked   uint64
	TreeNodesChecked uint64
	OK               bool
	// FirstBadSeq and Err name the first break (for a Merkle node: the last
	// entry under it, as ChainError does); Breaks counts them all.
	FirstBadSeq uint64
	Err         string
	Breaks      int
	Started     time.Time
	Finished    time.Time
}

// ScrubStatus is the scrub's progress and last result, for metrics.
type ScrubStatus struct {
	Background bool   // a background scrub is configured
	Position   uint64 // next seq the background pass checks
	// Totals since Open over every pass, background and on demand.
	EntriesChecked, TreeNodesChecked uint64
	Passes, FailedPasses             uint64
	Last                             *ScrubResult // newest finished pass; nil: none yet
}

type scrubState struct {
	mu                               sync.Mutex
	pos                              uint64
	entries, nodes, passes, failures uint64
	last                             *ScrubResult
	background                       bool
	cancel                           context.CancelFunc
	done                             chan struct{}
	now                              sync.Mutex // serialises Scrub calls
}

// ScrubStatus returns the scrub's counters and last result.
func (l *Ledger) ScrubStatus() ScrubStatus {
	s := &l.scrub
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ScrubStatus{Background: s.background, Position: s.pos, EntriesChecked: s.entries, TreeNodesChecked: s.nodes,
		Passes: s.passes, FailedPasses: s.failures}
	if s.last != nil {
		c := *s.last
		st.Last = &c
	}
	return st
}

// Scrub re-verifies the whole stored log now (see the top of this file) and
// returns the result; a break is a result with OK false, not an error. An
// error means the pass could not run (closed, cancelled, I/O).
func (l *Ledger) Scrub(ctx context.Context) (ScrubResult, error) {
	l.scrub.now.Lock()
	defer l.scrub.now.Unlock()
	return l.scrubPass(ctx, 1, nil, nil)
}

// scrubPass checks from (or the first retained seq) to the size when it
// starts; pace, if set, is waited on before each chunk with its entry
// count, and saved is told the next seq after each chunk.
func (l *Ledger) scrubPass(ctx context.Context, from uint64, pace func(context.Context, int) error, saved func(uint64)) (ScrubResult, error) {
	res := ScrubResult{Node: l.opts.NodeID, Started: l.opts.Now(), OK: true}
	size := l.Size()
	if err := l.waitApplied(ctx, size); err != nil {
		return res, fmt.Errorf("ledger: scrub: %w", err)
	}
	first := l.FirstSeq()
	pos := max(from, first)
	if pos > size {
		pos = first // nothing left of an old position: the whole log
	}
	res.From, res.To = pos, size
	var firstBreak *ChainError
	note := func(ce *ChainError) {
		res.Breaks++
		if firstBreak == nil {
			firstBreak = ce
			l.log.Error("ledger scrub: broken chain", "seq", ce.Seq, "reason", ce.Reason, "path", l.opts.Path)
		}
	}
	for pos <= size {
		end := min(size, (pos-1)/scrubChunk*scrubChunk+scrubChunk)
		if pace != nil {
			if err := pace(ctx, int(end-pos+1)); err != nil {
				return res, fmt.Errorf("ledger: scrub: %w", err)
			}
		} else if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ledger: scrub: %w", err)
		}
		if l.isClosed() {
			return res, ErrClosed
		}
		first := l.FirstSeq()
		if pos < first {
			// Retention cut what this pass had not reached: go on from the cut.
			pos, res.From = first, max(res.From, first)
			continue
		}
		var breaks []*ChainError
		var nodes uint64
		err := l.db.View(func(tx *bolt.Tx) error {
			var err error
			breaks, nodes, err = l.scrubChunk(tx, pos, end, first)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("ledger: scrub: %w", err)
		}
		if f := l.FirstSeq(); f > first {
			continue // a cut landed during the chunk; redo from it
		}
		for _, b := range breaks {
			note(b)
		}
		res.EntriesChecked += end - pos + 1
		res.TreeNodesChecked += nodes
		l.scrub.mu.Lock()
		l.scrub.entries += end - pos + 1
		l.scrub.nodes += nodes
		l.scrub.mu.Unlock()
		pos = end + 1
		if saved != nil {
			saved(pos)
		}
	}
	// The roots the signed notes commit to, over the tree just checked.
	err := l.db.View(func(tx *bolt.Tx) error {
		if _, err := loadAnchor(tx, l.opts.KeyName, l.pub, size); err != nil {
			return err
		}
		_, err := checkLatestCheckpoint(tx, l.opts.KeyName, l.pub, size)
		return err
	})
	var ce *ChainError
	switch {
	case errors.As(err, &ce):
		note(ce)
	case err != nil:
		return res, fmt.Errorf("ledger: scrub: %w", err)
	}
	res.Finished = l.opts.Now()
	if firstBreak != nil {
		res.OK, res.FirstBadSeq, res.Err = false, firstBreak.Seq, firstBreak.Error()
		l.log.Error("ledger scrub pass found a broken chain", "first_bad_seq", res.FirstBadSeq, "breaks", res.Breaks,
			"entries", res.EntriesChecked, "tree_nodes", res.TreeNodesChecked, "err", res.Err)
	} else {
		l.log.Info("ledger scrub pass ok", "from", res.From, "to", res.To, "entries", res.EntriesChecked,
			"tree_nodes", res.TreeNodesChecked, "took", res.Finished.Sub(res.Started))
	}
	l.scrub.mu.Lock()
	l.scrub.passes++
	if !res.OK {
		l.scrub.failures++
	}
	c := res
	l.scrub.last = &c
	l.scrub.mu.Unlock()
	return res, nil
}

func (l *Ledger) isClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// scrubChunk checks entries [pos, end] and the stored Merkle nodes whose
// span ends among them. first is the first retained seq.
func (l *Ledger) scrubChunk(tx *bolt.Tx, pos, end, first uint64) ([]*ChainError, uint64, error) {
	eb, mb := tx.Bucket(bEntries), tx.Bucket(bMerkle)
	var breaks []*ChainError
	var prev []byte
	switch {
	case pos == 1:
		prev = zeroHash
	case pos == first:
		a, err := l.LatestAnchor()
		if err != nil || a.FirstSeq != first {
			return nil, 0, fmt.Errorf("no retention anchor for first seq %d: %w", first, err)
		}
		prev = a.PrevHash
	default:
		v := eb.Get(seqKey(pos - 1))
		if len(v) < HashSize {
			breaks = append(breaks, &ChainError{Seq: pos - 1, Reason: "missing entry"})
		} else {
			prev = v[len(v)-HashSize:]
		}
	}
	leaves := make(map[uint64][]byte, end-pos+1) // leaf index -> hash
	c := eb.Cursor()
	want := pos
	for k, v := c.Seek(seqKey(pos)); k != nil && want <= end; k, v = c.Next() {
		if len(k) != 8 {
			breaks = append(breaks, &ChainError{Seq: want, Reason: "malformed key in entries"})
			break
		}
		got := binary.BigEndian.Uint64(k)
		for ; want < got && want <= end; want++ {
			breaks = append(breaks, &ChainError{Seq: want, Reason: "missing entry (sequence gap)"})
			prev = nil
		}
		if want > end {
			break
		}
		if why := checkStoredEntry(v, want, l.opts.NodeID, prev); why != "" {
			breaks = append(breaks, &ChainError{Seq: want, Reason: why})
		}
		if len(v) >= HashSize {
			prev = v[len(v)-HashSize:]
		}
		leaves[want-1] = leafHashOf(v)
		want++
	}
	for ; want <= end; want++ {
		breaks = append(breaks, &ChainError{Seq: want, Reason: "missing entry"})
	}
	var child func(level uint, idx uint64) []byte
	child = func(level uint, idx uint64) []byte {
		switch {
		case level == 0:
			if h := leaves[idx]; h != nil {
				return h
			}
			if v := eb.Get(seqKey(idx + 1)); v != nil {
				return leafHashOf(v)
			}
			return nil
		case level < minStoredLevel:
			l, r := child(level-1, 2*idx), child(level-1, 2*idx+1)
			if l == nil || r == nil {
				return nil
			}
			return NodeHash(l, r)
		}
		return mb.Get(merkleKey(level, idx))
	}
	var nodes uint64
	// A stored node (level, idx) spans leaves [idx<<level, (idx+1)<<level):
	// it is checked by the chunk holding its last leaf, seq (idx+1)<<level.
	for level := uint(minStoredLevel); level < 64 && uint64(1)<<level <= end; level++ {
		for idx := (pos - 1) >> level; (idx+1)<<level <= end; idx++ {
			last := (idx + 1) << level
			if last < pos {
				continue // completed by an earlier chunk
			}
			got := mb.Get(merkleKey(level, idx))
			lh, rh := child(level-1, 2*idx), child(level-1, 2*idx+1)
			nodes++
			if got == nil || lh == nil || rh == nil || !bytes.Equal(got, NodeHash(lh, rh)) {
				breaks = append(breaks, &ChainError{Seq: last,
					Reason: fmt.Sprintf("merkle node (level %d, index %d) does not match its children", level, idx)})
			}
		}
	}
	// Report in seq order: an entry's own break before the node above it.
	for i := 1; i < len(breaks); i++ {
		for j := i; j > 0 && breaks[j].Seq < breaks[j-1].Seq; j-- {
			breaks[j], breaks[j-1] = breaks[j-1], breaks[j]
		}
	}
	return breaks, nodes, nil
}

// checkStoredEntry checks one stored record as entry seq after prev (nil:
// the previous entry is missing, so the link is not checked). It returns
// why it is broken, or "".
func checkStoredEntry(v []byte, seq uint64, node string, prev []byte) string {
	e, err := decodeRecord(v)
	switch {
	case err != nil:
		return err.Error()
	case e.Seq != seq:
		return fmt.Sprintf("record carries seq %d", e.Seq)
	case e.Node != node:
		return fmt.Sprintf("record carries node %q", e.Node)
	case !bytes.Equal(ComputeHash(e), e.Hash):
		return "hash does not match contents"
	case prev != nil && !bytes.Equal(e.PrevHash, prev):
		return "prev_hash does not link to the previous entry"
	}
	return ""
}

// startScrub runs the background scrub when configured. It is owned by the
// Ledger and stopped by Close (stopScrub).
func (l *Ledger) startScrub() {
	if l.opts.ScrubInterval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &l.scrub
	var saved uint64
	_ = l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kScrubNext); len(v) == 8 {
			saved = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	s.mu.Lock()
	s.background, s.cancel, s.done, s.pos = true, cancel, make(chan struct{}), max(saved, 1)
	s.mu.Unlock()
	lim := rate.NewLimiter(rate.Limit(l.opts.ScrubRate), scrubChunk)
	go func() {
		defer close(s.done)
		lastSave := time.Now()
		save := func(next uint64) {
			s.mu.Lock()
			s.pos = next
			s.mu.Unlock()
			if time.Since(lastSave) < scrubSaveEvery {
				return
			}
			lastSave = time.Now()
			// Best effort: a lost position only means re-checking more.
			if err := l.update(func(tx *bolt.Tx) error {
				return tx.Bucket(bMeta).Put(kScrubNext, binary.BigEndian.AppendUint64(nil, next))
			}); err != nil && !errors.Is(err, ErrClosed) {
				l.log.Warn("ledger scrub: save position", "err", err)
			}
		}
		for {
			s.mu.Lock()
			from := s.pos
			s.mu.Unlock()
			_, err := l.scrubPass(ctx, from, lim.WaitN, save)
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				l.log.Error("ledger scrub pass failed", "err", err)
			}
			// The next pass is a whole one.
			save(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(l.opts.ScrubInterval):
			}
		}
	}()
}

// stopScrub ends the background scrub and waits for it.
func (l *Ledger) stopScrub() {
	s := &l.scrub
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
