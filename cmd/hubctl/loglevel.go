package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"clearhub/proto/hubv1"
)

func init() { registerCommand(newLogLevelCmd) }

// logLevelWords are the levels hubd takes (--log-level, log.level and
// SetLogLevel).
var logLevelWords = []string{"debug", "info", "warn", "error"}

// logLevelView is one node's answer; Error is "" when it answered.
type logLevelView struct {
	Node  string `json:"node"`
	Level string `json:"level"`
	Error string `json:"error"`
}

func newLogLevelCmd() *cobra.Command {
	var node string
	var all bool
	c := &cobra.Command{
		Use:   "log-level [LEVEL] [--node ID | --all]",
		Short: "Show or change a node's log level at runtime (debug, info, warn, error)",
		Long: `Without LEVEL, show the log level of the node hubctl is connected to; with
LEVEL (debug, info, warn or error), change it there until the node restarts
(the configuration's log.level applies again then). --node ID acts on that
node instead, --all on every node of the cluster, each reached at the admin
address the cluster state records for it. Every change is logged by the
node and recorded in its audit ledger. Needs the admin role.

JSON and YAML: a list of {"node", "level", "error"}, one per node asked.`,
		Args: cobra.MaximumNArgs(1),
	}
	c.Flags().StringVar(&node, "node", "", "act on this node (by id) instead of the one connected to")
	c.Flags().BoolVar(&all, "all", false, "act on every node of the cluster")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		var level string
		if len(args) == 1 {
			level = strings.ToLower(args[0])
			if level == "warning" {
				level = "warn"
			}
			if !slices.Contains(logLevelWords, level) {
				return usagef("LEVEL: %q is not one of %s", args[0], strings.Join(logLevelWords, ", "))
			}
		}
		if node != "" && all {
			return usagef("--node and --all: give one")
		}
		if _, err := outputFormat(cmd); err != nil {
			return err
		}
		req := &hubv1.SetLogLevelRequest{Level: level}
		var views []logLevelView
		err := withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
			if node == "" && !all {
				r, err := c.SetLogLevel(ctx, req)
				if err != nil {
					return err
				}
				views = append(views, logLevelView{Node: r.GetNode(), Level: r.GetLevel()})
				return nil
			}
			st, err := c.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
			if err != nil {
				return fmt.Errorf("find the nodes: %w", err)
			}
			var targets []*hubv1.NodeStatus
			for _, n := range st.GetNodes() {
				if all || n.GetId() == node {
					targets = append(targets, n)
				}
			}
			if node != "" && len(targets) == 0 {
				return fmt.Errorf("--node: no node %q in the cluster", node)
			}
			views = setLogLevelOn(ctx, cmd, targets, req)
			return nil
		})
		if err != nil {
			return err
		}
		if err := printOutput(cmd, views, func(w io.Writer) {
			row(w, "NODE", "LEVEL", "ERROR")
			for _, v := range views {
				row(w, v.Node, orDash(v.Level), orDash(v.Error))
			}
		}); err != nil {
			return err
		}
		var failed []string
		for _, v := range views {
			if v.Error != "" {
				failed = append(failed, v.Node)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("log level not read or set on %s", strings.Join(failed, ", "))
		}
		return nil
	}
	return c
}

// setLogLevelOn calls SetLogLevel on each target node at its admin
// address, in parallel, and returns one view per target in their order.
func setLogLevelOn(ctx context.Context, cmd *cobra.Command, targets []*hubv1.NodeStatus, req *hubv1.SetLogLevelRequest) []logLevelView {
	views := make([]logLevelView, len(targets))
	var wg sync.WaitGroup
	for i, n := range targets {
		views[i].Node = n.GetId()
		if n.GetAdminAddr() == "" {
			views[i].Error = "no admin address recorded"
			continue
		}
		wg.Go(func() {
			r, err := callLogLevel(ctx, cmd, n.GetAdminAddr(), req)
			switch {
			case err != nil:
				views[i].Error = describe(err)
			case r.GetNode() != n.GetId():
				// The address now belongs to another node: do not report
				// its answer as this one's.
				views[i].Error = fmt.Sprintf("%s answered as node %q", n.GetAdminAddr(), r.GetNode())
			default:
				views[i].Level = r.GetLevel()
			}
		})
	}
	wg.Wait()
	return views
}

// callLogLevel dials one node's admin address with hubctl's credentials
// and calls SetLogLevel there.
func callLogLevel(ctx context.Context, cmd *cobra.Command, addr string, req *hubv1.SetLogLevelRequest) (*hubv1.SetLogLevelResponse, error) {
	cfg, err := clientTLS(cmd)
	if err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		// The node certificate names the host of its admin address.
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("admin address %q: %w", addr, err)
		}
		cfg.ServerName = host
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("admin address %s: %w", addr, err)
	}
	defer cc.Close()
	return hubv1.NewAdminServiceClient(cc).SetLogLevel(ctx, req)
}
