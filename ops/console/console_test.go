package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// fakeConn stands in for the admin API: it records each call with its
// request and answers from replies (or err).
type fakeConn struct {
	mu      sync.Mutex
	calls   []string
	reqs    []proto.Message
	err     error
	replies map[string]proto.Message
	records []*hubv1.AuditRecord // ExportAudit's answer
	certs   []tls.Certificate    // the session certificates dialled with
}

func (f *fakeConn) Invoke(_ context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := method[strings.LastIndexByte(method, '/')+1:]
	f.calls = append(f.calls, m)
	f.reqs = append(f.reqs, proto.Clone(args.(proto.Message)))
	if f.err != nil {
		return f.err
	}
	if r, ok := f.replies[m]; ok {
		proto.Merge(reply.(proto.Message), r)
	}
	return nil
}

func (f *fakeConn) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method[strings.LastIndexByte(method, '/')+1:])
	if f.err != nil {
		return nil, f.err
	}
	return &fakeStream{ctx: ctx, recs: append([]*hubv1.AuditRecord(nil), f.records...)}, nil
}

// fakeStream answers an ExportAudit with the fake's records.
type fakeStream struct {
	grpc.ClientStream
	ctx  context.Context
	recs []*hubv1.AuditRecord
}

func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) SendMsg(any) error        { return nil }
func (s *fakeStream) CloseSend() error         { return nil }
func (s *fakeStream) RecvMsg(m any) error {
	if len(s.recs) == 0 {
		return io.EOF
	}
	proto.Merge(m.(proto.Message), s.recs[0])
	s.recs = s.recs[1:]
	return nil
}

func (f *fakeConn) Close() error { return nil }

func (f *fakeConn) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	ca    *pki.CA
	srv   *Server
	conn  *fakeConn
	clk   *clock
	mu    sync.Mutex
	state *raft.State
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("console test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ca: ca, conn: &fakeConn{replies: map[string]proto.Message{}},
		clk: &clock{t: time.Now()}, state: raft.NewState(0, &hubv1.ClusterState{})}
	f.srv, err = New(Options{NodeID: "n1", CA: ca, URL: "https://console.test",
		State: func() *raft.State { f.mu.Lock(); defer f.mu.Unlock(); return f.state },
		Dial: func(_ context.Context, cert tls.Certificate) (grpc.ClientConnInterface, io.Closer, error) {
			f.conn.mu.Lock()
			f.conn.certs = append(f.conn.certs, cert)
			f.conn.mu.Unlock()
			return f.conn, f.conn, nil
		},
		Now: f.clk.now, Tick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fixture) revoke(r *hubv1.Revocation) {
	f.mu.Lock()
	f.state = raft.NewState(0, &hubv1.ClusterState{Revocations: []*hubv1.Revocation{r}})
	f.mu.Unlock()
}

func (f *fixture) operator(name string, role pki.AdminRole) *x509.Certificate {
	f.t.Helper()
	pair, _, _, err := f.ca.IssueOperatorKeyPair(name, role, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		f.t.Fatal(err)
	}
	return leaf
}

// link mints a login link for a fresh certificate of name and role.
func (f *fixture) link(name string, role pki.AdminRole) (string, *x509.Certificate) {
	f.t.Helper()
	leaf := f.operator(name, role)
	id, err := f.srv.Identify([]*x509.Certificate{leaf})
	if err != nil {
		f.t.Fatal(err)
	}
	link, _, err := f.srv.CreateLogin(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return link, leaf
}

func (f *fixture) do(req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, req)
	return w
}

func (f *fixture) get(link string) *httptest.ResponseRecorder {
	u, _ := url.Parse(link)
	return f.do(httptest.NewRequest("GET", u.RequestURI(), nil))
}

// open does what a browser does with a login link: loads the confirmation
// page (it must name who logs in) and presses its button, a same-origin
// form POST. hdr adds headers to the POST (nil: as Chromium sends it under
// Referrer-Policy no-referrer).
func (f *fixture) open(link string, hdr map[string]string) *httptest.ResponseRecorder {
	f.t.Helper()
	w := f.get(link)
	if w.Code != http.StatusOK {
		return w
	}
	if len(w.Result().Cookies()) != 0 {
		f.t.Fatal("the confirmation page set a cookie")
	}
	u, _ := url.Parse(link)
	tok := u.Query().Get("token")
	if !strings.Contains(w.Body.String(), `name="token" value="`+tok+`"`) {
		f.t.Fatalf("confirmation page has no form for the token: %s", w.Body)
	}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Host = u.Host
	if hdr == nil {
		hdr = map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return f.do(req)
}

// login logs in as name/role and returns the session cookie and CSRF token.
func (f *fixture) login(name string, role pki.AdminRole) (*http.Cookie, string) {
	f.t.Helper()
	link, _ := f.link(name, role)
	w := f.open(link, nil)
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		f.t.Fatalf("login set %d cookies", len(cookies))
	}
	req := httptest.NewRequest("GET", "/api/session", nil)
	req.AddCookie(cookies[0])
	sw := f.do(req)
	var s struct {
		CSRF string `json:"csrf"`
	}
	if err := json.Unmarshal(sw.Body.Bytes(), &s); err != nil || s.CSRF == "" {
		f.t.Fatalf("session: %d %s", sw.Code, sw.Body)
	}
	return cookies[0], s.CSRF
}

func TestLoginLinks(t *testing.T) {
	f := newFixture(t)
	type step struct {
		name string
		// prepare returns the link to open.
		prepare func() string
		want    int
	}
	used, _ := f.link("alice", pki.AdminRoleOperator)
	expired, _ := f.link("bob", pki.AdminRoleOperator)
	revokedLink, revokedLeaf := f.link("carol", pki.AdminRoleAdmin)
	for _, s := range []step{
		{"no token", func() string { return "https://console.test/login" }, 401},
		{"forged token", func() string { return "https://console.test/login?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, 401},
		{"overlong token", func() string { return "https://console.test/login?token=" + strings.Repeat("A", 300) }, 401},
		{"valid link", func() string { return used }, 303},
		{"the same link again", func() string { return used }, 401},
		{"expired link", func() string { f.clk.add(DefaultLoginTTL + time.Second); return expired }, 401},
		{"link of a certificate revoked since", func() string {
			f.revoke(&hubv1.Revocation{Serial: raft.SerialString(revokedLeaf.SerialNumber), RevokedUnixNano: f.clk.now().UnixNano()})
			return revokedLink
		}, 401},
	} {
		t.Run(s.name, func(t *testing.T) {
			w := f.open(s.prepare(), nil)
			if w.Code != s.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, s.want)
			}
			if s.want != 303 {
				if len(w.Result().Cookies()) != 0 {
					t.Fatal("a refused login set a cookie")
				}
				return
			}
			c := w.Result().Cookies()[0]
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
			}
		})
	}
	if len(f.conn.called()) != 0 {
		t.Fatalf("logins called the admin API: %v", f.conn.called())
	}
}

// Opening a link does not log in (login CSRF): the confirmation page names
// the link's owner, only a same-origin POST uses the link, and a cross-site
// POST neither logs in nor uses it up.
func TestLoginConfirmation(t *testing.T) {
	f := newFixture(t)
	link, _ := f.link("mallory", pki.AdminRoleReadonly)
	for range 2 { // loading the page twice leaves the link usable
		w := f.get(link)
		if w.Code != http.StatusOK || len(w.Result().Cookies()) != 0 {
			t.Fatalf("GET link: %d, %d cookies", w.Code, len(w.Result().Cookies()))
		}
		if body := w.Body.String(); !strings.Contains(body, `<strong id="login-name">mallory</strong>`) || !strings.Contains(body, "readonly") {
			t.Fatalf("confirmation page does not name the owner and role: %s", body)
		}
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"another origin", map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch metadata", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"opaque origin without fetch metadata", map[string]string{"Origin": "null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.open(link, tc.hdr)
			if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
				t.Fatalf("got %d with %d cookies, want 403 and none", w.Code, len(w.Result().Cookies()))
			}
		})
	}
	if w := f.open(link, map[string]string{"Origin": "https://" + "console.test"}); w.Code != http.StatusSeeOther {
		t.Fatalf("same-origin POST after refused ones: %d %s", w.Code, w.Body)
	}
	if w := f.get(link); w.Code != http.StatusUnauthorized {
		t.Fatalf("used link still shows a confirmation page: %d", w.Code)
	}
}

func TestIdentify(t *testing.T) {
	f := newFixture(t)
	other, err := pki.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(pair tls.Certificate, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	node := parse(func() (tls.Certificate, error) {
		p, _, _, err := f.ca.IssueKeyPair(pki.RoleNode, "n1", []string{"n1"}, time.Hour)
		return p, err
	}())
	foreign := parse(func() (tls.Certificate, error) {
		p, _, _, err := other.IssueOperatorKeyPair("alice", pki.AdminRoleAdmin, time.Hour)
		return p, err
	}())
	for _, tc := range []struct {
		name     string
		leaf     *x509.Certificate
		wantRole pki.AdminRole
		wantErr  string
	}{
		{"operator", f.operator("alice", pki.AdminRoleOperator), pki.AdminRoleOperator, ""},
		{"readonly", f.operator("rita", pki.AdminRoleReadonly), pki.AdminRoleReadonly, ""},
		{"node certificate", node, "", "not an operator"},
		{"another CA", foreign, "", "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := f.srv.Identify([]*x509.Certificate{tc.leaf})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || id.Role != tc.wantRole || id.Name != tc.leaf.Subject.CommonName {
				t.Fatalf("got %+v, %v", id, err)
			}
		})
	}
	if _, err := f.srv.Identify(nil); err == nil {
		t.Fatal("no certificate identified")
	}
}

// Every API request needs a session; changes need the CSRF token, the
// console's own origin and a role that may change; the admin API's own
// refusal reaches the page with its message.
func TestAPIAuthorization(t *testing.T) {
	f := newFixture(t)
	f.conn.replies["ListNetworks"] = &hubv1.ListNetworksResponse{Networks: []*hubv1.Network{{Id: "net-a"}}}
	opCookie, opCSRF := f.login("olga", pki.AdminRoleOperator)
	roCookie, roCSRF := f.login("rita", pki.AdminRoleReadonly)
	auCookie, auCSRF := f.login("aldo", pki.AdminRoleAuditor)
	type who struct {
		cookie *http.Cookie
		csrf   string
	}
	op, ro, au := who{opCookie, opCSRF}, who{roCookie, roCSRF}, who{auCookie, auCSRF}
	denied := status.Error(codes.PermissionDenied, "rita (role readonly) may not call AdminService/ScrubAudit: it needs role admin, operator or auditor")
	for _, tc := range []struct {
		name     string
		as       *who
		method   string
		path     string
		body     string
		csrf     string // "" sends the session's; "-" sends none
		origin   string
		rpcErr   error
		want     int
		wantCall string // admin method called; "" none
		wantBody string
		check    func(proto.Message) bool // on the admin request
	}{
		{name: "no session", method: "GET", path: "/api/networks", want: 401},
		{name: "bad cookie", as: &who{&http.Cookie{Name: cookieNamePlain, Value: "forged"}, ""}, method: "GET", path: "/api/networks", want: 401},
		{name: "readonly reads", as: &ro, method: "GET", path: "/api/networks", want: 200, wantCall: "ListNetworks", wantBody: "net-a"},
		{name: "readonly may not add", as: &ro, method: "POST", path: "/api/networks", body: `{"id":"net-x"}`, want: 403, wantBody: "role readonly"},
		{name: "auditor may not change policy", as: &au, method: "POST", path: "/api/policy", body: `{"destination":"a","source":"b","service":"im","allow":true}`, want: 403},
		{name: "readonly may not suspend", as: &ro, method: "POST", path: "/api/networks/net-a/suspend", want: 403},
		{name: "readonly may not retry a queue", as: &ro, method: "POST", path: "/api/queues/net-a/retry", want: 403},
		{name: "no CSRF token", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x"}`, csrf: "-", want: 403, wantBody: "CSRF"},
		{name: "wrong CSRF token", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x"}`, csrf: "nope", want: 403, wantBody: "CSRF"},
		{name: "another session's CSRF token", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x"}`, csrf: roCSRF, want: 403},
		{name: "cross origin", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x"}`, origin: "https://evil.example", want: 403, wantBody: "origin"},
		{name: "logout without CSRF", as: &op, method: "POST", path: "/logout", csrf: "-", want: 403},
		{name: "operator adds", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x","domains":["x.example"],"services":["im"]}`, want: 200, wantCall: "AddNetwork"},
		{name: "unknown service", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x","services":["fax"]}`, want: 400},
		{name: "unknown field", as: &op, method: "POST", path: "/api/networks", body: `{"id":"net-x","evil":1}`, want: 400},
		{name: "not JSON", as: &op, method: "POST", path: "/api/networks", body: `id=net-x`, want: 400},
		{name: "update with nothing", as: &op, method: "POST", path: "/api/networks/net-a", body: `{}`, want: 400, wantBody: "nothing to change"},
		{name: "operator updates", as: &op, method: "POST", path: "/api/networks/net-a", body: `{"edges":["sip:e.example"]}`, want: 200, wantCall: "UpdateNetwork"},
		{name: "conditional update keeps every digit", as: &op, method: "POST", path: "/api/networks/net-a", body: `{"display_name":"A","if_updated_unix_nano":"1796171255898268041"}`, want: 200, wantCall: "UpdateNetwork",
			check: func(m proto.Message) bool {
				return m.(*hubv1.UpdateNetworkRequest).GetIfUpdatedUnixNano() == 1796171255898268041
			}},
		{name: "operator suspends", as: &op, method: "POST", path: "/api/networks/net-a/suspend", want: 200, wantCall: "SuspendNetwork"},
		{name: "operator allows", as: &op, method: "POST", path: "/api/policy", body: `{"destination":"a","source":"b","service":"im","allow":true}`, want: 200, wantCall: "AllowPolicy"},
		{name: "operator denies", as: &op, method: "POST", path: "/api/policy", body: `{"destination":"a","source":"b","service":"session","allow":false}`, want: 200, wantCall: "DenyPolicy"},
		{name: "admin API refusal passes through", as: &ro, method: "POST", path: "/api/audit/verify", rpcErr: denied, want: 403, wantCall: "ScrubAudit", wantBody: "needs role admin, operator or auditor"},
		{name: "admin API not found", as: &op, method: "POST", path: "/api/networks/nope/resume", rpcErr: status.Error(codes.NotFound, "network nope not found"), want: 404, wantCall: "ResumeNetwork"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.conn.mu.Lock()
			f.conn.calls, f.conn.reqs, f.conn.err = nil, nil, tc.rpcErr
			f.conn.mu.Unlock()
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.body != "" && tc.body[0] == '{' {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.as != nil {
				req.AddCookie(tc.as.cookie)
				switch tc.csrf {
				case "":
					req.Header.Set(csrfHeader, tc.as.csrf)
				case "-":
				default:
					req.Header.Set(csrfHeader, tc.csrf)
				}
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			w := f.do(req)
			if w.Code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.want)
			}
			if !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Fatalf("body %s lacks %q", w.Body, tc.wantBody)
			}
			calls := f.conn.called()
			switch {
			case tc.wantCall == "" && len(calls) != 0:
				t.Fatalf("admin API called: %v", calls)
			case tc.wantCall != "" && (len(calls) != 1 || calls[0] != tc.wantCall):
				t.Fatalf("admin API calls %v, want [%s]", calls, tc.wantCall)
			}
			if tc.check != nil && !tc.check(f.conn.reqs[len(f.conn.reqs)-1]) {
				t.Fatalf("admin request %v", f.conn.reqs[len(f.conn.reqs)-1])
			}
		})
	}
}

// The admin API sees the person: the session certificate carries the
// operator's name and role, and lives no longer than the session.
func TestSessionCertificate(t *testing.T) {
	f := newFixture(t)
	c, _ := f.login("alice", pki.AdminRoleReadonly)
	req := httptest.NewRequest("GET", "/api/cluster", nil)
	req.AddCookie(c)
	if w := f.do(req); w.Code != 200 {
		t.Fatalf("cluster: %d %s", w.Code, w.Body)
	}
	if len(f.conn.certs) != 1 {
		t.Fatalf("%d dials", len(f.conn.certs))
	}
	leaf, err := x509.ParseCertificate(f.conn.certs[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	role, err := pki.AdminRoleOf(leaf)
	if leaf.Subject.CommonName != "alice" || err != nil || role != pki.AdminRoleReadonly {
		t.Fatalf("session certificate %q role %s (%v)", leaf.Subject.CommonName, role, err)
	}
	if leaf.NotAfter.After(f.clk.now().Add(DefaultSessionTTL + time.Minute)) {
		t.Fatalf("session certificate valid until %s, beyond the session", leaf.NotAfter)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("session certificate does not verify: %v", err)
	}
}

// A session ends when the operator's own certificate is revoked (by name
// here), or when it times out.
func TestSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(f *fixture)
	}{
		{"name revoked", func(f *fixture) {
			f.revoke(&hubv1.Revocation{Name: "alice", RevokedUnixNano: f.clk.now().Add(time.Hour).UnixNano()})
		}},
		{"session timed out", func(f *fixture) { f.clk.add(DefaultSessionTTL + time.Second) }},
		{"certificate expired", func(f *fixture) { f.clk.add(time.Hour + time.Minute) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			c, _ := f.login("alice", pki.AdminRoleOperator)
			req := httptest.NewRequest("GET", "/api/session", nil)
			req.AddCookie(c)
			if w := f.do(req); w.Code != 200 {
				t.Fatalf("before: %d", w.Code)
			}
			tc.end(f)
			if w := f.do(req); w.Code != 401 {
				t.Fatalf("after: %d %s, want 401", w.Code, w.Body)
			}
		})
	}
}

var inlineScript = regexp.MustCompile(`(?i)<script(\s[^>]*)?>`)

// The page loads only the console's own files: a CSP without
// 'unsafe-inline', no inline script or style, no external URL.
func TestPageSecurity(t *testing.T) {
	f := newFixture(t)
	c, _ := f.login("alice", pki.AdminRoleOperator)
	for _, tc := range []struct {
		path, wantType string
		withCookie     bool
		wantCode       int
	}{
		{"/", "text/html", true, 200},
		{"/", "text/html", false, 401}, // the login help page
		{"/static/app.js", "javascript", false, 200},
		{"/static/style.css", "text/css", false, 200},
		{"/static/nope.js", "", false, 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.withCookie {
				req.AddCookie(c)
			}
			w := f.do(req)
			if w.Code != tc.wantCode {
				t.Fatalf("%d", w.Code)
			}
			csp := w.Header().Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Fatalf("CSP %q", csp)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Referrer-Policy") != "no-referrer" {
				t.Fatalf("headers %v", w.Header())
			}
			if !strings.Contains(w.Header().Get("Content-Type"), tc.wantType) {
				t.Fatalf("content type %q", w.Header().Get("Content-Type"))
			}
		})
	}
	for _, name := range []string{"assets/index.html", "assets/login.html"} {
		b, _ := assets.ReadFile(name)
		page := string(b)
		for _, m := range inlineScript.FindAllStringSubmatch(page, -1) {
			if !strings.Contains(m[1], "src=") {
				t.Errorf("%s: inline script %q", name, m[0])
			}
		}
		for _, bad := range []string{"style=", "<style", "onclick", "http://", "https://"} {
			if strings.Contains(page, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	js, _ := assets.ReadFile("assets/app.js")
	for _, bad := range []string{"innerHTML", "eval(", "http://", "https://"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js contains %q", bad)
		}
	}
}

func TestBuildMatrix(t *testing.T) {
	im, sess := hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_SESSION
	for _, tc := range []struct {
		name    string
		pols    []*hubv1.Policy
		dst     string
		src     string
		want    []string
		wantAll []string
	}{
		{"one service", []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a", Services: []hubv1.Service{im}}}}}, "b", "a", []string{"im"}, nil},
		{"empty list is every service", []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a"}}}}, "b", "a", serviceNames(), nil},
		{"two services", []*hubv1.Policy{{Destination: "a", Rules: []*hubv1.PolicyRule{{Source: "b", Services: []hubv1.Service{im, sess}}}}}, "a", "b", []string{"im", "session"}, nil},
		{"all members", []*hubv1.Policy{{Destination: "a", AllowAll: true, AllServices: []hubv1.Service{im}}}, "a", "b", nil, []string{"im"}},
		{"nothing", nil, "a", "b", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := buildMatrix([]*hubv1.Network{{Id: "b"}, {Id: "a"}}, tc.pols)
			if strings.Join(m.Networks, ",") != "a,b" {
				t.Fatalf("networks %v", m.Networks)
			}
			if got := m.Allowed[tc.dst][tc.src]; strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("allowed %v, want %v", got, tc.want)
			}
			if got := m.AllMembers[tc.dst]; strings.Join(got, ",") != strings.Join(tc.wantAll, ",") {
				t.Fatalf("all members %v, want %v", got, tc.wantAll)
			}
		})
	}
}

func TestAuditQuery(t *testing.T) {
	entry := `{"seq":3,"kind":"request","method":"MESSAGE","call_id":"abc@x","from":"sip:alice@a.example","to":"sip:team@rooms.localhost","ruri":"sip:team@rooms.localhost"}`
	for _, tc := range []struct {
		name    string
		query   string
		wantErr string
		match   bool
		check   func(aq auditQuery) bool
	}{
		{name: "empty", query: "", match: true},
		{name: "call id hit", query: "call_id=abc@x", match: true},
		{name: "call id miss", query: "call_id=other", match: false},
		{name: "room by name", query: "room=team", match: true},
		{name: "room by URI", query: "room=sip:team@rooms.localhost", match: true},
		{name: "room miss", query: "room=ops", match: false},
		{name: "time RFC 3339", query: "since=2026-01-02T03:04:05Z", match: true,
			check: func(aq auditQuery) bool {
				return aq.req.SinceUnixNano == time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
			}},
		{name: "time datetime-local", query: "until=2026-01-02T03:04", match: true,
			check: func(aq auditQuery) bool {
				return aq.req.UntilUnixNano == time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC).UnixNano()
			}},
		{name: "filters passed to the admin API", query: "network=net-a&user=alice&kind=admin&cluster=1", match: true,
			check: func(aq auditQuery) bool {
				return aq.req.Network == "net-a" && aq.req.User == "alice" && aq.req.Kind == "admin" && aq.req.Cluster
			}},
		{name: "bad time", query: "since=yesterday", wantErr: "since"},
		{name: "bad limit", query: "limit=0", wantErr: "limit"},
		{name: "huge limit", query: "limit=100000", wantErr: "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			aq, err := parseAuditQuery(q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := aq.matches([]byte(entry)); got != tc.match {
				t.Fatalf("matches = %v", got)
			}
			if tc.check != nil && !tc.check(aq) {
				t.Fatalf("query %+v", aq.req)
			}
		})
	}
}

func FuzzAuditQuery(f *testing.F) {
	f.Add("since=2026-01-02T03:04:05Z&call_id=x&room=team&limit=5", `{"call_id":"x"}`)
	f.Add("until=2026-01-02&room=a@b", `{"ruri":"sip:a@b"}`)
	f.Fuzz(func(t *testing.T, query, entry string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		aq, err := parseAuditQuery(q)
		if err != nil {
			return
		}
		if aq.limit < 1 || aq.limit > maxAuditRows {
			t.Fatalf("limit %d accepted", aq.limit)
		}
		aq.matches([]byte(entry))
	})
}

func TestTraffic(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRequests}, []string{"method", "src", "dst", "status"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mPairLat, Buckets: []float64{.001, .01, .1}}, []string{"src", "dst"})
	ref := prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRefusals}, []string{"reason", "status"})
	reg.MustRegister(req, lat, ref)
	f := newFixture(t)
	f.srv.opts.Gatherer = reg
	req.WithLabelValues("MESSAGE", "net-a", "net-b", "200").Add(3)
	req.WithLabelValues("INVITE", "net-a", "net-b", "403").Add(1)
	ref.WithLabelValues("policy", "403").Add(1)
	for range 9 {
		lat.WithLabelValues("net-a", "net-b").Observe(.005)
	}
	lat.WithLabelValues("net-a", "net-b").Observe(.05)
	first := f.srv.traffic(nil)
	f.clk.add(2 * time.Second)
	req.WithLabelValues("MESSAGE", "net-a", "net-b", "200").Add(4)
	snap := f.srv.traffic(first)
	byNet := map[string]*memberTraffic{}
	for _, n := range snap.Networks {
		byNet[n.Network] = n
	}
	a, b := byNet["net-a"], byNet["net-b"]
	if a == nil || b == nil {
		t.Fatalf("networks %v", snap.Networks)
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"a sent", a.Sent, 8}, {"a messages", a.Messages, 7}, {"a refused", a.Refused, 1}, {"a refused 403", a.RefusedByStatus["403"], 1},
		{"b received", b.Received, 8}, {"a rate", a.SentRate, 2}, {"b rate", b.ReceivedRate, 2},
		{"p95", a.LatencyP95MS, 100}, {"refusals policy", snap.Refusals["policy"], 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if a.LatencyMeanMS < 9 || a.LatencyMeanMS > 10 {
		t.Errorf("mean latency %v ms, want 9.5", a.LatencyMeanMS)
	}
}

// The live stream sends traffic at once and ends when the server closes.
func TestEventsStream(t *testing.T) {
	f := newFixture(t)
	c, _ := f.login("alice", pki.AdminRoleReadonly)
	ts := httptest.NewServer(f.srv.Handler())
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/api/events", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "event: traffic\ndata: {") {
		t.Fatalf("first event %q", buf[:n])
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(done) }()
	f.srv.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end on Close")
	}
}

func TestLoginLinkBound(t *testing.T) {
	f := newFixture(t)
	ident := func(name string) Identity {
		id, err := f.srv.Identify([]*x509.Certificate{f.operator(name, pki.AdminRoleOperator)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	alice := ident("alice")
	for i := 0; i < maxPendingPerName; i++ {
		if _, _, err := f.srv.CreateLogin(alice); err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
	}
	if _, _, err := f.srv.CreateLogin(alice); err == nil || !strings.Contains(err.Error(), "unused login links") {
		t.Fatalf("one operator's links unbounded: %v", err)
	}
	// Others still get theirs, up to the node's bound.
	for i := maxPendingPerName; i < maxPending; i++ {
		if _, _, err := f.srv.CreateLogin(ident(fmt.Sprintf("op%d", i/maxPendingPerName))); err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
	}
	if _, _, err := f.srv.CreateLogin(ident("zed")); err == nil {
		t.Fatal("unbounded login links")
	}
	f.clk.add(DefaultLoginTTL)
	if _, _, err := f.srv.CreateLogin(alice); err != nil {
		t.Fatalf("expired links not dropped: %v", err)
	}
}

type memAuditor struct {
	mu      sync.Mutex
	entries []*ledger.Entry
}

func (a *memAuditor) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return uint64(len(a.entries)), nil
}

// Logins and logouts are admin entries under the operator's name.
func TestLoginAudited(t *testing.T) {
	f := newFixture(t)
	aud := &memAuditor{}
	f.srv.opts.Auditor = aud
	c, csrf := f.login("alice", pki.AdminRoleReadonly)
	req := httptest.NewRequest("POST", "/logout", nil)
	req.AddCookie(c)
	req.Header.Set(csrfHeader, csrf)
	if w := f.do(req); w.Code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	req = httptest.NewRequest("GET", "/api/session", nil)
	req.AddCookie(c)
	if w := f.do(req); w.Code != 401 {
		t.Fatalf("session after logout: %d", w.Code)
	}
	var got []string
	for _, e := range aud.entries {
		got = append(got, string(e.Kind)+" "+e.Method+" "+e.From)
	}
	want := []string{"admin ConsoleLogin alice;role=readonly", "admin ConsoleLogout alice;role=readonly"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("audited %q, want %q", got, want)
	}
}

// The search shows matching entries only (never checkpoint lines), the
// newest limit of them; the export keeps the checkpoint lines hubctl audit
// verify needs and filters entries alike.
func TestAuditSearchAndExport(t *testing.T) {
	f := newFixture(t)
	line := func(s string) *hubv1.AuditRecord { return &hubv1.AuditRecord{Node: "n1", Json: []byte(s)} }
	f.conn.records = []*hubv1.AuditRecord{
		line(`{"type":"entry","seq":1,"time":1,"node":"n1","kind":"request","call_id":"c1"}`),
		line(`{"type":"entry","seq":2,"time":2,"node":"n1","kind":"response","call_id":"c1","status":200}`),
		line(`{"type":"entry","seq":3,"time":3,"node":"n1","kind":"request","call_id":"c2"}`),
		line(`{"type":"checkpoint","node":"n1","tree_size":3}`),
	}
	c, _ := f.login("alice", pki.AdminRoleAuditor)
	for _, tc := range []struct {
		name, path string
		want       []string // seq or type of each line, in order
	}{
		{"search by call id", "/api/audit?call_id=c1", []string{"1", "2"}},
		{"search limit keeps the newest", "/api/audit?limit=2", []string{"2", "3"}},
		{"search everything", "/api/audit", []string{"1", "2", "3"}},
		{"export by call id", "/api/audit/export?call_id=c2", []string{"3", "checkpoint"}},
		{"export everything", "/api/audit/export", []string{"1", "2", "3", "checkpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.AddCookie(c)
			w := f.do(req)
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var lines []json.RawMessage
			if strings.Contains(tc.path, "export") {
				if cd := w.Header().Get("Content-Disposition"); !strings.Contains(cd, "attachment") {
					t.Fatalf("Content-Disposition %q", cd)
				}
				for _, l := range strings.Split(strings.TrimSpace(w.Body.String()), "\n") {
					lines = append(lines, json.RawMessage(l))
				}
			} else {
				var r struct {
					Entries []json.RawMessage `json:"entries"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				lines = r.Entries
			}
			var got []string
			for _, l := range lines {
				var e struct {
					Type string `json:"type"`
					Seq  uint64 `json:"seq"`
				}
				if err := json.Unmarshal(l, &e); err != nil {
					t.Fatalf("line %s: %v", l, err)
				}
				if e.Type == "entry" {
					got = append(got, strconv.FormatUint(e.Seq, 10))
				} else {
					got = append(got, e.Type)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
