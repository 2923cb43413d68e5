package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The member audit API (RFC 5344 section 3: each member can verify the
// third party in the middle). A member network, authenticated by the
// certificate the hub attributes its SIP traffic by (auth.go
// identifyClient), exports its own entries with their inclusion proofs,
// reads every node's latest signed checkpoint with the node keys of the
// cluster state, asks for consistency proofs, and follows the checkpoints
// to detect a split view. What it trusts is the node keys, not the node
// answering: everything checks offline with hubctl audit verify.
//
// Scope: the network is always the caller's (caller.Network); a request
// naming another network is answered for the caller's, with a warning.
// User and kind filters only narrow that (the ledger's filter is a
// conjunction), so they cannot reach another network's entries. What a
// member learns beyond its own entries: each node's tree size and root
// (the log's volume) and, in the proofs, hashes of neighbouring entries.
//
// Suspended networks keep the member API: suspension stops traffic, and a
// suspended member is the one most likely to need its records. A removed
// network's certificate proves nothing any more and is refused.

type memberService struct {
	hubv1.UnimplementedMemberAuditServiceServer
	s *Server
}

// memberCaller returns the authorized member caller.
func memberCaller(ctx context.Context) (caller, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return c, err
	}
	if c.Network == "" {
		// authorize admits only member certificates with a network; this
		// keeps a handler from ever running unscoped.
		return c, permissionDenied("member API: the caller is not a member network")
	}
	return c, nil
}

// memberExportRequest is req scoped to network: the request's network is
// replaced, everything else kept (and validated by exportFilter).
func memberExportRequest(req *hubv1.ExportAuditRequest, network string) *hubv1.ExportAuditRequest {
	return &hubv1.ExportAuditRequest{
		SinceUnixNano: req.GetSinceUnixNano(), UntilUnixNano: req.GetUntilUnixNano(),
		FromSeq: req.GetFromSeq(), ToSeq: req.GetToSeq(),
		Network: network, User: req.GetUser(), Kind: req.GetKind(),
		Cluster: req.GetCluster(),
	}
}

// Export streams the caller's own entries (this node's, or with cluster
// every node's) as the ledger export with its proofs.
func (m *memberService) Export(req *hubv1.ExportAuditRequest, stream hubv1.MemberAuditService_ExportServer) error {
	ctx := stream.Context()
	c, err := memberCaller(ctx)
	if err != nil {
		return err
	}
	scoped := memberExportRequest(req, c.Network)
	if _, err := exportFilter(scoped); err != nil {
		return err
	}
	if n := req.GetNetwork(); n != "" && n != c.Network {
		_ = stream.SendHeader(metadata.Pairs(WarningHeader,
			fmt.Sprintf("network %q ignored: a member exports only its own network's entries (%s)", n, c.Network)))
	}
	if scoped.GetCluster() {
		return m.s.exportCluster(ctx, scoped, stream.Send)
	}
	return m.s.exportLocal(ctx, scoped, stream.Send)
}

// latestCheckpointer reads the newest stored checkpoint without signing
// one (*ledger.Ledger): a member polling must not make the node sign.
type latestCheckpointer interface {
	LatestCheckpoint() (*ledger.Checkpoint, error)
}

// latestCheckpoint is the newest stored checkpoint, or a fresh one when the
// ledger has none yet.
func latestCheckpoint(ctx context.Context, l AuditLedger) (*ledger.Checkpoint, error) {
	if lc, ok := l.(latestCheckpointer); ok {
		cp, err := lc.LatestCheckpoint()
		if err == nil {
			return cp, nil
		}
		if !errors.Is(err, ledger.ErrNotFound) {
			return nil, fmt.Errorf("audit: latest checkpoint: %w", ledgerErr(err))
		}
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", ledgerErr(err))
	}
	return cp, nil
}

// Checkpoints returns every node's latest checkpoint: this node's from its
// ledger, peers' over ClusterInternal. A node that cannot answer gets an
// error in its row rather than failing the answer: the member sees what is
// missing.
func (m *memberService) Checkpoints(ctx context.Context, _ *hubv1.MemberCheckpointsRequest) (*hubv1.MemberCheckpointsResponse, error) {
	c, err := memberCaller(ctx)
	if err != nil {
		return nil, err
	}
	s := m.s
	nodes := s.store.State().Nodes()
	resp := &hubv1.MemberCheckpointsResponse{Network: c.Network, NodeId: s.nodeID, Nodes: make([]*hubv1.NodeCheckpoint, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		row := &hubv1.NodeCheckpoint{Node: n.GetId(), AdminAddr: n.GetAdminAddr(), PublicKey: n.GetPublicKey()}
		resp.Nodes[i] = row
		wg.Go(func() {
			var cp *hubv1.Checkpoint
			var err error
			if n.GetId() == s.nodeID {
				cp, err = s.localCheckpointMsg(ctx)
			} else {
				cp, err = s.peerCheckpoint(ctx, n)
			}
			if err != nil {
				row.Error = err.Error()
				return
			}
			row.Checkpoint = cp
			if len(row.PublicKey) == 0 {
				// Not yet published in the state (a node that has not
				// registered its key): the node's own claim, which the
				// member should pin from elsewhere.
				row.PublicKey = cp.GetPublicKey()
			}
		})
	}
	wg.Wait()
	return resp, nil
}

func (s *Server) localCheckpointMsg(ctx context.Context) (*hubv1.Checkpoint, error) {
	l, err := s.auditLedger()
	if err != nil {
		return nil, err
	}
	cp, err := latestCheckpoint(ctx, l)
	if err != nil {
		return nil, err
	}
	return checkpointMsg(l, cp), nil
}

// peerCheckpointTimeout bounds the question to one peer.
const peerCheckpointTimeout = 3 * time.Second

// peerCheckpoint asks node n for its checkpoint: the head of an export
// that matches at most one entry (ClusterInternal carries no checkpoint
// RPC; the export's header and checkpoint lines are what a cluster export
// relays anyway).
func (s *Server) peerCheckpoint(ctx context.Context, n *hubv1.Node) (*hubv1.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, peerCheckpointTimeout)
	defer cancel()
	req := &hubv1.ExportAuditRequest{FromSeq: 1, ToSeq: 1, Kind: string(ledger.KindAnchor)}
	var cp *hubv1.Checkpoint
	errDone := errors.New("done")
	err := s.exportPeer(ctx, n.GetId(), n.GetAdminAddr(), req, func(r *hubv1.AuditRecord) error {
		var line struct {
			Type      string `json:"type"`
			Origin    string `json:"origin"`
			PublicKey []byte `json:"public_key"`
			TreeSize  uint64 `json:"tree_size"`
			Note      string `json:"note"`
		}
		if err := json.Unmarshal(r.GetJson(), &line); err != nil {
			return fmt.Errorf("node %s: unreadable export line: %w", n.GetId(), err)
		}
		switch line.Type {
		case ledger.LineHeader:
			cp = &hubv1.Checkpoint{Origin: line.Origin, TreeSize: line.TreeSize, PublicKey: line.PublicKey}
		case ledger.LineCheckpoint:
			if cp == nil {
				return fmt.Errorf("node %s: checkpoint line before the header", n.GetId())
			}
			cp.Note = line.Note
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if cp == nil || cp.Note == "" {
		return nil, fmt.Errorf("node %s: its export carried no checkpoint", n.GetId())
	}
	// The root is in the signed note; the member checks the note, so
	// parsing it here only fills the message.
	if c, err := ledger.ParseCheckpoint([]byte(cp.Note)); err == nil {
		cp.TreeSize, cp.RootHash, cp.Origin = c.Size, c.Root, c.Origin
	}
	return cp, nil
}

// GetConsistencyProof proves this node's log grew append-only between two
// of its checkpoints. A node proves only its own log: for another node
// the member asks that node (its admin_addr is in Checkpoints).
func (m *memberService) GetConsistencyProof(ctx context.Context, req *hubv1.MemberConsistencyRequest) (*hubv1.ConsistencyProof, error) {
	if _, err := memberCaller(ctx); err != nil {
		return nil, err
	}
	if n := req.GetNode(); n != "" && n != m.s.nodeID {
		addr := ""
		if nd := m.s.store.State().Node(n); nd != nil {
			addr = nd.GetAdminAddr()
		}
		if addr == "" {
			return nil, fmt.Errorf("node %q: not a node of this cluster: %w", n, raft.ErrNotFound)
		}
		return nil, fmt.Errorf("node %q: this is node %s; ask %s at %s for its own consistency proof: %w",
			n, m.s.nodeID, n, addr, raft.ErrFailedPrecondition)
	}
	return m.s.GetConsistencyProof(ctx, &hubv1.ConsistencyProofRequest{OldSize: req.GetOldSize(), NewSize: req.GetNewSize()})
}

// memberWatchInterval is how often WatchCheckpoints looks for a new
// checkpoint; a variable for tests.
var memberWatchInterval = time.Second

// WatchCheckpoints streams this node's latest checkpoint and then each new
// one. It reads stored checkpoints only (the node signs on its own
// schedule), and ends at StopStreams like TailAudit.
func (m *memberService) WatchCheckpoints(_ *hubv1.MemberWatchRequest, stream hubv1.MemberAuditService_WatchCheckpointsServer) error {
	s := m.s
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	defer context.AfterFunc(s.tails.done(), func() { cancel(errTailShutdown) })()
	if _, err := memberCaller(ctx); err != nil {
		return err
	}
	if s.tails.done().Err() != nil {
		return errTailShutdown
	}
	l, err := s.auditLedger()
	if err != nil {
		return err
	}
	var pub []byte
	if n := s.store.State().Node(s.nodeID); n != nil {
		pub = n.GetPublicKey()
	}
	if len(pub) == 0 {
		pub = l.PublicKey()
	}
	var last *ledger.Checkpoint
	t := time.NewTicker(memberWatchInterval)
	defer t.Stop()
	for {
		cp, err := latestCheckpoint(ctx, l)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil && (last == nil || cp.Size != last.Size || !bytes.Equal(cp.Root, last.Root)) {
			last = cp
			row := &hubv1.NodeCheckpoint{Node: s.nodeID, PublicKey: pub, Checkpoint: checkpointMsg(l, cp)}
			if err := stream.Send(row); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if context.Cause(ctx) == errTailShutdown {
				return errTailShutdown
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}
