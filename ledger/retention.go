package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention is the one exception to append-only: with Options.Retention
// set, whole segments of old entries are cut. A cut
//
//  1. appends a KindAnchor entry whose body is a signed anchor note naming
//     the first retained seq, its prev_hash and the tree size and root at
//     the cut, and stores the note in the "anchors" bucket (one
//     transaction, with a fresh checkpoint); then
//  2. deletes the entries before the first retained seq, their index rows,
//     and the Merkle nodes no proof over the retained entries can need, in
//     small transactions (resumed by the next pass after a crash).
//
// The Merkle tree is never rewritten: every retained entry keeps its leaf
// index, every old root and checkpoint stays valid, and proofs for retained
// entries still verify against old and new checkpoints. A retained proof
// only ever needs complete subtrees whose parent reaches into the retained
// part (siblings along a path, or pieces of a prefix tree of at least the
// cut size); those are kept, everything below them is deleted.

// ErrPruned is returned (together with ErrNotFound) for entries and proofs
// that retention cut.
var ErrPruned = errors.New("ledger: cut by retention")

// AnchorBodyType is the BodyType of KindAnchor entries; their Body is the
// signed anchor note.
const AnchorBodyType = "application/vnd.clearhub.ledger-anchor"

// anchorMagic is the first line of an anchor note; it keeps an anchor from
// ever parsing as a checkpoint (whose second line is a decimal size) and
// vice versa.
const anchorMagic = "clearhub-ledger-anchor/v1"

var bAnchors = []byte("anchors")

// Anchor is the signed record of a retention cut. Its note text is
//
//	clearhub-ledger-anchor/v1\n<origin>\n<first seq>\n<base64 prev hash>\n
//	<tree size>\n<base64 root>\n<time, ns since the epoch>\n
//
// signed like a checkpoint (C2SP signed-note, the node's key). The KindAnchor
// entry carrying it has seq TreeSize+1.
type Anchor struct {
	Origin   string
	FirstSeq uint64 // first retained entry
	PrevHash []byte // Hash of entry FirstSeq-1, i.e. PrevHash of entry FirstSeq
	TreeSize uint64 // tree size at the cut
	Root     []byte // Merkle root at TreeSize
	Time     int64  // when the cut was made (ns since the epoch)
	Note     []byte // the signed note
}

func anchorBody(a *Anchor) []byte {
	return fmt.Appendf(nil, "%s\n%s\n%d\n%s\n%d\n%s\n%d\n", anchorMagic, a.Origin, a.FirstSeq,
		base64.StdEncoding.EncodeToString(a.PrevHash), a.TreeSize, base64.StdEncoding.EncodeToString(a.Root), a.Time)
}

// SignAnchor fills a.Note with the signed anchor note.
func SignAnchor(a *Anchor, keyName string, key ed25519.PrivateKey) error {
	if a.Origin == "" || strings.ContainsAny(a.Origin, "\n") {
		return fmt.Errorf("ledger: bad anchor origin %q", a.Origin)
	}
	if len(a.PrevHash) != HashSize || len(a.Root) != HashSize || a.FirstSeq < 2 || a.TreeSize+1 < a.FirstSeq {
		return fmt.Errorf("%w: anchor fields", ErrInvalid)
	}
	note, err := signNote(anchorBody(a), keyName, key)
	if err != nil {
		return err
	}
	a.Note = note
	return nil
}

// ParseAnchor parses an anchor note without checking its signature.
func ParseAnchor(note []byte) (*Anchor, error) {
	body, _, err := splitNote(note)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 7 || lines[0] != anchorMagic {
		return nil, errors.New("ledger: not an anchor note")
	}
	num := func(s string) (uint64, bool) {
		v, err := strconv.ParseUint(s, 10, 64)
		return v, err == nil && strconv.FormatUint(v, 10) == s
	}
	hash := func(s string) ([]byte, bool) {
		h, err := base64.StdEncoding.DecodeString(s)
		return h, err == nil && len(h) == HashSize
	}
	a := &Anchor{Origin: lines[1], Note: bytes.Clone(note)}
	var ok [5]bool
	a.FirstSeq, ok[0] = num(lines[2])
	a.PrevHash, ok[1] = hash(lines[3])
	a.TreeSize, ok[2] = num(lines[4])
	a.Root, ok[3] = hash(lines[5])
	t, err := strconv.ParseInt(lines[6], 10, 64)
	a.Time, ok[4] = t, err == nil
	if ok != [5]bool{true, true, true, true, true} || a.FirstSeq < 2 || a.TreeSize+1 < a.FirstSeq {
		return nil, errors.New("ledger: malformed anchor note")
	}
	return a, nil
}

// VerifyAnchor checks the note's signature by (keyName, pub) and parses it.
func VerifyAnchor(note []byte, keyName string, pub ed25519.PublicKey) (*Anchor, error) {
	a, err := ParseAnchor(note)
	if err != nil {
		return nil, err
	}
	if err := verifyNoteSig(note, keyName, pub); err != nil {
		return nil, fmt.Errorf("anchor at seq %d: %w", a.FirstSeq, err)
	}
	return a, nil
}

type pruneReq struct {
	cut   uint64
	reply chan pruneResult
}

type pruneResult struct {
	a   *Anchor
	err error
}

// FirstSeq is the first retained entry: 1 unless retention cut the log.
func (l *Ledger) FirstSeq() uint64 {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	return l.first
}

// LatestAnchor returns the newest retention anchor, or ErrNotFound when
// nothing was ever cut.
func (l *Ledger) LatestAnchor() (*Anchor, error) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	if l.anchor == nil {
		return nil, ErrNotFound
	}
	return l.anchor, nil
}

func prunedErr(what string, seq uint64) error {
	return fmt.Errorf("%w: %w: %s %d", ErrNotFound, ErrPruned, what, seq)
}

// Prune cuts every whole segment (Options.SegmentSize entries, aligned to
// seq 1) at the start of the log whose newest entry is older than before,
// stopping at the first segment that is not, and returns how many entries it
// cut. It is what the background pass of Options.Retention calls; calling it
// directly is for operators and tests. Cutting is durable once Prune has
// appended the anchor; the deletions after it resume on the next call if
// interrupted.
func (l *Ledger) Prune(ctx context.Context, before time.Time) (uint64, error) {
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	first := l.FirstSeq()
	cut, err := l.findCut(ctx, first, before)
	if err != nil {
		return 0, err
	}
	if cut > first {
		pr := &pruneReq{cut: cut, reply: make(chan pruneResult, 1)}
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return 0, ErrClosed
		}
		select {
		case l.pruneReq <- pr:
			l.mu.RUnlock()
		case <-ctx.Done():
			l.mu.RUnlock()
			return 0, ctx.Err()
		}
		// The writer always answers a request it took.
		res := <-pr.reply
		if res.err != nil {
			return 0, res.err
		}
		l.log.Info("ledger retention cut", "first_seq", cut, "cut", cut-first, "anchor_seq", res.a.TreeSize+1)
	}
	if err := l.deletePruned(ctx); err != nil {
		return cut - first, err
	}
	return cut - first, nil
}

// recTime reads Time from a stored record without decoding it.
func recTime(v []byte) (int64, bool) {
	if len(v) < seqOffset+16 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v[seqOffset+8:])), true
}

// findCut returns the first seq to keep: the end of the run of complete,
// wholly older segments from first on.
func (l *Ledger) findCut(ctx context.Context, first uint64, before time.Time) (uint64, error) {
	seg, size, cutoff := l.opts.SegmentSize, l.Size(), before.UnixNano()
	if err := l.waitApplied(ctx, size); err != nil {
		return 0, err
	}
	cut := first
	for {
		end := ((cut-1)/seg + 1) * seg // last seq of the segment holding cut
		if end > size {
			return cut, nil
		}
		old := true
		err := l.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bEntries).Cursor()
			want := cut
			for k, v := c.Seek(seqKey(cut)); k != nil && want <= end; k, v = c.Next() {
				t, ok := recTime(v)
				if !ok || binary.BigEndian.Uint64(k) != want {
					return &ChainError{Seq: want, Reason: "missing or corrupt entry"}
				}
				if t >= cutoff {
					old = false
					return nil
				}
				want++
			}
			if want <= end {
				return &ChainError{Seq: want, Reason: "missing entry"}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("ledger: prune: %w", err)
		}
		if !old {
			return cut, nil
		}
		cut = end + 1
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// anchorNow appends the anchor for a cut at pr.cut. The writer calls it with
// nothing in flight, so l.w is the durable state.
func (l *Ledger) anchorNow(pr *pruneReq) pruneResult {
	size := l.w.tree.size
	a := &Anchor{Origin: l.opts.Origin, FirstSeq: pr.cut, TreeSize: size, Root: l.w.tree.root(), Time: l.opts.Now().UnixNano()}
	if pr.cut <= l.FirstSeq() || pr.cut > size+1 {
		return pruneResult{err: fmt.Errorf("%w: cut at %d (first %d, size %d)", ErrInvalid, pr.cut, l.FirstSeq(), size)}
	}
	if pr.cut == size+1 {
		a.PrevHash = l.w.lastHash
	} else if err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bEntries).Get(seqKey(pr.cut - 1))
		if len(v) < HashSize {
			return &ChainError{Seq: pr.cut - 1, Reason: "missing entry"}
		}
		a.PrevHash = bytes.Clone(v[len(v)-HashSize:])
		return nil
	}); err != nil {
		return pruneResult{err: fmt.Errorf("ledger: anchor: %w", err)}
	}
	if err := SignAnchor(a, l.opts.KeyName, l.opts.Signer); err != nil {
		return pruneResult{err: err}
	}
	e := &Entry{Kind: KindAnchor, Time: a.Time, BodyType: AnchorBodyType, Body: a.Note, BodyKept: true}
	if err := prepare(e); err != nil {
		return pruneResult{err: err}
	}
	r := l.newReq(e, nil)
	spec := l.w.clone()
	b := &batch{reqs: []*appendReq{r}}
	b.nodes = stamp(r, &spec, nil)
	cp, err := l.signCheckpoint(spec.tree)
	if err != nil {
		return pruneResult{err: err}
	}
	b.cp, spec.ckptSize = cp, cp.Size
	b.after = spec
	b.rows = buildRows(b.reqs, l.opts.SegmentSize)
	b.extra = func(tx *bolt.Tx) error {
		ab, err := tx.CreateBucketIfNotExists(bAnchors)
		if err != nil {
			return err
		}
		return ab.Put(seqKey(a.FirstSeq), a.Note)
	}
	start := time.Now()
	err = l.db.Update(b.write)
	if l.opts.Metrics != nil {
		l.opts.Metrics.Committed(1, time.Since(start), err)
	}
	if err != nil {
		return pruneResult{err: fmt.Errorf("ledger: commit anchor: %w", err)}
	}
	l.w = b.after
	l.checkpointed(cp)
	l.pubMu.Lock()
	l.first, l.anchor = a.FirstSeq, a
	l.pubMu.Unlock()
	l.publish()
	return pruneResult{a: a}
}

// pruneChunk bounds the work of one deletion transaction so appends are
// never held up for long.
const pruneChunk = 4096

// deletePruned removes whatever lies below FirstSeq: entries and their index
// rows, then Merkle nodes no retained proof needs. Idempotent.
func (l *Ledger) deletePruned(ctx context.Context) error {
	first := l.FirstSeq()
	if first <= 1 {
		return nil
	}
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := l.update(func(tx *bolt.Tx) error {
			var err error
			done, err = deleteEntries(tx, first, pruneChunk)
			return err
		})
		if err != nil {
			return fmt.Errorf("ledger: prune entries: %w", err)
		}
	}
	// Leaves [0, p) are gone; a node is needed only if its parent reaches
	// past p (see the comment at the top of this file).
	p := first - 1
	for level := uint(1); level < 64 && uint64(1)<<(level+1) <= p; level++ {
		for done := false; !done; {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := l.update(func(tx *bolt.Tx) error {
				c := tx.Bucket(bMerkle).Cursor()
				n := 0
				for k, _ := c.Seek(merkleKey(level, 0)); ; k, _ = c.Seek(merkleKey(level, 0)) {
					if k == nil || len(k) != 9 || uint(k[0]) != level {
						done = true
						return nil
					}
					idx := binary.BigEndian.Uint64(k[1:])
					if ((idx>>1)+1)<<(level+1) > p {
						done = true
						return nil
					}
					if n == pruneChunk {
						return nil
					}
					if err := c.Delete(); err != nil {
						return err
					}
					n++
				}
			})
			if err != nil {
				return fmt.Errorf("ledger: prune merkle nodes: %w", err)
			}
		}
	}
	return nil
}

// update runs fn in a write transaction unless the ledger is closed.
func (l *Ledger) update(fn func(*bolt.Tx) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return l.db.Update(fn)
}

// deleteEntries deletes up to max entries below first, with their index
// rows, starting from the oldest. done reports nothing is left.
func deleteEntries(tx *bolt.Tx, first uint64, max int) (done bool, err error) {
	eb := tx.Bucket(bEntries)
	var seqs []uint64
	var ents []*Entry
	c := eb.Cursor()
	for k, v := c.First(); k != nil && len(seqs) < max; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		if seq >= first {
			break
		}
		e, err := decodeRecord(v)
		if err != nil {
			return false, &ChainError{Seq: seq, Reason: err.Error()}
		}
		seqs, ents = append(seqs, seq), append(ents, e)
	}
	if len(seqs) == 0 {
		return true, nil
	}
	// Index rows are found from the entry that starts them; rows written
	// under a different SegmentSize may reach past the cut, and keep their
	// retained part.
	for _, e := range ents {
		if err := dropTimeRow(tx, e, first); err != nil {
			return false, err
		}
		nets := [2]string{e.SrcNet, e.DstNet}
		if nets[1] == nets[0] {
			nets[1] = ""
		}
		users := [2]string{NormalizeUser(e.From), NormalizeUser(e.To)}
		if users[1] == users[0] {
			users[1] = ""
		}
		for i, set := range [2][2]string{nets, users} {
			legacy, epochs := [2][]byte{bIdxNet, bIdxUser}[i], [2][]byte{bIdxNetE, bIdxUserE}[i]
			for _, s := range set {
				if s == "" {
					continue
				}
				if err := dropSeqRow(tx.Bucket(legacy), strKey(s, e.Seq), e.Seq, first, func(seq uint64) []byte { return strKey(s, seq) }); err != nil {
					return false, err
				}
				if err := dropSeqRow(tx.Bucket(epochs), epochKey(s, e.Seq), e.Seq, first, func(seq uint64) []byte { return epochKey(s, seq) }); err != nil {
					return false, err
				}
			}
		}
	}
	for _, s := range seqs {
		if err := eb.Delete(seqKey(s)); err != nil {
			return false, err
		}
	}
	return len(seqs) < max, nil
}

// dropSeqRow deletes the row at k (first seq seq), putting back under
// keyOf(its first retained seq) whatever part of it is at or after first.
func dropSeqRow(b *bolt.Bucket, k []byte, seq, first uint64, keyOf func(uint64) []byte) error {
	v := b.Get(k)
	if v == nil {
		return nil
	}
	keep, err := appendRowSeqs(nil, seq, v, first, ^uint64(0))
	if err != nil {
		return err
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	if len(keep) == 0 {
		return nil
	}
	var deltas []byte
	for i := 1; i < len(keep); i++ {
		deltas = binary.AppendUvarint(deltas, keep[i]-keep[i-1])
	}
	return b.Put(keyOf(keep[0]), append(empty, deltas...))
}

func dropTimeRow(tx *bolt.Tx, e *Entry, first uint64) error {
	b := tx.Bucket(bIdxTime)
	k := timeKey(e.Time, e.Seq)
	v := b.Get(k)
	if v == nil {
		return nil
	}
	last := e.Seq
	if len(v) == 24 {
		last = binary.BigEndian.Uint64(v)
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	// Re-index the retained tail of the row one entry per key.
	eb := tx.Bucket(bEntries)
	for s := max(first, e.Seq+1); s <= last; s++ {
		t, ok := recTime(eb.Get(seqKey(s)))
		if !ok {
			continue
		}
		if err := b.Put(timeKey(t, s), empty); err != nil {
			return err
		}
	}
	return nil
}

// loadAnchor reads and checks the newest anchor: signature, that the tree
// of its size has its root, and that the entry after it carries it.
func loadAnchor(tx *bolt.Tx, keyName string, pub ed25519.PublicKey, size uint64) (*Anchor, error) {
	ab := tx.Bucket(bAnchors)
	if ab == nil {
		return nil, nil
	}
	k, v := ab.Cursor().Last()
	if k == nil {
		return nil, nil
	}
	a, err := VerifyAnchor(v, keyName, pub)
	switch {
	case err != nil:
		return nil, &ChainError{Seq: binary.BigEndian.Uint64(k), Reason: "retention anchor: " + err.Error()}
	case a.FirstSeq != binary.BigEndian.Uint64(k):
		return nil, &ChainError{Seq: binary.BigEndian.Uint64(k), Reason: "retention anchor stored under the wrong seq"}
	case a.TreeSize+1 > size:
		return nil, &ChainError{Seq: a.TreeSize + 1, Reason: "missing retention anchor entry"}
	}
	if root, err := rangeHash(storedSubtree(tx), 0, a.TreeSize); err != nil || !bytes.Equal(root, a.Root) {
		return nil, &ChainError{Seq: a.TreeSize, Reason: "merkle root disagrees with the retention anchor"}
	}
	if e, err := decodeRecord(tx.Bucket(bEntries).Get(seqKey(a.TreeSize + 1))); err != nil || e.Kind != KindAnchor || !bytes.Equal(e.Body, a.Note) {
		return nil, &ChainError{Seq: a.TreeSize + 1, Reason: "retention anchor entry does not carry the anchor"}
	}
	return a, nil
}

// startRetention runs the background retention pass when configured. It is
// owned by the Ledger and stopped by Close.
func (l *Ledger) startRetention() {
	ctx, cancel := context.WithCancel(context.Background())
	l.stopBg = cancel
	if l.opts.Retention <= 0 {
		close(l.bgDone)
		return
	}
	go func() {
		defer close(l.bgDone)
		t := time.NewTicker(l.opts.PruneInterval)
		defer t.Stop()
		for {
			n, err := l.Prune(ctx, l.opts.Now().Add(-l.opts.Retention))
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				l.log.Error("ledger retention pass failed", "err", err)
			case n > 0:
				l.log.Info("ledger retention pass", "cut", n)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}
