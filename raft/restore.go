package raft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// ErrRemoved is returned by WaitRestored once this node has been removed
// from the cluster's Raft configuration.
var ErrRemoved = errors.New("node removed from the cluster")

// memberFile, in Dir, records that this node has been in the Raft
// configuration. Only a node that has been a member can be "removed": a
// joiner replaying the log holds, for a while, older configurations
// without itself.
const memberFile = "member"

// How often the restore/removal watcher looks, and how often it logs
// progress while restoring.
const (
	watchEvery    = 200 * time.Millisecond
	progressEvery = 5 * time.Second
)

// lastCommandIndex is the index of the newest command entry in the log
// store (0 if none). Entries after the latest snapshot are only re-applied
// once a leader confirms the commit index, so until the FSM reaches this
// index it serves older state than the node had before it stopped. Every
// command at or below the snapshot's index is already in the restored
// snapshot, so the scan may run into them harmlessly.
func lastCommandIndex(store *raftboltdb.BoltStore) (uint64, error) {
	first, err := store.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := store.LastIndex()
	if err != nil {
		return 0, err
	}
	for i := last; i >= first && i > 0; i-- {
		var l hraft.Log
		if err := store.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("log entry %d: %w", i, err)
		}
		if l.Type == hraft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

// RestoreProgress reports the FSM's applied command index and the restore
// target: the last command index in the log when the node opened.
func (n *Node) RestoreProgress() (applied, target uint64) {
	return n.fsm.State().Index, n.restoreTarget
}

// Restored reports whether the FSM has re-applied the log the node had when
// it opened (see WaitRestored).
func (n *Node) Restored() bool {
	select {
	case <-n.restored:
		return true
	default:
		return false
	}
}

// Removed reports whether this node, having been a member, is no longer in
// the latest Raft configuration it knows: it was removed and gets no more
// updates, so its state is frozen.
func (n *Node) Removed() bool {
	select {
	case <-n.removed:
		return true
	default:
		return false
	}
}

// RemovedChan is closed when the node notices its removal.
func (n *Node) RemovedChan() <-chan struct{} { return n.removed }

// WaitRestored waits until the FSM has applied every command that was in
// the log store when the node opened, so what the node serves is at least
// as new as what it served before it stopped. Right after Open only the
// snapshot is restored; the rest follows once a leader confirms the commit
// index. It returns ErrRemoved if the node is removed meanwhile, ErrClosed
// on Close, or ctx's error.
func (n *Node) WaitRestored(ctx context.Context) error {
	select {
	case <-n.restored:
		return nil
	case <-n.removed:
		return ErrRemoved
	case <-n.stop:
		return ErrClosed
	case <-ctx.Done():
		applied, target := n.RestoreProgress()
		return fmt.Errorf("raft: restoring state (applied %d of %d): %w", applied, target, ctx.Err())
	}
}

// watchRestore closes restored when the FSM reaches the restore target and
// removed when the node drops out of the configuration; it logs restore
// progress. Owned by the Node; stopped by Close.
func (n *Node) watchRestore() {
	defer n.watchWG.Done()
	start := time.Now()
	lastLog := start
	member := fileExists(filepath.Join(n.cfg.Dir, memberFile))
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		wake := *n.fsm.applied.Load() // load before checking: no lost wake-up
		member = n.checkMembership(member)
		if !n.Restored() && !n.Removed() {
			applied, target := n.RestoreProgress()
			leader, _ := n.Leader()
			switch {
			case applied >= target:
				n.logger.Info("raft state restored", "applied_index", applied, "took", time.Since(start).Round(time.Millisecond))
				close(n.restored)
			case time.Since(start) >= n.cfg.RestoreTimeout && leader != "" && n.caughtUp():
				n.logger.Warn("raft restore target not reached: the log tail was not confirmed by the leader (probably uncommitted entries it discarded); serving what it committed",
					"applied_index", applied, "target_index", target, "leader_id", leader)
				close(n.restored)
			case time.Since(lastLog) >= progressEvery:
				lastLog = time.Now()
				n.logger.Info("restoring raft state: not serving until the log is re-applied",
					"applied_index", applied, "target_index", target, "leader_id", leader)
			}
		}
		select {
		case <-n.stop:
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// checkMembership records the first time this node is in the
// configuration and closes removed when a former member is no longer in it.
// It returns whether the node has been a member.
func (n *Node) checkMembership(member bool) bool {
	if n.Removed() {
		return member
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return member
	}
	servers := f.Configuration().Servers
	in := false
	for _, s := range servers {
		in = in || string(s.ID) == n.cfg.ID
	}
	switch {
	case in && !member:
		if err := os.WriteFile(filepath.Join(n.cfg.Dir, memberFile), []byte(n.cfg.ID+"\n"), 0o600); err != nil {
			n.logger.Warn("recording cluster membership", "err", err)
		}
		return true
	case !in && member && len(servers) > 0:
		n.removedOnce.Do(func() {
			n.logger.Error("this node was removed from the cluster: its state is frozen and it must not serve; rejoin with a new id and an empty data directory",
				"configuration", fmt.Sprint(servers))
			close(n.removed)
		})
	}
	return member
}

// caughtUp reports whether Raft has handed the FSM every entry this node
// knows to be committed.
func (n *Node) caughtUp() bool {
	st := n.raft.Stats()
	commit, _ := strconv.ParseUint(st["commit_index"], 10, 64)
	return n.raft.AppliedIndex() >= commit
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
