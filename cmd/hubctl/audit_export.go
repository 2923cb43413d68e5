package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// annotOwnOutput marks a command that reads -o/--output itself (audit
// export: jsonl or csv) instead of as table, json or yaml.
const annotOwnOutput = "hubctl/own-output"

// resolveTarget settles the file and the format of audit export from FILE,
// --file, --format and -o/--output, and refuses any combination that could
// mean two things.
func (o *exportOpts) resolveTarget(cmd *cobra.Command, args []string) error {
	if len(args) == 1 {
		if o.file != "" && o.file != args[0] {
			return usagef("FILE: %q and --file %q name different files; give one", args[0], o.file)
		}
		o.file = args[0]
	}
	if globalChanged(cmd, "output") {
		v := globalString(cmd, "output")
		var f string
		switch strings.ToLower(v) {
		case "jsonl", "json": // JSON Lines is the JSON form of an export
			f = "jsonl"
		case "csv":
			f = "csv"
		case formatTable, formatYAML:
			return usagef("--output: audit export writes jsonl or csv, not %s", v)
		default:
			if o.file != "" || !strings.ContainsAny(v, "./") {
				return usagef("--output: %q is not an export format (jsonl, csv); the file is an argument: hubctl audit export FILE", v)
			}
			// -o used to name the file. A value that looks like a path
			// still does, for the scripts written that way, but says so.
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: -o is the format (jsonl, csv); -o FILE is deprecated: use 'hubctl audit export %s'\n", v)
			o.file = v
		}
		if f != "" {
			if cmd.Flags().Changed("format") && o.format != f {
				return usagef("--format: %s and --output %s disagree; give one", o.format, v)
			}
			o.format = f
		}
	}
	if o.file == "" {
		o.file = "-"
	}
	return nil
}

// checkpointsView lists the tree sizes with a signed checkpoint.
type checkpointsView struct {
	Origin      string          `json:"origin"`
	Checkpoints []checkpointRow `json:"checkpoints"`
	// Complete is false when the list was cut (--limit, or the node's cap
	// per answer): older checkpoints exist that are not listed.
	Complete bool `json:"complete"`
}

type checkpointRow struct {
	TreeSize uint64 `json:"tree_size"`
	RootHash string `json:"root_hash"`
	// LastEntryTime is the time of the last entry the checkpoint covers
	// (entry tree_size): it was signed then or soon after. null when the
	// caller's role may not read entries or the entry was pruned.
	LastEntryTime *string `json:"last_entry_time"`
}

// Bounds on the per-row time look-ups of audit checkpoints (one
// GetInclusionProof each).
const (
	maxCheckpointTimes   = 1000
	checkpointTimeWorker = 8
)

func newAuditCheckpointsCmd() *cobra.Command {
	var limit uint32
	c := &cobra.Command{
		Use:   "checkpoints [--limit N]",
		Short: "List tree sizes with a signed checkpoint, for 'audit prove --tree-size' and 'audit consistency'",
		Long: `List the tree sizes at which the node signed a checkpoint, oldest first,
each with the time of the last entry it covers; 'audit prove --tree-size N'
and 'audit consistency OLD NEW' need such sizes. Listing signs nothing: 'audit
checkpoint' signs one covering the whole log.

Every checkpoint's signature is checked (with --node-key, else with the
key the node sends). The times come from the entries themselves, so they
need a role that reads entries (admin, operator, auditor) and are shown for
the newest ` + fmt.Sprint(maxCheckpointTimes) + ` rows at most.`,
		Args: cobra.NoArgs,
	}
	key := addNodeKeyFlag(c)
	c.Flags().Uint32Var(&limit, "limit", 0, "only the newest N checkpoints (0: all the node lists in one answer)")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		pinned, err := key()
		if err != nil {
			return err
		}
		return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
			var hdr metadata.MD
			resp, err := c.ListCheckpoints(ctx, &hubv1.ListCheckpointsRequest{Limit: limit}, grpc.Header(&hdr))
			if err != nil {
				return err
			}
			cps := resp.GetCheckpoints()
			// The node warns (admin.WarningHeader) when it cut the list.
			cut := len(hdr.Get("clearhub-warning")) > 0 || limit != 0 && len(cps) >= int(limit)
			v := checkpointsView{Checkpoints: make([]checkpointRow, len(cps)), Complete: !cut}
			if len(cps) > 0 {
				k, _, err := trustKey(cmd, pinned, cps[0].GetPublicKey())
				if err != nil {
					return err
				}
				v.Origin = cps[0].GetOrigin()
				for i, cp := range cps {
					got, err := verifyNote(cp.GetNote(), k)
					if err != nil {
						return proofFailure("checkpoint at %d: %v", cp.GetTreeSize(), err)
					}
					if got.Size != cp.GetTreeSize() || !bytes.Equal(got.Root, cp.GetRootHash()) || got.Origin != v.Origin {
						return proofFailure("checkpoint at %d: its fields differ from its signed note or from the other checkpoints' origin", cp.GetTreeSize())
					}
					v.Checkpoints[i] = checkpointRow{TreeSize: cp.GetTreeSize(), RootHash: b64(cp.GetRootHash())}
				}
			}
			if note := checkpointTimes(ctx, c, v.Checkpoints); note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: "+note)
			}
			return printOutput(cmd, v, func(w io.Writer) {
				row(w, "TREE SIZE", "LAST ENTRY", "ROOT")
				for _, r := range v.Checkpoints {
					t := "-"
					if r.LastEntryTime != nil {
						t = *r.LastEntryTime
					}
					row(w, r.TreeSize, t, r.RootHash)
				}
			})
		})
	}
	return c
}

// checkpointTimes fills in each row's last entry time from entry
// tree_size (the newest maxCheckpointTimes rows), a few calls at a time,
// and returns a note for the operator when some times are missing.
func checkpointTimes(ctx context.Context, c hubv1.AdminServiceClient, rows []checkpointRow) string {
	first := max(0, len(rows)-maxCheckpointTimes)
	var (
		mu     sync.Mutex
		denied bool
		failed int
		wg     sync.WaitGroup
	)
	next := make(chan int)
	for range checkpointTimeWorker {
		wg.Go(func() {
			for i := range next {
				mu.Lock()
				skip := denied
				mu.Unlock()
				if skip {
					continue
				}
				size := rows[i].TreeSize
				p, err := c.GetInclusionProof(ctx, &hubv1.InclusionProofRequest{Seq: size, TreeSize: size})
				mu.Lock()
				switch {
				case status.Code(err) == codes.PermissionDenied:
					denied = true
				case err != nil || p.GetEntry().GetSeq() != size:
					failed++
				default:
					rows[i].LastEntryTime = rfc3339(p.GetEntry().GetTimeUnixNano())
				}
				mu.Unlock()
			}
		})
	}
	for i := len(rows) - 1; i >= first; i-- { // newest first: they matter most
		next <- i
	}
	close(next)
	wg.Wait()
	var notes []string
	if denied {
		notes = append(notes, "last entry times need a role that reads entries (admin, operator or auditor)")
	}
	if failed > 0 {
		notes = append(notes, fmt.Sprintf("the last entry time of %d checkpoint(s) could not be read (pruned entries?)", failed))
	}
	if first > 0 {
		notes = append(notes, fmt.Sprintf("last entry times shown for the newest %d checkpoints only", maxCheckpointTimes))
	}
	return strings.Join(notes, "; ")
}

// checkpointViewOf is the JSON form of a checked checkpoint.
func checkpointViewOf(cp *hubv1.Checkpoint, pinned bool) checkpointView {
	v := checkpointView{Origin: cp.GetOrigin(), TreeSize: cp.GetTreeSize(), RootHash: b64(cp.GetRootHash()),
		PublicKey: b64(cp.GetPublicKey()), KeyPinned: pinned, Note: cp.GetNote()}
	if names := noteKeyNames(cp.GetNote()); len(names) > 0 {
		v.VerifierKey = ledger.VerifierKey(names[0], cp.GetPublicKey())
	}
	return v
}
