package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

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
	// Complete is false while the admin API can only return the latest
	// checkpoint; earlier ones exist but cannot be listed yet.
	Complete bool `json:"complete"`
}

type checkpointRow struct {
	TreeSize uint64 `json:"tree_size"`
	RootHash string `json:"root_hash"`
}

func newAuditCheckpointsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoints",
		Short: "List tree sizes with a signed checkpoint, for 'audit prove --tree-size' and 'audit consistency'",
		Long: `List the tree sizes at which the node signed a checkpoint; 'audit prove
--tree-size N' and 'audit consistency OLD NEW' need such sizes. The node
signs one covering the whole log when asked, so the latest size is always
listed. The admin API cannot list earlier checkpoints yet: only the latest
is shown (complete: false in JSON).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				cp, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
				if err != nil {
					return err
				}
				v := checkpointsView{Origin: cp.GetOrigin(), Checkpoints: []checkpointRow{{TreeSize: cp.GetTreeSize(), RootHash: b64(cp.GetRootHash())}}}
				fmt.Fprintln(cmd.ErrOrStderr(), "note: the node reports only its latest checkpoint; earlier ones cannot be listed yet")
				return printOutput(cmd, v, func(w io.Writer) {
					row(w, "TREE SIZE", "ROOT")
					for _, r := range v.Checkpoints {
						row(w, r.TreeSize, r.RootHash)
					}
				})
			})
		},
	}
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
