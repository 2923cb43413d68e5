package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/raft"
)

// Readiness. A node serves SIP and admin reads only from state at least as
// new as what it had applied when it stopped. On start Raft restores the
// latest snapshot at once, but the log after it is re-applied only when a
// leader confirms the commit index, 1-2 s later; until then the state is
// older (members unknown: 403 "unattributable source"; an empty network
// list). So hubd opens the SIP listeners only after raft.WaitRestored, and
// the admin API, which must be up meanwhile (peers forward and probe
// through it), refuses state-reading calls with Unavailable. A node removed
// from the cluster stops its SIP plane and refuses the same calls: its
// state is frozen.

// restoreProbe is what the gate reads (*raft.Node).
type restoreProbe interface {
	Restored() bool
	Removed() bool
	RestoreProgress() (applied, target uint64)
	WaitRestored(ctx context.Context) error
}

// readyGate is the admin API's interceptor pair for the above.
type readyGate struct{ node restoreProbe }

// gateMaxWait is how long a call made while restoring waits for the
// restore (at most half its deadline) before it is refused: a hubctl
// command typed right after start then just works.
const gateMaxWait = 5 * time.Second

// ungated are the calls that answer while restoring: cluster status reports
// the restore itself. JoinService, ClusterInternal (forwarded writes, peer
// probes) and health are not AdminService and are never gated.
var ungated = map[string]bool{"/clearhub.v1.AdminService/ClusterStatus": true}

func gated(method string) bool {
	return strings.HasPrefix(method, "/clearhub.v1.AdminService/") && !ungated[method]
}

// check returns nil when method may run now, waiting for the restore first
// (bounded); otherwise a gRPC Unavailable error saying why.
func (g readyGate) check(ctx context.Context, method string) error {
	if !gated(method) {
		return nil
	}
	if g.node.Removed() {
		return status.Error(codes.Unavailable, "node removed from the cluster: its state is frozen; use another node")
	}
	if g.node.Restored() {
		return nil
	}
	wait := gateMaxWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	defer cancel()
	err := g.node.WaitRestored(wctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrRemoved):
		return status.Error(codes.Unavailable, "node removed from the cluster: its state is frozen; use another node")
	}
	applied, target := g.node.RestoreProgress()
	return status.Errorf(codes.Unavailable, "node not ready: restoring state (applied %d of %d)", applied, target)
}

func (g readyGate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g readyGate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (g readyGate) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream)}
}

// awaitRestored blocks until the node has re-applied its log (raft logs
// the progress), or notes that it was removed, or returns ctx's error.
func (n *hubNode) awaitRestored(ctx context.Context) error {
	if !n.raft.Restored() {
		applied, target := n.raft.RestoreProgress()
		n.log.Info("waiting for the raft log to be re-applied before serving SIP and admin reads",
			"applied_index", applied, "target_index", target)
	}
	err := n.raft.WaitRestored(ctx)
	switch {
	case errors.Is(err, raft.ErrRemoved):
		n.removed = true
		n.log.Error("this node was removed from the cluster: not serving SIP; rejoin with a new node id and an empty data directory")
		return nil
	case err != nil:
		return fmt.Errorf("waiting for the raft log to be re-applied: %w", err)
	}
	return nil
}

// stopSIPRemoved closes the SIP plane of a node that was removed while
// running. The process stays up so status and /readyz can say why.
func (n *hubNode) stopSIPRemoved() {
	n.removed = true
	n.log.Error("this node was removed from the cluster: stopping the SIP plane (its state is frozen); rejoin with a new node id and an empty data directory")
	if n.sip == nil {
		return
	}
	if err := n.sip.Close(); err != nil {
		n.log.Warn("closing the SIP plane", "err", err)
	}
	if err := <-n.sipDone; err != nil {
		n.log.Warn("SIP plane stopped", "err", err)
	}
	n.sip, n.sipDone = nil, nil
}
