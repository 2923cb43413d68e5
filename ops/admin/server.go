package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Store is what the admin server needs from the Raft node (*raft.Node).
type Store interface {
	// State is the latest applied cluster state; never nil.
	State() *raft.State
	// Apply proposes cmd. On the leader it returns the log index and the
	// FSM's verdict (errors wrapping raft.ErrInvalid, ErrNotFound,
	// ErrAlreadyExists, ErrFailedPrecondition); on a follower an error
	// wrapping raft.ErrNotLeader.
	Apply(ctx context.Context, cmd *hubv1.Command) (uint64, error)
	// ApplyBytes is Apply for a marshalled hubv1.Command.
	ApplyBytes(ctx context.Context, cmd []byte) (uint64, error)
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	Status() raft.Status
	// Leader returns the leader's server id and raft address ("" if none).
	Leader() (id, addr string)
	// WaitForApplied blocks until this node has applied index.
	WaitForApplied(ctx context.Context, index uint64) error
}

// Auditor records admin changes in the audit ledger (*ledger.Ledger).
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// Options configure a Server. NodeID, CA, NodeClientTLS and Store are
// required.
type Options struct {
	// NodeID is this node's Raft server id (also its node record id).
	NodeID string
	// CA is the cluster CA: it signs joiners' node certificates and keys
	// join tokens.
	CA *pki.CA
	// NodeClientTLS carries this node's node certificate and the cluster CA
	// as roots; used to forward writes to the leader and to probe peers.
	NodeClientTLS *tls.Config
	Store         Store
	// Auditor, if set, receives one KindAdmin entry per successful change.
	Auditor Auditor
	// Ledger, if set, serves the audit RPCs (usually the same *ledger.Ledger
	// as Auditor); without it they answer FailedPrecondition.
	Ledger AuditLedger
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer, if set, receives the admin request metrics.
	Registerer prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
	// NodeCertTTL is the lifetime of node certificates issued to joiners;
	// default one year.
	NodeCertTTL time.Duration
	// LogLevel, if set, is the node's log level (a *slog.LevelVar) that
	// SetLogLevel reads and changes; without it SetLogLevel answers
	// FailedPrecondition.
	LogLevel LogLevel
	// Version is this node's build version, reported in cluster status.
	Version string
	// RoomsDomain lets RoomService take a bare room name (team ->
	// sip:team@RoomsDomain); RoomsMaxMembers, if set, is the hub's hard
	// cap on a room's participants (rooms.go).
	RoomsDomain     string
	RoomsMaxMembers int
	// Queue, if set, is the node's store and forward for QueueService
	// retry and drop (queue.go); reads work without it.
	Queue QueueBackend
	// InterceptLedger, if set, is the node's interception ledger: without
	// it InterceptService refuses warrant changes (intercept.go).
	// Capture, if set, is the node's SIP capture collector, for
	// CaptureStatus.
	InterceptLedger InterceptLedger
	Capture         CaptureCollector
}

// DefaultNodeCertTTL is the default lifetime of a joiner's node certificate.
const DefaultNodeCertTTL = 365 * 24 * time.Hour

// peerProbeTimeout bounds each peer health probe in ClusterStatus.
const peerProbeTimeout = 500 * time.Millisecond

// forwardedKey marks a request one node forwarded to the leader, so a node
// that lost leadership in between answers Unavailable instead of forwarding
// again (no forwarding loops).
const forwardedKey = "clearhub-forwarded-by"

func (o *Options) validate() error {
	switch {
	case o.NodeID == "":
		return errors.New("admin: Options.NodeID required")
	case !raft.ValidID(o.NodeID):
		return fmt.Errorf("admin: Options.NodeID %q: must be 1..63 characters of [a-z0-9-]", o.NodeID)
	case o.CA == nil || o.CA.Cert == nil || o.CA.Key == nil:
		return errors.New("admin: Options.CA (with its key) required")
	case o.NodeClientTLS == nil:
		return errors.New("admin: Options.NodeClientTLS required")
	case o.Store == nil:
		return errors.New("admin: Options.Store required")
	case o.NodeCertTTL < 0:
		return errors.New("admin: Options.NodeCertTTL must not be negative")
	}
	return nil
}

// Server implements AdminService (and, through small adapters,
// JoinService, ClusterInternal and grpc.health.v1.Health). The audit RPCs
// are not implemented here: a separate file adds them to *Server.
type Server struct {
	hubv1.UnimplementedAdminServiceServer

	nodeID      string
	ca          *pki.CA
	clientTLS   *tls.Config
	store       Store
	auditor     Auditor
	ledger      AuditLedger
	log         *slog.Logger
	now         func() time.Time
	nodeCertTTL time.Duration
	tokens      *tokenKey
	metrics     *metrics
	tails       tailStop // ends TailAudit streams at shutdown (audit.go)
	logLevel    LogLevel
	version     string

	roomsDomain     string // rooms.go
	roomsMaxMembers int

	queue QueueBackend // store and forward (queue.go)

	interceptLedger InterceptLedger // intercept.go
	capture         CaptureCollector

	// clusterRoots is the cluster CA as a pool: the only root that makes a
	// client a node or an operator (auth.go identifyClient).
	clusterRoots *x509.CertPool

	// drain is this node's maintenance drain (clusterops.go).
	drain drainState

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn // admin address -> conn to that node
	closed bool
}

// NewServer validates opts and builds a Server. It starts no goroutines.
func NewServer(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	tk, err := newTokenKey(opts.CA)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		nodeID:      opts.NodeID,
		ca:          opts.CA,
		clientTLS:   opts.NodeClientTLS.Clone(),
		store:       opts.Store,
		auditor:     opts.Auditor,
		ledger:      opts.Ledger,
		log:         opts.Logger,
		now:         opts.Now,
		nodeCertTTL: opts.NodeCertTTL,
		tokens:      tk,
		metrics:     m,
		logLevel:    opts.LogLevel,
		version:     opts.Version,

		roomsDomain:     strings.ToLower(opts.RoomsDomain),
		roomsMaxMembers: opts.RoomsMaxMembers,

		queue: opts.Queue,

		interceptLedger: opts.InterceptLedger,
		capture:         opts.Capture,

		conns: map[string]*grpc.ClientConn{},

		clusterRoots: opts.CA.Pool(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.nodeCertTTL == 0 {
		s.nodeCertTTL = DefaultNodeCertTTL
	}
	return s, nil
}

// ServerOptions returns the interceptors (metrics, then authorization) that
// a grpc.Server serving this Server must be built with; Register alone does
// not install them. Pass credentials.NewTLS(ServerTLSConfig(...)) too.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.metrics.unary, s.authUnary),
		grpc.ChainStreamInterceptor(s.metrics.stream, s.authStream),
	}
}

// NewGRPCServer builds a grpc.Server with TLS from tlsCfg (plus a
// handshake check against the replicated revocation list), the
// interceptors of ServerOptions and extra, and registers every service on
// it.
func (s *Server) NewGRPCServer(tlsCfg *tls.Config, extra ...grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.withRevocationCheck(tlsCfg)))}, s.ServerOptions()...)
	g := grpc.NewServer(append(opts, extra...)...)
	s.Register(g)
	return g
}

// Register registers AdminService, JoinService, ClusterInternal, health and
// reflection on g. g must have been built with ServerOptions; handlers also
// refuse to run without the authorization interceptor's verdict.
func (s *Server) Register(g *grpc.Server) {
	hubv1.RegisterAdminServiceServer(g, s)
	hubv1.RegisterJoinServiceServer(g, &joinService{s: s})
	hubv1.RegisterClusterInternalServer(g, &clusterInternal{s: s})
	hubv1.RegisterListServiceServer(g, &listService{s: s}) // lists.go
	hubv1.RegisterRoomServiceServer(g, &roomService{s: s}) // rooms.go
	hubv1.RegisterQueueServiceServer(g, &queueService{s: s, q: s.queue})
	hubv1.RegisterMemberAuditServiceServer(g, &memberService{s: s}) // member.go
	// Lawful interception and SIP capture (intercept.go).
	hubv1.RegisterInterceptServiceServer(g, &interceptService{s: s})
	hubv1.RegisterCaptureServiceServer(g, &captureService{s: s})
	healthpb.RegisterHealthServer(g, &healthService{s: s})
	reflection.Register(g)
}

// Close closes the connections to other nodes. Call it after the
// grpc.Server has stopped.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for addr, c := range s.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close conn to %s: %w", addr, err))
		}
		delete(s.conns, addr)
	}
	return errors.Join(errs...)
}

// conn returns the cached client connection to a node's admin address.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, raft.ErrClosed
	}
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := dial(addr, s.clientTLS)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

// leaderConn returns a connection to the leader's admin address.
func (s *Server) leaderConn() (*grpc.ClientConn, string, error) {
	id, _ := s.store.Leader()
	if id == "" {
		return nil, "", fmt.Errorf("forward to leader: %w", raft.ErrNoLeader)
	}
	if id == s.nodeID {
		// Our store says it is not the leader but the leader is us: a
		// transition in progress.
		return nil, "", fmt.Errorf("forward to leader: leadership changing: %w", raft.ErrNoLeader)
	}
	n := s.store.State().Node(id)
	if n == nil || n.GetAdminAddr() == "" {
		return nil, "", fmt.Errorf("forward to leader %q: no admin address known: %w", id, raft.ErrNoLeader)
	}
	c, err := s.conn(n.GetAdminAddr())
	return c, id, err
}

func isForwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

func (s *Server) forwardCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, s.nodeID)
}

// propose validates cmd against the local state, applies it (forwarding to
// the leader if this node is a follower) and waits until this node has
// applied it, so a following State() read reflects the write.
func (s *Server) propose(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	// Fail fast on the local (possibly slightly stale) state; the FSM checks
	// again on apply.
	if err := raft.CheckCommand(s.store.State(), cmd); err != nil {
		return 0, err
	}
	idx, err := s.store.Apply(ctx, cmd)
	if errors.Is(err, raft.ErrNotLeader) && !isForwarded(ctx) {
		idx, err = s.forwardPropose(ctx, cmd)
	}
	if err != nil {
		return 0, err
	}
	if err := s.store.WaitForApplied(ctx, idx); err != nil {
		return idx, fmt.Errorf("wait for index %d: %w", idx, err)
	}
	return idx, nil
}

func (s *Server) forwardPropose(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	b, err := proto.Marshal(cmd)
	if err != nil {
		return 0, fmt.Errorf("marshal command: %w", err)
	}
	c, leader, err := s.leaderConn()
	if err != nil {
		return 0, err
	}
	resp, err := hubv1.NewClusterInternalClient(c).Propose(s.forwardCtx(ctx), &hubv1.ProposeRequest{Command: b})
	if err != nil {
		s.log.Warn("forward to leader failed", "leader", leader, "err", err)
		return 0, err
	}
	if err := responseError(resp); err != nil {
		return 0, err
	}
	return resp.GetIndex(), nil
}

// responseError turns a ProposeResponse's code and message back into a
// gRPC status error (nil for code OK).
func responseError(resp *hubv1.ProposeResponse) error {
	if resp.GetCode() == 0 {
		return nil
	}
	return status.Error(codeFromUint(resp.GetCode()), resp.GetMessage())
}

// proposeResponse encodes err into a ProposeResponse.
func proposeResponse(idx uint64, err error) *hubv1.ProposeResponse {
	if err == nil {
		return &hubv1.ProposeResponse{Index: idx}
	}
	st := status.Convert(toStatus(err))
	return &hubv1.ProposeResponse{Index: idx, Code: uint32(st.Code()), Message: st.Message()}
}

// addVoter adds a voter here or, on a follower, on the leader.
func (s *Server) addVoter(ctx context.Context, id, addr string) error {
	err := s.store.AddVoter(ctx, id, addr)
	if errors.Is(err, raft.ErrNotLeader) && !isForwarded(ctx) {
		c, _, cerr := s.leaderConn()
		if cerr != nil {
			return cerr
		}
		resp, ferr := hubv1.NewClusterInternalClient(c).AddVoter(s.forwardCtx(ctx), &hubv1.AddVoterRequest{Id: id, RaftAddr: addr})
		if ferr != nil {
			return ferr
		}
		return responseError(resp)
	}
	return err
}

// removeServer removes a server here or, on a follower, on the leader.
func (s *Server) removeServer(ctx context.Context, id string) error {
	err := s.store.RemoveServer(ctx, id)
	if errors.Is(err, raft.ErrNotLeader) && !isForwarded(ctx) {
		c, _, cerr := s.leaderConn()
		if cerr != nil {
			return cerr
		}
		resp, ferr := hubv1.NewClusterInternalClient(c).RemoveServer(s.forwardCtx(ctx), &hubv1.RemoveNodeRequest{Id: id})
		if ferr != nil {
			return ferr
		}
		return responseError(resp)
	}
	return err
}

// command builds a version-1 command stamped with the proposer's clock.
func (s *Server) command(actor string) *hubv1.Command {
	return &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: s.now().UnixNano(), Actor: actor}
}

// audit appends a KindAdmin entry for a successful change. The change is
// already committed, so a ledger failure is logged, not returned. When
// actor is the authorized caller's name, the entry names its role too
// ("alice;role=operator"), so every handler's entry carries both.
func (s *Server) audit(ctx context.Context, method, actor, reason string) {
	if s.auditor == nil {
		return
	}
	if c, err := callerFrom(ctx); err == nil && c.Name != "" && c.Name == actor {
		actor = c.actor()
	}
	e := &ledger.Entry{Time: s.now().UnixNano(), Kind: ledger.KindAdmin, Method: method, From: actor, Reason: reason}
	if _, err := s.auditor.Append(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit append failed", "method", method, "actor", actor, "err", err)
		s.metrics.auditErrors.Inc()
	}
}
