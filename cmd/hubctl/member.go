package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// hubctl member: a member network checks the hub with its own member
// certificate (--cert/--key), no operator involved (ops/admin/member.go).
// --ca is the cluster CA that signed the node certificates: public, handed
// out with the hub's connection details.

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
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Create(args[0])
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
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
			if err != nil {
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

func newMemberCheckpointsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoints",
		Short: "Every node's latest signed checkpoint and published key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMember(cmd, false, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
				resp, err := c.Checkpoints(ctx, &hubv1.MemberCheckpointsRequest{})
				if err != nil {
					return err
				}
				return printOutput(cmd, resp, func(w io.Writer) {
					fmt.Fprintf(w, "network %s (answered by %s)\n", resp.GetNetwork(), resp.GetNodeId())
					for _, n := range resp.GetNodes() {
						key := base64.StdEncoding.EncodeToString(n.GetPublicKey())
						if n.GetError() != "" {
							fmt.Fprintf(w, "%s\t%s\terror: %s\n", n.GetNode(), key, n.GetError())
							continue
						}
						cp, verr := ledger.ParseCheckpoint([]byte(n.GetCheckpoint().GetNote()))
						if verr != nil {
							fmt.Fprintf(w, "%s\t%s\tunreadable checkpoint: %v\n", n.GetNode(), key, verr)
							continue
						}
						fmt.Fprintf(w, "%s\tkey %s\tsize %d\troot %s\n", n.GetNode(), key, cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
					}
				})
			})
		},
	}
}

func newMemberConsistencyCmd() *cobra.Command {
	var node string
	c := &cobra.Command{
		Use:   "consistency OLD NEW",
		Short: "Prove a node's log grew append-only between two of its checkpoints (tree sizes)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			oldSize, err := parseUintArg("OLD", args[0])
			if err != nil {
				return err
			}
			newSize, err := parseUintArg("NEW", args[1])
			if err != nil {
				return err
			}
			return withMember(cmd, false, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
				p, err := c.GetConsistencyProof(ctx, &hubv1.MemberConsistencyRequest{Node: node, OldSize: oldSize, NewSize: newSize})
				if err != nil {
					return err
				}
				oldCp, err := ledger.ParseCheckpoint([]byte(p.GetOldCheckpoint().GetNote()))
				if err != nil {
					return proofFailure("old checkpoint: %v", err)
				}
				newCp, err := ledger.ParseCheckpoint([]byte(p.GetNewCheckpoint().GetNote()))
				if err != nil {
					return proofFailure("new checkpoint: %v", err)
				}
				if err := ledger.VerifyConsistency(oldCp.Size, newCp.Size, oldCp.Root, newCp.Root, p.GetHashes()); err != nil {
					return proofFailure("consistency %d..%d does not verify: %v", oldCp.Size, newCp.Size, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "consistent: tree %d is a prefix of tree %d (check both notes' signatures with the node key)\n", oldCp.Size, newCp.Size)
				return nil
			})
		},
	}
	c.Flags().StringVar(&node, "node", "", "node whose log to prove (must be the node answering; default: it)")
	return c
}

func newMemberWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch",
		Short: "Print the answering node's checkpoints as they are signed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMember(cmd, true, func(ctx context.Context, c hubv1.MemberAuditServiceClient) error {
				st, err := c.WatchCheckpoints(ctx, &hubv1.MemberWatchRequest{})
				if err != nil {
					return err
				}
				for {
					r, err := st.Recv()
					if err != nil {
						return err
					}
					cp := r.GetCheckpoint()
					fmt.Fprintf(cmd.OutOrStdout(), "%s\tsize %d\troot %s\n", r.GetNode(), cp.GetTreeSize(), base64.StdEncoding.EncodeToString(cp.GetRootHash()))
				}
			})
		},
	}
}
