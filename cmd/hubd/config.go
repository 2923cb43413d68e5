package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"clearhub/hub"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Config is everything hubd reads at start. Defaults make a working
// single-node hub on loopback; a YAML file (--config) overrides them and
// flags override the file.
type Config struct {
	NodeID  string `yaml:"node_id"`
	DataDir string `yaml:"data_dir"`

	SIP struct {
		UDP string `yaml:"udp"`
		TCP string `yaml:"tcp"`
		TLS string `yaml:"tls"`
		// Hostname the hub puts in Via and Record-Route; default: the
		// host of the first SIP listener.
		Hostname string `yaml:"hostname"`
		// TransactionTimeout bounds how long a forwarded request waits on
		// one edge before failing over.
		TransactionTimeout time.Duration `yaml:"transaction_timeout"`
		// Limits on what a connection or a source may cost (hub.Config
		// documents each); max_connections 0 sizes it from the fd limit.
		IdleTimeout              time.Duration `yaml:"idle_timeout"`
		HeaderTimeout            time.Duration `yaml:"header_timeout"`
		HandshakeTimeout         time.Duration `yaml:"handshake_timeout"`
		MaxConnections           int           `yaml:"max_connections"`
		MaxConnectionsPerSource  int           `yaml:"max_connections_per_source"`
		MaxConnectionsPerNetwork int           `yaml:"max_connections_per_network"`
		RefusalsPerSource        int           `yaml:"refusals_per_source"`
		AggregateInterval        time.Duration `yaml:"aggregate_interval"`
		// AuditKeepalives: "entries" audits members' keep-alive OPTIONS
		// to the hub like any request (two entries each); "count" counts
		// them into one aggregate entry per network and interval.
		AuditKeepalives string `yaml:"audit_keepalives"`
		// DialogRouteTTL bounds how long the hub's Record-Route admits a
		// dialog's requests (then 481, and the UAs start afresh).
		DialogRouteTTL time.Duration `yaml:"dialog_route_ttl"`
		// RateLimits are the per-member token buckets by service class
		// (all: a network's traffic together); a network's own
		// (hubctl network update --rate-limit) override them.
		RateLimits RateLimits `yaml:"rate_limits"`
		// Overload control: lean transactions in flight and audit
		// appends pending above which new requests get 503 at once.
		MaxTransactions   int `yaml:"max_transactions"`
		MaxPendingAppends int `yaml:"max_pending_appends"`
		// QueueDelayTarget: a standing queue longer than this (arrival to
		// the audit append, held over 100 ms under load) sheds new work.
		// "off" is spelled as a negative duration (-1s).
		QueueDelayTarget time.Duration `yaml:"queue_delay_target"`
		// RetransmissionCacheMB bounds the completed UDP transactions kept
		// for Timer J to answer retransmissions (MiB; past it the oldest
		// leave early).
		RetransmissionCacheMB int `yaml:"retransmission_cache_mb"`
	} `yaml:"sip"`

	Admin struct {
		Addr string `yaml:"addr"`
	} `yaml:"admin"`

	Raft struct {
		Addr      string `yaml:"addr"`
		Advertise string `yaml:"advertise"`
		// Bootstrap: "auto" makes a new single-node cluster on first start
		// unless joining; "never" waits to be added by a member
		// (hubctl cluster join), for nodes started with shared tls.*
		// certificates instead of a join token.
		Bootstrap string `yaml:"bootstrap"`
	} `yaml:"raft"`

	HTTP struct {
		Addr string `yaml:"addr"`
		// Pprof serves /debug/pprof on this port. It is unauthenticated
		// (heap contents, CPU-stalling profiles), so it is off by default.
		Pprof bool `yaml:"pprof"`
	} `yaml:"http"`

	// TLS names externally issued certificates. Empty: the development CA
	// in data_dir/pki (made on first start, or received when joining).
	TLS struct {
		// CACert and CAKey: the cluster CA (PEM). The key is needed to
		// admit joiners and mint member lab certificates.
		CACert string `yaml:"ca_cert"`
		CAKey  string `yaml:"ca_key"`
		// Cert and Key: this node's certificate (role clearhub-node in its
		// OU, signed by the CA, covering the node's addresses).
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`

	Join struct {
		Addr  string `yaml:"addr"`
		Token string `yaml:"token"`
		// TokenFile holds the token instead (a token in argv is readable
		// by every local user through ps and /proc).
		TokenFile string `yaml:"token_file"`
	} `yaml:"join"`

	Ledger struct {
		CheckpointEvery    int           `yaml:"checkpoint_every"`
		CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
		AllowBrokenChain   bool          `yaml:"allow_broken_chain"`
		// Retention cuts entries older than this, in whole segments of
		// SegmentSize entries, leaving a signed anchor; 0 keeps everything.
		Retention   time.Duration `yaml:"retention"`
		SegmentSize uint64        `yaml:"segment_size"`
		// ScrubInterval is the pause between background scrub passes (a
		// full re-verification of the stored chain and Merkle tree), 0
		// disables them; ScrubRate paces a pass in entries per second.
		ScrubInterval time.Duration `yaml:"scrub_interval"`
		ScrubRate     int           `yaml:"scrub_rate"`
	} `yaml:"ledger"`

	// Queue is store and forward (hub/queue): pager MESSAGEs for a member
	// network that cannot take them now are stored (replicated), answered
	// 202 and delivered in order when it returns. A network's own settings
	// (hubctl network update --defer-*) override the limits and TTL.
	Queue struct {
		Enabled     bool          `yaml:"enabled"`
		MaxMessages uint32        `yaml:"max_messages"`
		MaxBytes    uint64        `yaml:"max_bytes"`
		TTL         time.Duration `yaml:"ttl"`
		Rate        int           `yaml:"rate"`
		Burst       int           `yaml:"burst"`
		MinBackoff  time.Duration `yaml:"min_backoff"`
		MaxBackoff  time.Duration `yaml:"max_backoff"`
	} `yaml:"queue"`

	// Lists is the resource list server (hub/lists, docs/lists.md): RFC
	// 4662 list subscriptions under Domain, answered by the hub.
	Lists struct {
		// Domain is the hub-owned service domain; empty: no list server.
		Domain string `yaml:"domain"`
		// Throttle: least time between two NOTIFYs about one presentity
		// per view (RFC 3856 6.10).
		Throttle              time.Duration `yaml:"throttle"`
		MaxBackendsPerNetwork int           `yaml:"max_backends_per_network"`
		MaxSubscriptions      int           `yaml:"max_subscriptions"`
	} `yaml:"lists"`

	// Rooms are the chat rooms the hub hosts (chatroom/, docs/rooms.md):
	// sip:NAME@Domain, state and message order replicated.
	Rooms struct {
		// Domain is the hub-owned service domain; empty: no rooms. The
		// default, rooms.localhost, makes a development hub host rooms;
		// production sets the domain its members route to the hub.
		Domain string `yaml:"domain"`
		// MaxMembers is the hard cap on a room's participants (a room's
		// own max_members, default 200, may not exceed it).
		MaxMembers int `yaml:"max_members"`
		// RatePerMinute and Burst bound one sender's messages per room
		// and node (150/min: ejabberd's 0.4 s min_message_interval).
		RatePerMinute int `yaml:"rate_per_minute"`
		Burst         int `yaml:"burst"`
		// FanoutBatch: recipients delivered between two replicated
		// progress records (the most that may get a copy twice when the
		// node fanning out dies).
		FanoutBatch int `yaml:"fanout_batch"`
		// TakeoverAfter: how long a dead node's fan-out waits before the
		// leader finishes it.
		TakeoverAfter time.Duration `yaml:"takeover_after"`
		// RosterCoalesce: least time between two roster NOTIFYs to one
		// watcher.
		RosterCoalesce time.Duration `yaml:"roster_coalesce"`
		// SessionListen is the TCP address of the RFC 7701 focus's MSRP
		// listener (session-mode rooms); "": INVITEs to rooms get 488.
		// SessionHost is the address in its MSRP URIs and SDP (default
		// sip.hostname); it must reach this node.
		SessionListen string `yaml:"session_listen"`
		SessionHost   string `yaml:"session_host"`
		// SessionTLSListen also takes TCP/TLS/MSRP offers, with the node
		// certificate ("": TCP only).
		SessionTLSListen string `yaml:"session_tls_listen"`
		// Inbound connection caps of the focus's MSRP listeners, both
		// together (docs/rooms.md "Session-mode rooms"; as msrp.* for the
		// relay): in total, per source address, per source address not yet
		// bound to a session; over a cap: closed at accept. A connection
		// binding no session within SessionFirstFrameTimeout is closed.
		SessionMaxConnections          int           `yaml:"session_max_connections"`
		SessionMaxConnectionsPerSource int           `yaml:"session_max_connections_per_source"`
		SessionMaxPendingPerSource     int           `yaml:"session_max_pending_per_source"`
		SessionFirstFrameTimeout       time.Duration `yaml:"session_first_frame_timeout"`
	} `yaml:"rooms"`

	// MSRP anchors session IM and file transfer at this node (hub/msrp,
	// docs/msrp.md): INVITEs with an MSRP offer get the hub's paths and
	// both legs' bytes cross the node, audited. Both addresses empty: off
	// (SDP crosses the hub untouched).
	MSRP struct {
		TCP string `yaml:"tcp"` // TCP/MSRP legs, e.g. 0.0.0.0:2855
		TLS string `yaml:"tls"` // TCP/TLS/MSRP legs, node certificate, e.g. 0.0.0.0:2856
		// Host goes into the hub's MSRP URIs and SDP c= (default
		// sip.hostname): it must reach this node.
		Host           string        `yaml:"host"`
		MaxChunk       int           `yaml:"max_chunk"`
		SessionBuffer  int           `yaml:"session_buffer"`
		IdleTimeout    time.Duration `yaml:"idle_timeout"`
		SetupTimeout   time.Duration `yaml:"setup_timeout"`
		MaxMessageSize int64         `yaml:"max_message_size"`
		BytesPerSecond int           `yaml:"bytes_per_second"`
		// Inbound connection caps (docs/msrp.md "Connection limits") and
		// the AUTH exchange with a member's own relay.
		MaxConnections          int           `yaml:"max_connections"`
		MaxConnectionsPerSource int           `yaml:"max_connections_per_source"`
		MaxPendingPerSource     int           `yaml:"max_pending_per_source"`
		FirstFrameTimeout       time.Duration `yaml:"first_frame_timeout"`
		RelayAuthTimeout        time.Duration `yaml:"relay_auth_timeout"`
	} `yaml:"msrp"`

	// Hub is the hub's own SIP identity: sip:echo@ServiceDomain is the
	// onboarding echo user (hub/echo); "" disables it.
	Hub struct {
		ServiceDomain string `yaml:"service_domain"`
	} `yaml:"hub"`

	// Intercept is lawful interception's delivery (docs/interception.md):
	// HEP v3 over TLS to the mediation endpoint at Address. Warrants are
	// replicated; with Address "" they are still matched and audited in
	// data_dir/intercept.ledger, every copy counted as dropped.
	Intercept struct {
		Address    string `yaml:"address"`
		CAFile     string `yaml:"ca_file"`     // verifies the endpoint; "": system roots
		ServerName string `yaml:"server_name"` // default: Address's host
		// CertFile/KeyFile: the hub's client certificate toward the
		// endpoint; "": the node certificate.
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		AgentID  uint32 `yaml:"agent_id"` // HEP capture agent id
		Queue    int    `yaml:"queue"`    // frames waiting; beyond: dropped, counted, audited
	} `yaml:"intercept"`

	// Capture mirrors the traffic of networks switched on at runtime
	// (hubctl capture on NET) to a Homer collector in HEP v3.
	Capture struct {
		Address    string `yaml:"address"`   // host:port; "": capture off on this node
		Transport  string `yaml:"transport"` // udp or tls
		CAFile     string `yaml:"ca_file"`   // tls: verifies the collector; "": system roots
		ServerName string `yaml:"server_name"`
		AgentID    uint32 `yaml:"agent_id"`
		Queue      int    `yaml:"queue"`
	} `yaml:"capture"`

	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`

	// Console is the operator web console (ops/console, docs/console.md),
	// HTTPS with the node certificate. Addr "" disables it; an address
	// already taken leaves the node running without it (a warning), so
	// several nodes on one host still start.
	Console struct {
		Addr string `yaml:"addr"`
		// SessionTTL bounds a browser session (and never outlives the
		// operator's own certificate); LoginTTL a login link's validity.
		SessionTTL time.Duration `yaml:"session_ttl"`
		LoginTTL   time.Duration `yaml:"login_ttl"`
		// BootstrapLogin prints, at start, a one-time login link for the
		// development operator certificate in data_dir/pki (make run).
		BootstrapLogin bool `yaml:"bootstrap_login"`
	} `yaml:"console"`
}

// RateLimits is sip.rate_limits: one bucket per class.
type RateLimits struct {
	All      RateLimit `yaml:"all"`
	Presence RateLimit `yaml:"presence"`
	IM       RateLimit `yaml:"im"`
	Session  RateLimit `yaml:"session"`
	Chat     RateLimit `yaml:"chat"`
	File     RateLimit `yaml:"file"`
}

// RateLimit is one token bucket: per_second 0 is unlimited, burst 0 is
// max(1, per_second). Whole requests per second here (the defaults);
// a network's own limits may be fractional.
type RateLimit struct {
	PerSecond int `yaml:"per_second"`
	Burst     int `yaml:"burst"`
}

// classes pairs each bucket with its service and its key.
func (r *RateLimits) classes() []struct {
	key string
	svc hubv1.Service
	l   *RateLimit
} {
	return []struct {
		key string
		svc hubv1.Service
		l   *RateLimit
	}{{"all", hubv1.Service_SERVICE_UNSPECIFIED, &r.All}, {"presence", hubv1.Service_SERVICE_PRESENCE, &r.Presence},
		{"im", hubv1.Service_SERVICE_IM, &r.IM}, {"session", hubv1.Service_SERVICE_SESSION, &r.Session},
		{"chat", hubv1.Service_SERVICE_CHAT, &r.Chat}, {"file", hubv1.Service_SERVICE_FILE, &r.File}}
}

// hub converts the buckets for hub.Config.
func (r RateLimits) hub() map[hubv1.Service]hub.Limit {
	out := map[hubv1.Service]hub.Limit{}
	for _, c := range r.classes() {
		out[c.svc] = hub.Limit{PerSecond: float64(c.l.PerSecond), Burst: c.l.Burst}
	}
	return out
}

func (r *RateLimits) validate() error {
	for _, c := range r.classes() {
		if ps := c.l.PerSecond; ps < 0 || ps > raft.MaxRatePerSecond {
			return fmt.Errorf("sip.rate_limits.%s.per_second: %d must be from 0 (unlimited) to %g", c.key, ps, raft.MaxRatePerSecond)
		}
		if b := c.l.Burst; b < 0 || b > raft.MaxRateBurst {
			return fmt.Errorf("sip.rate_limits.%s.burst: %d must be from 0 to %g", c.key, b, raft.MaxRateBurst)
		}
	}
	return nil
}

// DefaultConfig is the embedded single-node loopback configuration.
func DefaultConfig() Config {
	var c Config
	c.DataDir = "hub-data"
	c.SIP.UDP = "127.0.0.1:5060"
	c.SIP.TCP = "127.0.0.1:5060"
	c.SIP.TLS = "127.0.0.1:5061"
	c.SIP.TransactionTimeout = 4 * time.Second
	c.SIP.IdleTimeout = 3 * time.Minute
	c.SIP.HeaderTimeout = 10 * time.Second
	c.SIP.HandshakeTimeout = 10 * time.Second
	c.SIP.MaxConnectionsPerSource = 64
	c.SIP.MaxConnectionsPerNetwork = 1024
	c.SIP.RefusalsPerSource = 10
	c.SIP.AggregateInterval = 10 * time.Second
	c.SIP.AuditKeepalives = "entries"
	c.SIP.DialogRouteTTL = 24 * time.Hour
	for _, cl := range c.SIP.RateLimits.classes() {
		l := hub.DefaultRateLimits()[cl.svc]
		*cl.l = RateLimit{PerSecond: int(l.PerSecond), Burst: l.Burst}
	}
	c.SIP.MaxTransactions = 4096
	c.SIP.MaxPendingAppends = 1024
	c.SIP.QueueDelayTarget = 20 * time.Millisecond
	c.SIP.RetransmissionCacheMB = 64
	c.Admin.Addr = "127.0.0.1:9443"
	c.Raft.Addr = "127.0.0.1:9444"
	c.Raft.Bootstrap = "auto"
	c.HTTP.Addr = "127.0.0.1:9090"
	c.Console.Addr = "127.0.0.1:8443"
	c.Console.SessionTTL = 8 * time.Hour
	c.Console.LoginTTL = 2 * time.Minute
	c.Console.BootstrapLogin = true
	c.Ledger.CheckpointEvery = 1000
	c.Ledger.CheckpointInterval = 10 * time.Second
	c.Ledger.SegmentSize = 1 << 16
	c.Ledger.ScrubInterval = time.Hour
	c.Ledger.ScrubRate = 2000
	c.Queue.Enabled = true
	c.Queue.MaxMessages = 10000
	c.Queue.MaxBytes = 64 << 20
	c.Queue.TTL = 72 * time.Hour
	c.Queue.Rate = 20
	c.Queue.Burst = 10
	c.Queue.MinBackoff = 5 * time.Second
	c.Queue.MaxBackoff = 300 * time.Second
	c.Lists.Throttle = 5 * time.Second
	c.Lists.MaxBackendsPerNetwork = 10000
	c.Lists.MaxSubscriptions = 100000
	c.Rooms.Domain = "rooms.localhost"
	c.Rooms.MaxMembers = 5000
	c.Rooms.RatePerMinute = 150
	c.Rooms.Burst = 5
	c.Rooms.FanoutBatch = 64
	c.Rooms.TakeoverAfter = 10 * time.Second
	c.Rooms.RosterCoalesce = time.Second
	c.Rooms.SessionMaxConnections = 16384
	c.Rooms.SessionMaxConnectionsPerSource = 4096
	c.Rooms.SessionMaxPendingPerSource = 16
	c.Rooms.SessionFirstFrameTimeout = 10 * time.Second
	c.MSRP.MaxChunk = 8192
	c.MSRP.SessionBuffer = 256 << 10
	c.MSRP.IdleTimeout = 30 * time.Minute
	c.MSRP.SetupTimeout = 5 * time.Minute
	c.MSRP.MaxConnections = 16384
	c.MSRP.MaxConnectionsPerSource = 4096
	c.MSRP.MaxPendingPerSource = 16
	c.MSRP.FirstFrameTimeout = 10 * time.Second
	c.MSRP.RelayAuthTimeout = 3 * time.Second
	c.Hub.ServiceDomain = "hub.localhost"
	c.Intercept.Queue = 4096
	c.Capture.Transport = "udp"
	c.Capture.Queue = 4096
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

var nodeIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate names the first key that is wrong.
func (c *Config) Validate() error {
	if c.NodeID != "" && !nodeIDRe.MatchString(c.NodeID) {
		return fmt.Errorf("node_id %q: want lower-case letters, digits and '-', at most 63", c.NodeID)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if c.MSRP.MaxChunk < 0 || c.MSRP.MaxChunk > 10240 || c.MSRP.SessionBuffer < 0 || c.MSRP.IdleTimeout < 0 ||
		c.MSRP.SetupTimeout < 0 || c.MSRP.MaxMessageSize < 0 || c.MSRP.BytesPerSecond < 0 ||
		c.MSRP.MaxConnections < 0 || c.MSRP.MaxConnectionsPerSource < 0 || c.MSRP.MaxPendingPerSource < 0 ||
		c.MSRP.FirstFrameTimeout < 0 || c.MSRP.RelayAuthTimeout < 0 {
		return errors.New("msrp: max_chunk (at most 10240, Kamailio's relay limit), session_buffer, timeouts, max_message_size and bytes_per_second must not be negative")
	}
	if d := c.Lists.Domain; d != "" && !raft.ValidDNSName(strings.ToLower(d)) {
		return fmt.Errorf("lists.domain %q: not a DNS name", d)
	}
	if d := c.Rooms.Domain; d != "" && !raft.ValidDNSName(strings.ToLower(d)) {
		return fmt.Errorf("rooms.domain %q: not a DNS name", d)
	}
	if d := c.Rooms.Domain; d != "" && strings.EqualFold(d, c.Lists.Domain) {
		return fmt.Errorf("rooms.domain and lists.domain are both %q: give each service its own domain", d)
	}
	if c.Rooms.MaxMembers < 0 || c.Rooms.MaxMembers > raft.MaxRoomMembers {
		return fmt.Errorf("rooms.max_members %d: want 0..%d", c.Rooms.MaxMembers, raft.MaxRoomMembers)
	}
	if c.Rooms.RatePerMinute < 0 || c.Rooms.Burst < 0 || c.Rooms.FanoutBatch < 0 || c.Rooms.TakeoverAfter < 0 || c.Rooms.RosterCoalesce < 0 {
		return errors.New("rooms.rate_per_minute, burst, fanout_batch, takeover_after and roster_coalesce must not be negative")
	}
	for _, k := range []struct {
		key string
		v   int
	}{
		{"session_max_connections", c.Rooms.SessionMaxConnections},
		{"session_max_connections_per_source", c.Rooms.SessionMaxConnectionsPerSource},
		{"session_max_pending_per_source", c.Rooms.SessionMaxPendingPerSource},
	} {
		if k.v < 0 {
			return fmt.Errorf("rooms.%s %d: must not be negative (0: the default)", k.key, k.v)
		}
	}
	if d := c.Rooms.SessionFirstFrameTimeout; d < 0 {
		return fmt.Errorf("rooms.session_first_frame_timeout %v: must not be negative (0: the default, 10s)", d)
	}
	if err := c.validateIntercept(); err != nil { // intercept.go
		return err
	}
	if c.Lists.Throttle < 0 || c.Lists.MaxBackendsPerNetwork < 0 || c.Lists.MaxSubscriptions < 0 {
		return errors.New("lists.throttle, lists.max_backends_per_network and lists.max_subscriptions must not be negative")
	}
	for _, a := range []struct{ key, v string }{
		{"sip.udp", c.SIP.UDP}, {"sip.tcp", c.SIP.TCP}, {"sip.tls", c.SIP.TLS},
		{"http.addr", c.HTTP.Addr}, {"raft.advertise", c.Raft.Advertise}, {"join.addr", c.Join.Addr},
		{"console.addr", c.Console.Addr},
	} {
		if err := checkAddr(a.key, a.v); err != nil {
			return err
		}
	}
	if c.Console.SessionTTL < 0 || c.Console.LoginTTL < 0 || c.Console.LoginTTL > time.Hour {
		return errors.New("console.session_ttl must not be negative; console.login_ttl must be 0..1h (a login link is a credential)")
	}
	if c.Admin.Addr == "" {
		return errors.New("admin.addr: required (the cluster is managed through it)")
	}
	if err := checkAddr("admin.addr", c.Admin.Addr); err != nil {
		return err
	}
	if c.Raft.Addr == "" {
		return errors.New("raft.addr: required")
	}
	if err := checkAddr("raft.addr", c.Raft.Addr); err != nil {
		return err
	}
	adv := c.Raft.Advertise
	if adv == "" {
		adv = c.Raft.Addr
	}
	if host, _, _ := net.SplitHostPort(adv); host == "" || net.ParseIP(host).IsUnspecified() {
		return fmt.Errorf("raft.advertise: %q is not routable; set an address peers can dial", adv)
	}
	switch c.Raft.Bootstrap {
	case "auto", "never":
	default:
		return fmt.Errorf("raft.bootstrap %q: want auto or never", c.Raft.Bootstrap)
	}
	switch {
	case c.Join.Token != "" && c.Join.TokenFile != "":
		return errors.New("join.token_file: give the token or a file holding it, not both")
	case c.Join.Addr != "" && c.Join.Token == "" && c.Join.TokenFile == "":
		return errors.New("join.token: required with join.addr (--join-token-file FILE, or --join-token)")
	case c.Join.Addr == "" && (c.Join.Token != "" || c.Join.TokenFile != ""):
		return errors.New("join.addr: a join token needs the admin address of a member to join (--join)")
	}
	if (c.TLS.CACert == "") != (c.TLS.CAKey == "") {
		return errors.New("tls.ca_key: tls.ca_cert and tls.ca_key go together")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tls.key: tls.cert and tls.key go together")
	}
	if c.TLS.Cert != "" && c.TLS.CACert == "" {
		return errors.New("tls.ca_cert: required with tls.cert (the CA that signed it)")
	}
	if c.TLS.CACert != "" && c.Join.Addr != "" {
		return errors.New("join.addr: a node with its own tls.ca_cert does not join with a token; start it with the cluster's certificates instead")
	}
	if c.SIP.TransactionTimeout <= 0 {
		return fmt.Errorf("sip.transaction_timeout: %s must be positive", c.SIP.TransactionTimeout)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"sip.idle_timeout", c.SIP.IdleTimeout}, {"sip.header_timeout", c.SIP.HeaderTimeout},
		{"sip.handshake_timeout", c.SIP.HandshakeTimeout}, {"sip.aggregate_interval", c.SIP.AggregateInterval},
		{"sip.dialog_route_ttl", c.SIP.DialogRouteTTL}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: %s must be positive", d.key, d.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"sip.max_connections_per_source", c.SIP.MaxConnectionsPerSource}, {"sip.max_connections_per_network", c.SIP.MaxConnectionsPerNetwork},
		{"sip.refusals_per_source", c.SIP.RefusalsPerSource}, {"sip.max_transactions", c.SIP.MaxTransactions},
		{"sip.max_pending_appends", c.SIP.MaxPendingAppends}, {"sip.retransmission_cache_mb", c.SIP.RetransmissionCacheMB}} {
		if n.v <= 0 {
			return fmt.Errorf("%s: %d must be positive", n.key, n.v)
		}
	}
	if c.SIP.MaxConnections < 0 {
		return fmt.Errorf("sip.max_connections: %d must not be negative (0: from the fd limit)", c.SIP.MaxConnections)
	}
	if err := c.SIP.RateLimits.validate(); err != nil {
		return err
	}
	switch c.SIP.AuditKeepalives {
	case "entries", "count":
	default:
		return fmt.Errorf("sip.audit_keepalives %q: want entries or count", c.SIP.AuditKeepalives)
	}
	if c.Ledger.CheckpointEvery <= 0 {
		return fmt.Errorf("ledger.checkpoint_every: %d must be positive", c.Ledger.CheckpointEvery)
	}
	if c.Ledger.CheckpointInterval <= 0 {
		return fmt.Errorf("ledger.checkpoint_interval: %s must be positive", c.Ledger.CheckpointInterval)
	}
	if c.Ledger.Retention < 0 {
		return fmt.Errorf("ledger.retention: %s must not be negative", c.Ledger.Retention)
	}
	if c.Ledger.SegmentSize < 16 || c.Ledger.SegmentSize&(c.Ledger.SegmentSize-1) != 0 {
		return fmt.Errorf("ledger.segment_size: %d must be a power of two, at least 16", c.Ledger.SegmentSize)
	}
	if c.Ledger.ScrubInterval < 0 {
		return fmt.Errorf("ledger.scrub_interval: %s must not be negative (0s disables the background scrub)", c.Ledger.ScrubInterval)
	}
	if c.Ledger.ScrubRate <= 0 {
		return fmt.Errorf("ledger.scrub_rate: %d must be positive (entries per second)", c.Ledger.ScrubRate)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	return nil
}

func checkAddr(key, v string) error {
	if v == "" {
		return nil
	}
	if strings.ContainsAny(v, " \t\r\n") {
		return fmt.Errorf("%s %q: whitespace in address", key, v)
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s %q: %v", key, v, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s %q: bad port: %v", key, v, err)
	}
	return nil
}

// loadFile decodes YAML into c, refusing unknown keys; errors name the key
// path and line.
func loadFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	if err := decodeConfig(b, c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// parseConfig applies defaults, then the file named by --config, then the
// flags that were set on the command line.
func parseConfig(args []string, stderr io.Writer) (Config, error) {
	c, _, err := parseCommandLine(args, stderr)
	return c, err
}

// parseCommandLine is parseConfig that also reports --version and
// --check-config.
func parseCommandLine(args []string, stderr io.Writer) (Config, cliAction, error) {
	fs := flag.NewFlagSet("hubd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hubd [flags]   (hubd --check-config FILE; hubd --version)\n"+
			"       hubd wal-recover | recover-cluster | ledger-backup ...   (offline maintenance; each takes --help)\n")
		fs.PrintDefaults()
	}
	var act cliAction
	var (
		configFile = fs.String("config", "", "YAML configuration file (flags override it)")
		checkFile  = fs.String("check-config", "", "parse and validate this configuration `file` (and the flags), print the result and exit 0 or 1")
		version    = fs.Bool("version", false, "print the version and exit")
		tokenFile  = fs.String("join-token-file", "", "`file` holding the join token (safer than --join-token: argv is visible to every local user)")
		pprofOn    = fs.Bool("pprof", false, "serve /debug/pprof on the --http port (unauthenticated)")
		dataDir    = fs.String("data", "", "data directory (default hub-data)")
		nodeID     = fs.String("node-id", "", "node id (default: generated once and kept in the data directory)")
		sipUDP     = fs.String("sip-udp", "", "SIP UDP listen address; empty disables (default 127.0.0.1:5060)")
		sipTCP     = fs.String("sip-tcp", "", "SIP TCP listen address; empty disables (default 127.0.0.1:5060)")
		sipTLS     = fs.String("sip-tls", "", "SIP TLS listen address; empty disables (default 127.0.0.1:5061)")
		sipHost    = fs.String("sip-hostname", "", "host the hub writes in Via and Record-Route")
		admin      = fs.String("admin", "", "admin gRPC listen address (default 127.0.0.1:9443)")
		raftAddr   = fs.String("raft", "", "raft listen address (default 127.0.0.1:9444)")
		raftAdv    = fs.String("raft-advertise", "", "raft address peers dial (default: --raft)")
		bootstrap  = fs.String("bootstrap", "", "auto (new cluster on first start unless --join) or never (wait for hubctl cluster join)")
		httpAddr   = fs.String("http", "", "metrics and health HTTP address; empty disables (default 127.0.0.1:9090)")
		join       = fs.String("join", "", "admin address of a cluster member to join")
		joinToken  = fs.String("join-token", "", "join `token` printed by hubctl cluster token")
		logLevel   = fs.String("log-level", "", "debug, info, warn or error")
		logFormat  = fs.String("log-format", "", "text or json")
		listsDom   = fs.String("lists-domain", "", "hub-owned domain of the resource list server, e.g. lists.hub.example (docs/lists.md)")
		consoleAt  = fs.String("console", "", "operator web console HTTPS listen address; empty disables (default 127.0.0.1:8443; docs/console.md)")
		roomsDom   = fs.String("rooms-domain", "", "hub-owned domain of the chat rooms, e.g. rooms.hub.example (default rooms.localhost; \"\" disables; docs/rooms.md)")
		serviceDom = fs.String("service-domain", "", "the hub's own domain: sip:echo@ it answers members' self-tests (default hub.localhost; \"\" disables)")
	)
	// Parse with output off: on a mistake we print the message and the
	// usage once ourselves.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return Config{}, act, err
	}
	if err != nil {
		return Config{}, act, usageError(fs, "%v", err)
	}
	if fs.NArg() > 0 {
		return Config{}, act, usageError(fs, "unexpected argument %q (hubd takes only flags)", fs.Arg(0))
	}
	if *version {
		act.version = true
		return Config{}, act, nil
	}
	var emptyToken bool
	fs.Visit(func(f *flag.Flag) { emptyToken = emptyToken || (f.Name == "join-token" && *joinToken == "") })
	if emptyToken {
		return Config{}, act, usageError(fs, "--join-token: the token is empty (is the variable you passed set?)")
	}
	if *checkFile != "" {
		if *configFile != "" && *configFile != *checkFile {
			return Config{}, act, usageError(fs, "--check-config and --config name different files")
		}
		*configFile, act.checkConfig = *checkFile, *checkFile
	}
	c := DefaultConfig()
	if *configFile != "" {
		if err := loadFile(*configFile, &c); err != nil {
			return Config{}, act, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data":
			c.DataDir = *dataDir
		case "node-id":
			c.NodeID = *nodeID
		case "sip-udp":
			c.SIP.UDP = *sipUDP
		case "sip-tcp":
			c.SIP.TCP = *sipTCP
		case "sip-tls":
			c.SIP.TLS = *sipTLS
		case "sip-hostname":
			c.SIP.Hostname = *sipHost
		case "admin":
			c.Admin.Addr = *admin
		case "raft":
			c.Raft.Addr = *raftAddr
		case "raft-advertise":
			c.Raft.Advertise = *raftAdv
		case "bootstrap":
			c.Raft.Bootstrap = *bootstrap
		case "http":
			c.HTTP.Addr = *httpAddr
		case "join":
			c.Join.Addr = *join
		case "join-token":
			c.Join.Token = *joinToken
		case "join-token-file":
			c.Join.TokenFile = *tokenFile
		case "pprof":
			c.HTTP.Pprof = *pprofOn
		case "log-level":
			c.Log.Level = *logLevel
		case "log-format":
			c.Log.Format = *logFormat
		case "lists-domain":
			c.Lists.Domain = *listsDom
		case "rooms-domain":
			c.Rooms.Domain = *roomsDom
		case "service-domain":
			c.Hub.ServiceDomain = *serviceDom
		case "console":
			c.Console.Addr = *consoleAt
		}
	})
	if err := c.Validate(); err != nil {
		return Config{}, act, err
	}
	if err := c.readTokenFile(); err != nil {
		return Config{}, act, err
	}
	return c, act, nil
}
