package console

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/ops/netcheck"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// udpEdge answers OPTIONS with 200 like a member's edge and records the
// User-Agent of each request it gets.
type udpEdge struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func (e *udpEdge) agents() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func startUDPEdge(t *testing.T) *udpEdge {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &udpEdge{addr: c.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := sip.NewParser()
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := p.ParseSIP(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			ua := ""
			if h := req.GetHeader("User-Agent"); h != nil {
				ua = h.Value()
			}
			e.mu.Lock()
			e.got = append(e.got, string(req.Method)+" "+ua)
			e.mu.Unlock()
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Server", "fake-edge"))
			_, _ = c.WriteTo([]byte(res.String()), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return e
}

// checkState is what the fake admin API answers ListNetworks and
// ListPolicies with: a may send IM to b, b IM and presence to a; b has a
// UDP edge (edgeAddr) and a TLS one; c is suspended.
func checkState(f *fixture, edgeAddr string) {
	f.conn.replies["ListNetworks"] = &hubv1.ListNetworksResponse{Networks: []*hubv1.Network{
		{Id: "a", Domains: []string{"a.example"}, Edges: []string{"sip:127.0.0.2:5070"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
		{Id: "b", Domains: []string{"b.example"}, Edges: []string{"sip:" + edgeAddr, "sips:edge.b.example:5061"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		{Id: "c", Domains: []string{"c.example"}, Edges: []string{"sip:127.0.0.4:5070"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED},
	}}
	f.conn.replies["ListPolicies"] = &hubv1.ListPoliciesResponse{Policies: []*hubv1.Policy{
		{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}}},
		{Destination: "a", Rules: []*hubv1.PolicyRule{{Source: "b", Services: []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE}}}},
	}}
}

// The route check runs for every role the admin API lets read networks
// and policy, answers bad input with 400 naming the field (before any
// admin call), and gives the decision: refused with status and reason, or
// allowed with the edges in trial order.
func TestAPIRouteCheck(t *testing.T) {
	f := newFixture(t)
	checkState(f, "127.0.0.3:5070")
	roCookie, _ := f.login("rita", pki.AdminRoleReadonly)
	opCookie, _ := f.login("olga", pki.AdminRoleOperator)
	auCookie, _ := f.login("aldo", pki.AdminRoleAuditor)
	denied := status.Error(codes.PermissionDenied, "aldo (role auditor) may not call AdminService/ListNetworks: it needs role admin, operator or readonly")
	for _, tc := range []struct {
		name      string
		cookie    *http.Cookie
		query     string
		rpcErr    error
		want      int
		wantField string // of a 400
		wantBody  string
		wantCalls int
		check     func(t *testing.T, v netcheck.RouteView)
	}{
		{name: "no session", query: "from=a&uri=sip:bob@b.example", want: 401},
		{name: "readonly: allowed with edges in order", cookie: roCookie, query: "from=a&uri=sip:bob@b.example&service=im", want: 200, wantCalls: 2,
			check: func(t *testing.T, v netcheck.RouteView) {
				if !v.Allowed || v.Status != 0 || v.Destination != "b" || v.Service != "im" || v.Method != "MESSAGE" {
					t.Fatalf("verdict %+v: want allowed im to b", v)
				}
				if len(v.Edges) != 2 || v.Edges[0].Order != 1 || v.Edges[0].Transport != "UDP" || v.Edges[0].URI != "sip:127.0.0.3:5070" ||
					v.Edges[1].Order != 2 || v.Edges[1].Transport != "TLS" {
					t.Fatalf("edges %+v: want UDP then TLS", v.Edges)
				}
			}},
		{name: "large request tries TLS first", cookie: opCookie, query: "from=a&uri=bob@b.example&size=1500", want: 200, wantCalls: 2,
			check: func(t *testing.T, v netcheck.RouteView) {
				if !v.Allowed || len(v.Edges) != 2 || v.Edges[0].Transport != "TLS" {
					t.Fatalf("edges %+v: want TLS first", v.Edges)
				}
			}},
		{name: "refused by policy", cookie: opCookie, query: "from=a&uri=sip:bob@b.example&service=session", want: 200, wantCalls: 2,
			check: func(t *testing.T, v netcheck.RouteView) {
				if v.Allowed || v.Status != 403 || v.Reason != "Peering policy denies session" || v.Label != "policy" || v.Destination != "b" || len(v.Edges) != 0 {
					t.Fatalf("verdict %+v: want 403 Peering policy denies session, no edges", v)
				}
			}},
		{name: "refused: suspended source", cookie: opCookie, query: "from=c&uri=sip:bob@b.example", want: 200, wantCalls: 2,
			check: func(t *testing.T, v netcheck.RouteView) {
				if v.Allowed || v.Status != 403 || v.Label != "suspended" {
					t.Fatalf("verdict %+v: want 403 suspended", v)
				}
			}},
		{name: "no source", cookie: opCookie, query: "uri=sip:bob@b.example", want: 400, wantField: "from", wantBody: "source network is required"},
		{name: "bad uri", cookie: opCookie, query: "from=a&uri=sip:", want: 400, wantField: "uri", wantBody: "not a SIP URI"},
		{name: "no uri", cookie: opCookie, query: "from=a", want: 400, wantField: "uri"},
		{name: "unknown service", cookie: opCookie, query: "from=a&uri=sip:bob@b.example&service=fax", want: 400, wantField: "service", wantBody: `service \"fax\": want one of presence, im, session, chat, file, any`},
		{name: "method and service disagree", cookie: opCookie, query: "from=a&uri=sip:bob@b.example&service=presence&method=MESSAGE", want: 400, wantField: "method"},
		{name: "bad size", cookie: opCookie, query: "from=a&uri=sip:bob@b.example&size=huge", want: 400, wantField: "size"},
		{name: "auditor: the admin API's refusal", cookie: auCookie, query: "from=a&uri=sip:bob@b.example", rpcErr: denied, want: 403, wantCalls: 1, wantBody: "needs role admin, operator or readonly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.conn.mu.Lock()
			f.conn.calls, f.conn.reqs, f.conn.err = nil, nil, tc.rpcErr
			f.conn.mu.Unlock()
			req := httptest.NewRequest("GET", "/api/route-check?"+tc.query, nil)
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			w := f.do(req)
			if w.Code != tc.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
			if !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Fatalf("body %s lacks %q", w.Body, tc.wantBody)
			}
			if tc.wantField != "" {
				var e struct{ Error, Field string }
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Field != tc.wantField || !strings.HasPrefix(e.Error, tc.wantField+" ") {
					t.Fatalf("error %s: want field %s named in the message", w.Body, tc.wantField)
				}
			}
			if got := f.conn.called(); tc.want != 401 && len(got) != tc.wantCalls {
				t.Fatalf("admin calls %v, want %d", got, tc.wantCalls)
			}
			if tc.check != nil {
				var v netcheck.RouteView
				if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
					t.Fatal(err)
				}
				tc.check(t, v)
			}
		})
	}
}

// The network test is a POST with the CSRF token, open to readonly, sends
// OPTIONS from the node to each edge and reports them with identity,
// policy and what is missing; a role the admin API refuses gets that
// refusal and no probe is sent.
func TestAPINetworkTest(t *testing.T) {
	f := newFixture(t)
	edge := startUDPEdge(t)
	checkState(f, edge.addr)
	f.srv.opts.ProbeTimeout = time.Second
	nodeCert, _, _, err := f.ca.IssueKeyPair(pki.RoleNode, "n1", []string{"n1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.opts.ProbeCert = func() *tls.Certificate { return &nodeCert }
	roCookie, roCSRF := f.login("rita", pki.AdminRoleReadonly)
	auCookie, auCSRF := f.login("aldo", pki.AdminRoleAuditor)
	post := func(cookie *http.Cookie, csrf, path string, rpcErr error) *httptest.ResponseRecorder {
		f.conn.mu.Lock()
		f.conn.calls, f.conn.reqs, f.conn.err = nil, nil, rpcErr
		f.conn.mu.Unlock()
		req := httptest.NewRequest("POST", path, nil)
		req.AddCookie(cookie)
		if csrf != "" {
			req.Header.Set(csrfHeader, csrf)
		}
		return f.do(req)
	}

	t.Run("no CSRF token", func(t *testing.T) {
		if w := post(roCookie, "", "/api/networks/b/test", nil); w.Code != 403 || len(f.conn.called()) != 0 {
			t.Fatalf("%d %s, calls %v: want 403 and no admin call", w.Code, w.Body, f.conn.called())
		}
	})
	t.Run("auditor refused by the admin API, no probe", func(t *testing.T) {
		denied := status.Error(codes.PermissionDenied, "aldo (role auditor) may not call AdminService/ListNetworks: it needs role admin, operator or readonly")
		w := post(auCookie, auCSRF, "/api/networks/b/test", denied)
		if w.Code != 403 || !strings.Contains(w.Body.String(), "role auditor") {
			t.Fatalf("%d %s: want 403 naming the role", w.Code, w.Body)
		}
		if got := edge.agents(); len(got) != 0 {
			t.Fatalf("the edge was probed: %v", got)
		}
	})
	t.Run("unknown network", func(t *testing.T) {
		w := post(roCookie, roCSRF, "/api/networks/nope/test", nil)
		if w.Code != 404 || !strings.Contains(w.Body.String(), `network \"nope\" not found`) {
			t.Fatalf("%d %s: want 404 naming the network", w.Code, w.Body)
		}
	})
	t.Run("readonly tests b", func(t *testing.T) {
		w := post(roCookie, roCSRF, "/api/networks/b/test", nil)
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		var v netcheck.NetTestView
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Network != "b" || v.Ready || len(v.Edges) != 2 {
			t.Fatalf("report %+v: want b, not ready, 2 edges", v)
		}
		if e := v.Edges[0]; !e.Reachable || e.Status != 200 || e.Server != "fake-edge" || e.Transport != "UDP" {
			t.Errorf("UDP edge %+v: want answered 200 by fake-edge", e)
		}
		// edge.b.example does not resolve here: unreachable, and the node
		// certificate is what it would have presented.
		if e := v.Edges[1]; e.Reachable || e.TLS == nil || e.TLS.ClientCert != "node certificate n1" {
			t.Errorf("TLS edge %+v: want unreachable with the node certificate named", e)
		}
		if len(v.Inbound) != 1 || v.Inbound[0].Network != "a" || strings.Join(v.Inbound[0].Services, ",") != "im" {
			t.Errorf("reached by %+v, want a: im", v.Inbound)
		}
		if len(v.Missing) != 1 || !strings.Contains(v.Missing[0], "sips:edge.b.example:5061 does not answer OPTIONS") {
			t.Errorf("missing %q: want only the TLS edge", v.Missing)
		}
		if got := edge.agents(); len(got) != 1 || got[0] != "OPTIONS clearhub console network test" {
			t.Errorf("edge got %v, want one OPTIONS from the console", got)
		}
		if got := f.conn.called(); strings.Join(got, ",") != "ListNetworks,ListPolicies" {
			t.Errorf("admin calls %v", got)
		}
	})
}
