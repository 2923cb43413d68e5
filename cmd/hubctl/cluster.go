package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func newClusterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect and change the Raft cluster of hub nodes",
	}
	c.AddCommand(newClusterTokenCmd(), newClusterStatusCmd(), newClusterJoinCmd(), newClusterRemoveCmd(),
		newClusterTransferLeaderCmd(), newClusterDrainCmd(), newClusterSnapshotCmd()) // clusterops.go, snapshot.go
	return c
}

func newClusterTokenCmd() *cobra.Command {
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "token [--ttl 1h]",
		Short: "Create a join token for a new node (printed alone: T=$(hubctl cluster token))",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < time.Second {
				return usagef("--ttl: %s is too short (at least 1s)", ttl)
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				tok, err := c.CreateJoinToken(ctx, &hubv1.CreateJoinTokenRequest{TtlSeconds: int64(ttl / time.Second)})
				if err != nil {
					return err
				}
				// Table mode prints the token alone so shells can capture it.
				return printOutput(cmd, viewJoinToken(tok), func(w io.Writer) { fmt.Fprintln(w, tok.GetToken()) })
			})
		},
	}
	c.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token admits joiners")
	addTokenSubcommands(c) // list, revoke (identity.go)
	return c
}

func newClusterStatusCmd() *cobra.Command {
	var check bool
	c := &cobra.Command{
		Use:   "status [--check]",
		Short: "Show the leader, Raft indexes and every node (--check: exit 1 unless healthy)",
		Long: `Show the leader, the Raft indexes and every node as the answering node sees
them. With --check the command is a health check: it exits 1, naming each
problem on stderr, when no leader is known or a voter is unhealthy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				st, err := c.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
				if err != nil {
					return err
				}
				if err := printClusterStatus(cmd, st); err != nil {
					return err
				}
				if p := clusterProblems(st); check && len(p) > 0 {
					return fmt.Errorf("cluster unhealthy: %s", strings.Join(p, "; "))
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&check, "check", false, "exit 1 when no leader is known or a voter is unhealthy")
	return c
}

// clusterProblems lists what makes the cluster unhealthy: no known leader,
// or a voter that is not healthy. Non-voters do not count.
func clusterProblems(st *hubv1.ClusterStatusResponse) []string {
	var out []string
	if st.GetLeader() == "" {
		out = append(out, "no leader known")
	}
	for _, n := range st.GetNodes() {
		if n.GetSuffrage() != "voter" || n.GetHealthy() {
			continue
		}
		p := fmt.Sprintf("voter %s is %s", n.GetId(), orDash(n.GetState()))
		if n.GetError() != "" {
			p += " (" + n.GetError() + ")"
		}
		out = append(out, p)
	}
	return out
}

func newClusterJoinCmd() *cobra.Command {
	var adminAddr string
	c := &cobra.Command{
		Use:   "join ID RAFT_ADDR [--admin-addr A]",
		Short: "Add a node as a voter (for nodes that did not join with a token)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &hubv1.AddNodeRequest{Id: args[0], RaftAddr: args[1], AdminAddr: adminAddr}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				st, err := c.AddNode(ctx, req)
				if err != nil {
					return err
				}
				return printClusterStatus(cmd, st)
			})
		},
	}
	c.Flags().StringVar(&adminAddr, "admin-addr", "", "the node's admin API address")
	return c
}

func newClusterRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove ID",
		Aliases: []string{"rm"},
		Short:   "Remove a node from the cluster",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				st, err := c.RemoveNode(ctx, &hubv1.RemoveNodeRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return printClusterStatus(cmd, st)
			})
		},
	}
}

// printClusterStatus shows the cluster summary then one row per node (JSON
// and YAML: clusterView).
func printClusterStatus(cmd *cobra.Command, st *hubv1.ClusterStatusResponse) error {
	return printOutput(cmd, viewCluster(st), func(w io.Writer) {
		leader := orDash(st.GetLeader())
		if st.GetLeaderAddr() != "" {
			leader += " (" + st.GetLeaderAddr() + ")"
		}
		fmt.Fprintf(w, "LEADER:\t%s\n", leader)
		fmt.Fprintf(w, "TERM:\t%d\n", st.GetTerm())
		fmt.Fprintf(w, "COMMIT INDEX:\t%d\n", st.GetCommitIndex())
		fmt.Fprintf(w, "APPLIED INDEX:\t%d\n", st.GetAppliedIndex())
		fmt.Fprintf(w, "ANSWERED BY:\t%s (%s)\n", orDash(st.GetNodeId()), orDash(st.GetState()))
		fmt.Fprintln(w)
		row(w, "ID", "STATE", "SUFFRAGE", "HEALTHY", "APPLIED", "RAFT", "ADMIN", "VERSION", "ERROR")
		for _, n := range st.GetNodes() {
			row(w, n.GetId(), nodeState(n), orDash(n.GetSuffrage()), n.GetHealthy(), n.GetAppliedIndex(),
				orDash(n.GetRaftAddr()), orDash(n.GetAdminAddr()), orDash(n.GetVersion()), orDash(n.GetError()))
		}
	})
}
