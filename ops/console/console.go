package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/raft"
)

//go:embed assets
var assets embed.FS

// Defaults of Options.
const (
	DefaultLoginTTL   = time.Minute
	DefaultSessionTTL = 8 * time.Hour
	DefaultTick       = 2 * time.Second
	// maxPending bounds the login links waiting to be used, so a caller
	// minting links in a loop cannot grow memory without end.
	maxPending = 1024
	// maxSessions bounds the open sessions for the same reason.
	maxSessions = 4096
	// maxPendingPerName keeps one operator minting links in a loop from
	// using up maxPending for everyone else.
	maxPendingPerName = 16
)

// cookieName is the session cookie. The __Host- prefix (RFC 6265bis
// section 4.1.3.2) makes the browser refuse it unless Secure, Path=/ and
// host-only, so a sibling host cannot plant one.
const (
	cookieName       = "__Host-clearhub-console"
	cookieNamePlain  = "clearhub-console" // without TLS (tests, plain HTTP behind a proxy)
	csrfHeader       = "X-CSRF-Token"
	contentSecPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

// Dialer opens an admin API connection presenting cert (the session's
// operator certificate).
type Dialer func(ctx context.Context, cert tls.Certificate) (grpc.ClientConnInterface, io.Closer, error)

// Options configure a Server. CA, State and Dial (or AdminAddr) are
// required.
type Options struct {
	// NodeID names the node in the page header.
	NodeID string
	// CA is the cluster CA: it verifies the operator certificates a login
	// is minted for and issues the session certificates.
	CA *pki.CA
	// State is the node's latest cluster state (revocations).
	State func() *raft.State
	// AdminAddr is the node's admin listener; the console dials it over
	// TLS with the session certificate unless Dial is set.
	AdminAddr string
	// AdminServerName is the name checked in the admin listener's
	// certificate (default "127.0.0.1").
	AdminServerName string
	// Dial replaces the default admin connection (tests).
	Dial Dialer
	// Gatherer is the node's Prometheus registry: the traffic page reads
	// it in-process.
	Gatherer prometheus.Gatherer
	// URL is the console's public base URL (https://host:port), the start
	// of every login link.
	URL string
	// Secure marks cookies Secure (set when serving TLS).
	Secure bool
	// Auditor, if set, records each console login and logout in the
	// audit ledger as an admin entry under the operator's name.
	Auditor Auditor
	// ProbeCert, if set, returns the certificate a network test presents
	// to TLS edges: the node certificate, as the SIP plane presents it.
	ProbeCert func() *tls.Certificate
	// ProbeTimeout bounds each edge's answer in a network test (default
	// 3 s).
	ProbeTimeout time.Duration
	// LoginTTL, SessionTTL and Tick (the live update period) default to
	// DefaultLoginTTL, DefaultSessionTTL and DefaultTick.
	LoginTTL, SessionTTL, Tick time.Duration
	Logger                     *slog.Logger
	Now                        func() time.Time
}

// Auditor appends to the audit ledger (*ledger.Ledger).
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// audit records a console session event, named as the admin API names
// the operator ("alice;role=operator"), so the ledger's user filter finds
// it beside the person's changes.
func (s *Server) audit(ctx context.Context, method string, id Identity, reason string) {
	if s.opts.Auditor == nil {
		return
	}
	e := &ledger.Entry{Time: s.now().UnixNano(), Kind: ledger.KindAdmin, Method: method,
		From: id.Name + ";role=" + string(id.Role), Reason: reason}
	if _, err := s.opts.Auditor.Append(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("console: audit append failed", "method", method, "actor", id.Name, "err", err)
	}
}

// Identity is the operator a login or session acts as.
type Identity struct {
	Name   string        // certificate common name: the audit trail's actor
	Role   pki.AdminRole // admin role
	Serial string        // serial of the operator's own certificate
	// leaf is the operator's own certificate: a session ends when it is
	// revoked or expires.
	leaf *x509.Certificate
}

// CanChange reports whether the role may change anything the console
// offers (networks, policy, queues): admin and operator. The admin API
// decides every call again; this only keeps buttons off and refuses early.
func (id Identity) CanChange() bool {
	return id.Role == pki.AdminRoleAdmin || id.Role == pki.AdminRoleOperator
}

type pending struct {
	id      Identity
	expires time.Time
}

type session struct {
	id      Identity
	csrf    string
	expires time.Time

	mu     sync.Mutex
	conn   grpc.ClientConnInterface
	closer io.Closer
	cert   tls.Certificate
}

// Server serves the console. Build it with New; Handler serves it; Close
// ends live streams and admin connections.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	mux  *http.ServeMux

	// tests bounds the network tests running at once (each sends OPTIONS
	// from this node).
	tests chan struct{}

	mu       sync.Mutex
	pending  map[string]pending  // sha256(token) -> login waiting
	sessions map[string]*session // sha256(cookie) -> session
	closed   bool
	done     chan struct{}
}

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.CA == nil || opts.CA.Cert == nil || opts.CA.Key == nil:
		return nil, errors.New("console: Options.CA (with its key) required")
	case opts.State == nil:
		return nil, errors.New("console: Options.State required")
	case opts.Dial == nil && opts.AdminAddr == "":
		return nil, errors.New("console: Options.AdminAddr or Dial required")
	}
	if opts.LoginTTL <= 0 {
		opts.LoginTTL = DefaultLoginTTL
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.AdminServerName == "" {
		opts.AdminServerName = "127.0.0.1"
	}
	s := &Server{opts: opts, log: opts.Logger, now: opts.Now,
		pending: map[string]pending{}, sessions: map[string]*session{}, done: make(chan struct{}),
		tests: make(chan struct{}, maxNetworkTests)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.opts.Dial == nil {
		s.opts.Dial = s.dialAdmin
	}
	s.routes()
	return s, nil
}

func (s *Server) dialAdmin(ctx context.Context, cert tls.Certificate) (grpc.ClientConnInterface, io.Closer, error) {
	c, err := admin.Dial(ctx, s.opts.AdminAddr, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      s.opts.CA.Pool(),
		ServerName:   s.opts.AdminServerName,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("console: dial admin %s: %w", s.opts.AdminAddr, err)
	}
	return c, c, nil
}

// Close ends the live streams and closes every session's admin
// connection. Call it before shutting the HTTP server down (SSE handlers
// never end on their own).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	var errs []error
	for k, ss := range s.sessions {
		errs = append(errs, ss.close())
		delete(s.sessions, k)
	}
	return errors.Join(errs...)
}

func (ss *session) close() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closer == nil {
		return nil
	}
	err := ss.closer.Close()
	ss.conn, ss.closer = nil, nil
	return err
}

// Identify checks that leaf is an operator certificate of the cluster CA,
// valid now and not revoked, and returns who it names. The admin
// interceptor already checked a CreateLogin caller; this is checked again
// so a login never rests on another component's verdict alone.
func (s *Server) Identify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("no client certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.opts.CA.Pool(), Intermediates: inter,
		CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if pki.RoleOf(leaf) != pki.RoleOperator {
		return Identity{}, fmt.Errorf("certificate %q is not an operator certificate", leaf.Subject.CommonName)
	}
	role, err := pki.AdminRoleOf(leaf)
	if err != nil {
		return Identity{}, err
	}
	if err := pki.ValidOperatorName(leaf.Subject.CommonName); err != nil {
		return Identity{}, fmt.Errorf("operator name %q: %w", leaf.Subject.CommonName, err)
	}
	if r := s.opts.State().Revoked(leaf); r != nil {
		return Identity{}, fmt.Errorf("certificate %q is revoked", leaf.Subject.CommonName)
	}
	return Identity{Name: leaf.Subject.CommonName, Role: role, Serial: raft.SerialString(leaf.SerialNumber), leaf: leaf}, nil
}

// CreateLogin mints a single-use login link for id (from Identify).
func (s *Server) CreateLogin(id Identity) (link string, expires time.Time, err error) {
	tok, err := randomToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	expires = now.Add(s.opts.LoginTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", time.Time{}, errors.New("console: closed")
	}
	for k, p := range s.pending {
		if !now.Before(p.expires) {
			delete(s.pending, k)
		}
	}
	if len(s.pending) >= maxPending {
		return "", time.Time{}, fmt.Errorf("console: %d login links waiting to be used; try again in a minute", len(s.pending))
	}
	mine := 0
	for _, p := range s.pending {
		if p.id.Name == id.Name {
			mine++
		}
	}
	if mine >= maxPendingPerName {
		return "", time.Time{}, fmt.Errorf("console: %s has %d unused login links; use one or wait until they expire", id.Name, mine)
	}
	s.pending[hashKey(tok)] = pending{id: id, expires: expires}
	s.log.Info("console login link issued", "actor", id.Name, "role", string(id.Role), "serial", id.Serial, "expires", expires.UTC())
	return strings.TrimRight(s.opts.URL, "/") + "/login?token=" + url.QueryEscape(tok), expires, nil
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("console: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashKey is how tokens and session ids are kept: a memory dump of the
// maps yields nothing a browser could present.
func hashKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return string(sum[:])
}

// Handler serves the console: pages, API and live stream.
func (s *Server) Handler() http.Handler { return s }

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	m.Handle("GET /static/", http.StripPrefix("/static/", files))
	m.HandleFunc("GET /{$}", s.page)
	m.HandleFunc("GET /login", s.loginConfirm)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.authed(false, s.logout))

	m.HandleFunc("GET /api/session", s.authed(false, s.apiSession))
	m.HandleFunc("GET /api/cluster", s.authed(false, s.apiCluster))
	m.HandleFunc("GET /api/networks", s.authed(false, s.apiNetworks))
	m.HandleFunc("POST /api/networks", s.authed(true, s.apiAddNetwork))
	m.HandleFunc("POST /api/networks/{id}", s.authed(true, s.apiUpdateNetwork))
	m.HandleFunc("POST /api/networks/{id}/suspend", s.authed(true, s.apiSuspend))
	m.HandleFunc("POST /api/networks/{id}/resume", s.authed(true, s.apiResume))
	// A network test changes nothing but sends OPTIONS from this node: a
	// POST (CSRF token), open to every role the admin API lets read the
	// networks and policy.
	m.HandleFunc("POST /api/networks/{id}/test", s.authed(false, s.apiNetworkTest))
	m.HandleFunc("GET /api/route-check", s.authed(false, s.apiRouteCheck))
	m.HandleFunc("GET /api/policy", s.authed(false, s.apiPolicy))
	m.HandleFunc("POST /api/policy", s.authed(true, s.apiSetPolicy))
	m.HandleFunc("GET /api/rooms", s.authed(false, s.apiRooms))
	m.HandleFunc("GET /api/rooms/{id}", s.authed(false, s.apiRoom))
	m.HandleFunc("GET /api/lists", s.authed(false, s.apiLists))
	m.HandleFunc("GET /api/lists/{id}", s.authed(false, s.apiList))
	m.HandleFunc("GET /api/queues", s.authed(false, s.apiQueues))
	m.HandleFunc("GET /api/queues/{network}", s.authed(false, s.apiQueue))
	m.HandleFunc("POST /api/queues/{network}/retry", s.authed(true, s.apiRetryQueue))
	m.HandleFunc("GET /api/traffic", s.authed(false, s.apiTraffic))
	m.HandleFunc("GET /api/audit", s.authed(false, s.apiAudit))
	m.HandleFunc("GET /api/audit/export", s.authed(false, s.apiAuditExport))
	// Verify is a read (ScrubAudit) but costs the node a full pass: a
	// POST, so it needs the CSRF token.
	m.HandleFunc("POST /api/audit/verify", s.authed(false, s.apiAuditVerify))
	m.HandleFunc("GET /api/events", s.authed(false, s.events))
	s.mux = m
}

// ServeHTTP adds the security headers to every answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer") // the login token is in a URL
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if s.opts.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if _, err := s.sessionOf(r); err != nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		b, _ := assets.ReadFile("assets/login.html")
		w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	b, _ := assets.ReadFile("assets/index.html")
	w.Write(b)
}

// errLogin is the one answer to every bad link: a caller learns nothing
// about which tokens exist.
var errLogin = errors.New("login link unknown, already used or expired: run `hubctl console login` again")

// loginConfirm is what opening a login link shows: whose link it is and a
// button that logs in (a POST from this page). Opening a link never logs
// in by itself, so a page elsewhere cannot log a browser in as somebody
// else by making it load that person's link (login CSRF): the operator
// sees the name before continuing, and a cross-site POST is refused.
// The link stays unused until the POST.
func (s *Server) loginConfirm(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	id, err := s.peek(tok)
	if err != nil {
		s.log.Warn("console login refused", "peer", r.RemoteAddr, "reason", err)
		loginError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := loginConfirmPage.Execute(w, struct{ Name, Role, Serial, Token string }{id.Name, string(id.Role), id.Serial, tok}); err != nil {
		s.log.Warn("console login page", "err", err)
	}
}

// loginConfirmPage is assets/login-confirm.html (html/template escapes
// the name and token).
var loginConfirmPage = template.Must(template.ParseFS(assets, "assets/login-confirm.html"))

// login trades a login token for a session (single use: the token is
// gone after the first attempt, good or bad). It must come from the
// console's own page (loginConfirm).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		s.log.Warn("console login refused", "peer", r.RemoteAddr, "reason", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "console login refused: %v\n", err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := r.PostFormValue("token")
	id, err := s.redeem(tok)
	if err != nil {
		s.log.Warn("console login refused", "peer", r.RemoteAddr, "reason", err)
		loginError(w, err)
		return
	}
	sid, err := s.newSession(id)
	if err != nil {
		s.log.Warn("console login refused", "actor", id.Name, "peer", r.RemoteAddr, "reason", err)
		loginError(w, err)
		return
	}
	http.SetCookie(w, s.cookie(sid, int(s.opts.SessionTTL/time.Second)))
	s.audit(r.Context(), "ConsoleLogin", id, fmt.Sprintf("console session from %s (certificate serial %s)", r.RemoteAddr, id.Serial))
	s.log.Info("console login", "actor", id.Name, "role", string(id.Role), "serial", id.Serial, "peer", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func loginError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "console login refused: %v\n", err)
}

// peek is redeem without using the token up.
func (s *Server) peek(tok string) (Identity, error) {
	if tok == "" || len(tok) > 256 {
		return Identity{}, errLogin
	}
	s.mu.Lock()
	p, ok := s.pending[hashKey(tok)]
	s.mu.Unlock()
	if !ok || !s.now().Before(p.expires) {
		return Identity{}, errLogin
	}
	if err := s.stillValid(p.id); err != nil {
		return Identity{}, err
	}
	return p.id, nil
}

func (s *Server) redeem(tok string) (Identity, error) {
	if tok == "" || len(tok) > 256 {
		return Identity{}, errLogin
	}
	k := hashKey(tok)
	s.mu.Lock()
	p, ok := s.pending[k]
	delete(s.pending, k)
	s.mu.Unlock()
	if !ok || !s.now().Before(p.expires) {
		return Identity{}, errLogin
	}
	if err := s.stillValid(p.id); err != nil {
		return Identity{}, err
	}
	return p.id, nil
}

// stillValid refuses an identity whose own certificate has expired or is
// revoked now (checked at login and on every request).
func (s *Server) stillValid(id Identity) error {
	if id.leaf == nil {
		return errors.New("no certificate")
	}
	if !s.now().Before(id.leaf.NotAfter) {
		return fmt.Errorf("certificate of %s expired at %s", id.Name, id.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if r := s.opts.State().Revoked(id.leaf); r != nil {
		return fmt.Errorf("certificate of %s (serial %s) is revoked", id.Name, id.Serial)
	}
	return nil
}

func (s *Server) newSession(id Identity) (string, error) {
	sid, err := randomToken()
	if err != nil {
		return "", err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", err
	}
	now := s.now()
	exp := now.Add(s.opts.SessionTTL)
	if id.leaf.NotAfter.Before(exp) {
		exp = id.leaf.NotAfter
	}
	// The session's own certificate: same name and role, lives no longer
	// than the session, never written anywhere.
	cert, _, _, err := s.opts.CA.IssueOperatorKeyPair(id.Name, id.Role, exp.Sub(now))
	if err != nil {
		return "", fmt.Errorf("session certificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("console: closed")
	}
	for k, ss := range s.sessions {
		if !now.Before(ss.expires) {
			go ss.close()
			delete(s.sessions, k)
		}
	}
	if len(s.sessions) >= maxSessions {
		return "", fmt.Errorf("%d console sessions open", len(s.sessions))
	}
	s.sessions[hashKey(sid)] = &session{id: id, csrf: csrf, expires: exp, cert: cert}
	return sid, nil
}

func (s *Server) cookie(value string, maxAge int) *http.Cookie {
	name := cookieNamePlain
	if s.opts.Secure {
		name = cookieName
	}
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.opts.Secure, SameSite: http.SameSiteStrictMode}
}

var errNoSession = errors.New("not logged in (or the session ended): run `hubctl console login`")

func (s *Server) sessionOf(r *http.Request) (*session, error) {
	name := cookieNamePlain
	if s.opts.Secure {
		name = cookieName
	}
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	k := hashKey(c.Value)
	s.mu.Lock()
	ss, ok := s.sessions[k]
	if ok && !s.now().Before(ss.expires) {
		delete(s.sessions, k)
		ok = false
		go ss.close()
	}
	s.mu.Unlock()
	if !ok {
		return nil, errNoSession
	}
	if err := s.stillValid(ss.id); err != nil {
		s.dropSession(k, ss)
		return nil, fmt.Errorf("session ended: %w", err)
	}
	return ss, nil
}

func (s *Server) dropSession(k string, ss *session) {
	s.mu.Lock()
	delete(s.sessions, k)
	s.mu.Unlock()
	ss.close()
}

// handler is an API handler with its session.
type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// authed wraps h: a session is required; a POST must carry the session's
// CSRF token and come from the console's own origin; change marks
// handlers that change the cluster, refused for roles that may not.
func (s *Server) authed(change bool, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, err := s.sessionOf(r)
		if err != nil {
			writeErr(w, http.StatusUnauthorized, err)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := s.checkCSRF(r, ss); err != nil {
				s.log.Warn("console request refused", "actor", ss.id.Name, "path", r.URL.Path, "reason", err)
				writeErr(w, http.StatusForbidden, err)
				return
			}
		}
		if change && !ss.id.CanChange() {
			err := fmt.Errorf("%s (role %s) may not change anything: that needs role admin or operator", ss.id.Name, ss.id.Role)
			s.log.Warn("console change refused", "actor", ss.id.Name, "role", string(ss.id.Role), "path", r.URL.Path)
			writeErr(w, http.StatusForbidden, err)
			return
		}
		h(w, r, ss)
	}
}

func (s *Server) checkCSRF(r *http.Request, ss *session) error {
	got := r.Header.Get(csrfHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 {
		return errors.New("missing or wrong CSRF token")
	}
	// Fetch metadata and Origin: a cross-site page cannot send the
	// header above anyway; this refuses a same-token replay from
	// elsewhere too.
	return sameOrigin(r)
}

// sameOrigin refuses a request a browser says came from another site.
func sameOrigin(r *http.Request) error {
	sfs := r.Header.Get("Sec-Fetch-Site")
	if o := r.Header.Get("Origin"); o == "null" {
		// A form POST under Referrer-Policy no-referrer carries Origin
		// null (Fetch standard); then fetch metadata must vouch for it.
		if sfs != "same-origin" {
			return fmt.Errorf("request from an opaque origin without Sec-Fetch-Site same-origin")
		}
	} else if o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("request from origin %q, not this console", o)
		}
	}
	if sfs != "" && sfs != "same-origin" {
		return fmt.Errorf("cross-site request (Sec-Fetch-Site %s)", sfs)
	}
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	name := cookieNamePlain
	if s.opts.Secure {
		name = cookieName
	}
	if c, err := r.Cookie(name); err == nil {
		s.dropSession(hashKey(c.Value), ss)
	}
	s.audit(r.Context(), "ConsoleLogout", ss.id, "console session ended by the operator")
	http.SetCookie(w, s.cookie("", -1))
	w.WriteHeader(http.StatusNoContent)
}

// adminConn returns the session's admin API connection, dialled on first
// use.
func (s *Server) adminConn(ctx context.Context, ss *session) (grpc.ClientConnInterface, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn != nil {
		return ss.conn, nil
	}
	c, closer, err := s.opts.Dial(ctx, ss.cert)
	if err != nil {
		return nil, err
	}
	ss.conn, ss.closer = c, closer
	return c, nil
}
