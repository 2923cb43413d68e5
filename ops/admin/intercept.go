package admin

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Lawful interception and SIP capture on the admin API.
//
// InterceptService is the lawful-intercept role's alone (auth.go): no other
// operator, not even admin, may list or change warrants, and no
// AdminService answer carries them (raft.State.Proto leaves them out, so
// GetState, the state snapshot hubctl saves and every export are clean).
// Its changes are audited in the node's interception ledger, a second
// ledger with its own signed checkpoints, never in the main one, and the
// node's log does not name its calls.

// InterceptLedger is the node's interception ledger (*ledger.Ledger).
type InterceptLedger interface {
	NodeID() string
	PublicKey() ed25519.PublicKey
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
	Export(ctx context.Context, f ledger.Filter, fn func(*ledger.Entry) error) error
	Checkpoint(ctx context.Context) (*ledger.Checkpoint, error)
}

var _ InterceptLedger = (*ledger.Ledger)(nil)

// CaptureCollector reports this node's capture collector (cmd/hubd).
type CaptureCollector interface {
	Addr() string
	Transport() string
	Stats() (sent, dropped uint64)
}

type interceptService struct {
	hubv1.UnimplementedInterceptServiceServer
	s *Server
}

func (is *interceptService) ledger() (InterceptLedger, error) {
	if is.s.interceptLedger == nil {
		return nil, status.Error(codes.FailedPrecondition, "lawful interception is not configured on this node (no interception ledger)")
	}
	return is.s.interceptLedger, nil
}

// record appends a warrant change to the interception ledger. The change
// is committed already: a failure is logged without naming the warrant.
func (is *interceptService) record(ctx context.Context, c caller, method, id, reason string) {
	if is.s.interceptLedger == nil {
		return
	}
	e := &ledger.Entry{Time: is.s.now().UnixNano(), Kind: ledger.KindAdmin, Method: method, From: c.actor(), To: id, Reason: reason}
	if _, err := is.s.interceptLedger.Append(context.WithoutCancel(ctx), e); err != nil {
		is.s.log.Error("interception ledger append failed", "err", err)
		is.s.metrics.auditErrors.Inc()
	}
}

func (is *interceptService) PutWarrant(ctx context.Context, req *hubv1.PutWarrantRequest) (*hubv1.Warrant, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := is.ledger(); err != nil {
		return nil, err // unaudited interception is never set up
	}
	if req.GetWarrant() == nil {
		return nil, fieldErr("warrant", "required")
	}
	w := raft.NormalizeWarrant(req.GetWarrant())
	w.CreatedUnixNano, w.CreatedBy, w.UpdatedUnixNano = 0, "", 0
	cmd := is.s.command(c.actor())
	cmd.Op = &hubv1.Command_PutWarrant{PutWarrant: &hubv1.PutWarrant{Warrant: w}}
	verb := "set"
	if is.s.store.State().Warrant(w.GetId()) != nil {
		verb = "changed"
	}
	if _, err := is.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	got := is.s.store.State().Warrant(w.GetId())
	if got == nil {
		return nil, status.Errorf(codes.Aborted, "warrant %s was removed concurrently", w.GetId())
	}
	is.record(ctx, c, "PutWarrant", w.GetId(), fmt.Sprintf("warrant %s %s: %s %s, %d..%d, deliver signalling=%v bodies=%v msrp=%v, reference %q",
		w.GetId(), verb, strings.TrimPrefix(w.GetKind().String(), "WARRANT_TARGET_"), w.GetTarget(), w.GetStartUnixNano(), w.GetEndUnixNano(),
		w.GetSignalling(), w.GetBodies(), w.GetMsrp(), w.GetReference()))
	return proto.Clone(got).(*hubv1.Warrant), nil
}

func (is *interceptService) DeleteWarrant(ctx context.Context, req *hubv1.DeleteWarrantRequest) (*hubv1.DeleteWarrantResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := is.ledger(); err != nil {
		return nil, err
	}
	cmd := is.s.command(c.actor())
	cmd.Op = &hubv1.Command_DeleteWarrant{DeleteWarrant: &hubv1.DeleteWarrant{Id: req.GetId()}}
	if _, err := is.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	is.record(ctx, c, "DeleteWarrant", req.GetId(), "warrant "+req.GetId()+" deleted")
	return &hubv1.DeleteWarrantResponse{Id: req.GetId()}, nil
}

func (is *interceptService) ListWarrants(ctx context.Context, _ *hubv1.ListWarrantsRequest) (*hubv1.ListWarrantsResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	resp := &hubv1.ListWarrantsResponse{}
	for _, w := range is.s.store.State().Warrants() {
		resp.Warrants = append(resp.Warrants, proto.Clone(w).(*hubv1.Warrant))
	}
	return resp, nil
}

func (is *interceptService) ExportInterceptAudit(req *hubv1.ExportInterceptAuditRequest, stream hubv1.InterceptService_ExportInterceptAuditServer) error {
	ctx := stream.Context()
	if _, err := callerFrom(ctx); err != nil {
		return err
	}
	l, err := is.ledger()
	if err != nil {
		return err
	}
	return l.Export(ctx, ledger.Filter{FromSeq: req.GetFromSeq()}, func(e *ledger.Entry) error {
		return stream.Send(&hubv1.InterceptAuditRecord{Node: e.Node, Seq: e.Seq, TimeUnixNano: e.Time, Json: ledger.AppendEntryJSON(nil, e)})
	})
}

func (is *interceptService) InterceptCheckpoint(ctx context.Context, _ *hubv1.InterceptCheckpointRequest) (*hubv1.InterceptCheckpointResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	l, err := is.ledger()
	if err != nil {
		return nil, err
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("interception ledger checkpoint: %w", err)
	}
	return &hubv1.InterceptCheckpointResponse{Origin: cp.Origin, TreeSize: cp.Size, RootHash: cp.Root, Note: string(cp.Note), PublicKey: l.PublicKey()}, nil
}

type captureService struct {
	hubv1.UnimplementedCaptureServiceServer
	s *Server
}

func (cs *captureService) SetCapture(ctx context.Context, req *hubv1.SetCaptureRequest) (*hubv1.CaptureSettings, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	cmd := cs.s.command(c.Name)
	cmd.Op = &hubv1.Command_SetCapture{SetCapture: &hubv1.SetCapture{Network: req.GetNetwork(), All: req.GetAll(), On: req.GetOn()}}
	if _, err := cs.s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	what := "network " + req.GetNetwork()
	if req.GetAll() {
		what = "all networks"
	}
	onOff := "off"
	if req.GetOn() {
		onOff = "on"
	}
	cs.s.audit(ctx, "SetCapture", c.Name, "SIP capture "+onOff+" for "+what)
	return settingsOf(cs.s.store.State()), nil
}

func (cs *captureService) CaptureStatus(ctx context.Context, _ *hubv1.CaptureStatusRequest) (*hubv1.CaptureStatusResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	resp := &hubv1.CaptureStatusResponse{Settings: settingsOf(cs.s.store.State())}
	if col := cs.s.capture; col != nil {
		resp.Collector, resp.Transport = col.Addr(), col.Transport()
		resp.Sent, resp.Dropped = col.Stats()
	}
	return resp, nil
}

func settingsOf(st *raft.State) *hubv1.CaptureSettings {
	if c := st.Capture(); c != nil {
		return proto.Clone(c).(*hubv1.CaptureSettings)
	}
	return &hubv1.CaptureSettings{}
}
