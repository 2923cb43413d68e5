package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Config configures a Node. Start from DefaultConfig; Open calls Validate.
type Config struct {
	// ID is this node's Raft server id: 1..63 characters of [a-z0-9-],
	// stable across restarts. A removed node must rejoin with a new id and
	// an empty Dir.
	ID string
	// Dir holds raft.db (log and stable store, bbolt) and snapshots/.
	Dir string

	// BindAddr is the TCP address the Raft TLS listener binds
	// ("0.0.0.0:7000" is fine); Advertise is the routable host:port other
	// nodes dial. Advertise may be empty if BindAddr is a specific address.
	BindAddr  string
	Advertise string
	// ServerTLS serves incoming Raft connections. It must require and
	// verify client certificates (tls.RequireAndVerifyClientCert) and set
	// VerifyConnection to admit only hub node certificates
	// (pki.VerifyRole(pki.RoleNode)). ClientTLS dials peers; it must also
	// set VerifyConnection. If ClientTLS.ServerName is empty each dial uses
	// the host of the peer's address.
	ServerTLS, ClientTLS *tls.Config

	// Transport, if set, replaces the TLS transport (tests pass a
	// hraft.InmemTransport); BindAddr, Advertise and the TLS configs must
	// then be empty. The Node owns it and closes it on Close.
	Transport hraft.Transport

	// Bootstrap makes a node with no Raft state on disk start a new
	// single-server cluster with itself as voter. Ignored when state exists.
	Bootstrap bool

	// Logger receives the node's and hashicorp/raft's logs (Raft's at Info
	// and above). Nil discards.
	Logger *slog.Logger
	// OnApply, if set, runs on the FSM goroutine after each state change;
	// see NewFSM for its rules.
	OnApply func(*State)

	// SnapshotThreshold is how many logs since the last snapshot trigger a
	// new one; TrailingLogs is how many logs stay behind a snapshot for
	// slow followers; SnapshotInterval is how often the threshold is
	// checked. RetainSnapshots is how many snapshot files are kept.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	RetainSnapshots   int

	// Raft timing (see hraft.Config). LeaderLeaseTimeout must not exceed
	// HeartbeatTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds how long Apply, AddVoter, RemoveServer and
	// Barrier wait to enqueue when their context has no deadline.
	ApplyTimeout time.Duration
	// LeaderWait is how long those leader-only calls wait for a leader to
	// be known (right after start, during an election) before answering
	// ErrNoLeader; at most half the context's remaining time is spent on it.
	LeaderWait time.Duration
	// RestoreTimeout bounds the wait for the restore target (see
	// Node.WaitRestored) in one case only: once a leader is known and
	// everything this node knows committed is applied, the target may be an
	// uncommitted tail that the new leader discarded, so after this long the
	// node counts as restored anyway (with a warning). Without a leader the
	// wait does not end: stale state is what the wait exists to prevent.
	RestoreTimeout time.Duration
}

// DefaultConfig returns production defaults; fill in ID, Dir, addresses
// and TLS.
func DefaultConfig() Config {
	return Config{
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotInterval:   2 * time.Minute,
		RetainSnapshots:    2,
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		ApplyTimeout:       10 * time.Second,
		LeaderWait:         5 * time.Second,
		RestoreTimeout:     30 * time.Second,
	}
}

// Validate reports the first bad field, naming it. The error wraps
// ErrInvalid.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: raft config %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	if !ValidID(c.ID) {
		return bad("ID", "%q must be 1..63 characters of [a-z0-9-]", c.ID)
	}
	if c.Dir == "" {
		return bad("Dir", "required")
	}
	if c.Transport != nil {
		if c.BindAddr != "" || c.Advertise != "" || c.ServerTLS != nil || c.ClientTLS != nil {
			return bad("Transport", "set either Transport or BindAddr/Advertise/ServerTLS/ClientTLS, not both")
		}
	} else {
		if c.ServerTLS == nil {
			return bad("ServerTLS", "required")
		}
		if c.ClientTLS == nil {
			return bad("ClientTLS", "required")
		}
		if c.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
			return bad("ServerTLS.ClientAuth", "must be tls.RequireAndVerifyClientCert")
		}
		if c.ServerTLS.VerifyConnection == nil {
			return bad("ServerTLS.VerifyConnection", "required: it must admit only hub node certificates")
		}
		if c.ClientTLS.VerifyConnection == nil {
			return bad("ClientTLS.VerifyConnection", "required: it must admit only hub node certificates")
		}
		if len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil {
			return bad("ServerTLS.Certificates", "no certificate")
		}
		if len(c.ClientTLS.Certificates) == 0 && c.ClientTLS.GetClientCertificate == nil {
			return bad("ClientTLS.Certificates", "no client certificate")
		}
		if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			return bad("BindAddr", "%q: %v", c.BindAddr, err)
		}
		if c.Advertise != "" {
			if err := CheckAdvertiseAddr(c.Advertise); err != nil {
				return bad("Advertise", "%v", err)
			}
		}
	}
	switch {
	case c.SnapshotThreshold == 0:
		return bad("SnapshotThreshold", "must be positive")
	case c.SnapshotInterval < 5*time.Millisecond:
		return bad("SnapshotInterval", "must be at least 5ms")
	case c.RetainSnapshots < 1:
		return bad("RetainSnapshots", "must be at least 1")
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return bad("HeartbeatTimeout", "must be at least 5ms")
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return bad("ElectionTimeout", "must be at least HeartbeatTimeout (%v)", c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return bad("LeaderLeaseTimeout", "must be between 5ms and HeartbeatTimeout (%v)", c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond:
		return bad("CommitTimeout", "must be at least 1ms")
	case c.ApplyTimeout <= 0:
		return bad("ApplyTimeout", "must be positive")
	case c.LeaderWait < 0:
		return bad("LeaderWait", "must not be negative")
	case c.RestoreTimeout <= 0:
		return bad("RestoreTimeout", "must be positive")
	}
	return nil
}

// LeaderInfo describes the current leader as seen by this node. ID is empty
// while no leader is known.
type LeaderInfo struct {
	ID, Addr string
	Self     bool
}

// NotLeaderError is returned (wrapping ErrNotLeader, and ErrNoLeader when no
// leader is known) by leader-only calls on a follower. The admin forwarder
// uses LeaderID to find the leader's admin address in State().Node.
type NotLeaderError struct {
	LeaderID, LeaderAddr string
	// Unknown is set when leadership was lost while the call was in flight:
	// the command may or may not have been committed.
	Unknown bool
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.Unknown:
		return "leadership lost while applying; the command may still commit"
	case e.LeaderID == "":
		return "not the raft leader: no leader known"
	}
	return fmt.Sprintf("not the raft leader: leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap lets errors.Is match ErrNotLeader, and ErrNoLeader if no leader
// is known.
func (e *NotLeaderError) Unwrap() []error {
	if e.LeaderID == "" && !e.Unknown {
		return []error{ErrNotLeader, ErrNoLeader}
	}
	return []error{ErrNotLeader}
}

// Node is one member of the hub's Raft cluster. All methods are safe for
// concurrent use. State never blocks and is what the SIP hot path reads;
// the other methods are for the admin plane and the daemon's wiring.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *FSM
	raft   *hraft.Raft
	trans  hraft.Transport
	store  *raftboltdb.BoltStore

	observer *hraft.Observer
	obsCh    chan hraft.Observation
	stop     chan struct{}
	watchWG  sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	leaderCh map[chan LeaderInfo]struct{}

	// restoreTarget is the index of the last command in the log store
	// when the node opened: the FSM has applied at least this much before
	// the node is restored (restored closed). See WaitRestored.
	restoreTarget uint64
	restored      chan struct{}
	removedOnce   sync.Once
	removed       chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the node's storage in cfg.Dir, starts Raft and,
// with cfg.Bootstrap on a node without existing state, bootstraps a
// single-server cluster. It does not wait for a leader (see
// WaitForLeader). ctx only guards the start: Open refuses to begin if it is
// already done. The caller must Close the node.
func Open(ctx context.Context, cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("raft_id", cfg.ID)
	hl := newHCLogger(logger, hclog.Info)

	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: creating %s: %w", cfg.Dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.Dir, "raft.db"),
		// Without a timeout bbolt waits forever for a lock held by another
		// process using the same Dir.
		BoltOptions: &bolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("raft: opening log store in %s: %w", cfg.Dir, err)
	}
	cleanup = append(cleanup, store.Close)
	logs, err := hraft.NewLogCache(512, store)
	if err != nil {
		return nil, fmt.Errorf("raft: log cache: %w", err)
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.RetainSnapshots, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot store in %s: %w", cfg.Dir, err)
	}

	trans := cfg.Transport
	var stream *TLSStreamLayer
	if trans == nil {
		trans, stream, err = listenTLS(cfg, hl, logger)
		if err != nil {
			return nil, err
		}
	}
	if c, ok := trans.(hraft.WithClose); ok {
		cleanup = append(cleanup, c.Close)
	}

	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	if err := hraft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("%w: raft config: %v", ErrInvalid, err)
	}

	existing, err := hraft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("raft: checking existing state: %w", err)
	}
	if cfg.Bootstrap && !existing {
		conf := hraft.Configuration{Servers: []hraft.Server{{
			Suffrage: hraft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}}
		if err := hraft.BootstrapCluster(rc, logs, store, snaps, trans, conf); err != nil {
			return nil, fmt.Errorf("raft: bootstrap: %w", err)
		}
		logger.Info("raft cluster bootstrapped", "addr", trans.LocalAddr())
	} else if cfg.Bootstrap {
		logger.Info("raft state exists; not bootstrapping")
	}

	// Read before Raft starts: afterwards a leader may append to the log.
	target, err := lastCommandIndex(store)
	if err != nil {
		return nil, fmt.Errorf("raft: reading the log store: %w", err)
	}
	fsm := NewFSM(logger, cfg.OnApply)
	if stream != nil {
		// Peers are checked against the replicated revocation list from now on.
		stream.SetState(fsm.State)
	}
	// NewRaft restores the latest snapshot into fsm before it returns; the
	// log after it is applied only once a leader says it is committed.
	r, err := hraft.NewRaft(rc, fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raft: starting: %w", err)
	}
	n = &Node{
		cfg: cfg, logger: logger, fsm: fsm, raft: r, trans: trans, store: store,
		obsCh:         make(chan hraft.Observation, 64),
		stop:          make(chan struct{}),
		leaderCh:      map[chan LeaderInfo]struct{}{},
		restoreTarget: target,
		restored:      make(chan struct{}),
		removed:       make(chan struct{}),
	}
	// Observers, not LeaderCh: LeaderCh has a single consumer and drops
	// transitions. A non-blocking observer cannot stall Raft; the buffer is
	// drained by watchLeader at once.
	n.observer = hraft.NewObserver(n.obsCh, false, func(o *hraft.Observation) bool {
		_, ok := o.Data.(hraft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.watchWG.Add(2)
	go n.watchLeader()
	go n.watchRestore()
	return n, nil
}

func listenTLS(cfg Config, hl hclog.Logger, logger *slog.Logger) (hraft.Transport, *TLSStreamLayer, error) {
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("raft: listening on %s: %w", cfg.BindAddr, err)
	}
	var adv net.Addr
	if cfg.Advertise != "" {
		adv = advertiseAddr(cfg.Advertise)
	}
	sl, err := NewTLSStreamLayer(tls.NewListener(ln, cfg.ServerTLS), adv, cfg.ClientTLS)
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("raft: %w (set Advertise)", err)
	}
	sl.Logger = logger
	return hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl.Named("transport"),
	}), sl, nil
}

// watchLeader fans leader observations out to LeaderChanges subscribers.
// Owned by the Node; stopped by Close.
func (n *Node) watchLeader() {
	defer n.watchWG.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.obsCh:
			lo, ok := o.Data.(hraft.LeaderObservation)
			if !ok {
				continue
			}
			li := LeaderInfo{ID: string(lo.LeaderID), Addr: string(lo.LeaderAddr)}
			li.Self = li.ID == n.cfg.ID
			n.logger.Info("raft leader changed", "leader_id", li.ID, "leader_addr", li.Addr, "self", li.Self)
			n.mu.Lock()
			for ch := range n.leaderCh {
				select {
				case <-ch:
				default:
				}
				ch <- li
			}
			n.mu.Unlock()
		}
	}
}

// LeaderChanges returns a channel that receives the leader as it changes
// (observed through hraft observers, so any number of consumers can watch).
// It holds only the newest value: a slow reader skips intermediate changes.
// The channel is closed by cancel or by Close; call cancel once when done.
func (n *Node) LeaderChanges() (changes <-chan LeaderInfo, cancel func()) {
	ch := make(chan LeaderInfo, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return ch, func() {}
	}
	n.leaderCh[ch] = struct{}{}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.leaderCh[ch]; ok {
			delete(n.leaderCh, ch)
			close(ch)
		}
	}
}

// Subscribe returns a channel receiving the newest State after every
// change; see FSM.Subscribe.
func (n *Node) Subscribe() (states <-chan *State, cancel func()) { return n.fsm.Subscribe() }

// State returns the current immutable cluster state. Any goroutine; never
// blocks. It may lag the leader (reads are local).
func (n *Node) State() *State { return n.fsm.State() }

// ID returns this node's Raft server id.
func (n *Node) ID() string { return n.cfg.ID }

// Addr returns the Raft address other nodes use for this node (the
// advertised address, for PutNode.raft_addr and AddVoter).
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node is the leader right now. Leadership can
// change the moment after; leader-only calls re-check.
func (n *Node) IsLeader() bool { return n.raft.State() == hraft.Leader }

// Leader returns the id and Raft address of the leader this node knows of,
// or empty strings.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

func (n *Node) notLeader() error {
	if n.raft.State() == hraft.Shutdown {
		return ErrClosed
	}
	id, addr := n.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// Apply proposes cmd and waits until it is committed and applied on this
// node. Leader only: on a follower it returns a *NotLeaderError (wrapping
// ErrNotLeader). It runs AdmitCommand against the local state first and
// returns its error without proposing; otherwise it returns the index and
// the FSM's (deterministic) verdict, which may differ if a concurrent
// command won. Called by admin handlers, from their own goroutines.
//
// If ctx ends first Apply returns ctx.Err(), but the command may still be
// applied later.
func (n *Node) Apply(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	n.awaitLeader(ctx)
	if !n.IsLeader() {
		return 0, n.notLeader()
	}
	if err := AdmitCommand(n.State(), cmd); err != nil {
		return 0, err
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return 0, fmt.Errorf("%w: encoding command: %v", ErrInvalid, err)
	}
	f := n.raft.Apply(data, n.enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return 0, err
	}
	res, ok := f.Response().(*ApplyResult)
	if !ok {
		return f.Index(), fmt.Errorf("raft apply: unexpected FSM response %T", f.Response())
	}
	return res.Index, res.Err
}

// ApplyBytes is Apply for an encoded hubv1.Command, as forwarded by a
// follower's admin service. Bytes that do not decode are ErrInvalid and are
// never proposed.
func (n *Node) ApplyBytes(ctx context.Context, data []byte) (uint64, error) {
	cmd := &hubv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return 0, fmt.Errorf("%w: decoding command: %v", ErrInvalid, err)
	}
	return n.Apply(ctx, cmd)
}

// AddVoter adds (or updates) a voting server. Leader only. addr must be the
// server's routable Raft address. Called by the admin join handler.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if !ValidID(id) {
		return invalid("server id", id, "must be 1..63 characters of [a-z0-9-]")
	}
	if err := CheckAdvertiseAddr(addr); err != nil {
		return err
	}
	n.awaitLeader(ctx)
	if !n.IsLeader() {
		return n.notLeader()
	}
	f := n.raft.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, n.enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return fmt.Errorf("raft add voter %s at %s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a server from the configuration. Leader only. The
// removed node shuts its Raft down; to come back it needs an empty Dir and
// a new id.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	n.awaitLeader(ctx)
	if !n.IsLeader() {
		return n.notLeader()
	}
	f := n.raft.RemoveServer(hraft.ServerID(id), 0, n.enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return fmt.Errorf("raft remove server %s: %w", id, err)
	}
	return nil
}

// Barrier waits until every command committed before it is applied on this
// node, the leader. Leader only: use it before a read that must see every
// acknowledged write.
func (n *Node) Barrier(ctx context.Context) error {
	n.awaitLeader(ctx)
	if !n.IsLeader() {
		return n.notLeader()
	}
	return n.wait(ctx, n.raft.Barrier(n.enqueueTimeout(ctx)))
}

// WaitForApplied waits until this node's State().Index reaches index (one
// returned by Apply, i.e. a command's index; Raft-internal entries such as
// elections' no-ops never reach the FSM). Works on any node: a follower's
// admin service calls it after a forwarded write to read its own write.
func (n *Node) WaitForApplied(ctx context.Context, index uint64) error {
	return n.fsm.waitIndex(ctx, index)
}

// awaitLeader gives a node that knows no leader (just started, or in an
// election) up to cfg.LeaderWait, and at most half of ctx's remaining time,
// to learn one, so a write right after start is not refused outright. The
// caller then checks leadership as usual.
func (n *Node) awaitLeader(ctx context.Context) {
	if id, _ := n.Leader(); id != "" || n.cfg.LeaderWait <= 0 {
		return
	}
	wait := n.cfg.LeaderWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	if wait <= 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_ = n.WaitForLeader(wctx) // on timeout the caller reports ErrNoLeader
}

// WaitForLeader waits until this node knows a leader (possibly itself).
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		if n.raft.State() == hraft.Shutdown {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raft: waiting for a leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Status returns a point-in-time view of this node's Raft state.
func (n *Node) Status() Status {
	st := n.raft.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	id, addr := n.Leader()
	s := Status{
		NodeID:        n.cfg.ID,
		State:         n.raft.State().String(),
		LeaderID:      id,
		LeaderAddr:    addr,
		Term:          u("term"),
		CommitIndex:   u("commit_index"),
		AppliedIndex:  u("applied_index"),
		LastIndex:     u("last_log_index"),
		StateIndex:    n.fsm.State().Index,
		RestoreTarget: n.restoreTarget,
		Restored:      n.Restored(),
		Removed:       n.Removed(),
	}
	f := n.raft.GetConfiguration()
	if f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			s.Servers = append(s.Servers, Server{ID: string(srv.ID), Address: string(srv.Address), Suffrage: suffrage(srv.Suffrage)})
		}
	}
	return s
}

func suffrage(s hraft.ServerSuffrage) string {
	switch s {
	case hraft.Voter:
		return "voter"
	case hraft.Nonvoter:
		return "nonvoter"
	case hraft.Staging:
		return "staging"
	}
	return s.String()
}

// Close shuts the node down: Raft first (Shutdown().Error()), then the
// transport, then the log store, in that order. It closes LeaderChanges
// channels. Safe to call more than once; later calls return the first
// result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		n.raft.DeregisterObserver(n.observer)
		close(n.stop)
		n.watchWG.Wait()
		n.mu.Lock()
		n.closed = true
		for ch := range n.leaderCh {
			close(ch)
		}
		n.leaderCh = nil
		n.mu.Unlock()
		if c, ok := n.trans.(hraft.WithClose); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("raft transport close: %w", err))
			}
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft store close: %w", err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// enqueueTimeout is how long hashicorp/raft may wait to enqueue an
// operation: until ctx's deadline, else cfg.ApplyTimeout.
func (n *Node) enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return n.cfg.ApplyTimeout
}

// wait waits for f or ctx and maps hashicorp/raft errors onto ours. The
// helper goroutine ends when Raft answers the future, which it always does
// (at the latest on shutdown).
func (n *Node) wait(ctx context.Context, f hraft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hraft.ErrNotLeader):
		return n.notLeader()
	case errors.Is(err, hraft.ErrLeadershipLost):
		id, addr := n.Leader()
		return &NotLeaderError{LeaderID: id, LeaderAddr: addr, Unknown: true}
	case errors.Is(err, hraft.ErrRaftShutdown):
		return ErrClosed
	}
	return err
}
