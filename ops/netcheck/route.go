// Package netcheck is the onboarding self-test (network test) and the route
// dry run (route check) of issue 15, shared by `hubctl network test`,
// `hubctl route check` and the operator console, so both faces give the
// same answer. Both read the networks and the peering policy over the admin
// API (FetchState, so its access table decides who may ask) and judge them
// with the SIP plane's own code (package hub/routing), not a copy of it.
package netcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// FieldError is bad input, naming the field (hubctl: the flag; console: the
// form field) so the answer says what to fix.
type FieldError struct {
	Field string // "service", "method", "uri", ...
	Value string
	Why   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Why) }

// FetchState builds the part of the cluster state routing reads (networks
// and policies) from the admin API, as the caller's identity may see it.
func FetchState(ctx context.Context, c hubv1.AdminServiceClient) (*raft.State, error) {
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

// RouteServices are the service names a route check takes, in enum order,
// then "any" (OPTIONS, which every admitted service allows).
func RouteServices() []string {
	var out []string
	for v := int32(1); ; v++ {
		if _, ok := hubv1.Service_name[v]; !ok {
			return append(out, "any")
		}
		out = append(out, routing.ServiceName(hubv1.Service(v)))
	}
}

// RouteQuery is what a route check asks: an out-of-dialog request from
// network From to RequestURI. Resolve fills Method, Event and
// FileTransfer from a service name.
type RouteQuery struct {
	From         string
	RequestURI   string
	Method       string
	Event        string
	FileTransfer bool
	// Size is the request's size in bytes: above 1300 the hub tries
	// TCP/TLS edges first (RFC 3261 18.1.1).
	Size int
}

// Resolve checks the query's Request-URI and turns a service name, a
// method and an event package (each may be empty) into the request to
// decide on: the service's request when no method is given (default im),
// else the method, which must agree with a service given too. Its error
// is a *FieldError.
func (q *RouteQuery) Resolve(service, method, event string) error {
	if _, err := parseRequestURI(q.RequestURI); err != nil {
		return err
	}
	svc := strings.ToLower(strings.TrimSpace(service))
	method = strings.ToUpper(strings.TrimSpace(method))
	event = strings.ToLower(strings.TrimSpace(event))
	if svc != "" {
		if _, ok := serviceRequest[svc]; !ok {
			return &FieldError{Field: "service", Value: service, Why: "want one of " + strings.Join(RouteServices(), ", ")}
		}
	}
	if method == "" {
		if svc == "" {
			svc = "im"
		}
		r := serviceRequest[svc]
		q.Method, q.FileTransfer = r.method, r.file
		q.Event = event
		if q.Event == "" {
			q.Event = r.event
		}
		return nil
	}
	if strings.ContainsAny(method, " \t\r\n") {
		return &FieldError{Field: "method", Value: method, Why: "not a SIP method"}
	}
	if event == "" && (method == "SUBSCRIBE" || method == "NOTIFY" || method == "PUBLISH") {
		event = "presence"
		if svc == "chat" {
			event = "conference"
		}
	}
	file := svc == "file" && method == "INVITE"
	if svc != "" {
		// An event package the hub does not carry is the decision's to
		// refuse (489), not bad input.
		want := serviceRequest[svc]
		wantSvc, _ := routing.Classify(want.method, want.event, want.file)
		if got, ok := routing.Classify(method, event, file); ok && got != wantSvc {
			return &FieldError{Field: "method", Value: method,
				Why: fmt.Sprintf("with event %q it is service %s, not service %s", event, routing.ServiceName(got), svc)}
		}
	}
	q.Method, q.Event, q.FileTransfer = method, event, file
	return nil
}

// RouteView is a route check's answer (hubctl's -o json, the console's
// JSON).
type RouteView struct {
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
	Edges       []RouteEdge `json:"edges"`
	Notes       []string    `json:"notes,omitempty"`
}

// RouteEdge is one edge the request would be sent to, in trial order.
type RouteEdge struct {
	Order     int    `json:"order"`
	URI       string `json:"uri"`
	Address   string `json:"address"`
	Transport string `json:"transport"`
}

// CheckRoute runs the hub's checks in the proxy's order: the source
// network (attribution and suspension), the method, then routing.Decide
// and the edge order. The only error is a Request-URI that does not parse
// (a *FieldError for "uri"); a refusal is an answer.
func CheckRoute(st *raft.State, q RouteQuery) (*RouteView, error) {
	u, err := parseRequestURI(q.RequestURI)
	if err != nil {
		return nil, err
	}
	if q.Method == "" {
		if err := q.Resolve("", "", q.Event); err != nil {
			return nil, err
		}
	}
	v := &RouteView{From: q.From, RequestURI: u.String(), Method: q.Method, Event: q.Event, Edges: []RouteEdge{}}
	refuse := func(code int, phrase, label, why string) *RouteView {
		v.Status, v.Reason, v.Label, v.Why = code, phrase, label, why
		return v
	}
	src := st.Network(q.From)
	if src == nil {
		return refuse(403, "Forbidden", "unattributable", "no network "+q.From+": the hub attributes nothing to it"), nil
	}
	if len(src.GetDomains()) > 0 {
		v.Notes = append(v.Notes, "the From domain must be one of "+q.From+"'s: "+strings.Join(src.GetDomains(), ", ")+" (else 403 From domain not owned by sender)")
	}
	if !src.Active() {
		return refuse(403, "Forbidden", "suspended", "source network suspended"), nil
	}
	if !slices.Contains(routing.CarriedMethods, q.Method) {
		return refuse(405, "Method Not Allowed", "method", "method not carried by the hub (Allow: "+strings.Join(routing.CarriedMethods, ", ")+")"), nil
	}
	d := routing.Decide(st, src, routing.Request{Method: q.Method, Host: u.Host, Event: q.Event, FileTransfer: q.FileTransfer})
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
	for i, hp := range d.Order(q.Size) {
		v.Edges = append(v.Edges, RouteEdge{Order: i + 1, URI: hp.URI, Address: hp.Addr, Transport: hp.Transport})
	}
	if len(v.Edges) == 0 {
		v.Status, v.Reason, v.Label = 503, "Service Unavailable", "no_edge"
		v.Why = "destination network has no usable edge (configured edges: " + joinOrDash(d.Dst.GetEdges()) + ")"
		if q.Method == "MESSAGE" && d.Dst.GetDeferral() != nil {
			v.Notes = append(v.Notes, "the destination has store-and-forward settings: where the node runs the queue, the MESSAGE is stored (202) instead")
		}
		return v, nil
	}
	v.Allowed = true
	v.Why = fmt.Sprintf("%s may reach %s for %s", q.From, v.Destination, v.Service)
	v.Notes = append(v.Notes, "an edge that fails (transport error, 503, no answer in time) passes the request to the next; none left: 503, or 408 when one stayed silent")
	return v, nil
}

// parseRequestURI takes sip:user@domain, or user@domain without a scheme.
func parseRequestURI(s string) (sip.Uri, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, ":") {
		raw = "sip:" + raw
	}
	var u sip.Uri
	if err := sip.ParseUri(raw, &u); err != nil || u.Host == "" {
		return sip.Uri{}, &FieldError{Field: "uri", Value: s, Why: "not a SIP URI such as sip:user@domain"}
	}
	return u, nil
}

func joinOrDash(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ",")
}
