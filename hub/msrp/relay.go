package msrp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"clearhub/ledger"
)

// Auditor appends audit entries (the hub's ledger; same shape as
// hub.Auditor, declared here so this package does not import the proxy).
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// Config configures a Relay.
type Config struct {
	// Host is the address put into the hub's MSRP URIs and the SDP c= line:
	// it must reach this node (MSRP sessions are node-local).
	Host string
	// TCPAddr and TLSAddr are the listen addresses for TCP/MSRP and
	// TCP/TLS/MSRP legs ("" disables one; at least one is needed).
	TCPAddr string
	TLSAddr string
	// TLS holds the node certificate, served on TLSAddr and presented when
	// the hub connects out on a TLS leg; its SHA-256 fingerprint goes into
	// a=fingerprint (RFC 4572). Required with TLSAddr.
	TLS *tls.Config

	// MaxChunk bounds the body of each chunk the hub sends toward a member
	// (default 8192: Kamailio 5.6's relay refuses bodies over 10240).
	MaxChunk int
	// Limits bound the frames the hub reads (defaults: see Limits).
	Limits Limits
	// SessionBuffer is how many body bytes may wait toward one leg before
	// the hub stops reading the other (default 256 KiB).
	SessionBuffer int
	// IdleTimeout ends a session with no MSRP traffic (default 30m); an
	// offer never answered, or a leg never connected, ends after
	// SetupTimeout (default 5m, above SIP Timer C).
	IdleTimeout  time.Duration
	SetupTimeout time.Duration
	// TransactionTimeout is how long the hub waits for a member's response
	// to a SEND before reporting 408 (default 30s, RFC 4975 section 7.1.1).
	TransactionTimeout time.Duration
	// WriteTimeout fails a leg whose endpoint does not take bytes for this
	// long (default 60s).
	WriteTimeout time.Duration

	// MaxMessageSize refuses larger messages and files with 413 (0: no
	// limit). MaxMessageSizeFor, when set, overrides it per sending network.
	MaxMessageSize    int64
	MaxMessageSizeFor func(network string) int64
	// BytesPerSecond limits the body bytes one member network sends through
	// the hub (0: unlimited); the hub paces by reading that network's legs
	// more slowly. Burst defaults to max(BytesPerSecond, Limits.MaxBody).
	BytesPerSecond float64
	Burst          int
	// Network returns a member network's own settings (the cluster
	// state's Network.msrp); nil: every network takes the values above.
	Network func(network string) NetworkSettings

	// Inbound connection caps: MaxConns in total (default 16384),
	// MaxConnsPerIP from one source address (default 4096: a member's SBC
	// or relay carries many sessions, and a bound connection needs a
	// session id only an INVITE through the hub hands out),
	// MaxPendingPerIP of those that have not yet named a session (default
	// 16: the cap an attacker hits). Over a cap the connection is closed
	// at once. A connection that names no session within
	// FirstFrameTimeout (default 10s, TLS handshake included) is closed.
	MaxConns          int
	MaxConnsPerIP     int
	MaxPendingPerIP   int
	FirstFrameTimeout time.Duration
	// RelayAuthTimeout bounds the AUTH exchange with a member's relay,
	// done while the INVITE waits (default 3s).
	RelayAuthTimeout time.Duration

	Audit Auditor
	// Tap, when set, is offered every chunk the relay forwards, in both
	// directions (lawful interception; tap.go). nil: none.
	Tap ContentTap
	// KeepBodies says whether a network's message bodies are kept in the
	// audit entries (bodies up to 64 KiB; larger ones are hashed only).
	KeepBodies func(network string) bool
	Logger     *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.TCPAddr == "" && c.TLSAddr == "" {
		return c, errors.New("msrp config: no listen address")
	}
	if c.TLSAddr != "" && c.TLS == nil {
		return c, errors.New("msrp config: TLSAddr needs TLS (the node certificate)")
	}
	if c.Host == "" {
		return c, errors.New("msrp config: Host required")
	}
	if strings.ContainsAny(c.Host, " \r\n/;") {
		return c, fmt.Errorf("msrp config: Host %q", c.Host)
	}
	c.Limits = c.Limits.withDefaults()
	if c.MaxChunk <= 0 {
		c.MaxChunk = 8192
	}
	if c.SessionBuffer <= 0 {
		c.SessionBuffer = 256 << 10
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = 5 * time.Minute
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 16384
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 4096
	}
	if c.MaxPendingPerIP <= 0 {
		c.MaxPendingPerIP = 16
	}
	if c.FirstFrameTimeout <= 0 {
		c.FirstFrameTimeout = 10 * time.Second
	}
	if c.RelayAuthTimeout <= 0 {
		c.RelayAuthTimeout = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.KeepBodies == nil {
		c.KeepBodies = func(string) bool { return false }
	}
	return c, nil
}

// Relay is the hub's MSRP back-to-back user agent: it owns the listeners and
// the node's anchored sessions.
type Relay struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tcpL, tlsL net.Listener
	tlsConf    *tls.Config // server side, client certificates requested

	mu      sync.Mutex
	byID    map[string]*leg       // the hub's session-id on a leg -> leg
	byCall  map[string][]*session // Call-ID -> its sessions (one per m=message)
	limits  map[string]*rate.Limiter
	gate    *ConnGate
	closed  bool
	metrics Metrics
	prom    *promMetrics // Prometheus series (metrics.go)

	peakQueued atomic.Int64 // highest data backlog toward one leg (tests)
}

// Metrics counts what the relay did (read with Stats). ConnsRefused are
// connections closed at accept by a connection cap.
type Metrics struct {
	Sessions, Messages, Bytes, Refused, Failed, ConnsRefused int64
}

// New validates cfg and opens the listeners.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, log: cfg.Logger, byID: map[string]*leg{}, byCall: map[string][]*session{}, limits: map[string]*rate.Limiter{},
		gate: NewConnGate(cfg.MaxConns, cfg.MaxConnsPerIP, cfg.MaxPendingPerIP), prom: newPromMetrics()}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if cfg.TCPAddr != "" {
		if r.tcpL, err = net.Listen("tcp", cfg.TCPAddr); err != nil {
			return nil, fmt.Errorf("msrp: listen tcp %s: %w", cfg.TCPAddr, err)
		}
	}
	if cfg.TLSAddr != "" {
		tl, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			if r.tcpL != nil {
				r.tcpL.Close()
			}
			return nil, fmt.Errorf("msrp: listen tls %s: %w", cfg.TLSAddr, err)
		}
		r.tlsConf = cfg.TLS.Clone()
		// Endpoints' certificates are usually self-signed: they are
		// checked against the a=fingerprint of their SDP after the
		// handshake (RFC 4572 section 5), not against a CA.
		r.tlsConf.ClientAuth = tls.RequestClientCert
		r.tlsConf.ClientCAs = nil
		r.tlsConf.VerifyPeerCertificate = nil
		r.tlsConf.VerifyConnection = nil
		r.tlsConf.GetConfigForClient = nil
		r.tlsL = tl
	}
	return r, nil
}

// Run accepts connections until ctx ends or Close is called.
func (r *Relay) Run(ctx context.Context) error {
	// Every goroutine is added under mu, before Close can mark the relay
	// closed and Wait: a Run racing a Close never Adds during the Wait.
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	n := 1 // the janitor
	for _, l := range []net.Listener{r.tcpL, r.tlsL} {
		if l != nil {
			n++
		}
	}
	r.wg.Add(n)
	r.mu.Unlock()
	// The ctx watcher is not in wg: it may call Close, which waits for wg.
	// It ends as soon as the relay is closed either way.
	go func() {
		select {
		case <-ctx.Done():
			r.Close()
		case <-r.ctx.Done():
		}
	}()
	for _, l := range []net.Listener{r.tcpL, r.tlsL} {
		if l == nil {
			continue
		}
		go func(l net.Listener, secure bool) {
			defer r.wg.Done()
			r.accept(l, secure)
		}(l, l == r.tlsL)
	}
	go func() { defer r.wg.Done(); r.janitor() }()
	<-r.ctx.Done()
	return nil
}

// goTracked runs f on a goroutine Close waits for, unless the relay is
// closed (false): Adds happen under mu, so none races Close's Wait.
func (r *Relay) goTracked(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
	return true
}

// Close ends every session and stops the listeners.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var all []*session
	for _, ss := range r.byCall {
		all = append(all, ss...)
	}
	r.mu.Unlock()
	r.cancel()
	for _, l := range []net.Listener{r.tcpL, r.tlsL} {
		if l != nil {
			l.Close()
		}
	}
	for _, s := range all {
		s.end("hub shutting down")
	}
	r.wg.Wait()
	return nil
}

// Addrs returns the TCP and TLS listen addresses (nil when not listening).
func (r *Relay) Addrs() (tcp, tls net.Addr) {
	if r.tcpL != nil {
		tcp = r.tcpL.Addr()
	}
	if r.tlsL != nil {
		tls = r.tlsL.Addr()
	}
	return tcp, tls
}

// Stats returns the counters.
func (r *Relay) Stats() Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.metrics
}

func (r *Relay) count(f func(m *Metrics)) {
	r.mu.Lock()
	f(&r.metrics)
	r.mu.Unlock()
}

// Sessions is the number of anchored sessions.
func (r *Relay) Sessions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ss := range r.byCall {
		n += len(ss)
	}
	return n
}

// accept serves l until it is closed. Every other Accept error (EMFILE,
// ECONNABORTED, anything unknown) is retried after a backoff (5 ms
// doubling to 1 s): returning would end MSRP anchoring on this node for
// good while its connections wait in the kernel's backlog.
func (r *Relay) accept(l net.Listener, secure bool) {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.ctx.Err() != nil {
				return
			}
			delay = NextAcceptDelay(delay)
			r.log.Warn("MSRP accept failed; retrying", "listener", l.Addr().String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		ip := SourceIP(c.RemoteAddr())
		if ok, why := r.gate.Admit(ip); !ok {
			// Closed before any byte is read: no goroutine, no buffer.
			// Counted first, so that a peer that saw the close also
			// sees it in Stats.
			r.count(func(m *Metrics) { m.ConnsRefused++ })
			r.prom.refused(capCause(why))
			c.Close()
			if r.gate.ShouldLog(time.Now()) {
				r.log.Warn("MSRP connection refused", "remote", c.RemoteAddr().String(), "why", why)
			}
			continue
		}
		if !r.goTracked(func() { r.serveInbound(c, secure, ip) }) {
			r.gate.Release(ip, true)
			c.Close()
			return
		}
	}
}

// serveInbound binds an accepted connection to the leg its first request
// names in To-Path (RFC 4975 section 5.4: the passive side learns the
// session from the first SEND), then reads it.
func (r *Relay) serveInbound(c net.Conn, secure bool, ip string) {
	pending := true
	defer func() {
		r.gate.Release(ip, pending)
		if p := recover(); p != nil {
			r.log.Error("panic on an MSRP connection", "panic", p, "remote", c.RemoteAddr().String())
			c.Close()
		}
	}()
	// Unauthenticated until its first frame names a session: it gets
	// FirstFrameTimeout for the TLS handshake and that frame.
	_ = c.SetDeadline(time.Now().Add(r.cfg.FirstFrameTimeout))
	// Until the connection is bound to a leg, only Close reaches it.
	stop := context.AfterFunc(r.ctx, func() { c.Close() })
	defer stop()
	if secure {
		tc := tls.Server(c, r.tlsConf)
		if err := tc.HandshakeContext(r.ctx); err != nil {
			r.log.Info("MSRP TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			if r.ctx.Err() == nil { // not the node shutting down
				r.prom.refused(readCause(err, CauseTLSHandshake))
			}
			c.Close()
			return
		}
		c = tc
	}
	rd := r.newReader(c)
	f, err := rd.ReadFrame()
	if err != nil {
		r.log.Debug("MSRP connection closed before its first frame", "remote", c.RemoteAddr().String(), "err", err)
		if cause := readCause(err, ""); cause != "" {
			r.prom.refused(cause) // a peer that just hung up was not refused
		}
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	refuse := func(cause string, code int, phrase string) {
		r.count(func(m *Metrics) { m.Refused++ })
		r.prom.refused(cause)
		if f.IsRequest() && f.Method != "REPORT" {
			res := &Frame{TID: f.TID, Code: code, Phrase: phrase, ToPath: f.FromPath[len(f.FromPath)-1:], FromPath: f.ToPath[:1]}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(res.Append(nil))
		}
		c.Close()
	}
	if !f.IsRequest() {
		refuse(CauseBadFirstFrame, 0, "")
		return
	}
	to, err := ParseURI(f.ToPath[0])
	if err != nil {
		refuse(CauseBadFirstFrame, 400, "Bad To-Path")
		return
	}
	r.mu.Lock()
	l := r.byID[to.Session]
	r.mu.Unlock()
	if l == nil || !l.hubURI.Equal(to) {
		refuse(CauseUnknownSession, 481, "Session does not exist")
		return
	}
	if l.viaRelay() {
		// Frames for a leg through a member's relay come on the hub's
		// AUTH connection, or on connections that relay opens toward
		// the hub (Kamailio 5.6 relays responses that way).
		if !l.fromRelay(c) {
			refuse(CauseNotFromRelay, 403, "Not from this network's relay")
			return
		}
		pending = false
		r.gate.Bound(ip)
		r.prom.connected(LegMemberRelay, secure)
		l.extraReader(c, rd, f)
		return
	}
	if l.secure != secure {
		refuse(CauseUnknownSession, 481, "Session does not exist")
		return
	}
	if cause, why := l.checkPeer(f, c); why != "" {
		r.log.Info("MSRP connection refused", "remote", c.RemoteAddr().String(), "session", to.Session, "why", why)
		refuse(cause, 403, why)
		return
	}
	if !l.bind(c, rd) {
		refuse(CauseAlreadyBound, 506, "Session already bound to another connection")
		return
	}
	pending = false
	r.gate.Bound(ip)
	r.prom.connected(LegInbound, secure)
	l.handle(f)
	rd.Release(f)
	l.readLoop()
}

// janitor ends idle sessions and fails overdue transactions.
func (r *Relay) janitor() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			r.mu.Lock()
			var all []*session
			for _, ss := range r.byCall {
				all = append(all, ss...)
			}
			r.mu.Unlock()
			for _, s := range all {
				s.tick(now)
			}
		}
	}
}

// hubURI allocates a URI for a new leg.
func (r *Relay) hubURI(secure bool) (URI, error) {
	u := URI{Scheme: "msrp", Host: r.cfg.Host, Transport: "tcp", Session: randomID(10)}
	l := r.tcpL
	if secure {
		u.Scheme, l = "msrps", r.tlsL
	}
	if l == nil {
		return u, fmt.Errorf("msrp: no %s listener for this session", map[bool]string{false: "TCP", true: "TLS"}[secure])
	}
	u.Port = l.Addr().(*net.TCPAddr).Port
	return u, nil
}

// fingerprint is the node certificate's SHA-256 fingerprint in a=fingerprint form.
func (r *Relay) fingerprint() (string, error) {
	var leaf []byte
	if c := r.cfg.TLS; c != nil {
		if len(c.Certificates) > 0 && len(c.Certificates[0].Certificate) > 0 {
			leaf = c.Certificates[0].Certificate[0]
		} else if c.GetCertificate != nil {
			cert, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: r.cfg.Host})
			if err != nil {
				return "", fmt.Errorf("msrp: node certificate: %w", err)
			}
			if cert != nil && len(cert.Certificate) > 0 {
				leaf = cert.Certificate[0]
			}
		}
	}
	if leaf == nil {
		return "", errors.New("msrp: no node certificate for a TLS leg")
	}
	return "sha-256 " + certFingerprint(leaf), nil
}

func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{x})))
	}
	return b.String()
}

// matchFingerprint checks a certificate against an a=fingerprint value
// ("sha-256 AB:CD:..."; only SHA-256 is accepted).
func matchFingerprint(cert *x509.Certificate, want string) bool {
	alg, fp, ok := strings.Cut(strings.TrimSpace(want), " ")
	if !ok || !strings.EqualFold(alg, "sha-256") || cert == nil {
		return false
	}
	return strings.EqualFold(strings.TrimSpace(fp), certFingerprint(cert.Raw))
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTID is a transaction id for a frame the hub sends, chosen so that the
// body does not contain its end-line (RFC 4975 section 7.1).
func newTID(body []byte) string {
	for {
		t := randomID(8)
		if !BodyHasEndLine(body, t) {
			return t
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
