package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// tailBackoff is the first and the longest wait before audit tail
// reconnects; a variable so tests can shorten it.
var tailBackoff = [2]time.Duration{500 * time.Millisecond, 10 * time.Second}

func newAuditTailCmd() *cobra.Command {
	var (
		from uint64
		n    uint64
	)
	c := &cobra.Command{
		Use:   "tail [-n N | --from-seq N]",
		Short: "Print audit entries as they are written, until Ctrl-C (-o json: one JSON entry per line)",
		Long: `Print audit entries of the answering node's ledger as they are written,
until Ctrl-C. -n N first prints the last N entries; --from-seq N starts at
entry N. When the stream breaks (the node restarts, the network drops),
tail reconnects with backoff and goes on after the last entry it printed;
if it lands on another node (--endpoints lists several), that node's ledger
has its own numbering, so it says so and follows that node from its next
entry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			if format == formatYAML {
				return usagef("--output: audit tail prints table or json lines, not yaml")
			}
			if cmd.Flags().Changed("lines") && cmd.Flags().Changed("from-seq") {
				return usagef("-n: give -n or --from-seq, not both")
			}
			c, cc, err := dialAdmin(cmd)
			if err != nil {
				return err
			}
			defer cc.Close()
			ctx, cancel := streamContext(cmd)
			defer cancel()
			t := &tailer{c: c, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), json: format == formatJSON,
				backlog: n, next: from}
			err = t.run(ctx)
			if parent := cmd.Context(); parent != nil && parent.Err() != nil {
				return nil // Ctrl-C: the normal end of a tail
			}
			return err
		},
	}
	c.Flags().Uint64Var(&from, "from-seq", 0, "start at this entry (0: only entries written from now on)")
	c.Flags().Uint64VarP(&n, "lines", "n", 0, "first print the last N entries")
	return c
}

// tailer follows one node's ledger across broken streams.
type tailer struct {
	c           hubv1.AdminServiceClient
	out, errOut io.Writer
	json        bool
	backlog     uint64 // -n
	next        uint64 // next sequence number to print; 0 before it is known
	origin      string // checkpoint origin of the ledger being followed
}

// run follows until ctx ends or an error that retrying cannot fix. The first
// connection failing is returned as is (the hub is not running, the
// credentials are wrong): reconnecting is for streams that worked.
func (t *tailer) run(ctx context.Context) error {
	wait := tailBackoff[0]
	for {
		printed, err := t.follow(ctx)
		started := t.origin != "" // the first connection worked
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !started || !retryable(err) {
			return err
		}
		if printed {
			wait = tailBackoff[0]
		}
		fmt.Fprintf(t.errOut, "hubctl: audit tail: %s; reconnecting in %s\n", describe(err), wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, tailBackoff[1])
	}
}

// follow positions the tail (on the first connection, and when the node
// answering is not the one followed so far) and prints entries until the
// stream ends. It reports whether it printed anything.
func (t *tailer) follow(ctx context.Context) (bool, error) {
	// The latest checkpoint names the ledger and its size: -n counts back
	// from it, without --from-seq the tail starts after it, and on a
	// reconnect it tells whether the same node answers.
	cp, err := t.c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
	if err != nil {
		return false, err
	}
	size := cp.GetTreeSize()
	switch {
	case t.origin == "":
		t.origin = cp.GetOrigin()
		if t.next == 0 {
			t.next = size + 1
			if t.backlog > 0 {
				t.next = max(size+1, t.backlog+1) - t.backlog
			}
		}
	case cp.GetOrigin() != t.origin:
		fmt.Fprintf(t.errOut, "hubctl: audit tail: now connected to %s, not %s: following its ledger from its next entry (%d); %s's later entries are on that node\n",
			cp.GetOrigin(), t.origin, size+1, t.origin)
		t.origin, t.next = cp.GetOrigin(), size+1
	}
	st, err := t.c.TailAudit(ctx, &hubv1.TailAuditRequest{FromSeq: t.next}, grpc.MaxCallRecvMsgSize(maxAuditRecord))
	if err != nil {
		return false, err
	}
	printed := false
	for {
		rec, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return printed, errTailEnded
		}
		if err != nil {
			return printed, err
		}
		if rec.GetSeq() < t.next {
			continue // already printed before the stream broke
		}
		if err := t.print(rec); err != nil {
			return printed, err
		}
		t.next, printed = rec.GetSeq()+1, true
	}
}

func (t *tailer) print(rec *hubv1.AuditRecord) error {
	if t.json {
		_, err := fmt.Fprintf(t.out, "%s\n", rec.GetJson())
		return err
	}
	var e ledger.Entry
	if err := json.Unmarshal(rec.GetJson(), &e); err != nil {
		return fmt.Errorf("node %s seq %d: unreadable entry: %w", rec.GetNode(), rec.GetSeq(), err)
	}
	_, err := fmt.Fprintln(t.out, entrySummary(&e))
	return err
}

// errTailEnded is a tail stream the node closed; tails never end by
// themselves, so the node is going away.
var errTailEnded = errors.New("the node ended the tail")

// retryable reports whether a broken tail is worth reconnecting: the node
// went away or ended the stream, as opposed to refusing the request.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errTailEnded) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false // a local failure: printing, decoding
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.Aborted, codes.ResourceExhausted, codes.Unknown, codes.DeadlineExceeded:
		return true
	}
	return false
}
