package raft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// Maintenance operations: moving leadership (before a node is drained or
// restarted) and recovering a cluster that lost its quorum for good.

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date other voter when id is empty, and waits until this node knows
// the new leader, whose id it returns. Leader only (*NotLeaderError
// otherwise). Asking the leader to transfer to itself is a no-op.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	n.awaitLeader(ctx)
	if !n.IsLeader() {
		return "", n.notLeader()
	}
	if id == n.cfg.ID {
		return id, nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("raft leadership transfer: reading the configuration: %w", err)
	}
	servers := f.Configuration().Servers
	var fut hraft.Future
	if id == "" {
		others := slices.ContainsFunc(servers, func(s hraft.Server) bool {
			return s.Suffrage == hraft.Voter && string(s.ID) != n.cfg.ID
		})
		if !others {
			return "", fmt.Errorf("raft leadership transfer: no other voter to take over (add nodes first): %w", ErrFailedPrecondition)
		}
		fut = n.raft.LeadershipTransfer()
	} else {
		i := slices.IndexFunc(servers, func(s hraft.Server) bool { return string(s.ID) == id })
		switch {
		case i < 0:
			return "", fmt.Errorf("raft leadership transfer: server %q: %w", id, ErrNotFound)
		case servers[i].Suffrage != hraft.Voter:
			return "", fmt.Errorf("raft leadership transfer: server %q is a %s, only a voter can lead: %w", id, suffrage(servers[i].Suffrage), ErrFailedPrecondition)
		}
		fut = n.raft.LeadershipTransferToServer(servers[i].ID, servers[i].Address)
	}
	if err := n.wait(ctx, fut); err != nil {
		return "", fmt.Errorf("raft leadership transfer: %w", err)
	}
	// The future resolves once this node stepped down; the new leader is
	// known here with its first heartbeat.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if l, _ := n.Leader(); l != "" && l != n.cfg.ID {
			n.logger.Info("raft leadership transferred", "to", l)
			return l, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("raft leadership transfer: stepped down, waiting for the new leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// RecoverConfig describes an offline cluster recovery (hubd
// recover-cluster).
type RecoverConfig struct {
	// ID is this node's server id; it must be one of Servers.
	ID string
	// Dir is the node's raft directory (raft.db and snapshots/), as in
	// Config.Dir. The node must be stopped.
	Dir string
	// Servers is the new configuration: every server that will form the
	// recovered cluster, all voters. Usually this node alone.
	Servers []Server
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// RecoverCluster rewrites the stopped node's Raft state so that it starts
// as a member of a new cluster made of cfg.Servers, with the state it had
// (hashicorp/raft's RecoverCluster): the latest snapshot and every entry in
// its log, committed or not, are applied into a new snapshot that carries
// the new configuration, and the log is compacted. It is for a cluster
// that lost its quorum for good (a majority of voters gone): run it on one
// survivor (or on each survivor, with the same Servers), start the node(s)
// normally, then join new nodes. Running it while the rest of the old
// cluster is still alive forks the cluster: two leaders, two histories.
func RecoverCluster(cfg RecoverConfig) (*State, error) {
	if !ValidID(cfg.ID) {
		return nil, invalid("id", cfg.ID, "must be 1..63 characters of [a-z0-9-]")
	}
	if len(cfg.Servers) == 0 {
		return nil, invalid("peers", "", "at least one server (this node) is required")
	}
	conf := hraft.Configuration{}
	seen := map[string]bool{}
	for i, s := range cfg.Servers {
		f := fmt.Sprintf("peers[%d]", i)
		if !ValidID(s.ID) {
			return nil, invalid(f+".id", s.ID, "must be 1..63 characters of [a-z0-9-]")
		}
		if seen[s.ID] {
			return nil, invalid(f+".id", s.ID, "given twice")
		}
		seen[s.ID] = true
		if err := CheckAdvertiseAddr(s.Address); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", f, s.ID, err)
		}
		conf.Servers = append(conf.Servers, hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(s.ID), Address: hraft.ServerAddress(s.Address)})
	}
	if !seen[cfg.ID] {
		return nil, invalid("peers", "", fmt.Sprintf("must include this node (%s): a node recovered into a configuration without itself is removed at once", cfg.ID))
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dbPath := filepath.Join(cfg.Dir, "raft.db")
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("raft recover: %w (is %s the node's raft directory?)", err, cfg.Dir)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bolt.Options{Timeout: time.Second}})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("raft recover: %s is locked: stop hubd first: %w", dbPath, err)
		}
		return nil, fmt.Errorf("raft recover: opening %s: %w", dbPath, err)
	}
	defer store.Close()
	hl := newHCLogger(logger, hclog.Info)
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, DefaultConfig().RetainSnapshots, hl.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raft recover: snapshot store in %s: %w", cfg.Dir, err)
	}
	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.ID)
	rc.Logger = hl
	// The transport only names the snapshot's peers encoding; nothing is
	// sent.
	var self string
	for _, s := range cfg.Servers {
		if s.ID == cfg.ID {
			self = s.Address
		}
	}
	_, trans := hraft.NewInmemTransport(hraft.ServerAddress(self))
	defer trans.Close()
	fsm := NewFSM(logger, nil)
	if err := hraft.RecoverCluster(rc, fsm, store, store, snaps, trans, conf); err != nil {
		return nil, fmt.Errorf("raft recover: %w", err)
	}
	names := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		names[i] = s.ID + "=" + s.Address
	}
	logger.Warn("raft cluster recovered with a new configuration", "servers", strings.Join(names, ","), "state_index", fsm.State().Index)
	return fsm.State(), nil
}

// LastConfiguration reads the Raft configuration a stopped node last knew
// (from its log and snapshots), for recover-cluster to show before it
// changes anything.
func LastConfiguration(dir string) ([]Server, error) {
	dbPath := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("raft: %w (is %s the node's raft directory?)", err, dir)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bolt.Options{Timeout: time.Second, ReadOnly: true}})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("raft: %s is locked: stop hubd first: %w", dbPath, err)
		}
		return nil, fmt.Errorf("raft: opening %s: %w", dbPath, err)
	}
	defer store.Close()
	hl := newHCLogger(slog.New(slog.DiscardHandler), hclog.Error)
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(dir, DefaultConfig().RetainSnapshots, hl)
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot store in %s: %w", dir, err)
	}
	// The newest snapshot's configuration, then every configuration entry
	// in the log after it (hraft.GetConfiguration would write to the
	// stores).
	var c hraft.Configuration
	var after uint64
	metas, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("raft: listing snapshots: %w", err)
	}
	if len(metas) > 0 {
		c, after = metas[0].Configuration, metas[0].Index
	}
	first, err := store.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading the log: %w", err)
	}
	last, err := store.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading the log: %w", err)
	}
	for i := max(first, after+1); i <= last && i > 0; i++ {
		var l hraft.Log
		if err := store.GetLog(i, &l); err != nil {
			return nil, fmt.Errorf("raft: log entry %d: %w", i, err)
		}
		if l.Type == hraft.LogConfiguration {
			if c, err = decodeConfiguration(l.Data); err != nil {
				return nil, fmt.Errorf("raft: log entry %d: %w", i, err)
			}
		}
	}
	out := make([]Server, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = Server{ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage)}
	}
	return out, nil
}

// decodeConfiguration is hraft.DecodeConfiguration, which panics on bad
// bytes, returning an error instead.
func decodeConfiguration(b []byte) (c hraft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("undecodable configuration entry: %v", r)
		}
	}()
	return hraft.DecodeConfiguration(b), nil
}
