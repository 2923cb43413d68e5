package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/cobra"

	"clearhub/hub/routing"
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

// routeQuery is what route check asks.
type routeQuery struct {
	from, ruri, method, event, service string
	size                               int
}

// routeView is route check's answer (also its -o json/yaml form).
type routeView struct {
	From        string      `json:"from"`
	RequestURI  string      `json:"request_uri"`
	Method      string      `json:"method"`
	Event       string      `json:"event,omitempty"`
	Service     string      `json:"service,omitempty"`
	Allowed     bool        `json:"allowed"`
	Status      int         `json:"status"` // the hub's own answer; 0 when forwarded
	Reason      string      `json:"reason,omitempty"`
	Label       string      `json:"refusal_label,omitempty"`
	Why         string      `json:"why"`
	Destination string      `json:"destination,omitempty"`
	Edges       []routeEdge `json:"edges"`
	Notes       []string    `json:"notes,omitempty"`
}

type routeEdge struct {
	Order     int    `json:"order"`
	URI       string `json:"uri"`
	Address   string `json:"address"`
	Transport string `json:"transport"`
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
			method, event, file, err := q.request()
			if err != nil {
				return err
			}
			var st *raft.State
			if err := withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				st, err = fetchRoutingState(ctx, c)
				return err
			}); err != nil {
				return err
			}
			v, err := checkRoute(st, q, method, event, file)
			if err != nil {
				return err
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

// serviceRequest is the request route check sends through the decision
// for a service named without a method.
var serviceRequest = map[string]struct {
	method, event string
	file          bool
}{
	"im":       {"MESSAGE", "", false},
	"presence": {"SUBSCRIBE", "presence", false},
	"session":  {"INVITE", "", false},
	"chat":     {"SUBSCRIBE", "conference", false},
	"file":     {"INVITE", "", true},
	"any":      {"OPTIONS", "", false},
}

// request turns the flags into the method, event package and
// file-transfer flag of the request to decide on.
func (q routeQuery) request() (method, event string, file bool, err error) {
	svc := strings.ToLower(strings.TrimSpace(q.service))
	method = strings.ToUpper(strings.TrimSpace(q.method))
	event = strings.ToLower(strings.TrimSpace(q.event))
	if svc != "" {
		if _, ok := serviceRequest[svc]; !ok {
			return "", "", false, usagef("--service %q: want one of %s or any", q.service, strings.TrimSuffix(validServices, ", all"))
		}
	}
	if method == "" {
		if svc == "" {
			svc = "im"
		}
		r := serviceRequest[svc]
		method, file = r.method, r.file
		if event == "" {
			event = r.event
		}
		return method, event, file, nil
	}
	if strings.ContainsAny(method, " \t\r\n") {
		return "", "", false, usagef("--method %q: not a SIP method", q.method)
	}
	if event == "" && (method == "SUBSCRIBE" || method == "NOTIFY" || method == "PUBLISH") {
		event = "presence"
		if svc == "chat" {
			event = "conference"
		}
	}
	file = svc == "file" && method == "INVITE"
	if svc != "" {
		// An event package the hub does not carry is the decision's to
		// refuse (489), not a usage error.
		want := serviceRequest[svc]
		wantSvc, _ := routing.Classify(want.method, want.event, want.file)
		if got, ok := routing.Classify(method, event, file); ok && got != wantSvc {
			return "", "", false, usagef("--method %s (event %q) is service %s, not --service %s", method, event, routing.ServiceName(got), svc)
		}
	}
	return method, event, file, nil
}

// fetchRoutingState builds the part of the cluster state routing reads
// (networks and policies) from the admin API.
func fetchRoutingState(ctx context.Context, c hubv1.AdminServiceClient) (*raft.State, error) {
	nets, err := c.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	pols, err := c.ListPolicies(ctx, &hubv1.ListPoliciesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	return raft.NewState(0, &hubv1.ClusterState{Networks: nets.GetNetworks(), Policies: pols.GetPolicies()}), nil
}

// checkRoute runs the hub's checks in the proxy's order: the source
// network (attribution and suspension), the method, then routing.Decide.
func checkRoute(st *raft.State, q routeQuery, method, event string, file bool) (*routeView, error) {
	raw := q.ruri
	if !strings.Contains(raw, ":") {
		raw = "sip:" + raw
	}
	var u sip.Uri
	if err := sip.ParseUri(raw, &u); err != nil || u.Host == "" {
		return nil, usagef("Request-URI %q: not a SIP URI such as sip:user@domain", q.ruri)
	}
	v := &routeView{From: q.from, RequestURI: u.String(), Method: method, Event: event, Edges: []routeEdge{}}
	refuse := func(code int, phrase, label, why string) *routeView {
		v.Status, v.Reason, v.Label, v.Why = code, phrase, label, why
		return v
	}
	src := st.Network(q.from)
	if src == nil {
		return refuse(403, "Forbidden", "unattributable", "no network "+q.from+": the hub attributes nothing to it"), nil
	}
	if len(src.GetDomains()) > 0 {
		v.Notes = append(v.Notes, "the From domain must be one of "+q.from+"'s: "+strings.Join(src.GetDomains(), ", ")+" (else 403 From domain not owned by sender)")
	}
	if !src.Active() {
		return refuse(403, "Forbidden", "suspended", "source network suspended"), nil
	}
	if !slices.Contains(routing.CarriedMethods, method) {
		return refuse(405, "Method Not Allowed", "method", "method not carried by the hub (Allow: "+strings.Join(routing.CarriedMethods, ", ")+")"), nil
	}
	d := routing.Decide(st, src, routing.Request{Method: method, Host: u.Host, Event: event, FileTransfer: file})
	if d.Dst != nil {
		v.Destination = d.Dst.GetId()
	}
	if d.Code == 0 || d.Label == routing.LabelPolicy || d.Label == routing.LabelServices {
		v.Service = routing.ServiceName(d.Service)
	}
	if d.Code != 0 {
		if d.Code == 404 {
			v.Notes = append(v.Notes, "a hub service domain (rooms, lists) is answered by the hub itself: route check knows only member domains")
		}
		return refuse(d.Code, d.Phrase, d.Label, d.Detail), nil
	}
	for i, hp := range d.Order(q.size) {
		v.Edges = append(v.Edges, routeEdge{Order: i + 1, URI: hp.URI, Address: hp.Addr, Transport: hp.Transport})
	}
	if len(v.Edges) == 0 {
		v.Status, v.Reason, v.Label = 503, "Service Unavailable", "no_edge"
		v.Why = "destination network has no usable edge (configured edges: " + joinOrDash(d.Dst.GetEdges()) + ")"
		if method == "MESSAGE" && d.Dst.GetDeferral() != nil {
			v.Notes = append(v.Notes, "the destination has store-and-forward settings: where the node runs the queue, the MESSAGE is stored (202) instead")
		}
		return v, nil
	}
	v.Allowed = true
	v.Why = fmt.Sprintf("%s may reach %s for %s", q.from, v.Destination, v.Service)
	v.Notes = append(v.Notes, "an edge that fails (transport error, 503, no answer in time) passes the request to the next; none left: 503, or 408 when one stayed silent")
	return v, nil
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
