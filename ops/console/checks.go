package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"clearhub/ops/netcheck"
)

// The route check and the network test (issue 15, "Both in the
// console"): the same package hubctl runs (ops/netcheck), on the networks
// and policy read over the admin API as the session's operator, so the
// admin API's access table decides who may ask (admin, operator, readonly:
// ListNetworks and ListPolicies) and the answer is the SIP plane's
// decision code, as for `hubctl route check` and `hubctl network test`.

const (
	// maxNetworkTests bounds the network tests running at once on this
	// node, whoever asks.
	maxNetworkTests = 4
	// networkTestTimeout bounds one test: edges are probed in parallel,
	// each within ProbeTimeout.
	networkTestTimeout = time.Minute
	defaultRouteSize   = 500
)

// writeFieldErr answers bad input with 400 naming the field.
func writeFieldErr(w http.ResponseWriter, fe *netcheck.FieldError) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": fe.Error(), "field": fe.Field})
}

// writeCheckErr answers a netcheck refusal of the input: 400, naming the
// field when it says which.
func writeCheckErr(w http.ResponseWriter, err error) {
	var fe *netcheck.FieldError
	if errors.As(err, &fe) {
		writeFieldErr(w, fe)
		return
	}
	writeErr(w, http.StatusBadRequest, err)
}

// apiRouteCheck answers GET /api/route-check?from=NET&uri=sip:user@domain
// &service=im[&method=&event=&size=] with netcheck.RouteView: allowed or
// refused (status, reason phrase, label, why), the destination and the
// edges in trial order.
func (s *Server) apiRouteCheck(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	from := strings.TrimSpace(q.Get("from"))
	if from == "" {
		writeFieldErr(w, &netcheck.FieldError{Field: "from", Why: "the source network is required"})
		return
	}
	size := defaultRouteSize
	if v := strings.TrimSpace(q.Get("size")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			writeFieldErr(w, &netcheck.FieldError{Field: "size", Value: v, Why: "want a request size in bytes, 1..65535"})
			return
		}
		size = n
	}
	rq := netcheck.RouteQuery{From: from, RequestURI: q.Get("uri"), Size: size}
	if err := rq.Resolve(q.Get("service"), q.Get("method"), q.Get("event")); err != nil {
		writeCheckErr(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	st, err := netcheck.FetchState(ctx, c.admin)
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	v, err := netcheck.CheckRoute(st, rq)
	if err != nil {
		writeCheckErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// apiNetworkTest answers POST /api/networks/{id}/test with
// netcheck.NetTestView: OPTIONS from this node to each edge
// (reachability, TLS, certificate names against the domains), identity
// and policy summary, and what is missing before traffic can flow.
func (s *Server) apiNetworkTest(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), networkTestTimeout)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	// Read first: a role the admin API does not let read the networks
	// gets its refusal, and no probe leaves the node.
	st, err := netcheck.FetchState(ctx, c.admin)
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	if st.Network(id) == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("network %q not found", id))
		return
	}
	select {
	case s.tests <- struct{}{}:
		defer func() { <-s.tests }()
	default:
		writeErr(w, http.StatusTooManyRequests, fmt.Errorf("%d network tests already running on this node: try again when one ends", maxNetworkTests))
		return
	}
	p := netcheck.Prober{Timeout: s.opts.ProbeTimeout, UserAgent: "clearhub console network test",
		NoCertHint: "this node's console has no certificate for TLS edges"}
	if s.opts.ProbeCert != nil {
		if cert := s.opts.ProbeCert(); cert != nil {
			p.Cert, p.CertName = cert, "node certificate "+certCN(cert)
		}
	}
	start := s.now()
	v := netcheck.TestNetwork(ctx, st, id, p)
	s.log.Info("console network test", "actor", ss.id.Name, "role", string(ss.id.Role), "network", id,
		"edges", len(v.Edges), "missing", len(v.Missing), "took", s.now().Sub(start))
	writeJSON(w, http.StatusOK, v)
}

func certCN(c *tls.Certificate) string {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return "(unparsable)"
	}
	return leaf.Subject.CommonName
}
