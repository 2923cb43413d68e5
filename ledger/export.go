package ledger

import (
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Filter selects entries for Export. Zero fields do not filter. All set
// fields must match.
type Filter struct {
	Since   time.Time // Time >= Since
	Until   time.Time // Time < Until
	FromSeq uint64    // Seq >= FromSeq
	ToSeq   uint64    // Seq <= ToSeq
	// Network matches entries whose SrcNet or DstNet is this network.
	Network string
	// User matches entries whose From or To normalises (NormalizeUser) to
	// the normalised User.
	User string
	Kind Kind
}

// Match reports whether e passes f. It is the definition Export's indexes
// must agree with.
func (f Filter) Match(e *Entry) bool {
	if f.FromSeq != 0 && e.Seq < f.FromSeq {
		return false
	}
	if f.ToSeq != 0 && e.Seq > f.ToSeq {
		return false
	}
	if !f.Since.IsZero() && e.Time < f.Since.UnixNano() {
		return false
	}
	if !f.Until.IsZero() && e.Time >= f.Until.UnixNano() {
		return false
	}
	if f.Kind != "" && e.Kind != f.Kind {
		return false
	}
	if f.Network != "" && e.SrcNet != f.Network && e.DstNet != f.Network {
		return false
	}
	if f.User != "" {
		u := NormalizeUser(f.User)
		if NormalizeUser(e.From) != u && NormalizeUser(e.To) != u {
			return false
		}
	}
	return true
}

func (f Filter) empty() bool {
	return f.Since.IsZero() && f.Until.IsZero() && f.FromSeq <= 1 && f.ToSeq == 0 &&
		f.Network == "" && f.User == "" && f.Kind == ""
}

// exportChunk is how many entries one read transaction gathers before the
// callback runs outside it: long read transactions would stall the writer
// when bbolt needs to grow its mmap.
const exportChunk = 1024

// Export calls fn, in seq order, for every durable entry that matches f.
// Entries appended while Export runs are not included. It uses the user,
// network or time index when f has one of those fields, so a narrow filter
// does not read the whole log. Each call gets a fresh Entry that fn may keep.
// fn runs outside any bbolt transaction, so a slow consumer never holds up
// Append.
func (l *Ledger) Export(ctx context.Context, f Filter, fn func(*Entry) error) error {
	size := l.Size()
	if err := l.waitApplied(ctx, size); err != nil {
		return err
	}
	lo := max(f.FromSeq, l.FirstSeq())
	hi := size
	if f.ToSeq != 0 && f.ToSeq < hi {
		hi = f.ToSeq
	}
	if lo > hi {
		return nil
	}
	var nextSeqs func(tx *bolt.Tx, from uint64, buf []uint64) ([]uint64, error)
	switch {
	case f.User != "":
		u := NormalizeUser(f.User)
		if u == "" {
			return fmt.Errorf("%w: user %q does not normalise", ErrInvalid, f.User)
		}
		nextSeqs = indexScan(bIdxUser, bIdxUserE, u, hi)
	case f.Network != "":
		nextSeqs = indexScan(bIdxNet, bIdxNetE, f.Network, hi)
	case (!f.Since.IsZero() || !f.Until.IsZero()) && f.FromSeq == 0 && f.ToSeq == 0:
		seqs, err := l.timeScan(f, lo, hi)
		if err != nil {
			return err
		}
		nextSeqs = func(_ *bolt.Tx, from uint64, buf []uint64) ([]uint64, error) {
			i, _ := slices.BinarySearch(seqs, from)
			return append(buf, seqs[i:min(len(seqs), i+exportChunk)]...), nil
		}
	default:
		nextSeqs = func(_ *bolt.Tx, from uint64, buf []uint64) ([]uint64, error) {
			for s := from; s <= hi && len(buf) < exportChunk; s++ {
				buf = append(buf, s)
			}
			return buf, nil
		}
	}
	var seqs []uint64
	chunk := make([]*Entry, 0, exportChunk)
	for next := lo; next <= hi; {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk = chunk[:0]
		err := l.db.View(func(tx *bolt.Tx) error {
			var err error
			if seqs, err = nextSeqs(tx, next, seqs[:0]); err != nil {
				return err
			}
			eb := tx.Bucket(bEntries)
			for _, s := range seqs {
				v := eb.Get(seqKey(s))
				if v == nil {
					if s < l.FirstSeq() {
						continue // cut by retention while we ran
					}
					return &ChainError{Seq: s, Reason: "indexed entry missing"}
				}
				e, err := decodeRecord(v)
				if err != nil {
					return &ChainError{Seq: s, Reason: err.Error()}
				}
				if f.Match(e) {
					chunk = append(chunk, e)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ledger: export: %w", err)
		}
		if len(seqs) == 0 {
			return nil
		}
		for _, e := range chunk {
			if err := fn(e); err != nil {
				return err
			}
		}
		next = seqs[len(seqs)-1] + 1
	}
	return nil
}

// Tail calls fn for every entry from fromSeq on, in order, then follows new
// entries as they become durable and land in bbolt, until ctx ends, fn fails or the ledger
// closes (ErrClosed).
func (l *Ledger) Tail(ctx context.Context, fromSeq uint64, fn func(*Entry) error) error {
	next := max(fromSeq, 1)
	for {
		l.pubMu.Lock()
		// Follow bbolt, not the WAL: Export reads bbolt.
		ch, size := l.notify, l.appliedSize
		l.pubMu.Unlock()
		if ch == nil {
			return ErrClosed
		}
		if next <= size {
			err := l.Export(ctx, Filter{FromSeq: next, ToSeq: size}, fn)
			if err != nil {
				l.mu.RLock()
				closed := l.closed
				l.mu.RUnlock()
				if closed {
					return ErrClosed
				}
				return err
			}
			next = size + 1
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
