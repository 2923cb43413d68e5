package ledger

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// linger overrides backgroundLinger (tests).
	linger time.Duration

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
	// MaxBatch caps the entries of one group commit (default 1024).
	MaxBatch int
	// VerifyTail is how many trailing entries Open re-verifies (default 4096;
	// negative means all).
	VerifyTail int
	// AllowBrokenChain opens a ledger whose tail fails verification (the
	// failure is logged); new entries chain on from the stored last hash.
	AllowBrokenChain bool
	// Retention, when positive, cuts entries older than this in whole
	// segments (see Prune); 0 keeps everything forever.
	Retention time.Duration
	// SegmentSize is the retention unit in entries: a power of two, at least
	// 16 (default 65536). Changing it on an existing ledger is allowed.
	SegmentSize uint64
	// PruneInterval is how often the background retention pass runs when
	// Retention is set (default 1h).
	PruneInterval time.Duration
	// ScrubInterval, when positive, runs the background scrub (scrub.go):
	// a full re-verification of the stored chain and Merkle tree, started
	// again this long after each pass ends; 0 disables it (Scrub still runs
	// on demand).
	ScrubInterval time.Duration
	// ScrubRate bounds the background scrub in entries per second
	// (default 2000).
	ScrubRate int
	Logger    *slog.Logger     // default discards
	Now       func() time.Time // default time.Now
	Metrics   Metrics          // optional
}

// Metrics receives the ledger's measurements; implement it with prometheus
// counters and histograms in the operator plane. Calls come from the writer
// goroutine and must not block.
type Metrics interface {
	// Committed reports one group commit of n entries, i.e. the WAL write
	// and fdatasync that acknowledged them, which took d; err is non-nil
	// when it failed. (The bbolt transaction behind it is off the
	// acknowledgement path and not reported.)
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
	if bytes.ContainsFunc([]byte(o.Origin), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// One line, and no control character a signed note may not hold.
		errs = append(errs, errors.New("Origin must be one line without control characters"))
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
	if o.SegmentSize == 0 {
		o.SegmentSize = 1 << 16
	}
	if o.SegmentSize < 1<<minStoredLevel || o.SegmentSize&(o.SegmentSize-1) != 0 {
		// A power of two >= 16 puts every cut on a boundary that only
		// complete, stored Merkle subtrees (level >= minStoredLevel) cross.
		errs = append(errs, fmt.Errorf("SegmentSize %d must be a power of two >= %d", o.SegmentSize, 1<<minStoredLevel))
	}
	if o.Retention < 0 {
		errs = append(errs, fmt.Errorf("Retention %v must not be negative", o.Retention))
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Hour
	}
	if o.ScrubInterval < 0 {
		errs = append(errs, fmt.Errorf("ScrubInterval %v must not be negative", o.ScrubInterval))
	}
	if o.ScrubRate == 0 {
		o.ScrubRate = defaultScrubRate
	}
	if o.ScrubRate < 0 {
		errs = append(errs, fmt.Errorf("ScrubRate %d must be positive", o.ScrubRate))
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
	// The epoch-keyed indexes that replace idx_net and idx_user (index.go).
	bIdxNetE  = []byte("idx_net_e")
	bIdxUserE = []byte("idx_user_e")
	allBkts   = [][]byte{bMeta, bEntries, bMerkle, bCkpt, bIdxTime, bIdxNet, bIdxUser, bIdxNetE, bIdxUserE, bAnchors}

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
	mu       sync.RWMutex
	closed   bool
	reqs     chan *appendReq
	linger   time.Duration // backgroundLinger; tests change it
	ckptReq  chan chan ckptResult
	pruneReq chan *pruneReq
	// stopBg ends the background retention pass; bgDone closes when it has.
	stopBg context.CancelFunc
	bgDone chan struct{}
	// pruneMu serialises Prune calls (background pass and explicit).
	pruneMu sync.Mutex
	// commitHook, set by tests before any Append, runs before every
	// batch's WAL write; an error fails the batch.
	commitHook func() error
	done       chan struct{} // closed when the writer exits
	// wal is the write-ahead log (wal.go), written by the WAL stage.
	wal *wal
	// replayed counts the entries Open replayed from the WAL (for tests).
	replayed int
	// recovery, set only by RecoverWAL, makes Open replay past damaged WAL
	// frames as far as the chain goes, and receives the report.
	recovery *WALReport
	// scrub is the background and on-demand re-verification (scrub.go).
	scrub scrubState
	// stats are the counters behind Stats (metrics.go).
	stats ledgerStats
	// applyHook, set by tests, runs before every bbolt apply; an error
	// fails the apply.
	applyHook atomic.Pointer[func() error]

	// w is owned by the writer goroutine.
	w writerState

	// pubMu guards the state published after each commit.
	pubMu sync.Mutex
	// size counts the durable (acknowledged) entries; appliedSize those
	// bbolt holds, which readers wait for. applyErr is a failed apply.
	size        uint64
	appliedSize uint64
	applyErr    error
	latest      *Checkpoint
	first       uint64        // first retained seq (1 unless pruned)
	anchor      *Anchor       // newest retention anchor, or nil
	notify      chan struct{} // closed and replaced after each commit
}

// Open opens (creating if needed) the ledger at o.Path, verifies the tail of
// its chain and Merkle state, replays its write-ahead log, and starts the
// writer. A WAL frame that is damaged but was, or may have been,
// acknowledged fails Open with a *WALError and changes nothing (see
// InspectWAL and RecoverWAL).
func Open(ctx context.Context, o Options) (*Ledger, error) {
	return open(ctx, o, nil)
}

// open is Open; with rec set it recovers the WAL (RecoverWAL).
func open(ctx context.Context, o Options, rec *WALReport) (*Ledger, error) {
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
		linger:   cmp.Or(o.linger, backgroundLinger),
		opts:     o,
		db:       db,
		log:      o.Logger,
		pub:      o.Signer.Public().(ed25519.PublicKey),
		reqs:     make(chan *appendReq, o.MaxBatch),
		ckptReq:  make(chan chan ckptResult),
		pruneReq: make(chan *pruneReq),
		bgDone:   make(chan struct{}),
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
		recovery: rec,
	}
	if err := l.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := l.replayWAL(); err != nil {
		db.Close()
		return nil, err
	}
	l.size, l.appliedSize = l.w.tree.size, l.w.tree.size
	go l.run()
	l.startRetention()
	l.startScrub()
	return l, nil
}

func (l *Ledger) load(ctx context.Context) error {
	initFn := func(tx *bolt.Tx) error {
		for _, b := range allBkts {
			if !tx.Writable() {
				// Read-only (InspectWAL): the buckets reads need must exist.
				if tx.Bucket(b) == nil && (bytes.Equal(b, bMeta) || bytes.Equal(b, bEntries) || bytes.Equal(b, bMerkle) || bytes.Equal(b, bCkpt)) {
					return fmt.Errorf("%w: %s is not a ledger (no %q bucket)", ErrInvalid, l.opts.Path, b)
				}
				continue
			}
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(kVersion); v == nil {
			if tx.Writable() {
				if err := meta.Put(kVersion, []byte(formatVersion)); err != nil {
					return err
				}
			}
		} else if string(v) != formatVersion {
			return fmt.Errorf("ledger: %s has format version %q, want %q", l.opts.Path, v, formatVersion)
		}
		if v := meta.Get(kNode); v == nil {
			if tx.Writable() {
				return meta.Put(kNode, []byte(l.opts.NodeID))
			}
		} else if string(v) != l.opts.NodeID {
			return fmt.Errorf("%w: %s belongs to node %q, not %q", ErrInvalid, l.opts.Path, v, l.opts.NodeID)
		}
		return nil
	}
	// Write only when something is missing: a refused Open (a damaged
	// WAL) must leave the file as it found it.
	complete := true
	_ = l.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBkts {
			complete = complete && tx.Bucket(b) != nil
		}
		complete = complete && tx.Bucket(bMeta).Get(kVersion) != nil && tx.Bucket(bMeta).Get(kNode) != nil
		return nil
	})
	var err error
	if complete || l.db.IsReadOnly() {
		err = l.db.View(initFn)
	} else {
		err = l.db.Update(initFn)
	}
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
		a, aerr := loadAnchor(tx, l.opts.KeyName, l.pub, size)
		first, firstPrev := uint64(1), zeroHash
		if a != nil {
			l.anchor = a
			first, firstPrev = a.FirstSeq, a.PrevHash
		}
		l.first = first
		from := first
		if l.opts.VerifyTail >= 0 && size > uint64(l.opts.VerifyTail) {
			from = max(first, size-uint64(l.opts.VerifyTail)+1)
		}
		verr = aerr
		if verr == nil {
			verr = verifyStored(ctx, tx, l.opts.NodeID, from, size, first, firstPrev)
		}
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
// hash, chain links, node id, and every interior Merkle node above them; and
// the newest retention anchor, if any (the chain then starts at its
// FirstSeq). It returns a *ChainError naming the first bad sequence.
func (l *Ledger) Verify(ctx context.Context, fromSeq uint64) error {
	// Read the size first: the snapshot the View opens then holds at least
	// that many entries (size is published only after a commit).
	size := l.Size()
	if err := l.waitApplied(ctx, size); err != nil {
		return err
	}
	return l.db.View(func(tx *bolt.Tx) error {
		a, err := loadAnchor(tx, l.opts.KeyName, l.pub, size)
		if err != nil {
			return err
		}
		first, firstPrev := uint64(1), zeroHash
		if a != nil {
			first, firstPrev = a.FirstSeq, a.PrevHash
		}
		if err := verifyStored(ctx, tx, l.opts.NodeID, max(fromSeq, first), size, first, firstPrev); err != nil {
			return err
		}
		_, err = checkLatestCheckpoint(tx, l.opts.KeyName, l.pub, size)
		return err
	})
}

// verifyStored checks entries [from, size] and the Merkle nodes over them.
// The chain starts at first (1, or a retention anchor's FirstSeq) with
// prev_hash firstPrev; from >= first.
func verifyStored(ctx context.Context, tx *bolt.Tx, node string, from, size, first uint64, firstPrev []byte) error {
	if size == 0 || from > size {
		return nil
	}
	eb := tx.Bucket(bEntries)
	prev := firstPrev
	if from > first {
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
	var child func(level uint, idx uint64) []byte
	child = func(level uint, idx uint64) []byte {
		switch {
		case level == 0:
			if h := leaves[idx]; h != nil {
				return h
			}
			v := eb.Get(seqKey(idx + 1))
			if v == nil {
				return nil
			}
			return leafHashOf(v)
		case level < minStoredLevel:
			l, r := child(level-1, 2*idx), child(level-1, 2*idx+1)
			if l == nil || r == nil {
				return nil
			}
			return NodeHash(l, r)
		}
		return mb.Get(merkleKey(level, idx))
	}
	for level := uint(minStoredLevel); size>>level > 0; level++ {
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

// minStoredLevel is the lowest Merkle level kept in bMerkle. Lower subtrees
// (at most 2^minStoredLevel leaves) are hashed from the entries on demand:
// a proof costs at most 15 more leaf hashes, and a batch stores one node per
// 16 entries instead of one per entry (which cost a quarter of the append
// throughput). Files written before keep their lower nodes, unused.
const minStoredLevel = 4

// storedSubtree reads complete subtree hashes: level 0 from the entries
// themselves (leaf = SHA-256(0x00 || record)), levels below minStoredLevel
// from those, higher levels from bMerkle.
func storedSubtree(tx *bolt.Tx) subtreeFunc {
	eb, mb := tx.Bucket(bEntries), tx.Bucket(bMerkle)
	var st subtreeFunc
	st = func(level uint, idx uint64) ([]byte, error) {
		switch {
		case level == 0:
			v := eb.Get(seqKey(idx + 1))
			if v == nil {
				return nil, fmt.Errorf("%w: entry %d", ErrNotFound, idx+1)
			}
			return leafHashOf(v), nil
		case level < minStoredLevel:
			l, err := st(level-1, 2*idx)
			if err != nil {
				return nil, err
			}
			r, err := st(level-1, 2*idx+1)
			if err != nil {
				return nil, err
			}
			return NodeHash(l, r), nil
		}
		v := mb.Get(merkleKey(level, idx))
		if len(v) != HashSize {
			return nil, fmt.Errorf("%w: merkle node (%d,%d)", ErrNotFound, level, idx)
		}
		return bytes.Clone(v), nil
	}
	return st
}

// Append hands e to the writer and returns once it is durable (in the
// write-ahead log, fdatasync'd) with its sequence number. The canonical encoding and index keys are built here,
// in the caller's goroutine, so the single writer only stamps seq and
// prev_hash, hashes, and commits. Append works on a copy of e; on success it writes the
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
	if err := prepareCaller(&c); err != nil {
		return 0, err
	}
	start := time.Now()
	r := l.newReq(&c, nil)
	if err := l.submit(ctx, r); err != nil {
		return 0, err
	}
	select {
	case err := <-r.done:
		l.observeAppend(start, err)
		if err != nil {
			return 0, err
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	e.Seq, e.Node, e.Time = c.Seq, c.Node, c.Time
	e.BodySHA256, e.Body = c.BodySHA256, c.Body
	// c's hashes point into the stored record; copy them so the caller
	// does not keep the whole record alive.
	h := make([]byte, 2*HashSize)
	copy(h, c.PrevHash)
	copy(h[HashSize:], c.Hash)
	e.PrevHash, e.Hash = h[:HashSize:HashSize], h[HashSize:]
	return c.Seq, nil
}

// AppendBackground hands e to the writer without waiting for it: done is
// called once the entry is durable (nil) or its commit failed. done runs on
// the writer's goroutine and must not block. The entry may wait up to
// backgroundLinger for an Append to share its commit with. e belongs to the
// ledger from the call on (nothing is written back into it). An error
// returned here (invalid entry, ledger closed, ctx ended before the writer
// took it) means done is never called.
func (l *Ledger) AppendBackground(ctx context.Context, e *Entry, done func(error)) error {
	if e == nil || done == nil {
		return fmt.Errorf("%w: nil entry or callback", ErrInvalid)
	}
	if err := prepareCaller(e); err != nil {
		return err
	}
	// Not in the append latency metric: that is what waiting callers see,
	// and these wait for a commit on purpose.
	return l.submit(ctx, l.newReq(e, done))
}

// prepareCaller is prepare for entries callers hand in (anchors are the
// retention pass's own).
func prepareCaller(e *Entry) error {
	if e.Kind == KindAnchor {
		return fmt.Errorf("%w: anchor entries are written by retention only", ErrInvalid)
	}
	return prepare(e)
}

// submit hands r to the writer, unless the ledger is closed or ctx ends
// first. mu is held shared so that Close cannot close reqs meanwhile.
func (l *Ledger) submit(ctx context.Context, r *appendReq) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// Size is the number of durable (acknowledged) entries, the current tree
// size. Readers asked about them wait until bbolt holds them.
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
// signs a final checkpoint, closes the file and, everything being in bbolt,
// deletes the WAL.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	// The retention pass may be waiting on the writer; stop it first.
	l.stopScrub()
	l.stopBg()
	<-l.bgDone
	l.mu.Lock()
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
	l.pubMu.Lock()
	close(l.notify) // wake Tail followers; they see ErrClosed
	l.notify = nil
	applyErr := l.applyErr
	l.pubMu.Unlock()
	// The writer exits with everything acknowledged applied to bbolt and
	// synced, unless an apply failed: then the WAL must stay for Open.
	werr := l.wal.close(applyErr == nil)
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("ledger: close %s: %w", l.opts.Path, err)
	}
	if werr != nil {
		return fmt.Errorf("ledger: close wal: %w", werr)
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
	if seq < l.FirstSeq() {
		return nil, prunedErr("inclusion proof of entry", seq)
	}
	if err := l.waitApplied(context.Background(), treeSize); err != nil {
		return nil, err
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
	if err := l.waitApplied(context.Background(), newSize); err != nil {
		return nil, err
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
	if err := l.waitApplied(context.Background(), size); err != nil {
		return nil, err
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
	if seq != 0 && seq < l.FirstSeq() {
		return nil, prunedErr("entry", seq)
	}
	if seq <= l.Size() {
		if err := l.waitApplied(context.Background(), seq); err != nil {
			return nil, err
		}
	}
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
