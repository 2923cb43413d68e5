package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// hubctl member: a member network checks the hub with its own member
// certificate (--cert/--key), no operator involved (ops/admin/member.go).
// --ca is the cluster CA that signed the node certificates: public, handed
// out with the hub's connection details. Every signed note the hub sends is
// checked here, never only parsed: the node answering is not trusted.

func init() { registerCommand(newMemberCmd) }

func newMemberCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "member",
		Short: "Audit your own network's traffic with your member certificate",
		Long: `Commands a member network runs with its own member certificate
(--cert member.crt --key member.key, --ca the hub's cluster CA): export the
entries where it is the source or destination (verify the file offline with
'hubctl audit verify FILE --key NODE=KEY', the keys from 'member
checkpoints'), read every node's latest signed checkpoint, ask a node for a
consistency proof between two of its checkpoints, and watch a node's
checkpoints to detect a split view.`,
	}
	c.AddCommand(newMemberExportCmd(), newMemberCheckpointsCmd(), newMemberConsistencyCmd(), newMemberWatchCmd())
	return c
}

func withMember(cmd *cobra.Command, stream bool, fn func(ctx context.Context, c hubv1.MemberAuditServiceClient) error) error {
	_, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	if stream {
		ctx, cancel = streamContext(cmd)
	}
	defer cancel()
	return fn(ctx, hubv1.NewMemberAuditServiceClient(cc))
}

func newMemberExportCmd() *cobra.Command {
	var local bool
	var user, kind string
	c := &cobra.Command{
		Use:   "export FILE",
		Short: "Export your network's audit entries, with their proofs, as JSON Lines",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("FILE: give exactly one file to write the export to (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Written to a temporary file renamed at the end: a refused or
			// broken export leaves no half file (and an earlier export under
			// that name intact) to be mistaken for a complete one.
			f, err := os.CreateTemp(filepath.Dir(args[0]), "."+filepath.Base(args[0])+".part*")
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			tmp := f.Name()
			bw := bufio.NewWriter(f)
			n := 0
			err = withMember(cmd, true, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
				st, err := c.Export(ctx, &hubv1.ExportAuditRequest{Cluster: !local, User: user, Kind: kind})
				if err != nil {
					return err
				}
				for {
					r, err := st.Recv()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					if r.GetSeq() != 0 {
						n++
					}
					bw.Write(r.GetJson())
					bw.WriteByte('\n')
				}
			})
			if ferr := bw.Flush(); err == nil && ferr != nil {
				err = fmt.Errorf("export: write %s: %w", args[0], ferr)
			}
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("export: close %s: %w", args[0], cerr)
			}
			if err == nil {
				if rerr := os.Rename(tmp, args[0]); rerr != nil {
					err = fmt.Errorf("export: %w", rerr)
				}
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d entries written to %s; check it with 'hubctl audit verify %s --key NODE=KEY'\n", n, args[0], args[0])
			return nil
		},
	}
	c.Flags().BoolVar(&local, "local", false, "only the answering node's entries (default: every node's)")
	c.Flags().StringVar(&user, "user", "", "only entries from or to this user (within your network's entries)")
	c.Flags().StringVar(&kind, "kind", "", "only entries of this kind (request, response, chat, admin, anchor)")
	return c
}

// checkRow verifies one node's checkpoint note with the key published for
// it in the cluster state.
func checkRow(n *hubv1.NodeCheckpoint) (*ledger.Checkpoint, error) {
	if len(n.GetPublicKey()) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("no Ed25519 key published for node %s", n.GetNode())
	}
	return verifyNote(n.GetCheckpoint().GetNote(), nodeKey{pub: n.GetPublicKey()})
}

func newMemberCheckpointsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoints",
		Short: "Every node's latest signed checkpoint and published key",
		Long: `Every node's latest signed checkpoint, its signature checked with the
node key published in the cluster state. A checkpoint whose signature does
not verify is shown as such and the command fails (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMember(cmd, false, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
				resp, err := c.Checkpoints(ctx, &hubv1.MemberCheckpointsRequest{})
				if err != nil {
					return err
				}
				var bad []string
				cps := make([]*ledger.Checkpoint, len(resp.GetNodes()))
				errs := make([]error, len(resp.GetNodes()))
				for i, n := range resp.GetNodes() {
					if n.GetError() != "" {
						continue
					}
					if cps[i], errs[i] = checkRow(n); errs[i] != nil {
						bad = append(bad, n.GetNode())
					}
				}
				if err := printOutput(cmd, resp, func(w io.Writer) {
					fmt.Fprintf(w, "network %s (answered by %s)\n", resp.GetNetwork(), resp.GetNodeId())
					for i, n := range resp.GetNodes() {
						key := base64.StdEncoding.EncodeToString(n.GetPublicKey())
						switch {
						case n.GetError() != "":
							fmt.Fprintf(w, "%s\tkey %s\terror: %s\n", n.GetNode(), key, n.GetError())
						case errs[i] != nil:
							fmt.Fprintf(w, "%s\tkey %s\tsignature INVALID: %v\n", n.GetNode(), key, errs[i])
						default:
							fmt.Fprintf(w, "%s\tkey %s\tsize %d\troot %s\tsignature ok\n", n.GetNode(), key, cps[i].Size, b64(cps[i].Root))
						}
					}
				}); err != nil {
					return err
				}
				if len(bad) > 0 {
					return proofFailure("checkpoint signature of node %s does not verify with its published key", strings.Join(bad, ", "))
				}
				return nil
			})
		},
	}
}

func newMemberConsistencyCmd() *cobra.Command {
	var node string
	c := &cobra.Command{
		Use:   "consistency OLD NEW [--node-key KEY]",
		Short: "Prove a node's log grew append-only between two of its checkpoints (tree sizes)",
		Long: `Check that the answering node's log of tree size OLD is a prefix of its
log of size NEW. Both checkpoints' signatures are checked, with --node-key
(the key 'member checkpoints' showed, pinned) or else with the key the node
sends, with a warning.`,
		Args: cobra.ExactArgs(2),
	}
	key := addNodeKeyFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		oldSize, err := parseUintArg("OLD", args[0])
		if err != nil {
			return err
		}
		if oldSize == 0 {
			return usagef("OLD: tree sizes start at 1")
		}
		newSize, err := parseUintArg("NEW", args[1])
		if err != nil {
			return err
		}
		if newSize < oldSize {
			return usagef("NEW: %d is smaller than OLD %d", newSize, oldSize)
		}
		pinned, err := key()
		if err != nil {
			return err
		}
		return withMember(cmd, false, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
			p, err := c.GetConsistencyProof(ctx, &hubv1.MemberConsistencyRequest{Node: node, OldSize: oldSize, NewSize: newSize})
			if err != nil {
				return err
			}
			served := p.GetNewCheckpoint().GetPublicKey()
			if pinned == nil && !bytes.Equal(served, p.GetOldCheckpoint().GetPublicKey()) {
				return proofFailure("the two checkpoints came with different keys")
			}
			k, _, err := trustKey(cmd, pinned, served)
			if err != nil {
				return err
			}
			res, err := checkConsistency(p, oldSize, newSize, k)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "consistent: %s's tree %d is a prefix of tree %d (signatures checked)\n", res.Origin, res.OldSize, res.NewSize)
			return nil
		})
	}
	c.Flags().StringVar(&node, "node", "", "node whose log to prove (must be the node answering; default: it)")
	return c
}

func newMemberWatchCmd() *cobra.Command {
	var count int
	c := &cobra.Command{
		Use:   "watch [--count N] [--node-key KEY]",
		Short: "Print the answering node's checkpoints as they are signed",
		Long: `Print the answering node's latest checkpoint, then each new one, until
interrupted or --count checkpoints were printed. Each signature is checked
(with --node-key, else with the key published for the node), and a tree
that shrinks is reported: either ends the watch with exit 1.`,
		Args: cobra.NoArgs,
	}
	key := addNodeKeyFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if count < 0 {
			return usagef("--count: %d is negative", count)
		}
		pinned, err := key()
		if err != nil {
			return err
		}
		err = withMember(cmd, true, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
			st, err := c.WatchCheckpoints(ctx, &hubv1.MemberWatchRequest{})
			if err != nil {
				return err
			}
			var last *ledger.Checkpoint
			for printed := 0; count == 0 || printed < count; printed++ {
				r, err := st.Recv()
				if err != nil {
					return err
				}
				k := nodeKey{pub: r.GetPublicKey()}
				if pinned != nil {
					k = *pinned
				}
				cp, err := verifyNote(r.GetCheckpoint().GetNote(), k)
				if err != nil {
					return proofFailure("node %s: %v", r.GetNode(), err)
				}
				if last != nil && cp.Size < last.Size {
					return proofFailure("node %s: tree shrank from %d to %d", r.GetNode(), last.Size, cp.Size)
				}
				last = cp
				// Size and root from the signed note, not the message's
				// unsigned copies of them.
				fmt.Fprintf(cmd.OutOrStdout(), "%s\tsize %d\troot %s\n", r.GetNode(), cp.Size, b64(cp.Root))
			}
			return nil
		})
		if cmd.Context() != nil && cmd.Context().Err() != nil {
			// Interrupted: the way a watch without --count ends.
			return nil
		}
		return err
	}
	c.Flags().IntVar(&count, "count", 0, "stop after N checkpoints (0: until interrupted)")
	return c
}
