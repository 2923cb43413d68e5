package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"clearhub/proto/hubv1"
)

// leaderAdminHeader is admin.LeaderAdminHeader: a follower refusing
// TransferLeader names the leader's admin address in it.
const leaderAdminHeader = "clearhub-leader-admin"

func newClusterTransferLeaderCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [NODE]",
		Short: "Move Raft leadership to NODE (default: the best other voter), e.g. before the leader's maintenance",
		Long: `Move Raft leadership away from the current leader, to NODE or, without
NODE, to the healthy, undrained voter furthest ahead. Only the leader can
hand leadership over: when the endpoint hubctl reaches is a follower, hubctl
repeats the call at the leader's admin address, which the follower names.
Prints the new leader.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &hubv1.TransferLeaderRequest{}
			if len(args) == 1 {
				req.NodeId = args[0]
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var hdr metadata.MD
				st, err := c.TransferLeader(ctx, req, grpc.Header(&hdr))
				if addr, ok := leaderRedirect(hdr, err); ok {
					st, err = transferOnLeader(ctx, cmd, addr, req)
				}
				if err != nil {
					return err
				}
				return printOutput(cmd, viewCluster(st), func(w io.Writer) {
					fmt.Fprintf(w, "leader is now %s\n", orDash(st.GetLeader()))
				})
			})
		},
	}
}

// leaderRedirect reports the leader's admin address when err is a
// follower's refusal of TransferLeader.
func leaderRedirect(hdr metadata.MD, err error) (string, bool) {
	if status.Code(err) != codes.FailedPrecondition {
		return "", false
	}
	v := hdr.Get(leaderAdminHeader)
	if len(v) == 0 {
		return "", false
	}
	if _, _, serr := net.SplitHostPort(v[0]); serr != nil {
		return "", false
	}
	return v[0], true
}

// transferOnLeader repeats req at the leader's admin address with the same
// credentials; the leader's node certificate is checked for its host.
func transferOnLeader(ctx context.Context, cmd *cobra.Command, addr string, req *hubv1.TransferLeaderRequest) (*hubv1.ClusterStatusResponse, error) {
	cfg, err := clientTLS(cmd)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("leader at %s: %w", addr, err)
	}
	defer cc.Close()
	st, err := hubv1.NewAdminServiceClient(cc).TransferLeader(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("at the leader %s: %w", addr, err)
	}
	return st, nil
}

func newClusterDrainCmd() *cobra.Command {
	var undo bool
	c := &cobra.Command{
		Use:   "drain NODE [--undo]",
		Short: "Take NODE out of service before maintenance (--undo: put it back)",
		Long: `Drain NODE before maintenance: if it leads, leadership moves to another
voter; it answers new SIP requests from outside a dialog (keep-alive OPTIONS
included) with 503 and Retry-After, so members move to other nodes, while
requests inside established dialogs and all responses keep flowing, so the
dialogs already there finish; its /readyz answers 503 "draining"; cluster
status shows it draining. The drain is held in that node's memory only: a
restart ends it, as does --undo.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &hubv1.DrainNodeRequest{NodeId: args[0], Undrain: undo}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				st, err := c.DrainNode(ctx, req)
				if err != nil {
					return err
				}
				return printOutput(cmd, viewCluster(st), func(w io.Writer) {
					if undo {
						fmt.Fprintf(w, "node %s is back in service; leader is %s\n", args[0], orDash(st.GetLeader()))
					} else {
						fmt.Fprintf(w, "node %s drained: new SIP requests get 503, dialogs in progress continue; leader is %s\n", args[0], orDash(st.GetLeader()))
					}
				})
			})
		},
	}
	c.Flags().BoolVar(&undo, "undo", false, "end the drain: the node serves new requests again")
	return c
}

// nodeState is a node's STATE column: its raft state, and "draining" when
// it is drained.
func nodeState(n *hubv1.NodeStatus) string {
	if n.GetDraining() {
		return orDash(n.GetState()) + ",draining"
	}
	return orDash(n.GetState())
}
