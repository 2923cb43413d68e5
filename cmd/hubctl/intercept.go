package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"clearhub/proto/hubv1"
)

func init() {
	registerCommand(newCaptureCmd)
	registerCommand(newInterceptCmd)
}

// withService dials like withAdmin and hands fn the connection's client
// of another service.
func withService[C any](cmd *cobra.Command, mk func(cc grpc.ClientConnInterface) C, fn func(ctx context.Context, c C) error) error {
	_, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, mk(cc))
}

// captureView is the capture switches and this node's collector.
type captureView struct {
	All       bool     `json:"all"`
	Networks  []string `json:"networks"`
	UpdatedBy string   `json:"updated_by"`
	Collector string   `json:"collector"`
	Transport string   `json:"transport"`
	Sent      uint64   `json:"sent"`
	Dropped   uint64   `json:"dropped"`
}

func newCaptureCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "capture",
		Short: "SIP capture: HEP mirroring of networks' traffic to Homer, on and off at runtime",
		Long: `SIP capture mirrors every message the hub forwards to or from the networks
switched on (or all of them) to the Homer collector each node is configured
with (capture.address, capture.transport udp|tls, capture.agent_id), in HEP
v3. The switches are replicated: every node mirrors the same networks. A
node without capture.address mirrors nothing. Needs the admin or operator
role to switch, readonly to look.`,
	}
	var all bool
	sw := func(on bool) *cobra.Command {
		verb := map[bool]string{true: "on", false: "off"}[on]
		s := &cobra.Command{
			Use:   verb + " NET | --all",
			Short: "Switch SIP capture " + verb + " for network NET (or all networks)",
			Args:  cobra.MaximumNArgs(1),
		}
		s.Flags().BoolVar(&all, "all", false, "every network")
		s.RunE = func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return usagef("give a network or --all")
			}
			req := &hubv1.SetCaptureRequest{All: all, On: on}
			if len(args) == 1 {
				req.Network = args[0]
			}
			return withService(cmd, hubv1.NewCaptureServiceClient, func(ctx context.Context, c hubv1.CaptureServiceClient) error {
				st, err := c.SetCapture(ctx, req)
				if err != nil {
					return err
				}
				return printCapture(cmd, &hubv1.CaptureStatusResponse{Settings: st})
			})
		}
		return s
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show which networks are captured, and the answering node's collector counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd, hubv1.NewCaptureServiceClient, func(ctx context.Context, c hubv1.CaptureServiceClient) error {
				st, err := c.CaptureStatus(ctx, &hubv1.CaptureStatusRequest{})
				if err != nil {
					return err
				}
				return printCapture(cmd, st)
			})
		},
	}
	c.AddCommand(sw(true), sw(false), status)
	return c
}

func printCapture(cmd *cobra.Command, st *hubv1.CaptureStatusResponse) error {
	s := st.GetSettings()
	v := captureView{All: s.GetAll(), Networks: s.GetNetworks(), UpdatedBy: s.GetUpdatedBy(), Collector: st.GetCollector(),
		Transport: st.GetTransport(), Sent: st.GetSent(), Dropped: st.GetDropped()}
	if v.Networks == nil {
		v.Networks = []string{}
	}
	return printOutput(cmd, v, func(w io.Writer) {
		what := strings.Join(v.Networks, ", ")
		switch {
		case v.All:
			what = "all networks"
		case what == "":
			what = "nothing"
		}
		fmt.Fprintf(w, "CAPTURED\t%s\n", what)
		if v.Collector != "" {
			fmt.Fprintf(w, "COLLECTOR\t%s %s (this node: %d sent, %d dropped)\n", v.Transport, v.Collector, v.Sent, v.Dropped)
		}
	})
}

// warrantView is one warrant (-o json/yaml).
type warrantView struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Target    string   `json:"target"`
	Start     string   `json:"start"`
	End       string   `json:"end"`
	Deliver   []string `json:"deliver"`
	Reference string   `json:"reference"`
	CreatedBy string   `json:"created_by"`
}

func viewWarrant(w *hubv1.Warrant) warrantView {
	v := warrantView{ID: w.GetId(), Kind: strings.ToLower(strings.TrimPrefix(w.GetKind().String(), "WARRANT_TARGET_")), Target: w.GetTarget(),
		Start: time.Unix(0, w.GetStartUnixNano()).UTC().Format(time.RFC3339), End: time.Unix(0, w.GetEndUnixNano()).UTC().Format(time.RFC3339),
		Reference: w.GetReference(), CreatedBy: w.GetCreatedBy(), Deliver: []string{}}
	for _, d := range []struct {
		on   bool
		name string
	}{{w.GetSignalling(), "signalling"}, {w.GetBodies(), "bodies"}, {w.GetMsrp(), "msrp"}} {
		if d.on {
			v.Deliver = append(v.Deliver, d.name)
		}
	}
	return v
}

func printWarrants(cmd *cobra.Command, ws []*hubv1.Warrant) error {
	views := make([]warrantView, 0, len(ws))
	for _, w := range ws {
		views = append(views, viewWarrant(w))
	}
	return printOutput(cmd, views, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tKIND\tTARGET\tSTART\tEND\tDELIVER\tREFERENCE")
		for _, v := range views {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Kind, v.Target, v.Start, v.End, strings.Join(v.Deliver, ","), v.Reference)
		}
	})
}

func newInterceptCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "intercept",
		Short: "Lawful interception warrants and their audit (lawful-intercept role only)",
		Long: `Lawful interception (docs/interception.md): warrants name a target (a SIP
user, a domain or a member network), a time window and what to deliver
(signalling, bodies, msrp). While one is in force, every node copies the
target's traffic in HEP v3 over TLS to its mediation endpoint
(intercept.address). Only a certificate with the lawful-intercept role may
use these commands; to every other operator the warrants do not exist.
Every change and every delivery is recorded in each node's interception
ledger, which "hubctl intercept audit" reads.`,
	}
	warrant := &cobra.Command{Use: "warrant", Short: "Set, list and delete warrants"}
	var user, domain, network, deliver, ref, start, end string
	var dur time.Duration
	set := &cobra.Command{
		Use:   "set ID (--user SIP-URI | --domain DOMAIN | --network NET) (--end TIME | --for DURATION)",
		Short: "Set (or replace) warrant ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := &hubv1.Warrant{Id: args[0], Reference: ref}
			n := 0
			for _, t := range []struct {
				v    string
				kind hubv1.WarrantTargetKind
			}{{user, hubv1.WarrantTargetKind_WARRANT_TARGET_USER}, {domain, hubv1.WarrantTargetKind_WARRANT_TARGET_DOMAIN},
				{network, hubv1.WarrantTargetKind_WARRANT_TARGET_NETWORK}} {
				if t.v != "" {
					n++
					w.Kind, w.Target = t.kind, t.v
				}
			}
			if n != 1 {
				return usagef("give exactly one of --user, --domain and --network")
			}
			from := time.Now()
			if start != "" {
				t, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return usagef("--start: %v", err)
				}
				from = t
			}
			var until time.Time
			switch {
			case end != "" && dur != 0, end == "" && dur == 0:
				return usagef("give one of --end and --for")
			case end != "":
				t, err := time.Parse(time.RFC3339, end)
				if err != nil {
					return usagef("--end: %v", err)
				}
				until = t
			default:
				until = from.Add(dur)
			}
			w.StartUnixNano, w.EndUnixNano = from.UnixNano(), until.UnixNano()
			for _, d := range strings.Split(deliver, ",") {
				switch strings.TrimSpace(d) {
				case "signalling":
					w.Signalling = true
				case "bodies":
					w.Bodies = true
				case "msrp":
					w.Msrp = true
				default:
					return usagef("--deliver: %q is not signalling, bodies or msrp", d)
				}
			}
			return withService(cmd, hubv1.NewInterceptServiceClient, func(ctx context.Context, c hubv1.InterceptServiceClient) error {
				got, err := c.PutWarrant(ctx, &hubv1.PutWarrantRequest{Warrant: w})
				if err != nil {
					return err
				}
				return printWarrants(cmd, []*hubv1.Warrant{got})
			})
		},
	}
	set.Flags().StringVar(&user, "user", "", "target SIP address of record, e.g. sip:alice@a.example")
	set.Flags().StringVar(&domain, "domain", "", "target SIP domain")
	set.Flags().StringVar(&network, "network", "", "target member network id")
	set.Flags().StringVar(&start, "start", "", "start time, RFC 3339 (default now)")
	set.Flags().StringVar(&end, "end", "", "end time, RFC 3339")
	set.Flags().DurationVar(&dur, "for", 0, "duration from the start")
	set.Flags().StringVar(&deliver, "deliver", "signalling,bodies", "what to deliver: signalling, bodies, msrp (comma-separated)")
	set.Flags().StringVar(&ref, "ref", "", "the authority's reference (order number)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List warrants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd, hubv1.NewInterceptServiceClient, func(ctx context.Context, c hubv1.InterceptServiceClient) error {
				r, err := c.ListWarrants(ctx, &hubv1.ListWarrantsRequest{})
				if err != nil {
					return err
				}
				return printWarrants(cmd, r.GetWarrants())
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete warrant ID (interception stops at once on every node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withService(cmd, hubv1.NewInterceptServiceClient, func(ctx context.Context, c hubv1.InterceptServiceClient) error {
				if _, err := c.DeleteWarrant(ctx, &hubv1.DeleteWarrantRequest{Id: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "warrant %s deleted\n", args[0])
				return nil
			})
		},
	}
	warrant.AddCommand(set, list, del)
	var fromSeq uint64
	audit := &cobra.Command{
		Use:   "audit",
		Short: "Print the answering node's interception ledger as JSON Lines, then its signed checkpoint on stderr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd, hubv1.NewInterceptServiceClient, func(ctx context.Context, c hubv1.InterceptServiceClient) error {
				st, err := c.ExportInterceptAudit(ctx, &hubv1.ExportInterceptAuditRequest{FromSeq: fromSeq})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for {
					r, err := st.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "%s\n", r.GetJson())
				}
				cp, err := c.InterceptCheckpoint(ctx, &hubv1.InterceptCheckpointRequest{})
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.ErrOrStderr(), cp.GetNote())
				return nil
			})
		},
	}
	audit.Flags().Uint64Var(&fromSeq, "from-seq", 0, "first entry")
	audit.Annotations = map[string]string{annotOwnOutput: "jsonl"}
	c.AddCommand(warrant, audit)
	return c
}
