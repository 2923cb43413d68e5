package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

// newAuditScrubCmd is `hubctl audit scrub`: the node re-verifies its whole
// ledger now, the check its background scrub runs at a bounded rate.
func newAuditScrubCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scrub",
		Short: "Re-verify the node's whole stored ledger now (hash chain and Merkle tree); exit 1 on a break",
		Long: `Ask the node to re-check every stored entry (encoding, hash, chain link)
and every stored Merkle node against its children, plus its newest anchor
and checkpoint, now. The node's start-up checks only the newest entries; its
background scrub (ledger.scrub_interval) covers the rest slowly. Exits 1 and
names the first bad entry when the store was changed.

This checks the node's copy in place, trusting the node to run the check;
'hubctl audit export' and 'audit verify' check a copy without trusting it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				res, err := c.ScrubAudit(ctx, &hubv1.ScrubAuditRequest{})
				if err != nil {
					return err
				}
				took := time.Duration(res.GetFinishedUnixNano() - res.GetStartedUnixNano())
				if err := printOutput(cmd, res, func(w io.Writer) {
					verdict := "OK"
					if !res.GetOk() {
						verdict = fmt.Sprintf("BROKEN at seq %d", res.GetFirstBadSeq())
					}
					row(w, "node", res.GetNode())
					row(w, "result", verdict)
					row(w, "entries checked", res.GetEntriesChecked())
					row(w, "tree nodes checked", res.GetTreeNodesChecked())
					row(w, "took", took.Round(time.Millisecond))
					if res.GetError() != "" {
						row(w, "error", res.GetError())
					}
				}); err != nil {
					return err
				}
				if !res.GetOk() {
					return fmt.Errorf("scrub FAILED on node %s: first bad seq %d: %s", res.GetNode(), res.GetFirstBadSeq(), res.GetError())
				}
				return nil
			})
		},
	}
}
