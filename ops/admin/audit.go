package admin

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The audit RPCs of AdminService, served from this node's own ledger:
//
//   - GetCheckpoint, GetInclusionProof and GetConsistencyProof return signed
//     checkpoints (C2SP signed notes) and RFC 9162 proofs that a client
//     checks itself; the server is not trusted.
//   - ExportAudit streams the ledger's JSON Lines export (ledger.WriteJSONL)
//     one line per AuditRecord, byte for byte, so the receiver's file passes
//     ledger.VerifyExport. With cluster set, the node asks every node of the
//     cluster state (ClusterInternal.ExportLocalAudit, node certificates) and
//     merges their exports by entry time, each node's own lines kept in
//     order so every node's chain verifies on its own.
//   - TailAudit follows the ledger (ledger.Tail) until the client goes.
//
// AuditRecord.node is set on every line; seq and time_unix_nano only on
// entry lines (0 on header, checkpoint, neighbour and proof lines).

// AuditLedger is what the audit RPCs need from the node's ledger
// (*ledger.Ledger).
type AuditLedger interface {
	NodeID() string
	PublicKey() ed25519.PublicKey
	// Size is the number of durable entries.
	Size() uint64
	// Checkpoint signs a checkpoint covering every durable entry unless the
	// newest one already does, and returns it.
	Checkpoint(ctx context.Context) (*ledger.Checkpoint, error)
	// CheckpointAt returns the checkpoint signed at exactly size, or an error
	// wrapping ledger.ErrNotFound.
	CheckpointAt(size uint64) (*ledger.Checkpoint, error)
	InclusionProof(seq, treeSize uint64) ([][]byte, error)
	ConsistencyProof(oldSize, newSize uint64) ([][]byte, error)
	Get(seq uint64) (*ledger.Entry, error)
	WriteJSONL(ctx context.Context, w io.Writer, f ledger.Filter) error
	Tail(ctx context.Context, fromSeq uint64, fn func(*ledger.Entry) error) error
}

var _ AuditLedger = (*ledger.Ledger)(nil)

// MaxAuditRecordSize bounds one AuditRecord a node accepts from a peer: an
// entry line with the largest body the ledger keeps (16 MiB, base64 in
// JSON) fits with room to spare.
const MaxAuditRecordSize = 64 << 20

// auditErr is an error with an exact message that maps through toStatus
// like the sentinel it wraps.
type auditErr struct {
	msg  string
	kind error
}

func (e *auditErr) Error() string { return e.msg }
func (e *auditErr) Unwrap() error { return e.kind }

// ledgerErr gives a ledger error the code its sentinel means: not found,
// invalid argument, or unavailable for a closed ledger. Anything else
// (a broken chain, an I/O error) stays Internal.
func ledgerErr(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		kind = raft.ErrNotFound
	case errors.Is(err, ledger.ErrInvalid):
		kind = raft.ErrInvalid
	case errors.Is(err, ledger.ErrClosed):
		kind = raft.ErrClosed
	default:
		return err
	}
	return &auditErr{msg: err.Error(), kind: errors.Join(err, kind)}
}

// auditLedger returns the ledger or FailedPrecondition.
func (s *Server) auditLedger() (AuditLedger, error) {
	if s.ledger == nil {
		return nil, &auditErr{msg: "audit: this node has no audit ledger configured", kind: raft.ErrFailedPrecondition}
	}
	return s.ledger, nil
}

// checkpointMsg renders cp with this node's public key.
func checkpointMsg(l AuditLedger, cp *ledger.Checkpoint) *hubv1.Checkpoint {
	return &hubv1.Checkpoint{
		Origin:    cp.Origin,
		TreeSize:  cp.Size,
		RootHash:  cp.Root,
		Note:      string(cp.Note),
		PublicKey: l.PublicKey(),
	}
}

// checkpointFor returns a checkpoint covering every durable entry for size 0
// and the one signed at exactly size otherwise; field names the request
// field in errors.
func checkpointFor(ctx context.Context, l AuditLedger, size uint64, field string) (*ledger.Checkpoint, error) {
	if size == 0 {
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("audit: sign checkpoint: %w", ledgerErr(err))
		}
		return cp, nil
	}
	if n := l.Size(); size > n {
		return nil, fieldErr(field, fmt.Sprintf("%d is beyond the log size %d", size, n))
	}
	cp, err := l.CheckpointAt(size)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, &auditErr{
			msg:  fmt.Sprintf("%s: no checkpoint was signed at tree size %d (ask for 0, the latest, or a size a checkpoint was signed at)", field, size),
			kind: raft.ErrNotFound,
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint at %d: %w", size, ledgerErr(err))
	}
	return cp, nil
}

// entryRecord is the AuditRecord of one entry: its export line without the
// newline.
func entryRecord(e *ledger.Entry) *hubv1.AuditRecord {
	return &hubv1.AuditRecord{Node: e.Node, Seq: e.Seq, TimeUnixNano: e.Time, Json: ledger.AppendEntryJSON(nil, e)}
}

// GetCheckpoint returns the latest checkpoint (tree_size 0, signed now if
// entries landed since the newest) or the one signed at tree_size.
func (s *Server) GetCheckpoint(ctx context.Context, req *hubv1.GetCheckpointRequest) (*hubv1.Checkpoint, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	cp, err := checkpointFor(ctx, l, req.GetTreeSize(), "tree_size")
	if err != nil {
		return nil, err
	}
	return checkpointMsg(l, cp), nil
}

// GetInclusionProof proves entry seq in the checkpoint of tree_size (0: the
// latest, covering every durable entry).
func (s *Server) GetInclusionProof(ctx context.Context, req *hubv1.InclusionProofRequest) (*hubv1.InclusionProof, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	seq := req.GetSeq()
	if seq == 0 {
		return nil, fieldErr("seq", "must be at least 1")
	}
	if req.GetTreeSize() != 0 && seq > req.GetTreeSize() {
		return nil, fieldErr("seq", fmt.Sprintf("%d is not in a tree of size %d", seq, req.GetTreeSize()))
	}
	cp, err := checkpointFor(ctx, l, req.GetTreeSize(), "tree_size")
	if err != nil {
		return nil, err
	}
	if seq > cp.Size {
		return nil, &auditErr{msg: fmt.Sprintf("seq: entry %d does not exist (the log holds %d)", seq, cp.Size), kind: raft.ErrNotFound}
	}
	e, err := l.Get(seq)
	if err != nil {
		return nil, fmt.Errorf("audit: entry %d: %w", seq, ledgerErr(err))
	}
	path, err := l.InclusionProof(seq, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof of %d in %d: %w", seq, cp.Size, ledgerErr(err))
	}
	return &hubv1.InclusionProof{
		LeafIndex:  seq - 1,
		TreeSize:   cp.Size,
		Hashes:     path,
		LeafHash:   ledger.LeafHash(e),
		Entry:      entryRecord(e),
		Checkpoint: checkpointMsg(l, cp),
	}, nil
}

// GetConsistencyProof proves that the checkpoint at old_size is a prefix of
// the one at new_size (0: the latest). Both sizes need a signed checkpoint,
// which the answer carries.
func (s *Server) GetConsistencyProof(ctx context.Context, req *hubv1.ConsistencyProofRequest) (*hubv1.ConsistencyProof, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	oldSize, newSize := req.GetOldSize(), req.GetNewSize()
	if oldSize == 0 {
		return nil, fieldErr("old_size", "must be at least 1")
	}
	if newSize != 0 && oldSize > newSize {
		return nil, fieldErr("old_size", fmt.Sprintf("%d is larger than new_size %d", oldSize, newSize))
	}
	newCp, err := checkpointFor(ctx, l, newSize, "new_size")
	if err != nil {
		return nil, err
	}
	if oldSize > newCp.Size {
		return nil, fieldErr("old_size", fmt.Sprintf("%d is beyond the log size %d", oldSize, newCp.Size))
	}
	oldCp, err := checkpointFor(ctx, l, oldSize, "old_size")
	if err != nil {
		return nil, err
	}
	path, err := l.ConsistencyProof(oldSize, newCp.Size)
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof %d..%d: %w", oldSize, newCp.Size, ledgerErr(err))
	}
	return &hubv1.ConsistencyProof{
		OldSize:       oldSize,
		NewSize:       newCp.Size,
		Hashes:        path,
		OldCheckpoint: checkpointMsg(l, oldCp),
		NewCheckpoint: checkpointMsg(l, newCp),
	}, nil
}

// exportFilter validates an ExportAuditRequest into a ledger.Filter.
func exportFilter(req *hubv1.ExportAuditRequest) (ledger.Filter, error) {
	var f ledger.Filter
	since, until := req.GetSinceUnixNano(), req.GetUntilUnixNano()
	switch {
	case since < 0:
		return f, fieldErr("since_unix_nano", "must not be negative")
	case until < 0:
		return f, fieldErr("until_unix_nano", "must not be negative")
	case until != 0 && until <= since:
		return f, fieldErr("until_unix_nano", "must be after since_unix_nano")
	}
	if since != 0 {
		f.Since = time.Unix(0, since)
	}
	if until != 0 {
		f.Until = time.Unix(0, until)
	}
	f.FromSeq, f.ToSeq = req.GetFromSeq(), req.GetToSeq()
	if f.ToSeq != 0 && f.FromSeq > f.ToSeq {
		return f, fieldErr("to_seq", fmt.Sprintf("%d is below from_seq %d", f.ToSeq, f.FromSeq))
	}
	f.Network = req.GetNetwork()
	f.User = req.GetUser()
	if f.User != "" && ledger.NormalizeUser(f.User) == "" {
		return f, fieldErr("user", fmt.Sprintf("%q is not a user@host or SIP URI", f.User))
	}
	f.Kind = ledger.Kind(req.GetKind())
	if f.Kind != "" && !f.Kind.Valid() {
		return f, fieldErr("kind", fmt.Sprintf("unknown kind %q (valid: request, response, chat, admin, anchor, msrp)", f.Kind))
	}
	return f, nil
}

// ExportAudit streams this node's export, or with cluster every node's.
func (s *Server) ExportAudit(req *hubv1.ExportAuditRequest, stream hubv1.AdminService_ExportAuditServer) error {
	ctx := stream.Context()
	if _, err := callerFrom(ctx); err != nil {
		return err
	}
	f, err := exportFilter(req)
	if err != nil {
		return err
	}
	if !req.GetCluster() {
		// The entry count is known without a scan when only a sequence
		// range narrows the export: hubctl shows a progress bar with it.
		if l, lerr := s.auditLedger(); lerr == nil && f.Since.IsZero() && f.Until.IsZero() && f.Network == "" && f.User == "" && f.Kind == "" {
			if n := seqRangeCount(f.FromSeq, f.ToSeq, l.Size()); n > 0 {
				_ = stream.SendHeader(metadata.Pairs(ExportTotalHeader, strconv.FormatUint(n, 10)))
			}
		}
		return s.exportLocal(ctx, req, stream.Send)
	}
	return s.exportCluster(ctx, req, stream.Send)
}

// ExportTotalHeader carries the number of entries an export will send,
// when the node knows it before scanning (unfiltered or by seq range only).
const ExportTotalHeader = "clearhub-export-total"

// seqRangeCount is how many of the entries 1..size fall in [from, to]
// (zero bounds are open).
func seqRangeCount(from, to, size uint64) uint64 {
	if from == 0 {
		from = 1
	}
	if to == 0 || to > size {
		to = size
	}
	if to < from {
		return 0
	}
	return to - from + 1
}

// ExportLocalAudit serves a peer's cluster export: this node's lines only.
func (ci *clusterInternal) ExportLocalAudit(req *hubv1.ExportAuditRequest, stream hubv1.ClusterInternal_ExportLocalAuditServer) error {
	if _, err := callerFrom(stream.Context()); err != nil {
		return err
	}
	return ci.s.exportLocal(stream.Context(), req, stream.Send)
}

// exportLocal runs WriteJSONL into a line splitter that sends each line.
func (s *Server) exportLocal(ctx context.Context, req *hubv1.ExportAuditRequest, send func(*hubv1.AuditRecord) error) error {
	l, err := s.auditLedger()
	if err != nil {
		return err
	}
	f, err := exportFilter(req)
	if err != nil {
		return err
	}
	w := &lineSender{node: l.NodeID(), send: send}
	if err := l.WriteJSONL(ctx, w, f); err != nil {
		if w.sendErr != nil {
			return w.sendErr
		}
		return fmt.Errorf("audit: export: %w", ledgerErr(err))
	}
	return w.flush()
}

// exportCluster asks every node for its export (this node's from its own
// ledger, peers' over ClusterInternal) concurrently and merges the streams
// by entry time. Each node's own lines keep their order, and every
// non-entry line (header, checkpoint, neighbour, proof) goes out as soon as
// it heads its node's stream, so each node's chain and proofs still verify
// on their own (ledger.VerifyExport keeps its state per node). A node that
// cannot answer fails the whole export, naming it: a cluster export that
// silently lacks a node would mislead.
func (s *Server) exportCluster(ctx context.Context, req *hubv1.ExportAuditRequest, send func(*hubv1.AuditRecord) error) error {
	type target struct{ id, addr string }
	targets := []target{{id: s.nodeID}}
	for _, n := range s.store.State().Nodes() {
		if n.GetId() != s.nodeID {
			targets = append(targets, target{n.GetId(), n.GetAdminAddr()})
		}
	}
	slices.SortFunc(targets, func(a, b target) int { return cmp.Compare(a.id, b.id) })
	local := &hubv1.ExportAuditRequest{
		SinceUnixNano: req.GetSinceUnixNano(), UntilUnixNano: req.GetUntilUnixNano(),
		FromSeq: req.GetFromSeq(), ToSeq: req.GetToSeq(),
		Network: req.GetNetwork(), User: req.GetUser(), Kind: req.GetKind(),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type source struct {
		id   string
		ch   chan *hubv1.AuditRecord
		errc chan error
		head *hubv1.AuditRecord
	}
	srcs := make([]*source, len(targets))
	var wg sync.WaitGroup
	defer wg.Wait() // every producer has stopped before we return
	defer cancel()  // runs first: unblocks producers on an early return
	for i, t := range targets {
		src := &source{id: t.id, ch: make(chan *hubv1.AuditRecord, 256), errc: make(chan error, 1)}
		srcs[i] = src
		push := func(r *hubv1.AuditRecord) error {
			select {
			case src.ch <- r:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		wg.Go(func() {
			defer close(src.ch)
			var err error
			if t.id == s.nodeID {
				if err = s.exportLocal(ctx, local, push); err != nil {
					err = fmt.Errorf("node %s: %w", t.id, err)
				}
			} else {
				err = s.exportPeer(ctx, t.id, t.addr, local, push)
			}
			src.errc <- err
		})
	}
	// advance loads src's next record; at the end of its stream head is nil.
	advance := func(src *source) error {
		r, ok := <-src.ch
		if ok {
			src.head = r
			return nil
		}
		src.head = nil
		return <-src.errc
	}
	for _, src := range srcs {
		if err := advance(src); err != nil {
			return err
		}
	}
	for {
		// Non-entry lines (seq 0) go out as soon as they head a stream.
		for _, src := range srcs {
			for src.head != nil && src.head.GetSeq() == 0 {
				if err := send(src.head); err != nil {
					return err
				}
				if err := advance(src); err != nil {
					return err
				}
			}
		}
		var next *source
		for _, src := range srcs {
			if src.head != nil && (next == nil || src.head.GetTimeUnixNano() < next.head.GetTimeUnixNano()) {
				next = src // ties keep node-id order
			}
		}
		if next == nil {
			return nil
		}
		if err := send(next.head); err != nil {
			return err
		}
		if err := advance(next); err != nil {
			return err
		}
	}
}

// exportPeer relays node id's own export. Records are passed on unchanged
// except that node must be id: a peer cannot speak for another node here
// (its lines still verify only against that node's key).
func (s *Server) exportPeer(ctx context.Context, id, addr string, req *hubv1.ExportAuditRequest, send func(*hubv1.AuditRecord) error) error {
	if addr == "" {
		return &auditErr{msg: fmt.Sprintf("node %s: no admin address known", id), kind: raft.ErrFailedPrecondition}
	}
	c, err := s.conn(addr)
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the peer stream if we stop early
	// The peer's verdict keeps its code; the message names the node.
	peerErr := func(err error) error {
		st := status.Convert(err)
		return status.Errorf(st.Code(), "node %s: %s", id, st.Message())
	}
	st, err := hubv1.NewClusterInternalClient(c).ExportLocalAudit(ctx, req, grpc.MaxCallRecvMsgSize(MaxAuditRecordSize))
	if err != nil {
		return peerErr(err)
	}
	for {
		rec, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return peerErr(err)
		}
		if rec.GetNode() != id {
			return fmt.Errorf("node %s: sent a record of node %q", id, rec.GetNode())
		}
		if err := send(rec); err != nil {
			return err
		}
	}
}

// lineSender is the io.Writer WriteJSONL writes to: it cuts the output into
// lines (without the newline) and sends each as an AuditRecord. Sends
// happen on the caller's goroutine, inside WriteJSONL's Write calls.
type lineSender struct {
	node    string
	send    func(*hubv1.AuditRecord) error
	partial []byte // a line not yet ended by '\n'
	sendErr error  // the first send failure, returned as is
}

// entryLinePrefix starts every entry line of the export (AppendEntryJSON).
var entryLinePrefix = []byte(`{"type":"entry",`)

func (w *lineSender) Write(p []byte) (int, error) {
	if w.sendErr != nil {
		return 0, w.sendErr
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		var line []byte
		if len(w.partial) > 0 {
			line = append(w.partial, p[:i]...)
			w.partial = nil
		} else {
			// Send may keep the message (stats handlers), so each record
			// owns its bytes.
			line = bytes.Clone(p[:i])
		}
		p = p[i+1:]
		if err := w.emit(line); err != nil {
			w.sendErr = err
			return n - len(p), err
		}
	}
	return n, nil
}

func (w *lineSender) emit(line []byte) error {
	rec := &hubv1.AuditRecord{Node: w.node, Json: line}
	if bytes.HasPrefix(line, entryLinePrefix) {
		var id struct {
			Seq  uint64 `json:"seq"`
			Time int64  `json:"time"`
		}
		if err := json.Unmarshal(line, &id); err != nil {
			return fmt.Errorf("audit: export produced an unreadable entry line: %w", err)
		}
		rec.Seq, rec.TimeUnixNano = id.Seq, id.Time
	}
	return w.send(rec)
}

// flush sends a final line that lacked its newline (WriteJSONL always ends
// lines, so this is only a safety net).
func (w *lineSender) flush() error {
	if len(w.partial) == 0 {
		return nil
	}
	line := w.partial
	w.partial = nil
	return w.emit(line)
}

// tailStop ends the TailAudit streams when the node shuts down: a tail
// never ends on its own, and grpc.Server.GracefulStop waits for every
// stream (hubd took its whole 10 s stop timeout with one tail attached).
type tailStop struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (t *tailStop) done() context.Context {
	t.once.Do(func() { t.ctx, t.cancel = context.WithCancel(context.Background()) })
	return t.ctx
}

// errTailShutdown is how a tail ends when the node stops: Unavailable, so
// the client reconnects (to this node once it is back, or another).
var errTailShutdown = &auditErr{msg: "audit: tail ended: node shutting down", kind: raft.ErrClosed}

// StopStreams ends the TailAudit streams in progress (Unavailable "node
// shutting down") and refuses new ones. Call it before
// grpc.Server.GracefulStop, which would otherwise wait for them.
func (s *Server) StopStreams() {
	s.tails.done()
	s.tails.cancel()
}

// TailAudit streams entries from from_seq (0: only entries appended from now
// on) and follows the ledger until the client cancels or the server stops
// (StopStreams).
func (s *Server) TailAudit(req *hubv1.TailAuditRequest, stream hubv1.AdminService_TailAuditServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	defer context.AfterFunc(s.tails.done(), func() { cancel(errTailShutdown) })()
	if _, err := callerFrom(ctx); err != nil {
		return err
	}
	if s.tails.done().Err() != nil {
		return errTailShutdown
	}
	l, err := s.auditLedger()
	if err != nil {
		return err
	}
	from := req.GetFromSeq()
	if from == 0 {
		from = l.Size() + 1
	}
	// Headers tell the client where the tail starts is fixed: entries
	// appended after it reads them are streamed.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	err = l.Tail(ctx, from, func(e *ledger.Entry) error { return stream.Send(entryRecord(e)) })
	if context.Cause(ctx) == errTailShutdown {
		return errTailShutdown
	}
	if ctx.Err() != nil {
		// The client went away or cancelled: that is how a tail ends.
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("audit: tail: %w", ledgerErr(err))
	}
	return nil
}

// AuditScrubber is the on-demand scrub of the node's ledger
// (*ledger.Ledger); a ledger without it answers FailedPrecondition.
type AuditScrubber interface {
	Scrub(ctx context.Context) (ledger.ScrubResult, error)
}

// ScrubAudit re-verifies this node's whole ledger now (hash chain and
// stored Merkle tree) and returns the result. A break is a result with ok
// false naming the first bad seq, not an error.
func (s *Server) ScrubAudit(ctx context.Context, _ *hubv1.ScrubAuditRequest) (*hubv1.ScrubAuditResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	sc, ok := l.(AuditScrubber)
	if !ok {
		return nil, &auditErr{msg: "audit: this node's ledger cannot be scrubbed", kind: raft.ErrFailedPrecondition}
	}
	res, err := sc.Scrub(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: scrub: %w", ledgerErr(err))
	}
	return &hubv1.ScrubAuditResponse{
		Node:             res.Node,
		EntriesChecked:   res.EntriesChecked,
		TreeNodesChecked: res.TreeNodesChecked,
		Ok:               res.OK,
		FirstBadSeq:      res.FirstBadSeq,
		Error:            res.Err,
		StartedUnixNano:  res.Started.UnixNano(),
		FinishedUnixNano: res.Finished.UnixNano(),
	}, nil
}

// CheckpointLister lists every checkpoint the node's ledger stores, in size
// order (*ledger.Ledger); a ledger without it answers FailedPrecondition.
type CheckpointLister interface {
	Checkpoints(fn func(*ledger.Checkpoint) error) error
}

// MaxListCheckpoints bounds one ListCheckpoints answer (about 300 bytes a
// checkpoint, so well under gRPC's 4 MiB default message size): a node
// signing every 10 s keeps far more than anyone reads in one table.
const MaxListCheckpoints = 5000

// ListCheckpoints returns the newest limit checkpoints this node stores (0:
// all, up to MaxListCheckpoints), oldest first. Nothing is signed: the list
// is what 'audit prove --tree-size' and 'audit consistency' can name. A
// list cut short says so in the WarningHeader.
func (s *Server) ListCheckpoints(ctx context.Context, req *hubv1.ListCheckpointsRequest) (*hubv1.ListCheckpointsResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	cl, ok := l.(CheckpointLister)
	if !ok {
		return nil, &auditErr{msg: "audit: this node's ledger cannot list its checkpoints", kind: raft.ErrFailedPrecondition}
	}
	limit := int(min(req.GetLimit(), MaxListCheckpoints))
	if limit == 0 {
		limit = MaxListCheckpoints
	}
	// A ring of the newest limit: the ledger walks oldest first.
	ring := make([]*ledger.Checkpoint, 0, min(limit, 256))
	total := 0
	err = cl.Checkpoints(func(cp *ledger.Checkpoint) error {
		if len(ring) < limit {
			ring = append(ring, cp)
		} else {
			ring[total%limit] = cp
		}
		total++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list checkpoints: %w", ledgerErr(err))
	}
	resp := &hubv1.ListCheckpointsResponse{Checkpoints: make([]*hubv1.Checkpoint, 0, len(ring))}
	start := 0
	if total > limit {
		start = total % limit // the oldest kept
	}
	for i := range ring {
		resp.Checkpoints = append(resp.Checkpoints, checkpointMsg(l, ring[(start+i)%len(ring)]))
	}
	if total > len(ring) && (req.GetLimit() == 0 || req.GetLimit() > MaxListCheckpoints) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(WarningHeader,
			fmt.Sprintf("showing the newest %d of %d checkpoints (at most %d per call)", len(ring), total, MaxListCheckpoints)))
	}
	return resp, nil
}
