package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// A state snapshot file is one JSON object: a small header, then the
// replicated state in protojson (the lossless form: times, status and
// everything the FSM holds, unlike hubctl export, which is the declarative
// subset for apply -f). state_sha256 covers the deterministic protobuf
// encoding of the state, so a damaged or hand-edited file is refused.
const snapshotFormat = "clearhub-state-snapshot/1"

// maxSnapshotFile bounds what restore reads (the node's own state
// snapshots are bounded at 256 MiB too).
const maxSnapshotFile = 256 << 20

// stateIndexHeader is admin.StateIndexHeader.
const stateIndexHeader = "clearhub-state-index"

type snapshotFile struct {
	Format string `json:"format"`
	// Created is when hubctl saved it (RFC 3339).
	Created string `json:"created"`
	// HubctlVersion is the saving hubctl's version.
	HubctlVersion string `json:"hubctl_version"`
	// RaftIndex is the answering node's applied index when it was read.
	RaftIndex uint64 `json:"raft_index"`
	// ClusterCASHA256 is the SHA-256 of the cluster CA certificate (DER)
	// hubctl trusted when saving: which cluster this came from.
	ClusterCASHA256 string `json:"cluster_ca_sha256"`
	// Networks and Policies count what it holds (for a reader).
	Networks    int             `json:"networks"`
	Policies    int             `json:"policies"`
	StateSHA256 string          `json:"state_sha256"`
	State       json.RawMessage `json:"state"`
}

func newClusterSnapshotCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the replicated state to a file, or restore the membership from one",
		Long: `Save the cluster's replicated state (networks, policy, rooms, lists, nodes,
revocations, join-token records, queues) to a file, and restore the
membership from one.

Restoring replaces, through the Raft log (every node applies it alike),
every network, policy (with its share_views grants) and resource list, and
every room's configuration, participants and bans. Kept as they are: nodes,
revocations, join-token records, the store-and-forward queues, and the
message history, sequence and unfinished deliveries of a room that exists
both now and in the file (a room only in the file starts with no history;
a room or list not in the file is deleted, history included). The audit ledgers are not in the state: each node's ledger is
backed up with "hubctl audit export" (online) or "hubd ledger-backup"
(stopped node).`,
	}
	c.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd())
	return c
}

func newSnapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Write the replicated state to FILE (JSON; mode 0600)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			caSum, err := clusterCAFingerprint(cmd)
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var hdr metadata.MD
				st, err := c.GetState(ctx, &hubv1.GetStateRequest{}, grpc.Header(&hdr))
				if err != nil {
					return err
				}
				f, err := encodeSnapshot(st, caSum, headerUint(hdr, stateIndexHeader), time.Now())
				if err != nil {
					return err
				}
				if err := writeFileAtomic(args[0], f, 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "saved %d networks and %d policies, %d rooms, %d lists (raft index %s) to %s\n",
					len(st.GetNetworks()), len(st.GetPolicies()), len(st.GetRooms()), len(st.GetLists()), orDash(first(hdr.Get(stateIndexHeader))), args[0])
				return nil
			})
		},
	}
}

func newSnapshotRestoreCmd() *cobra.Command {
	var dryRun, otherCluster bool
	c := &cobra.Command{
		Use:   "restore FILE [--dry-run]",
		Short: "Replace the networks, policy, rooms and lists with those of FILE (--dry-run: list the changes only)",
		Long: `Replace every network, policy and list, and every room's configuration,
participants and bans, with those saved in FILE, through the Raft log.
Nodes, revocations, join-token records, queues and the history of rooms
that exist now are kept (see "hubctl cluster snapshot --help"). The file must
come from this cluster (its cluster CA fingerprint), unless --other-cluster
is given (rebuilding a lost cluster from its snapshot). --dry-run lists
what would change and changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readLimited(args[0], maxSnapshotFile)
			if err != nil {
				return err
			}
			sf, st, err := decodeSnapshot(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			caSum, err := clusterCAFingerprint(cmd)
			if err != nil {
				return err
			}
			if sf.ClusterCASHA256 != caSum && !otherCluster {
				return usagef("%s was saved from another cluster (CA %s, this one %s): pass --other-cluster to restore it here", args[0], short(sf.ClusterCASHA256), short(caSum))
			}
			stripUnrestored(st)
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				res, err := c.RestoreState(ctx, &hubv1.RestoreStateRequest{State: st, DryRun: dryRun})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				switch {
				case len(res.GetChanges()) == 0:
					fmt.Fprintln(out, "no changes: the networks, policies, rooms and lists already match the snapshot")
				case dryRun:
					fmt.Fprintf(out, "would change (%d):\n", len(res.GetChanges()))
				default:
					fmt.Fprintf(out, "restored at raft index %d (%d changes):\n", res.GetIndex(), len(res.GetChanges()))
				}
				for _, l := range res.GetChanges() {
					fmt.Fprintf(out, "  %s\n", l)
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "list the changes, change nothing")
	c.Flags().BoolVar(&otherCluster, "other-cluster", false, "restore a snapshot saved from a cluster with another CA")
	return c
}

// stripUnrestored drops, after the digest check, what a restore ignores
// (queued messages, room history and fan-outs: raft/restorestate.go), so
// the request stays within gRPC's message limit when the saved rooms were
// busy.
func stripUnrestored(st *hubv1.ClusterState) {
	st.Queued = nil
	for _, r := range st.GetRooms() {
		r.History, r.Fanouts, r.LastSeq = nil, nil, 0
	}
}

// encodeSnapshot builds the file for st.
func encodeSnapshot(st *hubv1.ClusterState, caSum string, index uint64, now time.Time) ([]byte, error) {
	sum, err := stateDigest(st)
	if err != nil {
		return nil, err
	}
	body, err := protojson.MarshalOptions{Indent: "  "}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	f := snapshotFile{
		Format: snapshotFormat, Created: now.UTC().Format(time.RFC3339), HubctlVersion: clientVersion().Version,
		RaftIndex: index, ClusterCASHA256: caSum, Networks: len(st.GetNetworks()), Policies: len(st.GetPolicies()),
		StateSHA256: sum, State: body,
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return append(out, '\n'), nil
}

// decodeSnapshot parses and checks a snapshot file: format, digest.
func decodeSnapshot(b []byte) (*snapshotFile, *hubv1.ClusterState, error) {
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("not a state snapshot (JSON): %w", err)
	}
	if f.Format != snapshotFormat {
		return nil, nil, fmt.Errorf("format %q: want %q (a file from hubctl cluster snapshot save)", f.Format, snapshotFormat)
	}
	if len(f.State) == 0 {
		return nil, nil, errors.New("no state in the snapshot")
	}
	st := &hubv1.ClusterState{}
	if err := protojson.Unmarshal(f.State, st); err != nil {
		return nil, nil, fmt.Errorf("state: %w", err)
	}
	sum, err := stateDigest(st)
	if err != nil {
		return nil, nil, err
	}
	if sum != f.StateSHA256 {
		return nil, nil, fmt.Errorf("state_sha256 mismatch (file says %s, state is %s): the file is damaged or was edited; change the membership with hubctl apply -f instead", short(f.StateSHA256), short(sum))
	}
	return &f, st, nil
}

func stateDigest(st *hubv1.ClusterState) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encode state: %w", err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// clusterCAFingerprint is the SHA-256 of the first certificate in the
// cluster CA file hubctl trusts (--ca).
func clusterCAFingerprint(cmd *cobra.Command) (string, error) {
	f := resolveTLSFiles(cmd)
	b, err := readTLSFile(cmd, f.caFlag, f.ca)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: %s holds no PEM certificate", f.caFlag, f.ca)
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return "", fmt.Errorf("%s: %s: %w", f.caFlag, f.ca, err)
	}
	s := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(s[:]), nil
}

func headerUint(md metadata.MD, key string) uint64 {
	n, _ := strconv.ParseUint(first(md.Get(key)), 10, 64)
	return n
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16] + "..."
	}
	return sum
}

// readLimited reads at most limit bytes of path, refusing a larger file.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}

// writeFileAtomic writes b to path through a synced temporary file in the
// same directory, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
