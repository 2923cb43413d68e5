package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/proto/hubv1"
)

// Config configures a Hub. New validates it and fills defaults; the caller's
// value is not modified.
type Config struct {
	// NodeID names this node in logs and metrics.
	NodeID string

	// UDPAddr, TCPAddr and TLSAddr are listen addresses ("127.0.0.1:5060",
	// ":0" for an ephemeral port). An empty address disables that
	// transport; at least one must be set. UDP and TCP are lab transports
	// (members identified by source address); TLS is the production one.
	// Connections the hub dials to member edges leave from the TLS (or
	// TCP) listen IP when it is specific (dial.go), UDP from its socket.
	UDPAddr string
	TCPAddr string
	TLSAddr string

	// Hostname is the host the hub advertises in Via and Record-Route. It
	// must reach this node and, for TLS, be a name in the node certificate.
	// Default: the IP of the first listen address when that is specific.
	Hostname string

	// ServerTLS holds the node certificate served on TLSAddr. Required when
	// TLSAddr is set. The hub clones it and replaces its client
	// authentication (ClientAuth, ClientCAs, VerifyPeerCertificate,
	// VerifyConnection, GetConfigForClient): a client certificate must chain
	// to a CA some member network registered, or be pinned by one, in the
	// current cluster state, or the handshake fails (see trust.go).
	ServerTLS *tls.Config

	// ClientCertificate is presented on outbound TLS connections to member
	// edges. Required when TLSAddr is set.
	ClientCertificate tls.Certificate

	// GetClientCertificate, when set, is asked for the certificate of each
	// outbound handshake instead (a node certificate reloaded without a
	// restart); ClientCertificate is then only the fallback.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)

	// RouteSecret keys the HMAC protecting the hub's Record-Route
	// parameters. Every node of a cluster should share it and keep it
	// across restarts so that dialogs survive a restart; when empty a random
	// secret is generated (in-dialog requests then fail with 403 after a
	// restart).
	RouteSecret []byte

	// RouteKeyID names RouteSecret inside the route tokens the hub issues,
	// so the secret can rotate: give the new secret a new id and move the
	// old one to PreviousRouteSecrets (still accepted, never used to issue)
	// until DialogRouteTTL has passed.
	RouteKeyID           uint8
	PreviousRouteSecrets map[uint8][]byte

	// DialogRouteTTL bounds how long the Record-Route the hub issued for a
	// dialog admits in-dialog requests (default 24h). Past it they get 481
	// and the UAs end the dialog or re-subscribe, which is policed afresh.
	DialogRouteTTL time.Duration

	// clock replaces time.Now in route tokens (tests).
	clock func() time.Time

	Logger     *slog.Logger          // default: slog.Default()
	Registerer prometheus.Registerer // default: no metrics registration

	// TransactionTimeout bounds how long the hub waits for any response
	// from one edge before trying the next one (default 3s). After a
	// provisional response, INVITE waits up to InviteTimeout (RFC 3261 Timer
	// C, default 3m) and other methods up to sip Timer F.
	TransactionTimeout time.Duration
	InviteTimeout      time.Duration

	// IdleTimeout closes TCP/TLS connections that send nothing for this long,
	// including connections stuck in the TLS handshake (default 3m).
	IdleTimeout time.Duration

	// MaxMessageSize refuses larger SIP messages (default 65535; a UDP
	// datagram cannot exceed it anyway).
	MaxMessageSize int

	// UDPReadBuffer is the SO_RCVBUF asked for on the UDP socket (default
	// 8 MiB; the kernel caps it at net.core.rmem_max).
	UDPReadBuffer int

	// HeaderTimeout bounds how long a TCP/TLS connection may take to
	// deliver one whole SIP message (headers, and the body its
	// Content-Length announces) once its first byte arrived (default 10s):
	// a slow sender is closed, not waited for.
	HeaderTimeout time.Duration

	// HandshakeTimeout bounds an inbound TLS handshake (default 10s).
	HandshakeTimeout time.Duration

	// MaxConnections caps accepted TCP+TLS connections (default: 3/4 of
	// the soft RLIMIT_NOFILE at New, at most 10,000), so the hub never runs
	// out of file descriptors. Half of it at most goes to connections no
	// member network is known for yet (source address outside every lab
	// prefix and, for TLS, no identifying certificate yet).
	MaxConnections int

	// MaxConnectionsPerSource caps connections from one IP address that is
	// not attributed to a member network (default 64).
	MaxConnectionsPerSource int

	// MaxConnectionsPerNetwork caps connections attributed to one member
	// network (default 1024).
	MaxConnectionsPerNetwork int

	// RefusalsPerSource is how many requests per second from one
	// unattributable source (or one source sending junk) are answered; the
	// rest are dropped unanswered (default 10; a UDP source can be forged,
	// so answers are also capped overall).
	RefusalsPerSource int

	// AggregateInterval is the period of the aggregate audit entries that
	// count what the hub refused or dropped without an entry of its own
	// (default 10s; see guard.go).
	AggregateInterval time.Duration

	// AuditKeepalives says how members' keep-alive OPTIONS (Request-URI
	// the hub itself, answered 200 by the hub) are audited:
	// KeepaliveEntries (the default) records a request and a response
	// entry for each, like any other request; KeepaliveCount counts them
	// per member network and transport into one aggregate entry per
	// AggregateInterval (guard.go). Metrics count them either way.
	AuditKeepalives string

	// RateLimits are the per-member token buckets by service class
	// (hubv1.Service_SERVICE_UNSPECIFIED: all of a network's traffic
	// together); a class not named keeps DefaultRateLimits, and a Limit
	// with PerSecond 0 is unlimited. Network.rate_limits in the cluster
	// state overrides them per network (ratelimit.go).
	RateLimits map[hubv1.Service]Limit

	// MaxTransactions and MaxPendingAppends bound the work admitted:
	// lean transactions in the pipeline (default 4096) and audit appends
	// in progress (default 1024). Above them new requests are answered
	// 503 + Retry-After at once (overload.go).
	MaxTransactions   int
	MaxPendingAppends int
	// QueueDelayTarget is the queueing delay (the kernel's receive time, or
	// the read loop's for streams, to the request's audit entry being
	// durable) above which, once it has held for a
	// 100 ms interval under load, new work is shed as above (overload.go;
	// default 20ms, negative: off).
	QueueDelayTarget time.Duration
	// RetransmissionCache bounds the memory of completed UDP lean
	// transactions kept for Timer J (64*T1, RFC 3261 17.2.2) to answer
	// retransmitted requests from the last response: about its bytes plus
	// 160 per entry. Past it the oldest leave early (counted in
	// clearhub_sip_retransmission_cache_evicted_total); a retransmission
	// of one of those is then forwarded again as a new request. The cache
	// otherwise grows with the admitted rate times 32 s (at 16,000/s ~
	// 500,000 entries, 260 MB). Default 64 MiB.
	RetransmissionCache int64

	// limitClock replaces time.Now in the rate limiter (tests).
	limitClock func() time.Time

	// Hosted maps a lower-case service domain the hub owns (rooms.domain,
	// lists.domain) to the service that answers requests for it (hosted.go).
	// Such requests are never routed to a member.
	Hosted map[string]HostedService

	// Deferrer, when set, stores pager MESSAGEs a destination cannot take
	// now and answers 202 (store and forward, deferral.go); nil: the
	// proxy's 408/503 as before.
	Deferrer Deferrer

	// Anchor, when set, rewrites the SDP of sessions the hub routes so that
	// their media (MSRP) crosses this node (anchor.go, hub/msrp); nil: SDP
	// is forwarded untouched.
	Anchor SessionAnchor

	// Tap, when set, is offered a copy of every message the hub forwards
	// (tap.go: lawful interception, SIP capture); nil: no copies.
	Tap Tap
}

// Values of Config.AuditKeepalives.
const (
	KeepaliveEntries = "entries"
	KeepaliveCount   = "count"
)

func (c Config) withDefaults() (Config, error) {
	if c.UDPAddr == "" && c.TCPAddr == "" && c.TLSAddr == "" {
		return c, errors.New("hub config: no listen address (UDPAddr, TCPAddr, TLSAddr)")
	}
	if c.TLSAddr != "" {
		if c.ServerTLS == nil || (len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil) {
			return c, errors.New("hub config: TLSAddr needs ServerTLS with a certificate")
		}
		if len(c.ClientCertificate.Certificate) == 0 {
			return c, errors.New("hub config: TLSAddr needs ClientCertificate for outbound TLS")
		}
	}
	if c.Hostname == "" {
		for _, a := range []string{c.UDPAddr, c.TCPAddr, c.TLSAddr} {
			if a == "" {
				continue
			}
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return c, fmt.Errorf("hub config: listen address %q: %w", a, err)
			}
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				c.Hostname = host
				break
			}
		}
		if c.Hostname == "" {
			return c, errors.New("hub config: Hostname required when listening on a wildcard address")
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 3 * time.Second
	}
	if c.InviteTimeout <= 0 {
		c.InviteTimeout = 3 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 3 * time.Minute
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 65535
	}
	if c.MaxMessageSize < 1024 {
		return c, fmt.Errorf("hub config: MaxMessageSize %d below 1024", c.MaxMessageSize)
	}
	if c.DialogRouteTTL <= 0 {
		c.DialogRouteTTL = 24 * time.Hour
	}
	if _, dup := c.PreviousRouteSecrets[c.RouteKeyID]; dup {
		return c, fmt.Errorf("hub config: PreviousRouteSecrets holds the current RouteKeyID %d", c.RouteKeyID)
	}
	if c.UDPReadBuffer <= 0 {
		c.UDPReadBuffer = 8 << 20
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = defaultMaxConnections()
	}
	if c.MaxConnectionsPerSource <= 0 {
		c.MaxConnectionsPerSource = 64
	}
	if c.MaxConnectionsPerNetwork <= 0 {
		c.MaxConnectionsPerNetwork = 1024
	}
	if c.RefusalsPerSource <= 0 {
		c.RefusalsPerSource = 10
	}
	if c.AggregateInterval <= 0 {
		c.AggregateInterval = 10 * time.Second
	}
	switch c.AuditKeepalives {
	case "":
		c.AuditKeepalives = KeepaliveEntries
	case KeepaliveEntries, KeepaliveCount:
	default:
		return c, fmt.Errorf("hub config: AuditKeepalives %q: want %q or %q", c.AuditKeepalives, KeepaliveEntries, KeepaliveCount)
	}
	limits := DefaultRateLimits()
	for svc, l := range c.RateLimits {
		if svc < 0 || int(svc) >= numClasses {
			return c, fmt.Errorf("hub config: rate limit for unknown service %d", svc)
		}
		if err := l.check(className(svc)); err != nil {
			return c, err
		}
		limits[svc] = l
	}
	c.RateLimits = limits
	if c.MaxTransactions <= 0 {
		c.MaxTransactions = 4096
	}
	if c.MaxPendingAppends <= 0 {
		c.MaxPendingAppends = 1024
	}
	if c.RetransmissionCache <= 0 {
		c.RetransmissionCache = 64 << 20
	}
	if c.QueueDelayTarget == 0 {
		c.QueueDelayTarget = 20 * time.Millisecond
	}
	return c, nil
}
