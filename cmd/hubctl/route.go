package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"clearhub/ops/netcheck"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func init() { registerCommand(newRouteCmd) }

func newRouteCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "route",
		Short: "Dry-run the SIP plane's routing decision",
	}
	c.AddCommand(newRouteCheckCmd())
	return c
}

// routeView is route check's answer (also its -o json/yaml form): the
// console shows the same one.
type routeView = netcheck.RouteView

// routeQuery is what route check's flags ask.
type routeQuery struct {
	from, ruri, method, event, service string
	size                               int
}

func newRouteCheckCmd() *cobra.Command {
	var q routeQuery
	c := &cobra.Command{
		Use:   "check --from NET sip:user@domain",
		Short: "Would the hub route this request, why, and to which edges in which order",
		Long: `route check answers what the SIP plane would do with an out-of-dialog
request from member network NET to the Request-URI: refuse it (the status,
reason phrase and refusal label the hub would use) or forward it, and to
which of the destination's edges, in the order they are tried.

It fetches the networks and the peering policy over the admin API and runs
the hub's own decision code (package hub/routing, the function the proxy
calls) on them, so the answer is the SIP plane's, not a copy of its rules.
It assumes the request is attributed to NET (by its certificate or source
address) and its From domain is one of NET's, which the hub checks first.
Requests inside a dialog are routed by the hub's Record-Route token instead.

The service is --service (default im), or what --method (and --event for
SUBSCRIBE, NOTIFY and PUBLISH) maps to; give both and they must agree.
--size is the request's size in bytes: above 1300 the hub tries TCP/TLS
edges first (RFC 3261 18.1.1).

Exit status: 0 forwarded, 1 refused or no usable edge (or the call failed),
2 bad command line.`,
		Example: `  hubctl route check --from a sip:bob@b.example
  hubctl route check --from a sip:bob@b.example --service presence
  hubctl route check --from a sip:bob@b.example --method SUBSCRIBE --event presence -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q.ruri = args[0]
			if q.from == "" {
				return usagef("--from: the source network is required")
			}
			rq := netcheck.RouteQuery{From: q.from, RequestURI: q.ruri, Size: q.size}
			if err := rq.Resolve(q.service, q.method, q.event); err != nil {
				return usageOf(err)
			}
			var st *raft.State
			if err := withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var err error
				st, err = netcheck.FetchState(ctx, c)
				return err
			}); err != nil {
				return err
			}
			v, err := netcheck.CheckRoute(st, rq)
			if err != nil {
				return usageOf(err)
			}
			if err := printOutput(cmd, v, func(w io.Writer) { printRoute(w, v) }); err != nil {
				return err
			}
			if !v.Allowed {
				return fmt.Errorf("not routed: %s", v.Why)
			}
			return nil
		},
	}
	c.Flags().StringVar(&q.from, "from", "", "source member network id (the request is attributed to it)")
	c.Flags().StringVar(&q.service, "service", "", "service to check: "+strings.TrimSuffix(validServices, ", all")+" or any (OPTIONS); default im, or what --method maps to")
	c.Flags().StringVar(&q.method, "method", "", "SIP method (default: the service's: MESSAGE, SUBSCRIBE, INVITE, OPTIONS)")
	c.Flags().StringVar(&q.event, "event", "", "event package for SUBSCRIBE, NOTIFY and PUBLISH (default: the service's, presence or conference)")
	c.Flags().IntVar(&q.size, "size", 500, "request size in bytes, for the edge order (RFC 3261 18.1.1)")
	return c
}

// usageOf turns the check's bad-input error into a usage error naming the
// flag (or the Request-URI argument).
func usageOf(err error) error {
	var fe *netcheck.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Field == "uri" {
		return usagef("Request-URI %q: %s", fe.Value, fe.Why)
	}
	return usagef("--%s %q: %s", fe.Field, fe.Value, fe.Why)
}

func printRoute(w io.Writer, v *routeView) {
	verdict := "forwarded"
	if !v.Allowed {
		verdict = fmt.Sprintf("refused: %d %s", v.Status, v.Reason)
	}
	svc := v.Service
	if svc == "" {
		svc = "-"
	}
	row(w, "REQUEST", fmt.Sprintf("%s %s from %s (service %s)", v.Method, v.RequestURI, v.From, svc))
	row(w, "VERDICT", verdict)
	row(w, "WHY", v.Why)
	if v.Label != "" {
		row(w, "REFUSAL LABEL", v.Label+" (clearhub_sip_refusals_total{reason})")
	}
	row(w, "DESTINATION", orDash(v.Destination))
	for _, e := range v.Edges {
		row(w, fmt.Sprintf("EDGE %d", e.Order), fmt.Sprintf("%s  (%s %s)", e.URI, e.Transport, e.Address))
	}
	for _, n := range v.Notes {
		row(w, "NOTE", n)
	}
}
