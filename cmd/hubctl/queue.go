package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func init() { registerCommand(newQueueCmd) }

func newQueueCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "queue",
		Short: "Inspect and act on store-and-forward queues (MESSAGEs held for unreachable networks)",
		Long: `A pager MESSAGE for a member network whose edges are all down (or that
answered 480, if it opted in with network update --defer-on-480) is stored in
the replicated state, answered 202 Accepted, and delivered in order when the
network is back. These commands show the queues (depth, bytes, oldest age per
destination network), deliver now, and drop stored messages (audited).`,
	}
	c.AddCommand(newQueueListCmd(), newQueueShowCmd(), newQueueRetryCmd(), newQueueDropCmd())
	return c
}

// withQueues dials like withAdmin and hands fn a QueueService client.
func withQueues(cmd *cobra.Command, fn func(ctx context.Context, c hubv1.QueueServiceClient) error) error {
	_, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, hubv1.NewQueueServiceClient(cc))
}

// queueView is one destination's queue (-o json/yaml).
type queueView struct {
	Network  string  `json:"network"`
	Messages uint32  `json:"messages"`
	Bytes    uint64  `json:"bytes"`
	Oldest   *string `json:"oldest"`
}

// queuedView is one stored message.
type queuedView struct {
	ID      string  `json:"id"`
	Seq     uint64  `json:"seq"`
	Source  string  `json:"source"`
	CallID  string  `json:"call_id"`
	Bytes   uint32  `json:"bytes"`
	Stored  *string `json:"stored"`
	Expires *string `json:"expires"`
}

func viewQueue(s *hubv1.QueueSummary) queueView {
	return queueView{Network: s.GetNetwork(), Messages: s.GetMessages(), Bytes: s.GetBytes(), Oldest: rfc3339(s.GetOldestUnixNano())}
}

// age renders how long ago ns was, "-" for unset.
func age(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Since(time.Unix(0, ns)).Round(time.Second).String()
}

func newQueueListCmd() *cobra.Command {
	var network string
	c := &cobra.Command{
		Use:   "list [--network N]",
		Short: "Depth, bytes and oldest age of every non-empty queue (or one network's)",
		Args:  cobra.NoArgs,
	}
	c.Flags().StringVar(&network, "network", "", "only this destination network")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return withQueues(cmd, func(ctx context.Context, qc hubv1.QueueServiceClient) error {
			r, err := qc.ListQueues(ctx, &hubv1.ListQueuesRequest{Network: network})
			if err != nil {
				return err
			}
			views := make([]queueView, 0, len(r.GetQueues()))
			for _, s := range r.GetQueues() {
				views = append(views, viewQueue(s))
			}
			return printOutput(cmd, views, func(w io.Writer) {
				row(w, "NETWORK", "MESSAGES", "BYTES", "OLDEST")
				for _, s := range r.GetQueues() {
					row(w, s.GetNetwork(), strconv.FormatUint(uint64(s.GetMessages()), 10), strconv.FormatUint(s.GetBytes(), 10), age(s.GetOldestUnixNano()))
				}
			})
		})
	}
	return c
}

func newQueueShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NETWORK",
		Short: "The stored messages of one destination network, in delivery order",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withQueues(cmd, func(ctx context.Context, qc hubv1.QueueServiceClient) error {
				r, err := qc.ShowQueue(ctx, &hubv1.ShowQueueRequest{Network: args[0]})
				if err != nil {
					return err
				}
				v := struct {
					queueView
					Stored []queuedView `json:"stored"`
				}{queueView: viewQueue(r.GetSummary()), Stored: []queuedView{}}
				for _, m := range r.GetMessages() {
					v.Stored = append(v.Stored, queuedView{ID: m.GetId(), Seq: m.GetSeq(), Source: m.GetSource(), CallID: m.GetCallId(),
						Bytes: m.GetBytes(), Stored: rfc3339(m.GetStoredUnixNano()), Expires: rfc3339(m.GetExpiresUnixNano())})
				}
				return printOutput(cmd, v, func(w io.Writer) {
					s := r.GetSummary()
					row(w, "NETWORK", s.GetNetwork())
					row(w, "MESSAGES", strconv.FormatUint(uint64(s.GetMessages()), 10))
					row(w, "BYTES", strconv.FormatUint(s.GetBytes(), 10))
					row(w, "OLDEST", age(s.GetOldestUnixNano()))
					if len(r.GetMessages()) > 0 {
						row(w, "")
						row(w, "ID", "FROM NETWORK", "CALL-ID", "BYTES", "AGE", "EXPIRES IN")
					}
					for _, m := range r.GetMessages() {
						row(w, m.GetId(), m.GetSource(), m.GetCallId(), strconv.FormatUint(uint64(m.GetBytes()), 10), age(m.GetStoredUnixNano()),
							time.Until(time.Unix(0, m.GetExpiresUnixNano())).Round(time.Second).String())
					}
				})
			})
		},
	}
}

func newQueueRetryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retry NETWORK",
		Short: "Probe the network and deliver its queue now (on the leader, which delivers)",
		Long: `Deliveries run on the Raft leader. retry clears the network's backoff there and
starts delivering at once; on a follower it fails and names the leader (run it
with --endpoints set to the leader's admin address).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withQueues(cmd, func(ctx context.Context, qc hubv1.QueueServiceClient) error {
				r, err := qc.RetryQueue(ctx, &hubv1.RetryQueueRequest{Network: args[0]})
				if err != nil {
					return err
				}
				return printOutput(cmd, map[string]string{"network": args[0], "node": r.GetNode()}, func(w io.Writer) {
					fmt.Fprintf(w, "delivering the queue of %s now (node %s)\n", args[0], r.GetNode())
				})
			})
		},
	}
}

func newQueueDropCmd() *cobra.Command {
	var id string
	c := &cobra.Command{
		Use:   "drop NETWORK [--id ID]",
		Short: "Drop one stored message (--id) or a network's whole queue; each drop is audited",
		Args:  cobra.ExactArgs(1),
	}
	c.Flags().StringVar(&id, "id", "", "drop only this message (ids: hubctl queue show NETWORK)")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return withQueues(cmd, func(ctx context.Context, qc hubv1.QueueServiceClient) error {
			r, err := qc.DropQueued(ctx, &hubv1.DropQueuedRequest{Network: args[0], Id: id})
			if err != nil {
				return err
			}
			return printOutput(cmd, map[string]any{"network": args[0], "dropped": r.GetDropped()}, func(w io.Writer) {
				fmt.Fprintf(w, "dropped %d stored message(s) of %s\n", r.GetDropped(), args[0])
			})
		})
	}
	return c
}
