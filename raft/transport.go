package raft

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
)

// TLSStreamLayer is a hraft.StreamLayer over mutually authenticated TLS.
//
// Which peers are acceptable is the caller's decision, made in the
// tls.Configs: the server side must require and verify client certificates
// and check in VerifyConnection that the peer is a hub node (for example
// pki.VerifyRole(pki.RoleNode)), so a member network's or operator's
// certificate from the same CA is refused; the dial side does the same for
// the server it reaches.
//
// Accept does not handshake: hashicorp/raft's accept loop is serial, and one
// slow or hostile peer must not stall it. The handshake runs on the first
// read, in the per-connection goroutine the transport starts.
//
// Once SetState is called, the layer also refuses a peer whose certificate
// the replicated revocation list names (State.Revoked), both ways: a revoked
// node certificate can neither dial in nor be dialled. Connections made
// before the revocation was applied end on their next read or write.
type TLSStreamLayer struct {
	net.Listener // a tls.NewListener

	// HandshakeTimeout bounds an accepted connection's TLS handshake, so a
	// peer that connects and stays silent does not hold a transport
	// goroutine forever. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger, if set, gets one line per peer refused as revoked.
	Logger *slog.Logger

	advertise net.Addr
	dialTLS   *tls.Config
	state     atomic.Pointer[func() *State] // nil until SetState

	// accepted are the connections Accept returned and nobody closed yet:
	// the transport's per-connection goroutines block reading them, so
	// Close ends them rather than leaving them to the peer's goodwill.
	mu       sync.Mutex
	accepted map[*handshakeConn]struct{}
	closed   bool
}

// Close stops accepting and closes every accepted connection still open,
// so the transport's goroutines serving them return.
func (t *TLSStreamLayer) Close() error {
	err := t.Listener.Close()
	t.mu.Lock()
	t.closed = true
	conns := t.accepted
	t.accepted = nil
	t.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return err
}

// track records an accepted connection; false when the layer is closed.
func (t *TLSStreamLayer) track(c *handshakeConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.accepted == nil {
		t.accepted = make(map[*handshakeConn]struct{})
	}
	t.accepted[c] = struct{}{}
	return true
}

func (t *TLSStreamLayer) untrack(c *handshakeConn) {
	t.mu.Lock()
	delete(t.accepted, c)
	t.mu.Unlock()
}

// SetState makes the layer check peers against the revocation list of
// state(), the node's current cluster state. It is set after the node is
// built (the state lives in the FSM, which needs the transport first);
// until then no revocation is known.
func (t *TLSStreamLayer) SetState(state func() *State) {
	if state == nil {
		t.state.Store(nil)
		return
	}
	t.state.Store(&state)
}

// currentState is the state to check against, or nil before SetState.
func (t *TLSStreamLayer) currentState() *State {
	f := t.state.Load()
	if f == nil {
		return nil
	}
	return (*f)()
}

// checkRevoked refuses a peer certificate that st lists as revoked. The
// leaf is checked as presented: the handshake has already verified it
// against the CA, and a revocation can only refuse.
func (t *TLSStreamLayer) checkRevoked(st *State, cs tls.ConnectionState) error {
	if st == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	r := st.Revoked(leaf)
	if r == nil {
		return nil
	}
	if t.Logger != nil {
		t.Logger.Warn("raft peer refused: certificate revoked", "peer", leaf.Subject.CommonName,
			"serial", SerialString(leaf.SerialNumber), "revocation", r.GetSerial()+r.GetName(), "reason", r.GetReason())
	}
	return revokedErr(leaf)
}

func revokedErr(leaf *x509.Certificate) error {
	return fmt.Errorf("raft: peer certificate %q (serial %s) is revoked", leaf.Subject.CommonName, SerialString(leaf.SerialNumber))
}

// revocationGuard re-checks a connection's peer against the state each
// time the state changes, so an established connection of a node revoked
// since ends on its next read or write.
type revocationGuard struct {
	layer   *TLSStreamLayer
	mu      sync.Mutex
	checked *State // the last state the peer passed
	err     error  // sticky once refused
}

// check runs the revocation check if the state moved since the last one.
func (g *revocationGuard) check(cs func() tls.ConnectionState) error {
	st := g.layer.currentState()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil || st == nil || st == g.checked {
		return g.err
	}
	if err := g.layer.checkRevoked(st, cs()); err != nil {
		g.err = err
		return err
	}
	g.checked = st
	return nil
}

// DefaultHandshakeTimeout is TLSStreamLayer's default HandshakeTimeout.
const DefaultHandshakeTimeout = 10 * time.Second

// Accept returns the next connection without handshaking (see the type
// comment); the handshake runs on its first Read or Write, within
// HandshakeTimeout.
func (t *TLSStreamLayer) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil
	}
	timeout := t.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	hc := &handshakeConn{Conn: tc, timeout: timeout, guard: &revocationGuard{layer: t}, layer: t}
	if !t.track(hc) {
		tc.Close()
		return nil, net.ErrClosed
	}
	return hc, nil
}

// handshakeConn runs the server-side handshake once, with a deadline, before
// the first read or write, and refuses a revoked peer then and on any read
// or write after the state changed.
type handshakeConn struct {
	*tls.Conn
	timeout time.Duration
	guard   *revocationGuard
	layer   *TLSStreamLayer
	once    sync.Once
	err     error
}

// Close closes the connection and forgets it in its layer.
func (h *handshakeConn) Close() error {
	h.layer.untrack(h)
	return h.Conn.Close()
}

func (h *handshakeConn) handshake() error {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		defer cancel()
		if h.err = h.Conn.HandshakeContext(ctx); h.err == nil {
			h.err = h.guard.check(h.Conn.ConnectionState)
		}
		if h.err != nil {
			h.Conn.Close()
		}
	})
	return h.err
}

func (h *handshakeConn) Read(b []byte) (int, error) {
	if err := h.handshake(); err != nil {
		return 0, err
	}
	if err := h.guard.check(h.Conn.ConnectionState); err != nil {
		h.Conn.Close()
		return 0, err
	}
	return h.Conn.Read(b)
}

func (h *handshakeConn) Write(b []byte) (int, error) {
	if err := h.handshake(); err != nil {
		return 0, err
	}
	if err := h.guard.check(h.Conn.ConnectionState); err != nil {
		h.Conn.Close()
		return 0, err
	}
	return h.Conn.Write(b)
}

var _ hraft.StreamLayer = (*TLSStreamLayer)(nil)

// NewTLSStreamLayer wraps ln, which must already be a TLS listener
// (tls.NewListener). advertise is the address other nodes dial to reach ln;
// it must be a routable host:port (not 0.0.0.0 or [::], port not 0). If
// advertise is nil, ln.Addr() is used and must itself be routable. dialTLS
// configures outgoing connections; when its ServerName is empty, Dial sets
// it to the host of the address dialled, so node certificates need that
// host (IP or name) in their subjectAltName.
func NewTLSStreamLayer(ln net.Listener, advertise net.Addr, dialTLS *tls.Config) (*TLSStreamLayer, error) {
	if ln == nil {
		return nil, fmt.Errorf("%w: raft TLS stream layer: nil listener", ErrInvalid)
	}
	if dialTLS == nil {
		return nil, fmt.Errorf("%w: raft TLS stream layer: nil dial TLS config", ErrInvalid)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if err := CheckAdvertiseAddr(advertise.String()); err != nil {
		return nil, fmt.Errorf("raft TLS stream layer: %w", err)
	}
	return &TLSStreamLayer{Listener: ln, advertise: advertise, dialTLS: dialTLS}, nil
}

// CheckAdvertiseAddr reports whether addr is usable as a Raft address other
// nodes dial: host:port with a non-zero port and a host that is a name or a
// specified IP address. The error wraps ErrInvalid.
func CheckAdvertiseAddr(addr string) error {
	if reason := validHostPort(addr); reason != "" {
		return invalid("advertise address", addr, reason)
	}
	return nil
}

// Addr returns the advertised address (what Raft records in its
// configuration and peers dial), not the bind address.
func (t *TLSStreamLayer) Addr() net.Addr { return t.advertise }

// Dial is called by the Raft transport on its own goroutines. It connects
// and completes the TLS handshake (so a refused certificate fails here, not
// on the first RPC) within timeout. A peer whose certificate is revoked is
// refused in the handshake, and a dialled connection ends on the first
// read or write after its peer is revoked.
func (t *TLSStreamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := t.dialTLS.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("raft dial %s: %w", address, err)
		}
		cfg.ServerName = host
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		return t.checkRevoked(t.currentState(), cs)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	tc := c.(*tls.Conn) // tls.Dialer returns one
	g := &revocationGuard{layer: t, checked: t.currentState()}
	return &guardedConn{Conn: tc, guard: g}, nil
}

// guardedConn is a dialled connection that ends once its peer is revoked.
type guardedConn struct {
	*tls.Conn
	guard *revocationGuard
}

func (g *guardedConn) Read(b []byte) (int, error) {
	if err := g.guard.check(g.Conn.ConnectionState); err != nil {
		g.Conn.Close()
		return 0, err
	}
	return g.Conn.Read(b)
}

// Write is checked too: the leader writes AppendEntries before it reads
// the answer, and must not send the log to a node revoked since.
func (g *guardedConn) Write(b []byte) (int, error) {
	if err := g.guard.check(g.Conn.ConnectionState); err != nil {
		g.Conn.Close()
		return 0, err
	}
	return g.Conn.Write(b)
}

// advertiseAddr is a net.Addr that keeps a host name as given (a
// *net.TCPAddr would force a DNS lookup at start-up).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
