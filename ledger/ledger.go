package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sentinel errors.
var (
	ErrClosed      = errors.New("ledger: closed")
	ErrInvalid     = errors.New("ledger: invalid argument")
	ErrNotFound    = errors.New("ledger: not found")
	ErrBrokenChain = errors.New("ledger: broken chain")
)

// ChainError names the first entry at which a stored chain or Merkle tree
// fails to verify. It wraps ErrBrokenChain.
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger: broken chain at seq %d: %s", e.Seq, e.Reason)
}

func (e *ChainError) Unwrap() error { return ErrBrokenChain }

// Options configure a Ledger. Zero values take the defaults noted.
type Options struct {
	Path   string             // bbolt file; required
	NodeID string             // required; stamped into every entry
	Signer ed25519.PrivateKey // checkpoint signing key; required
	// Origin is the checkpoint origin line; default "clearhub/<NodeID>".
	Origin string
	// KeyName is the signed-note key name; default Origin.
	KeyName string
	// CheckpointEvery signs a checkpoint once this many entries have landed
	// since the last one (default 10000; negative disables).
	CheckpointEvery int
	// CheckpointInterval signs a checkpoint this often when the tree grew
	// (default 10s; negative disables). A checkpoint is also signed on Close.
	CheckpointInterval time.Duration
	// MaxBatch caps the entries written in one bbolt transaction (default 1024).
	MaxBatch int
	// VerifyTail is how many trailing entries Open re-verifies (default 4096;
	// negative means all).
	VerifyTail int
	// AllowBrokenChain opens a ledger whose tail fails verification (the
	// failure is logged); new entries chain on from the stored last hash.
	AllowBrokenChain bool
	Logger           *slog.Logger     // default discards
	Now              func() time.Time // default time.Now
	Metrics          Metrics          // optional
}

// Metrics receives the ledger's measurements; implement it with prometheus
// counters and histograms in the operator plane. Calls come from the writer
// goroutine and must not block.
type Metrics interface {
	// Committed reports one bbolt transaction of n entries that took d
	// (including fsync); err is non-nil when it failed.
	Committed(n int, d time.Duration, err error)
	// Checkpointed reports a newly signed checkpoint.
	Checkpointed(size uint64)
}

func (o *Options) validate() error {
	var errs []error
	if o.Path == "" {
		errs = append(errs, errors.New("Path is required"))
	}
	if o.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if len(o.Signer) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("Signer must be an Ed25519 private key, got %d bytes", len(o.Signer)))
	}
	if o.Origin == "" {
		o.Origin = "clearhub/" + o.NodeID
	}
	if o.KeyName == "" {
		o.KeyName = o.Origin
	}
	if err := checkKeyName(o.KeyName); err != nil {
		errs = append(errs, err)
	}
	if bytes.ContainsAny([]byte(o.Origin), "\n") {
		errs = append(errs, errors.New("Origin must be one line"))
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 10000
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = 10 * time.Second
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 1024
	}
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("MaxBatch %d must be positive", o.MaxBatch))
	}
	if o.VerifyTail == 0 {
		o.VerifyTail = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: options: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

var (
	bMeta    = []byte("meta")
	bEntries = []byte("entries")
	bMerkle  = []byte("merkle")
	bCkpt    = []byte("checkpoints")
	bIdxTime = []byte("idx_time")
	bIdxNet  = []byte("idx_net")
	bIdxUser = []byte("idx_user")
	allBkts  = [][]byte{bMeta, bEntries, bMerkle, bCkpt, bIdxTime, bIdxNet, bIdxUser}

	kNode    = []byte("node")
	kVersion = []byte("version")
)

const formatVersion = "1"

// Ledger is one node's append-only audit log. All methods are safe for
// concurrent use.
type Ledger struct {
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	pub  ed25519.PublicKey

	// mu guards closed; Append and Checkpoint hold it shared while handing
	// work to the writer so Close can close reqs safely.
	mu      sync.RWMutex
	closed  bool
	reqs    chan *appendReq
	ckptReq chan chan ckptResult
	done    chan struct{} // closed when the writer exits

	// w is owned by the writer goroutine.
	w writerState

	// pubMu guards the state published after each commit.
	pubMu  sync.Mutex
	size   uint64
	latest *Checkpoint
	notify chan struct{} // closed and replaced after each commit
}

type writerState struct {
	lastHash     []byte
	tree         frontier
	ckptSize     uint64
	lastCkptTime time.Time
}

type appendReq struct {
	e    *Entry
	done chan error // buffered 1
}

type ckptResult struct {
	cp  *Checkpoint
	err error
}

// Open opens (creating if needed) the ledger at o.Path, verifies the tail of
// its chain and Merkle state, and starts the writer.
func Open(ctx context.Context, o Options) (*Ledger, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	// NoFreelistSync: an append-only file has next to no free pages, so
	// skipping the freelist write saves a page per commit; bbolt rebuilds it
	// on open.
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", o.Path, err)
	}
	l := &Ledger{
		opts:    o,
		db:      db,
		log:     o.Logger,
		pub:     o.Signer.Public().(ed25519.PublicKey),
		reqs:    make(chan *appendReq, o.MaxBatch),
		ckptReq: make(chan chan ckptResult),
		done:    make(chan struct{}),
		notify:  make(chan struct{}),
	}
	if err := l.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go l.run()
	return l, nil
}

func (l *Ledger) load(ctx context.Context) error {
	err := l.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBkts {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kVersion); v == nil {
			if err := meta.Put(kVersion, []byte(formatVersion)); err != nil {
				return err
			}
		} else if string(v) != formatVersion {
			return fmt.Errorf("ledger: %s has format version %q, want %q", l.opts.Path, v, formatVersion)
		}
		if v := meta.Get(kNode); v == nil {
			return meta.Put(kNode, []byte(l.opts.NodeID))
		} else if string(v) != l.opts.NodeID {
			return fmt.Errorf("%w: %s belongs to node %q, not %q", ErrInvalid, l.opts.Path, v, l.opts.NodeID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: init %s: %w", l.opts.Path, err)
	}
	var size uint64
	var verr error
	err = l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bEntries).Cursor()
		if k, _ := c.Last(); k != nil {
			size = binary.BigEndian.Uint64(k)
		}
		l.w.lastHash = zeroHash
		if size > 0 {
			e, err := decodeRecord(tx.Bucket(bEntries).Get(seqKey(size)))
			if err != nil {
				verr = &ChainError{Seq: size, Reason: err.Error()}
				return nil
			}
			l.w.lastHash = e.Hash
		}
		from := uint64(1)
		if l.opts.VerifyTail >= 0 && size > uint64(l.opts.VerifyTail) {
			from = size - uint64(l.opts.VerifyTail) + 1
		}
		verr = verifyStored(ctx, tx, l.opts.NodeID, from, size)
		tr, err := frontierOf(storedSubtree(tx), size)
		if err != nil {
			if verr == nil {
				verr = &ChainError{Seq: size, Reason: "merkle frontier: " + err.Error()}
			}
			tr = frontier{}
		}
		l.w.tree = tr
		cp, cerr := checkLatestCheckpoint(tx, l.opts.KeyName, l.pub, size)
		if verr == nil {
			verr = cerr
		}
		if cp != nil {
			l.latest = cp
			l.w.ckptSize = cp.Size
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: load %s: %w", l.opts.Path, err)
	}
	l.size = size
	l.w.lastCkptTime = l.opts.Now()
	if verr != nil {
		if !l.opts.AllowBrokenChain || !errors.Is(verr, ErrBrokenChain) {
			return verr
		}
		l.log.Error("ledger chain broken; opening anyway as configured", "path", l.opts.Path, "err", verr)
	}
	l.log.Info("ledger open", "path", l.opts.Path, "node", l.opts.NodeID, "size", size)
	return nil
}

// checkLatestCheckpoint verifies the newest stored checkpoint's signature
// and that the stored tree of its size has its root.
func checkLatestCheckpoint(tx *bolt.Tx, keyName string, pub ed25519.PublicKey, size uint64) (*Checkpoint, error) {
	k, v := tx.Bucket(bCkpt).Cursor().Last()
	if k == nil {
		return nil, nil
	}
	cp, err := VerifyCheckpoint(v, keyName, pub)
	switch {
	case err != nil:
		return nil, &ChainError{Seq: binary.BigEndian.Uint64(k), Reason: "stored checkpoint: " + err.Error()}
	case cp.Size > size:
		return nil, &ChainError{Seq: size + 1, Reason: fmt.Sprintf("missing entry: a signed checkpoint covers %d entries, only %d stored", cp.Size, size)}
	}
	root, err := rangeHash(storedSubtree(tx), 0, cp.Size)
	if err != nil || !bytes.Equal(root, cp.Root) {
		return cp, &ChainError{Seq: cp.Size, Reason: "merkle root disagrees with signed checkpoint"}
	}
	return cp, nil
}

// Verify re-checks every stored entry from fromSeq on: record decoding, entry
// hash, chain links, node id, and every interior Merkle node above them. It
// returns a *ChainError naming the first bad sequence.
func (l *Ledger) Verify(ctx context.Context, fromSeq uint64) error {
	if fromSeq == 0 {
		fromSeq = 1
	}
	return l.db.View(func(tx *bolt.Tx) error {
		size := l.Size()
		if err := verifyStored(ctx, tx, l.opts.NodeID, fromSeq, size); err != nil {
			return err
		}
		_, err := checkLatestCheckpoint(tx, l.opts.KeyName, l.pub, size)
		return err
	})
}

// verifyStored checks entries [from, size] and the Merkle nodes over them.
func verifyStored(ctx context.Context, tx *bolt.Tx, node string, from, size uint64) error {
	if size == 0 || from > size {
		return nil
	}
	eb := tx.Bucket(bEntries)
	prev := zeroHash
	if from > 1 {
		v := eb.Get(seqKey(from - 1))
		if v == nil || len(v) < HashSize {
			return &ChainError{Seq: from - 1, Reason: "missing entry"}
		}
		prev = v[len(v)-HashSize:]
	}
	c := eb.Cursor()
	want := from
	leaves := make(map[uint64][]byte) // leaf index -> hash, for the node check
	for k, v := c.Seek(seqKey(from)); k != nil && want <= size; k, v = c.Next() {
		if want%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if len(k) != 8 || binary.BigEndian.Uint64(k) != want {
			return &ChainError{Seq: want, Reason: "missing entry (sequence gap)"}
		}
		e, err := decodeRecord(v)
		if err != nil {
			return &ChainError{Seq: want, Reason: err.Error()}
		}
		if e.Seq != want {
			return &ChainError{Seq: want, Reason: fmt.Sprintf("record carries seq %d", e.Seq)}
		}
		if e.Node != node {
			return &ChainError{Seq: want, Reason: fmt.Sprintf("record carries node %q", e.Node)}
		}
		if !bytes.Equal(ComputeHash(e), e.Hash) {
			return &ChainError{Seq: want, Reason: "hash does not match contents"}
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return &ChainError{Seq: want, Reason: "prev_hash does not link to the previous entry"}
		}
		prev = e.Hash
		leaves[want-1] = leafHashOf(v)
		want++
	}
	if want <= size {
		return &ChainError{Seq: want, Reason: "missing entry"}
	}
	// Interior nodes whose span lies inside [0, size) and touches the
	// verified leaves are recomputed from their children.
	mb := tx.Bucket(bMerkle)
	lo := from - 1
	level0 := func(i uint64) []byte { return leaves[i] }
	child := func(level uint, idx uint64) []byte {
		if level == 0 {
			if h := level0(idx); h != nil {
				return h
			}
			v := eb.Get(seqKey(idx + 1))
			if v == nil {
				return nil
			}
			return leafHashOf(v)
		}
		return mb.Get(merkleKey(level, idx))
	}
	for level := uint(1); size>>level > 0; level++ {
		for idx := lo >> level; idx < size>>level; idx++ {
			got := mb.Get(merkleKey(level, idx))
			l, r := child(level-1, 2*idx), child(level-1, 2*idx+1)
			if got == nil || l == nil || r == nil || !bytes.Equal(got, NodeHash(l, r)) {
				// Name the last leaf under the bad node: the latest entry that
				// the broken subtree covers.
				return &ChainError{Seq: (idx + 1) << level, Reason: fmt.Sprintf("merkle node (level %d, index %d) does not match its children", level, idx)}
			}
		}
	}
	return nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

func merkleKey(level uint, idx uint64) []byte {
	k := make([]byte, 9)
	k[0] = byte(level)
	binary.BigEndian.PutUint64(k[1:], idx)
	return k
}

// storedSubtree reads complete subtree hashes: level 0 from the entries
// themselves (leaf = SHA-256(0x00 || record)), higher levels from bMerkle.
func storedSubtree(tx *bolt.Tx) subtreeFunc {
	eb, mb := tx.Bucket(bEntries), tx.Bucket(bMerkle)
	return func(level uint, idx uint64) ([]byte, error) {
		if level == 0 {
			v := eb.Get(seqKey(idx + 1))
			if v == nil {
				return nil, fmt.Errorf("%w: entry %d", ErrNotFound, idx+1)
			}
			return leafHashOf(v), nil
		}
		v := mb.Get(merkleKey(level, idx))
		if len(v) != HashSize {
			return nil, fmt.Errorf("%w: merkle node (%d,%d)", ErrNotFound, level, idx)
		}
		return bytes.Clone(v), nil
	}
}

// Append hands e to the writer and returns once it is durable (fsync'd) with
// its sequence number. Append works on a copy of e; on success it writes the
// assigned Seq, Node, Time (when it was zero), BodySHA256 (when computed),
// PrevHash and Hash back into e. Callers must not touch e during the call.
//
// Seq, Node, PrevHash and Hash set by the caller are ignored. When BodyKept
// is false the body is digested (if BodySHA256 is empty) and not stored.
//
// An error means the entry must be treated as not logged. If ctx ends first
// Append returns ctx.Err() and the entry may or may not land.
func (l *Ledger) Append(ctx context.Context, e *Entry) (uint64, error) {
	if e == nil {
		return 0, fmt.Errorf("%w: nil entry", ErrInvalid)
	}
	c := *e
	if err := prepare(&c); err != nil {
		return 0, err
	}
	r := &appendReq{e: &c, done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case l.reqs <- r:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return 0, ctx.Err()
	}
	select {
	case err := <-r.done:
		if err != nil {
			return 0, err
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	e.Seq, e.Node, e.Time = c.Seq, c.Node, c.Time
	e.BodySHA256, e.Body = c.BodySHA256, c.Body
	e.PrevHash, e.Hash = c.PrevHash, c.Hash
	return c.Seq, nil
}

func prepare(e *Entry) error {
	if !e.Kind.Valid() {
		return fmt.Errorf("%w: kind %q", ErrInvalid, e.Kind)
	}
	if e.Time < 0 {
		return fmt.Errorf("%w: negative time", ErrInvalid)
	}
	if len(e.BodySHA256) != 0 && len(e.BodySHA256) != HashSize {
		return fmt.Errorf("%w: body_sha256 of %d bytes", ErrInvalid, len(e.BodySHA256))
	}
	if len(e.BodySHA256) == 0 && len(e.Body) > 0 {
		s := sha256.Sum256(e.Body)
		e.BodySHA256 = s[:]
	}
	if e.BodyKept && len(e.Body) > 0 {
		if s := sha256.Sum256(e.Body); !bytes.Equal(s[:], e.BodySHA256) {
			return fmt.Errorf("%w: body_sha256 does not match body", ErrInvalid)
		}
	}
	if !e.BodyKept {
		e.Body = nil
	}
	for _, n := range []int{len(e.Method), len(e.CallID), len(e.CSeq), len(e.From), len(e.To), len(e.RURI),
		len(e.Src), len(e.Transport), len(e.SrcNet), len(e.DstNet), len(e.Reason), len(e.BodyType), len(e.Body)} {
		if n > maxField {
			return fmt.Errorf("%w: field longer than %d bytes", ErrInvalid, maxField)
		}
	}
	if len(e.SrcNet) > 1024 || len(e.DstNet) > 1024 {
		return fmt.Errorf("%w: network id too long", ErrInvalid)
	}
	e.Seq, e.Node, e.PrevHash, e.Hash = 0, "", nil, nil
	return nil
}

// run is the single writer: it gathers whatever Appends are waiting (up to
// MaxBatch) into one bbolt transaction, one fsync, then wakes them.
func (l *Ledger) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]*appendReq, 0, l.opts.MaxBatch)
	for {
		select {
		case r, ok := <-l.reqs:
			if !ok {
				l.finalCheckpoint()
				return
			}
			batch = append(batch[:0], r)
			closed := false
		drain:
			for len(batch) < l.opts.MaxBatch {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						closed = true
						break drain
					}
					batch = append(batch, r)
				default:
					break drain
				}
			}
			l.commit(batch)
			clear(batch)
			if closed {
				l.finalCheckpoint()
				return
			}
		case <-tick:
			if l.w.tree.size > l.w.ckptSize {
				if _, err := l.checkpointNow(); err != nil {
					l.log.Error("ledger checkpoint failed", "err", err)
				}
			}
		case reply := <-l.ckptReq:
			cp, err := l.checkpointNow()
			reply <- ckptResult{cp, err}
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

// checkpointNow signs the current tree (if it grew) in its own transaction.
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

type kv struct{ k, v []byte }

// commit writes one batch. In-memory writer state changes only when the
// transaction committed, so a failed batch leaves the chain as it was.
func (l *Ledger) commit(batch []*appendReq) {
	start := time.Now()
	tree := l.w.tree.clone()
	prev := l.w.lastHash
	now := l.opts.Now().UnixNano()
	entries := make([]kv, 0, len(batch))
	var nodes []mnode
	var timeIdx, netIdx, userIdx []kv
	for _, r := range batch {
		e := r.e
		e.Seq = tree.size + 1
		e.Node = l.opts.NodeID
		if e.Time == 0 {
			e.Time = now
		}
		e.PrevHash = prev
		c := Canonical(e)
		h := sha256.Sum256(c)
		e.Hash = h[:]
		rec := append(c, e.Hash...)
		nodes = tree.push(leafHashOf(rec), nodes)
		prev = e.Hash
		sk := seqKey(e.Seq)
		entries = append(entries, kv{sk, rec})
		timeIdx = append(timeIdx, kv{timeKey(e.Time, e.Seq), nil})
		if e.SrcNet != "" {
			netIdx = append(netIdx, kv{strKey(e.SrcNet, e.Seq), nil})
		}
		if e.DstNet != "" && e.DstNet != e.SrcNet {
			netIdx = append(netIdx, kv{strKey(e.DstNet, e.Seq), nil})
		}
		fu, tu := NormalizeUser(e.From), NormalizeUser(e.To)
		if fu != "" {
			userIdx = append(userIdx, kv{strKey(fu, e.Seq), nil})
		}
		if tu != "" && tu != fu {
			userIdx = append(userIdx, kv{strKey(tu, e.Seq), nil})
		}
	}
	var cp *Checkpoint
	var err error
	if l.opts.CheckpointEvery > 0 && tree.size-l.w.ckptSize >= uint64(l.opts.CheckpointEvery) {
		cp, err = l.signCheckpoint(tree)
	}
	if err == nil {
		err = l.db.Update(func(tx *bolt.Tx) error {
			if err := putAll(tx.Bucket(bEntries), entries, 1.0); err != nil {
				return err
			}
			mb := tx.Bucket(bMerkle)
			mb.FillPercent = 0.9
			for _, n := range nodes {
				if err := mb.Put(merkleKey(n.level, n.index), n.hash); err != nil {
					return err
				}
			}
			if err := putAll(tx.Bucket(bIdxTime), timeIdx, 0.9); err != nil {
				return err
			}
			if err := putAll(tx.Bucket(bIdxNet), netIdx, 0.5); err != nil {
				return err
			}
			if err := putAll(tx.Bucket(bIdxUser), userIdx, 0.5); err != nil {
				return err
			}
			if cp != nil {
				return tx.Bucket(bCkpt).Put(seqKey(cp.Size), cp.Note)
			}
			return nil
		})
	}
	if l.opts.Metrics != nil {
		l.opts.Metrics.Committed(len(batch), time.Since(start), err)
	}
	if err != nil {
		err = fmt.Errorf("ledger: commit %d entries: %w", len(batch), err)
		l.log.Error("ledger commit failed", "err", err)
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	l.w.tree = tree
	l.w.lastHash = prev
	if cp != nil {
		l.checkpointed(cp)
	}
	l.pubMu.Lock()
	l.size = tree.size
	close(l.notify)
	l.notify = make(chan struct{})
	l.pubMu.Unlock()
	for _, r := range batch {
		r.done <- nil
	}
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

// strKey is uint16 len || s || seq, so one string's keys sort by seq and no
// string is a prefix-collision of another.
func strKey(s string, seq uint64) []byte {
	k := make([]byte, 0, 2+len(s)+8)
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	k = append(k, s...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// Size is the number of durable entries (the current tree size).
func (l *Ledger) Size() uint64 {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	return l.size
}

// PublicKey is the checkpoint verification key.
func (l *Ledger) PublicKey() ed25519.PublicKey { return l.pub }

// Origin is the checkpoint origin line; KeyName the signed-note key name.
func (l *Ledger) Origin() string  { return l.opts.Origin }
func (l *Ledger) KeyName() string { return l.opts.KeyName }
func (l *Ledger) NodeID() string  { return l.opts.NodeID }

// Close stops accepting entries, lets the writer commit what it was handed,
// signs a final checkpoint and closes the file.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
	l.pubMu.Lock()
	close(l.notify) // wake Tail followers; they see ErrClosed
	l.notify = nil
	l.pubMu.Unlock()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("ledger: close %s: %w", l.opts.Path, err)
	}
	return nil
}

// Checkpoint signs a checkpoint covering every durable entry (unless the
// latest one already does) and returns it.
func (l *Ledger) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	reply := make(chan ckptResult, 1)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case l.ckptReq <- reply:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.cp, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// LatestCheckpoint returns the newest signed checkpoint, or ErrNotFound.
func (l *Ledger) LatestCheckpoint() (*Checkpoint, error) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	if l.latest == nil {
		return nil, ErrNotFound
	}
	return l.latest, nil
}

// CheckpointAt returns the checkpoint signed at exactly tree size size.
func (l *Ledger) CheckpointAt(size uint64) (*Checkpoint, error) {
	var note []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		note = bytes.Clone(tx.Bucket(bCkpt).Get(seqKey(size)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if note == nil {
		return nil, fmt.Errorf("%w: checkpoint at size %d", ErrNotFound, size)
	}
	return ParseCheckpoint(note)
}

// Checkpoints calls fn for every stored checkpoint in size order.
func (l *Ledger) Checkpoints(fn func(*Checkpoint) error) error {
	var cps []*Checkpoint
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bCkpt).ForEach(func(_, v []byte) error {
			cp, err := ParseCheckpoint(v)
			if err != nil {
				return err
			}
			cps = append(cps, cp)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, cp := range cps {
		if err := fn(cp); err != nil {
			return err
		}
	}
	return nil
}

// InclusionProof returns the RFC 9162 inclusion proof of entry seq in the
// tree of treeSize entries (seq <= treeSize <= Size()).
func (l *Ledger) InclusionProof(seq, treeSize uint64) ([][]byte, error) {
	if seq == 0 || seq > treeSize || treeSize > l.Size() {
		return nil, fmt.Errorf("%w: inclusion of seq %d in tree %d (size %d)", ErrInvalid, seq, treeSize, l.Size())
	}
	var p [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = inclusionPath(storedSubtree(tx), seq-1, 0, treeSize)
		return err
	})
	return p, err
}

// ConsistencyProof returns the RFC 9162 consistency proof between tree sizes
// oldSize and newSize (0 < oldSize <= newSize <= Size()).
func (l *Ledger) ConsistencyProof(oldSize, newSize uint64) ([][]byte, error) {
	if oldSize == 0 || oldSize > newSize || newSize > l.Size() {
		return nil, fmt.Errorf("%w: consistency %d..%d (size %d)", ErrInvalid, oldSize, newSize, l.Size())
	}
	if oldSize == newSize {
		return nil, nil
	}
	var p [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = consistencyPath(storedSubtree(tx), oldSize, newSize)
		return err
	})
	return p, err
}

// RootAt computes the Merkle root of the first size entries.
func (l *Ledger) RootAt(size uint64) ([]byte, error) {
	if size > l.Size() {
		return nil, fmt.Errorf("%w: root at %d beyond size %d", ErrInvalid, size, l.Size())
	}
	var r []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = rangeHash(storedSubtree(tx), 0, size)
		return err
	})
	return r, err
}

// Get returns entry seq.
func (l *Ledger) Get(seq uint64) (*Entry, error) {
	var e *Entry
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bEntries).Get(seqKey(seq))
		if v == nil {
			return fmt.Errorf("%w: entry %d", ErrNotFound, seq)
		}
		var err error
		e, err = decodeRecord(v)
		if err != nil {
			return &ChainError{Seq: seq, Reason: err.Error()}
		}
		return nil
	})
	return e, err
}

// VerifyEntryInclusion checks that e (with its Hash) is entry e.Seq of the
// tree of treeSize entries with root.
func VerifyEntryInclusion(e *Entry, treeSize uint64, proof [][]byte, root []byte) error {
	if e.Seq == 0 {
		return fmt.Errorf("%w: entry without seq", ErrProof)
	}
	return VerifyInclusion(e.Seq-1, treeSize, LeafHash(e), proof, root)
}

func timeKey(t int64, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(t))
	return binary.BigEndian.AppendUint64(k, seq)
}
