package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/raft"
)

// StateSource hands out the current immutable cluster-state snapshot. The
// hub calls State on every request; it must not block.
type StateSource interface {
	State() *raft.State
}

// Auditor appends entries to the audit ledger. Append returns once the entry
// is durable; it is called concurrently from many goroutines.
type Auditor interface {
	Append(ctx context.Context, e *ledger.Entry) (uint64, error)
}

// Hub is the SIP plane of one node. Create it with New, serve with Run, stop
// with Close (or by cancelling Run's context).
type Hub struct {
	cfg   Config
	state StateSource
	audit Auditor
	// bgAudit is audit when its ledger takes entries nobody waits for
	// (decided once, in initOverload); nil otherwise.
	bgAudit *countingAuditor
	log     *slog.Logger
	secret  []byte

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	txl *sip.TransactionLayer
	tpl *sip.TransportLayer

	udp    *net.UDPConn
	tcp    net.Listener
	tlsL   net.Listener
	ports  map[string]int // "udp", "tcp", "tls" -> bound port
	ips    []netip.Addr   // specific addresses the hub listens on
	addrs  []net.Addr
	out    outCache
	m      *metrics
	om     *opsMetrics // edge health, refusal reasons, live gauges (edgehealth.go)
	parser *sip.Parser // parses what the hub reads before sipgo (concurrent use is safe)
	badSem chan struct{}
	tlsSem chan struct{} // bounds audits of refused TLS handshakes in flight
	// udpLaddr is the UDP listener's address, the local address of every
	// UDP request the hub sends through sipgo (see buildForward).
	udpLaddr sip.Addr
	// udpStack is the UDP socket as sipgo reads it (udpread.go);
	// udpStamps says whether the kernel stamps its datagrams.
	udpStack  *stackConn
	udpStamps bool
	trusted   trustCache
	lean      *leanTable
	guard     *guard    // refusals before the pipeline, aggregate audit (guard.go)
	conns     connTable // accepted TCP/TLS connections against the caps
	drain     drainFlag // maintenance drain (drain.go)

	limits *rateLimiter // per-member token buckets (ratelimit.go)
	ovl    *overload    // work admitted, shedding (overload.go)
	sm     *shedMetrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup // request handlers and helper goroutines
	serve    sync.WaitGroup // listener loops
	runOnce  sync.Once
	closeMu  sync.Mutex
	closeErr error
	isClosed bool
}

// New validates cfg, binds the listeners (so Addrs is known at once, also
// with ":0" ports) and prepares the SIP stack. Nothing is served before Run.
func New(cfg Config, state StateSource, audit Auditor) (*Hub, error) {
	if state == nil || audit == nil {
		return nil, errors.New("hub: state source and auditor are required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.Hostname, " \t\r\n;<>,\"@") {
		return nil, fmt.Errorf("hub config: Hostname %q is not a valid SIP host", cfg.Hostname)
	}
	h := &Hub{
		cfg:    cfg,
		state:  state,
		audit:  audit,
		log:    cfg.Logger.With("component", "hub", "node", cfg.NodeID),
		secret: cfg.RouteSecret,
		ports:  map[string]int{},
		badSem: make(chan struct{}, 64),
		tlsSem: make(chan struct{}, 16),
		lean:   newLeanTable(cfg.RetransmissionCache),
		guard:  newGuard(cfg),
	}
	if len(h.secret) == 0 {
		h.secret = make([]byte, 32)
		if _, err := rand.Read(h.secret); err != nil {
			return nil, fmt.Errorf("hub: route secret: %w", err)
		}
		h.log.Warn("no route secret configured; in-dialog requests will not survive a restart")
	}
	if h.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if h.om, err = newOpsMetrics(h, cfg.Registerer); err != nil {
		return nil, err
	}
	if err := h.initOverload(); err != nil {
		return nil, err
	}
	if err := h.listen(); err != nil {
		h.closeListeners()
		return nil, err
	}
	if ip, err := netip.ParseAddr(cfg.Hostname); err == nil {
		h.ips = append(h.ips, ip.Unmap())
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())

	h.parser = sip.NewParser()
	h.parser.MaxMessageLength = cfg.MaxMessageSize
	stackParser := sip.NewParser()
	stackParser.MaxMessageLength = cfg.MaxMessageSize
	sipLog := slog.New(minLevel{h.log.Handler(), slog.LevelWarn})

	var clientTLS *tls.Config
	if cfg.TLSAddr != "" {
		clientTLS = h.clientTLS()
	}
	h.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("clearhub"),
		sipgo.WithUserAgentHostname(cfg.Hostname),
		sipgo.WithUserAgenTLSConfig(clientTLS),
		sipgo.WithUserAgentParser(stackParser),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(h.strayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			// No read filter: the hub reads UDP itself (udpread.go) and
			// hands sipgo only what it is to handle.
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				// Idle TCP/TLS connections the hub dialled are closed
				// after IdleTimeout (accepted ones keep their own
				// deadlines, stream.go); dialled ones leave from the
				// node's SIP address (dial.go).
				TCP: &sip.TransportTCP{ReadTimeout: cfg.IdleTimeout, WriteTimeout: cfg.TransactionTimeout, DialerCreate: h.dialer("tcp")},
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{ReadTimeout: cfg.IdleTimeout, WriteTimeout: cfg.TransactionTimeout, DialerCreate: h.dialer("tls")}},
			}),
		),
	)
	if err != nil {
		h.closeListeners()
		return nil, fmt.Errorf("hub: sip user agent: %w", err)
	}
	h.srv, err = sipgo.NewServer(h.ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		h.ua.Close()
		h.closeListeners()
		return nil, fmt.Errorf("hub: sip server: %w", err)
	}
	// Every method goes to one handler: the hub decides what it carries.
	h.srv.OnNoRoute(h.handle)
	h.txl = h.ua.TransactionLayer()
	h.tpl = h.ua.TransportLayer()
	return h, nil
}

func (h *Hub) listen() error {
	cfg := h.cfg
	if cfg.UDPAddr != "" {
		la, err := net.ResolveUDPAddr("udp", cfg.UDPAddr)
		if err != nil {
			return fmt.Errorf("hub: UDP address %q: %w", cfg.UDPAddr, err)
		}
		c, err := net.ListenUDP("udp", la)
		if err != nil {
			return fmt.Errorf("hub: listen UDP %s: %w", cfg.UDPAddr, err)
		}
		// A large receive buffer keeps bursts from being dropped by the
		// kernel (the default loses datagrams from ~4,500 req/s).
		if err := c.SetReadBuffer(cfg.UDPReadBuffer); err != nil {
			h.log.Warn("set UDP read buffer", "err", err)
		}
		_ = c.SetWriteBuffer(cfg.UDPReadBuffer)
		h.udpStamps = kernelStamps(c) // stamp_linux.go
		h.udp = c
		if la, ok := c.LocalAddr().(*net.UDPAddr); ok {
			// The key sipgo files the listener under in its pool.
			h.udpLaddr = sip.Addr{IP: la.IP, Port: la.Port, Zone: la.Zone}
		}
		h.note("udp", c.LocalAddr())
	}
	if cfg.TCPAddr != "" {
		l, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("hub: listen TCP %s: %w", cfg.TCPAddr, err)
		}
		h.tcp = &streamListener{Listener: l, h: h}
		h.note("tcp", l.Addr())
	}
	if cfg.TLSAddr != "" {
		l, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			return fmt.Errorf("hub: listen TLS %s: %w", cfg.TLSAddr, err)
		}
		// Unknown client certificates end at the handshake (trust.go);
		// attribution to a network stays per request (identify.go).
		sc := h.serverTLS(cfg.ServerTLS)
		h.tlsL = &streamListener{Listener: l, config: sc, h: h}
		h.note("tls", l.Addr())
	}
	return nil
}

func (h *Hub) note(network string, a net.Addr) {
	h.addrs = append(h.addrs, a)
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	h.ports[network] = int(ap.Port())
	if ip := ap.Addr().Unmap(); !ip.IsUnspecified() {
		h.ips = append(h.ips, ip)
	}
}

func (h *Hub) port(transport string) int { return h.ports[strings.ToLower(transport)] }

// Addrs returns the bound listener addresses: UDP first, then TCP, then TLS
// (those configured). A *net.UDPAddr for UDP, *net.TCPAddr for TCP and TLS.
func (h *Hub) Addrs() []net.Addr { return append([]net.Addr(nil), h.addrs...) }

// Run serves SIP until ctx is cancelled or Close is called, then shuts the
// hub down (as Close) and returns. It returns the first listener error that
// was not caused by shutting down. Run may be called once.
func (h *Hub) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	started := false
	h.runOnce.Do(func() {
		started = true
		// Under closeMu: a Close that got here first has waited for
		// nothing and must not see goroutines added behind its Wait.
		h.closeMu.Lock()
		defer h.closeMu.Unlock()
		if h.isClosed {
			return
		}
		serve := func(name string, f func() error) {
			h.serve.Add(1)
			go func() {
				defer h.serve.Done()
				if err := f(); err != nil && h.ctx.Err() == nil {
					errc <- fmt.Errorf("hub: %s listener: %w", name, err)
				}
			}()
		}
		if h.udp != nil {
			// The hub's read loops (udpread.go) feed sipgo through sc.
			sc := newStackConn(h.udp)
			h.udpStack = sc
			for i := range udpReaders() {
				br := newBatchReader(h.udp)
				serve("UDP read "+strconv.Itoa(i), func() error { return h.readUDP(br, sc) })
			}
			serve("UDP", func() error { return h.srv.ServeUDP(sc) })
		}
		if h.tcp != nil {
			serve("TCP", func() error { return h.srv.ServeTCP(h.tcp) })
		}
		if h.tlsL != nil {
			serve("TLS", func() error { return h.srv.ServeTLS(h.tlsL) })
		}
		h.serve.Add(2)
		go func() {
			defer h.serve.Done()
			h.runExpiry()
		}()
		go func() {
			defer h.serve.Done()
			h.runAggregate()
		}()
	})
	if !started {
		return errors.New("hub: Run called twice")
	}
	var err error
	select {
	case <-ctx.Done():
	case <-h.ctx.Done():
	case err = <-errc:
	}
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the listeners, ends in-flight transactions and waits for every
// goroutine the hub started. It is safe to call more than once.
func (h *Hub) Close() error {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.isClosed {
		return h.closeErr
	}
	h.isClosed = true
	h.cancel()
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.closeListeners()
	h.serve.Wait()
	h.inflight.Wait()
	h.ua.Close()
	return h.closeErr
}

func (h *Hub) closeListeners() {
	if h.udp != nil {
		h.udp.Close()
	}
	if h.udpStack != nil {
		h.udpStack.Close()
	}
	if h.tcp != nil {
		h.tcp.Close()
	}
	if h.tlsL != nil {
		h.tlsL.Close()
	}
}

// enter registers a goroutine doing hub work; false once closing.
func (h *Hub) enter() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return false
	}
	h.inflight.Add(1)
	return true
}

func (h *Hub) leave() { h.inflight.Done() }

// go runs f as tracked hub work.
func (h *Hub) spawn(f func()) bool {
	if !h.enter() {
		return false
	}
	go func() {
		defer h.leave()
		defer h.recoverPanic("background")
		f()
	}()
	return true
}

// minLevel filters a handler to records at or above level (sipgo logs
// routine transaction events at Info).
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.Handler.WithGroup(n), m.level} }
