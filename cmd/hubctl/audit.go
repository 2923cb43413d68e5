package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// The audit commands. Everything that proves something (verify, prove,
// consistency) is checked here, with the ledger package's verifiers: the
// node answering is not trusted, only the checkpoint key is, and that key
// is best pinned with --node-key (or --key for verify) from a copy obtained
// out of band.

func init() { registerCommand(newAuditCmd) }

// maxAuditRecord bounds one streamed record: an entry with the largest body
// the ledger keeps (16 MiB, base64 in JSON) fits.
const maxAuditRecord = 64 << 20

func newAuditCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Export, verify and prove entries of the tamper-evident audit ledger",
		Long: `The audit ledger of each hub node is a hash chain in a Merkle tree with
Ed25519-signed checkpoints. These commands export it (verifiably), check
exports offline, and fetch and check inclusion and consistency proofs.

Pin each node's checkpoint key (shown by 'hubctl audit checkpoint') where
you keep your records; pass it as --node-key (verify: --key NODE=KEY) so a
compromised node cannot vouch for itself.`,
	}
	c.AddCommand(newAuditCheckpointCmd(), newAuditCheckpointsCmd(), newAuditExportCmd(), newAuditVerifyCmd(),
		newAuditProveCmd(), newAuditConsistencyCmd(), newAuditTailCmd(), newAuditScrubCmd())
	return c
}

// nodeKey is a pinned checkpoint key.
type nodeKey struct {
	node string // "" when not given
	name string // signed-note key name; "" when not given
	pub  ed25519.PublicKey
}

// parseNodeKey reads NODE=KEY or KEY, where KEY is a base64 Ed25519 public
// key or a signed-note verifier key (name+hash+base64).
func parseNodeKey(flag, s string) (nodeKey, error) {
	var k nodeKey
	if node, rest, ok := strings.Cut(s, "="); ok && !strings.ContainsAny(node, "+/") && len(rest) > 0 {
		k.node, s = node, rest
	}
	if strings.Count(s, "+") >= 2 {
		name, pub, err := ledger.ParseVerifierKey(s)
		if err == nil {
			k.name, k.pub = name, pub
			return k, nil
		}
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return k, usagef("%s: %q is not [NODE=]KEY with KEY a base64 Ed25519 public key or a verifier key", flag, s)
	}
	k.pub = ed25519.PublicKey(raw)
	return k, nil
}

// noteKeyNames lists the key names on a signed note's signature lines
// ("— name base64"). The signature's key hash binds the name to the key,
// so taking the name from the note does not weaken a pinned key.
func noteKeyNames(note string) []string {
	_, sigs, ok := strings.Cut(note, "\n\n")
	if !ok {
		return nil
	}
	var names []string
	for _, line := range strings.Split(sigs, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "\u2014 "))
		if strings.HasPrefix(line, "\u2014 ") && len(f) == 2 {
			names = append(names, f[0])
		}
	}
	return names
}

// verifyNote checks the note's signature by pub (under the pinned key name,
// or any name the note's signature lines give) and returns the checkpoint.
func verifyNote(note string, k nodeKey) (*ledger.Checkpoint, error) {
	names := []string{k.name}
	if k.name == "" {
		names = noteKeyNames(note)
	}
	err := errors.New("the note has no signature line")
	for _, name := range names {
		var cp *ledger.Checkpoint
		if cp, err = ledger.VerifyCheckpoint([]byte(note), name, k.pub); err == nil {
			return cp, nil
		}
	}
	return nil, fmt.Errorf("checkpoint signature does not verify with key %s: %w",
		base64.StdEncoding.EncodeToString(k.pub), err)
}

// trustKey picks the key to check a checkpoint with: the pinned one, or
// with a warning the one the server sent.
func trustKey(cmd *cobra.Command, pinned *nodeKey, served []byte) (nodeKey, bool, error) {
	if pinned != nil {
		return *pinned, true, nil
	}
	if len(served) != ed25519.PublicKeySize {
		return nodeKey{}, false, errors.New("the server sent no Ed25519 checkpoint key and no --node-key was given")
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "warning: no --node-key given: trusting the checkpoint key the server sent (%s)\n",
		base64.StdEncoding.EncodeToString(served))
	return nodeKey{pub: ed25519.PublicKey(served)}, false, nil
}

// addNodeKeyFlag declares --node-key and returns its parsed value (nil
// when not given).
func addNodeKeyFlag(c *cobra.Command) func() (*nodeKey, error) {
	var s string
	c.Flags().StringVar(&s, "node-key", "", "pinned checkpoint key of the node: base64 Ed25519 public key, NODE=KEY, or verifier key")
	return func() (*nodeKey, error) {
		if s == "" {
			return nil, nil
		}
		k, err := parseNodeKey("--node-key", s)
		return &k, err
	}
}

// proofFailure is a proof the server sent that does not check out.
func proofFailure(format string, args ...any) error {
	return fmt.Errorf("verification FAILED: "+format, args...)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func parseUintArg(name, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usagef("%s: %q is not a non-negative integer", name, s)
	}
	return v, nil
}

// --- checkpoint ---

func newAuditCheckpointCmd() *cobra.Command {
	var size uint64
	c := &cobra.Command{
		Use:   "checkpoint [--tree-size N]",
		Short: "Show the node's latest signed checkpoint (or the one at a tree size) and its key",
		Args:  cobra.NoArgs,
	}
	key := addNodeKeyFlag(c)
	c.Flags().Uint64Var(&size, "tree-size", 0, "the checkpoint signed at exactly this tree size (0: latest)")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		pinned, err := key()
		if err != nil {
			return err
		}
		return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
			cp, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{TreeSize: size})
			if err != nil {
				return err
			}
			k, wasPinned, err := trustKey(cmd, pinned, cp.GetPublicKey())
			if err != nil {
				return err
			}
			got, err := verifyNote(cp.GetNote(), k)
			if err != nil {
				return proofFailure("%v", err)
			}
			if got.Size != cp.GetTreeSize() || !bytes.Equal(got.Root, cp.GetRootHash()) || got.Origin != cp.GetOrigin() {
				return proofFailure("the checkpoint fields differ from its signed note")
			}
			sig := "verified with the key the server sent"
			if wasPinned {
				sig = "verified with the pinned key"
			}
			return printOutput(cmd, checkpointViewOf(cp, wasPinned), func(w io.Writer) {
				row(w, "origin", cp.GetOrigin())
				row(w, "tree size", cp.GetTreeSize())
				row(w, "root", b64(cp.GetRootHash()))
				row(w, "public key", b64(cp.GetPublicKey()))
				if names := noteKeyNames(cp.GetNote()); len(names) > 0 {
					row(w, "verifier key", ledger.VerifierKey(names[0], cp.GetPublicKey()))
				}
				row(w, "signature", sig)
				fmt.Fprintf(w, "\n%s", cp.GetNote())
			})
		})
	}
	return c
}

// --- export ---

// exportOpts are the flags of audit export.
type exportOpts struct {
	since, until   string
	fromSeq, toSeq uint64
	network, user  string
	kind           string
	cluster        bool
	format         string
	file           string // "-": stdout
}

// parseWhen reads RFC 3339 or a duration meaning that long before now.
func parseWhen(flag, s string, now time.Time) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UnixNano(), nil
	}
	return 0, usagef("%s: %q is neither RFC 3339 (2026-01-02T15:04:05Z) nor a duration ago (1h, 90m)", flag, s)
}

func (o *exportOpts) request(now time.Time) (*hubv1.ExportAuditRequest, error) {
	since, err := parseWhen("--since", o.since, now)
	if err != nil {
		return nil, err
	}
	until, err := parseWhen("--until", o.until, now)
	if err != nil {
		return nil, err
	}
	if until != 0 && until <= since {
		return nil, usagef("--until: must be after --since")
	}
	if o.toSeq != 0 && o.fromSeq > o.toSeq {
		return nil, usagef("--to-seq: %d is below --from-seq %d", o.toSeq, o.fromSeq)
	}
	if o.kind != "" && !ledger.Kind(o.kind).Valid() {
		return nil, usagef("--kind: unknown kind %q (valid: request, response, chat, admin, anchor, msrp)", o.kind)
	}
	switch o.format {
	case "jsonl", "csv":
	default:
		return nil, usagef("--format: unknown format %q (valid: jsonl, csv)", o.format)
	}
	return &hubv1.ExportAuditRequest{
		SinceUnixNano: since, UntilUnixNano: until, FromSeq: o.fromSeq, ToSeq: o.toSeq,
		Network: o.network, User: o.user, Kind: o.kind, Cluster: o.cluster,
	}, nil
}

func newAuditExportCmd() *cobra.Command {
	var o exportOpts
	c := &cobra.Command{
		Use:   "export [FILE | --file FILE] [--since T] [--until T] [--from-seq N] [--to-seq N] [--network ID] [--user user@host] [--kind K] [--cluster] [-o jsonl|csv]",
		Short: "Export audit entries; the JSON Lines form verifies offline with 'hubctl audit verify'",
		Long: `Export audit entries matching every given filter.

The default JSON Lines format is the ledger's verifiable export: per node a
header, a freshly signed checkpoint, the entries and the inclusion proofs
that tie them to the checkpoint. With --cluster the node asks every node of
the cluster and the file holds one such block per node (in node-id order;
entries are time-ordered within a node, not across nodes). CSV carries the
entries only and cannot be verified.

--since and --until take RFC 3339 times or a duration meaning that long ago
(--since 1h). The export is not bounded by the default --timeout; an
explicit --timeout bounds it as a whole.

FILE (or --file) is written under a temporary name and renamed when
complete; without one, or with -, the export goes to stdout. The format is
-o jsonl (the default) or -o csv; --format says the same.`,
		Example: `  hubctl audit export audit.jsonl
  hubctl audit export --since 1h --network net-a -o csv > net-a.csv`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annotOwnOutput: "jsonl,csv"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.resolveTarget(cmd, args); err != nil {
				return err
			}
			return runExport(cmd, &o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.since, "since", "", "entries at or after this time (RFC 3339, or a duration ago like 1h)")
	f.StringVar(&o.until, "until", "", "entries before this time (RFC 3339, or a duration ago)")
	f.Uint64Var(&o.fromSeq, "from-seq", 0, "first entry sequence number")
	f.Uint64Var(&o.toSeq, "to-seq", 0, "last entry sequence number (0: no limit)")
	f.StringVar(&o.network, "network", "", "entries from or to this member network")
	f.StringVar(&o.user, "user", "", "entries from or to this user (user@host or SIP URI)")
	f.StringVar(&o.kind, "kind", "", "request, response, chat, admin, anchor or msrp")
	f.BoolVar(&o.cluster, "cluster", false, "export every node's ledger, not just the answering node's")
	f.StringVar(&o.format, "format", "jsonl", "jsonl (verifiable) or csv; the same as -o")
	f.StringVar(&o.file, "file", "", "file to write (the same as FILE); - for stdout")
	return c
}

// streamContext is the context of a streaming call: --timeout only when
// given explicitly, since its default is meant for single calls.
func streamContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	if cmd.Flags().Changed("timeout") {
		return cmdContext(cmd)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithCancel(ctx)
}

func runExport(cmd *cobra.Command, o *exportOpts) error {
	req, err := o.request(time.Now())
	if err != nil {
		return err
	}
	c, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()

	// A file is written under a temporary name and renamed when complete,
	// so a failed export never leaves a plausible-looking partial file.
	var dst io.Writer = cmd.OutOrStdout()
	where := "stdout"
	var tmp *os.File
	if o.file != "-" {
		where = o.file
		tmp, err = os.CreateTemp(filepath.Dir(o.file), "."+filepath.Base(o.file)+".tmp*")
		if err != nil {
			return fmt.Errorf("FILE: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = tmp
	}
	bw := bufio.NewWriterSize(dst, 256<<10)
	var sink exportSink = &jsonlSink{w: bw}
	if o.format == "csv" {
		sink = newCSVSink(bw)
	}

	ctx, cancel := streamContext(cmd)
	defer cancel()
	st, err := c.ExportAudit(ctx, req, grpc.MaxCallRecvMsgSize(maxAuditRecord))
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if isTerminal(cmd.ErrOrStderr()) {
		// A bar when the node announced how many entries it will send
		// (unfiltered or seq-range exports of one node); otherwise
		// (filters, other nodes) a counting spinner. No change interval:
		// it redraws on progress only, so no goroutine.
		bar = progressbar.NewOptions64(exportTotal(st),
			progressbar.OptionSetWriter(cmd.ErrOrStderr()),
			progressbar.OptionSetDescription("exporting"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("entries"),
			progressbar.OptionShowIts(),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	perNode := map[string]int{}
	total := 0
	for {
		rec, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if bar != nil {
				bar.Exit()
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			return fmt.Errorf("export stopped after %d entries: %w", total, err)
		}
		if err := sink.record(rec); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if rec.GetSeq() != 0 {
			total++
			perNode[rec.GetNode()]++
			if bar != nil {
				bar.Add(1)
			}
		}
	}
	if bar != nil {
		bar.Finish()
	}
	if err := sink.close(); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := os.Rename(tmp.Name(), o.file); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		tmp = nil
	}
	msg := fmt.Sprintf("exported %d entries to %s", total, where)
	if len(perNode) > 1 {
		var parts []string
		for _, n := range slices.Sorted(mapKeys(perNode)) {
			parts = append(parts, fmt.Sprintf("%s: %d", n, perNode[n]))
		}
		msg += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintln(cmd.ErrOrStderr(), msg)
	return nil
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// isTerminal reports whether w is a terminal (the progress bar's condition).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// exportSink writes streamed records in one output format.
type exportSink interface {
	record(*hubv1.AuditRecord) error
	close() error
}

// jsonlSink writes every line byte for byte: the file is the ledger's
// export and verifies offline.
type jsonlSink struct{ w io.Writer }

func (s *jsonlSink) record(r *hubv1.AuditRecord) error {
	if bytes.IndexByte(r.GetJson(), '\n') >= 0 {
		return fmt.Errorf("node %s sent a record spanning lines", r.GetNode())
	}
	if _, err := s.w.Write(r.GetJson()); err != nil {
		return err
	}
	_, err := s.w.Write([]byte{'\n'})
	return err
}

func (s *jsonlSink) close() error { return nil }

// csvSink turns entry lines into the rows ledger.WriteCSV writes (one
// header row, whatever the number of nodes); other lines are proofs and
// have no CSV form.
type csvSink struct {
	cw  *csv.Writer
	rec []string
}

func newCSVSink(w io.Writer) *csvSink {
	return &csvSink{cw: csv.NewWriter(w)}
}

func (s *csvSink) record(r *hubv1.AuditRecord) error {
	if s.rec == nil {
		s.rec = make([]string, 0, len(ledger.CSVHeader))
		if err := s.cw.Write(ledger.CSVHeader); err != nil {
			return err
		}
	}
	if r.GetSeq() == 0 {
		return nil
	}
	var e ledger.Entry
	if err := json.Unmarshal(r.GetJson(), &e); err != nil {
		return fmt.Errorf("node %s seq %d: unreadable entry line: %w", r.GetNode(), r.GetSeq(), err)
	}
	s.rec = append(s.rec[:0], strconv.FormatUint(e.Seq, 10), time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano),
		e.Node, string(e.Kind), e.Method, e.CallID, e.CSeq, e.From, e.To, e.RURI, e.Src, e.Transport,
		e.SrcNet, e.DstNet, strconv.Itoa(e.Status), e.Reason, e.BodyType, hex.EncodeToString(e.BodySHA256),
		strconv.FormatBool(e.BodyKept), base64.StdEncoding.EncodeToString(e.Body),
		hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash))
	return s.cw.Write(s.rec)
}

func (s *csvSink) close() error {
	if s.rec == nil { // no records at all: still a header row
		if err := s.cw.Write(ledger.CSVHeader); err != nil {
			return err
		}
	}
	s.cw.Flush()
	return s.cw.Error()
}

// --- verify ---

func newAuditVerifyCmd() *cobra.Command {
	var keys []string
	var allowUnproven bool
	c := &cobra.Command{
		Use:   "verify FILE [--key NODE=KEY]... [--allow-unproven]",
		Short: "Check a JSON Lines audit export offline (no hub needed); FILE - reads stdin",
		Long: `Check every entry's hash and chain link, every checkpoint signature and
every inclusion proof of a JSON Lines export. With --key NODE=KEY for every
node in the file, the checkpoints must be signed by those keys; without, the
keys in the file itself are used, which proves integrity but not origin.

An entry is proven only when an inclusion proof to a signed checkpoint
covers it (or a later entry of its run, whose hash chain reaches back to
it). The header's claims (tree size, completeness) prove nothing and must
agree with the signed checkpoints. Any unproven entry fails verification
unless --allow-unproven is given; then the counts of proven and unproven
entries are printed and every unproven range is listed on stderr.

Exits 1 at the first problem, naming its line, node and sequence number.
CSV exports carry no proofs and cannot be verified.

Here --key is a node's checkpoint key (base64 Ed25519 or verifier key), not
the operator TLS key. A verifier key (name+hash+key) pins the key name too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := ledger.VerifyOptions{AllowUnproven: allowUnproven}
			for _, s := range keys {
				k, err := parseNodeKey("--key", s)
				if err != nil {
					return err
				}
				if k.node == "" {
					return usagef("--key: %q needs the form NODE=KEY", s)
				}
				if opts.Keys == nil {
					opts.Keys = map[string]ledger.TrustedKey{}
				}
				opts.Keys[k.node] = ledger.TrustedKey{Name: k.name, Pub: k.pub}
			}
			return runVerify(cmd, args[0], opts)
		},
	}
	// Shadows the global --key (operator TLS key): verify dials nothing.
	c.Flags().StringArrayVar(&keys, "key", nil, "trusted checkpoint key NODE=KEY (repeat per node)")
	c.Flags().BoolVar(&allowUnproven, "allow-unproven", false,
		"accept entries no proof to a signed checkpoint covers, and count them (default: they fail)")
	return c
}

// verifyReport is the -o json/yaml form of a successful verify.
type verifyReport struct {
	OK          bool              `json:"ok"`
	File        string            `json:"file"`
	Lines       int               `json:"lines"`
	Entries     int               `json:"entries"`
	Proven      int               `json:"proven"`
	Unproven    int               `json:"unproven"`
	Checkpoints int               `json:"checkpoints"`
	Proofs      int               `json:"proofs"`
	Nodes       map[string]string `json:"nodes"`
	// UnprovenRanges lists (the first 100) ranges of unproven entries.
	UnprovenRanges []unprovenRange `json:"unproven_ranges,omitempty"`
}

type unprovenRange struct {
	Node   string `json:"node"`
	From   uint64 `json:"from_seq"`
	To     uint64 `json:"to_seq"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func runVerify(cmd *cobra.Command, file string, opts ledger.VerifyOptions) error {
	if _, err := outputFormat(cmd); err != nil {
		return err
	}
	var r io.Reader = cmd.InOrStdin()
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	rep, err := ledger.VerifyExportWith(r, opts)
	var ve *ledger.VerifyError
	if errors.As(err, &ve) {
		where := fmt.Sprintf("line %d", ve.Line)
		if ve.Node != "" {
			where += ", node " + ve.Node
		}
		if ve.Seq != 0 {
			where += fmt.Sprintf(", seq %d", ve.Seq)
		}
		hint := ""
		if strings.HasPrefix(ve.Reason, "unproven") {
			hint = " (--allow-unproven accepts such entries and counts them)"
		}
		return fmt.Errorf("%s: verification FAILED at %s: %s%s", file, where, ve.Reason, hint)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if rep.Entries == 0 && len(rep.Nodes) == 0 {
		return fmt.Errorf("%s: verification FAILED: no export header found (empty file, or not a JSON Lines export)", file)
	}
	out := verifyReport{OK: true, File: file, Lines: rep.Lines, Entries: rep.Entries, Proven: rep.Proven,
		Unproven: rep.Unproven, Checkpoints: rep.Checkpoints, Proofs: rep.Proofs, Nodes: rep.Nodes}
	if opts.Keys == nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: no --key given: checkpoint keys were taken from the file itself (integrity, not origin)")
	}
	if rep.Unproven > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %d of %d entries are NOT proven by a signed checkpoint (accepted by --allow-unproven):\n",
			rep.Unproven, rep.Entries)
		listed := 0
		for _, u := range rep.UnprovenRuns {
			out.UnprovenRanges = append(out.UnprovenRanges, unprovenRange(u))
			listed += int(u.To - u.From + 1)
			fmt.Fprintf(cmd.ErrOrStderr(), "  node %s seq %d..%d (from line %d): %s\n", u.Node, u.From, u.To, u.Line, u.Reason)
		}
		if listed < rep.Unproven {
			fmt.Fprintf(cmd.ErrOrStderr(), "  (%d more unproven entries in ranges not listed)\n", rep.Unproven-listed)
		}
	}
	return printOutput(cmd, out, func(w io.Writer) {
		fmt.Fprintf(w, "OK: %d entries verified (%d proven by signed checkpoints, %d unproven); %d checkpoints, %d proofs, %d lines\n",
			rep.Entries, rep.Proven, rep.Unproven, rep.Checkpoints, rep.Proofs, rep.Lines)
		for _, n := range slices.Sorted(func(yield func(string) bool) {
			for k := range rep.Nodes {
				if !yield(k) {
					return
				}
			}
		}) {
			row(w, "node "+n, "key "+rep.Nodes[n])
		}
	})
}

// --- prove ---

// proveResult is the -o json/yaml form of a checked inclusion proof.
type proveResult struct {
	OK        bool            `json:"ok"`
	Seq       uint64          `json:"seq"`
	TreeSize  uint64          `json:"tree_size"`
	Root      string          `json:"root"`
	Origin    string          `json:"origin"`
	KeyPinned bool            `json:"key_pinned"`
	Entry     json.RawMessage `json:"entry"`
}

func newAuditProveCmd() *cobra.Command {
	var size uint64
	c := &cobra.Command{
		Use:   "prove SEQ [--tree-size N] [--node-key KEY]",
		Short: "Fetch an entry's inclusion proof and check it locally against the signed checkpoint",
		Args:  cobra.ExactArgs(1),
	}
	key := addNodeKeyFlag(c)
	c.Flags().Uint64Var(&size, "tree-size", 0, "prove against the checkpoint signed at this tree size (0: latest)")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		seq, err := parseUintArg("SEQ", args[0])
		if err != nil {
			return err
		}
		if seq == 0 {
			return usagef("SEQ: entries are numbered from 1")
		}
		pinned, err := key()
		if err != nil {
			return err
		}
		return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
			p, err := c.GetInclusionProof(ctx, &hubv1.InclusionProofRequest{Seq: seq, TreeSize: size}, grpc.MaxCallRecvMsgSize(maxAuditRecord))
			if err != nil {
				return err
			}
			k, wasPinned, err := trustKey(cmd, pinned, p.GetCheckpoint().GetPublicKey())
			if err != nil {
				return err
			}
			res, err := checkInclusion(p, seq, size, k)
			if err != nil {
				return err
			}
			res.KeyPinned = wasPinned
			return printOutput(cmd, res, func(w io.Writer) {
				var e ledger.Entry
				_ = json.Unmarshal(res.Entry, &e)
				fmt.Fprintf(w, "OK: entry %d is leaf %d of %s's tree of size %d\n", seq, seq-1, res.Origin, res.TreeSize)
				row(w, "root", res.Root)
				row(w, "signature", map[bool]string{true: "pinned key", false: "key the server sent"}[wasPinned])
				row(w, "entry", entrySummary(&e))
			})
		})
	}
	return c
}

// checkInclusion checks everything the server sent for an inclusion proof:
// the checkpoint's signature, that the entry is the one asked for and
// matches its own hash, and the Merkle path to the signed root.
func checkInclusion(p *hubv1.InclusionProof, seq, size uint64, k nodeKey) (*proveResult, error) {
	cp, err := verifyNote(p.GetCheckpoint().GetNote(), k)
	if err != nil {
		return nil, proofFailure("%v", err)
	}
	if size != 0 && cp.Size != size {
		return nil, proofFailure("asked for tree size %d, the signed checkpoint is of size %d", size, cp.Size)
	}
	if p.GetTreeSize() != cp.Size {
		return nil, proofFailure("the proof claims tree size %d, the signed checkpoint says %d", p.GetTreeSize(), cp.Size)
	}
	var e ledger.Entry
	if err := json.Unmarshal(p.GetEntry().GetJson(), &e); err != nil {
		return nil, proofFailure("the entry is not readable: %v", err)
	}
	if e.Seq != seq || p.GetLeafIndex() != seq-1 {
		return nil, proofFailure("asked for entry %d, got entry %d at leaf %d", seq, e.Seq, p.GetLeafIndex())
	}
	if k.node != "" && e.Node != k.node {
		return nil, proofFailure("entry %d belongs to node %q, the pinned key to %q", seq, e.Node, k.node)
	}
	if !bytes.Equal(ledger.ComputeHash(&e), e.Hash) {
		return nil, proofFailure("entry %d does not match its own hash (its contents were altered)", seq)
	}
	if lh := p.GetLeafHash(); len(lh) != 0 && !bytes.Equal(lh, ledger.LeafHash(&e)) {
		return nil, proofFailure("the leaf hash sent is not the entry's")
	}
	if err := ledger.VerifyEntryInclusion(&e, cp.Size, p.GetHashes(), cp.Root); err != nil {
		return nil, proofFailure("entry %d is not in the signed tree of size %d: %v", seq, cp.Size, err)
	}
	return &proveResult{OK: true, Seq: seq, TreeSize: cp.Size, Root: b64(cp.Root), Origin: cp.Origin,
		Entry: json.RawMessage(p.GetEntry().GetJson())}, nil
}

// entrySummary is one human line for an entry.
func entrySummary(e *ledger.Entry) string {
	parts := []string{
		strconv.FormatUint(e.Seq, 10),
		time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano),
		orDash(e.Node), orDash(string(e.Kind)), orDash(e.Method),
	}
	if e.Status != 0 {
		parts = append(parts, strconv.Itoa(e.Status))
	}
	parts = append(parts, orDash(e.From)+" -> "+orDash(e.To))
	if e.SrcNet != "" || e.DstNet != "" {
		parts = append(parts, "net "+orDash(e.SrcNet)+" -> "+orDash(e.DstNet))
	}
	if e.Reason != "" {
		parts = append(parts, strconv.Quote(e.Reason))
	}
	return strings.Join(parts, "  ")
}

// --- consistency ---

// consistencyResult is the -o json/yaml form of a checked consistency proof.
type consistencyResult struct {
	OK        bool   `json:"ok"`
	Origin    string `json:"origin"`
	OldSize   uint64 `json:"old_size"`
	OldRoot   string `json:"old_root"`
	NewSize   uint64 `json:"new_size"`
	NewRoot   string `json:"new_root"`
	KeyPinned bool   `json:"key_pinned"`
}

func newAuditConsistencyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "consistency OLD [NEW] [--node-key KEY]",
		Short: "Fetch two checkpoints and their consistency proof and check locally that the log only grew",
		Long: `Check that the log of tree size OLD is a prefix of the log of size NEW
(default: the latest), i.e. nothing was rewritten in between. Both sizes
need a checkpoint the node signed (see 'hubctl audit checkpoint').`,
		Args: cobra.RangeArgs(1, 2),
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
		var newSize uint64
		if len(args) == 2 && args[1] != "latest" {
			if newSize, err = parseUintArg("NEW", args[1]); err != nil {
				return err
			}
			if newSize != 0 && newSize < oldSize {
				return usagef("NEW: %d is smaller than OLD %d", newSize, oldSize)
			}
		}
		pinned, err := key()
		if err != nil {
			return err
		}
		return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
			p, err := c.GetConsistencyProof(ctx, &hubv1.ConsistencyProofRequest{OldSize: oldSize, NewSize: newSize})
			if err != nil {
				return err
			}
			served := p.GetNewCheckpoint().GetPublicKey()
			if pinned == nil && !bytes.Equal(served, p.GetOldCheckpoint().GetPublicKey()) {
				return proofFailure("the two checkpoints came with different keys")
			}
			k, wasPinned, err := trustKey(cmd, pinned, served)
			if err != nil {
				return err
			}
			res, err := checkConsistency(p, oldSize, newSize, k)
			if err != nil {
				return err
			}
			res.KeyPinned = wasPinned
			return printOutput(cmd, res, func(w io.Writer) {
				fmt.Fprintf(w, "OK: %s's tree of size %d is a prefix of its tree of size %d\n", res.Origin, res.OldSize, res.NewSize)
				row(w, "old root", res.OldRoot)
				row(w, "new root", res.NewRoot)
				row(w, "signatures", map[bool]string{true: "pinned key", false: "key the server sent"}[wasPinned])
			})
		})
	}
	return c
}

// checkConsistency checks both checkpoint signatures, that they are the
// sizes asked for, of one origin, and the RFC 9162 consistency proof.
func checkConsistency(p *hubv1.ConsistencyProof, oldSize, newSize uint64, k nodeKey) (*consistencyResult, error) {
	oldCp, err := verifyNote(p.GetOldCheckpoint().GetNote(), k)
	if err != nil {
		return nil, proofFailure("old checkpoint: %v", err)
	}
	newCp, err := verifyNote(p.GetNewCheckpoint().GetNote(), k)
	if err != nil {
		return nil, proofFailure("new checkpoint: %v", err)
	}
	switch {
	case oldCp.Size != oldSize:
		return nil, proofFailure("asked for tree size %d, the old checkpoint is of size %d", oldSize, oldCp.Size)
	case newSize != 0 && newCp.Size != newSize:
		return nil, proofFailure("asked for tree size %d, the new checkpoint is of size %d", newSize, newCp.Size)
	case newCp.Size < oldCp.Size:
		return nil, proofFailure("the new checkpoint (size %d) is smaller than the old (size %d)", newCp.Size, oldCp.Size)
	case oldCp.Origin != newCp.Origin:
		return nil, proofFailure("the checkpoints are of different logs (%q, %q)", oldCp.Origin, newCp.Origin)
	case p.GetOldSize() != oldCp.Size || p.GetNewSize() != newCp.Size:
		return nil, proofFailure("the proof claims sizes %d..%d, the signed checkpoints say %d..%d",
			p.GetOldSize(), p.GetNewSize(), oldCp.Size, newCp.Size)
	}
	if err := ledger.VerifyConsistency(oldCp.Size, newCp.Size, oldCp.Root, newCp.Root, p.GetHashes()); err != nil {
		return nil, proofFailure("tree %d is not a prefix of tree %d: %v", oldCp.Size, newCp.Size, err)
	}
	return &consistencyResult{OK: true, Origin: oldCp.Origin, OldSize: oldCp.Size, OldRoot: b64(oldCp.Root),
		NewSize: newCp.Size, NewRoot: b64(newCp.Root)}, nil
}

// --- tail --- (audit_tail.go)

// exportTotalHeader is admin.ExportTotalHeader (not imported: hubctl does
// not link the server).
const exportTotalHeader = "clearhub-export-total"

// exportTotal is the entry count the node announced in the export's
// header, or -1 when it did not.
func exportTotal(st interface{ Header() (metadata.MD, error) }) int64 {
	md, err := st.Header()
	if err != nil {
		return -1
	}
	for _, v := range md.Get(exportTotalHeader) {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return -1
}
