package raft

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
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
type TLSStreamLayer struct {
	net.Listener // a tls.NewListener

	// HandshakeTimeout bounds an accepted connection's TLS handshake, so a
	// peer that connects and stays silent does not hold a transport
	// goroutine forever. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	advertise net.Addr
	dialTLS   *tls.Config
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
	return &handshakeConn{Conn: tc, timeout: timeout}, nil
}

// handshakeConn runs the server-side handshake once, with a deadline, before
// the first read or write.
type handshakeConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (h *handshakeConn) handshake() error {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		defer cancel()
		if h.err = h.Conn.HandshakeContext(ctx); h.err != nil {
			h.Conn.Close()
		}
	})
	return h.err
}

func (h *handshakeConn) Read(b []byte) (int, error) {
	if err := h.handshake(); err != nil {
		return 0, err
	}
	return h.Conn.Read(b)
}

func (h *handshakeConn) Write(b []byte) (int, error) {
	if err := h.handshake(); err != nil {
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
// on the first RPC) within timeout.
func (t *TLSStreamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := t.dialTLS
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, fmt.Errorf("raft dial %s: %w", address, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
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
	return c, nil
}

// advertiseAddr is a net.Addr that keeps a host name as given (a
// *net.TCPAddr would force a DNS lookup at start-up).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
