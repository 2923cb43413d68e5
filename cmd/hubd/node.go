package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"clearhub/hub"
	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/metrics"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// hubNode is a running hubd: every part it started, in start order.
type hubNode struct {
	cfg      Config
	log      *slog.Logger
	id       string
	pkiDir   string
	ledger   *ledger.Ledger
	raft     *raft.Node
	admin    *admin.Server
	grpc     *grpc.Server
	adminLn  net.Listener
	sip      *hub.Hub
	sipDone  chan error
	metrics  *metrics.Server
	cancel   context.CancelFunc
	bgDone   chan struct{}
	adminAdr string
	// removed: the node was removed from the cluster (at start, or
	// while running): it serves no SIP and no state (see ready.go).
	removed bool
	// certs is the node certificate in use, reloaded on SIGHUP or a
	// changed file (reload.go); reloadDone closes when its watcher ends.
	certs      *certReloader
	reloadDone <-chan struct{}
	// queue is store and forward (queue.go); nil when queue.enabled is off.
	queue *queueWiring
	// lists is the resource list server (lists.go); nil without lists.domain.
	lists *listsWiring
	// rooms are the chat rooms (rooms.go); nil without rooms.domain.
	rooms *roomsWiring
	// msrp anchors MSRP sessions (msrp.go); nil without msrp.tcp/tls.
	msrp *msrpWiring
	// intercept is lawful interception and SIP capture (intercept.go);
	// echo the echo user (echo.go), nil without hub.service_domain.
	intercept *interceptWiring
	echo      *echoWiring
	// console is the operator web console (console.go); nil without
	// console.addr.
	console *consoleWiring
}

const certTTL = 365 * 24 * time.Hour

// start brings a node up: identity, certificates (made or obtained by
// joining), ledger, raft, admin API, SIP, metrics. On error everything
// already started is stopped again.
func start(ctx context.Context, cfg Config, log *slog.Logger, level admin.LogLevel) (_ *hubNode, err error) {
	n := &hubNode{cfg: cfg, log: log, pkiDir: filepath.Join(cfg.DataDir, "pki")}
	defer func() {
		if err != nil {
			n.shutdown()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	// 1. Node identity, kept in the data directory so raft state and node
	// id can never disagree.
	if n.id, err = nodeID(cfg); err != nil {
		return nil, err
	}
	n.log = log.With("node", n.id)

	// 2. Certificates: join an existing cluster (first start only), or
	// make/load our own development CA.
	joining := cfg.Join.Addr != "" && !fileExists(filepath.Join(n.pkiDir, pki.CACertFile))
	if joining {
		if err := n.join(ctx); err != nil {
			return nil, err
		}
	}
	ca, nodeCert, err := n.certificates()
	if err != nil {
		return nil, err
	}
	if _, err := ca.LoadOrIssue(filepath.Join(n.pkiDir, "operator.crt"), filepath.Join(n.pkiDir, "operator.key"),
		pki.RoleOperator, "operator", nil, certTTL); err != nil {
		return nil, fmt.Errorf("operator certificate: %w", err)
	}
	signer, err := loadOrCreateSigner(filepath.Join(n.pkiDir, "audit-ed25519.key"))
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	certFile, keyFile := n.nodeCertFiles()
	n.certs = newCertReloader(certFile, keyFile, nodeCert, ca.Pool(), n.log.With("component", "certs"))
	peerTLS := nodeTLS(ca, nodeCert).reloading(n.certs)

	// 3. Audit ledger: before anything can carry traffic.
	lopts := ledgerOptions(cfg, n.id, signer, n.log.With("component", "ledger"))
	ledgerMetrics := metrics.NewLedgerMetrics()
	lopts.Metrics = ledgerMetrics
	n.ledger, err = ledger.Open(ctx, lopts)
	if err != nil {
		return nil, fmt.Errorf("audit ledger: %w", walHint(err, cfg.DataDir))
	}

	// 4. Raft: bootstrap a new single-node cluster unless joining or
	// restarting.
	reg := metrics.NewRegistry()
	raftMetrics := metrics.NewRaftMetrics()
	raft.SetMetrics(raftMetrics) // process-wide: hashicorp/raft's go-metrics sink
	rcfg := raft.DefaultConfig()
	rcfg.ID = n.id
	rcfg.Dir = filepath.Join(cfg.DataDir, "raft")
	rcfg.BindAddr = cfg.Raft.Addr
	rcfg.Advertise = cfg.Raft.Advertise
	rcfg.ServerTLS = peerTLS.server
	rcfg.ClientTLS = peerTLS.client
	rcfg.Bootstrap = cfg.Join.Addr == "" && cfg.Raft.Bootstrap == "auto"
	rcfg.Logger = n.log.With("component", "raft")
	if n.raft, err = raft.Open(ctx, rcfg); err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	// Interception ledger and collectors (intercept.go).
	if n.intercept, err = startIntercept(ctx, cfg, n.id, signer, nodeCert, n.raft.State, n.log.With("component", "intercept")); err != nil {
		return nil, err
	}
	if err := n.intercept.register(reg); err != nil {
		return nil, err
	}

	// 5. Admin API: served before we ask to become a voter, because the
	// leader forwards through it.
	var queueBackend admin.QueueBackend
	if cfg.Queue.Enabled {
		n.queue = &queueWiring{}
		queueBackend = n.queue
	}
	n.admin, err = admin.NewServer(admin.Options{
		NodeID:        n.id,
		CA:            ca,
		NodeClientTLS: peerTLS.client,
		Store:         n.raft,
		Auditor:       n.ledger,
		Ledger:        n.ledger,
		Logger:        n.log.With("component", "admin"),
		Registerer:    reg,
		LogLevel:      level,
		Version:       buildVersion(),
		Queue:         queueBackend,

		InterceptLedger: n.intercept.ledger,
		Capture:         n.intercept.captureCollector(),

		RoomsDomain:     cfg.Rooms.Domain,
		RoomsMaxMembers: cfg.Rooms.MaxMembers,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	n.adminLn, err = net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin.addr: %w", err)
	}
	n.adminAdr = n.adminLn.Addr().String()
	n.grpc = n.admin.NewGRPCServer(adminServerTLS(ca, n.certs), readyGate{n.raft}.serverOptions()...)
	if err := n.startConsole(ca, reg); err != nil { // console.go: registers on n.grpc before it serves
		return nil, err
	}
	go n.grpc.Serve(n.adminLn)
	// hubctl --data finds the node through this file, also while it restores.
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "admin.addr"), []byte(n.adminAdr+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write admin.addr: %w", err)
	}

	if joining {
		jctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := admin.AddSelfAsVoter(jctx, cfg.Join.Addr, peerTLS.client, n.id, n.raftAdvertise())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("join: become a voter through %s: %w", cfg.Join.Addr, err)
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	n.cancel, n.bgDone = cancel, make(chan struct{})
	go n.registerSelf(bg, signer.Public().(ed25519.PublicKey))
	n.reloadDone = n.certs.watch(bg, certReloadEvery)

	// 6. Metrics and health: up while the node restores, so /readyz can
	// say why it is not ready.
	if cfg.HTTP.Addr != "" {
		if err := metrics.RegisterLedgerScrub(reg, n.ledger); err != nil {
			return nil, err
		}
		if err := metrics.RegisterRaft(reg, n.raft); err != nil {
			return nil, err
		}
		if err := ledgerMetrics.Register(reg, n.ledger); err != nil {
			return nil, err
		}
		if err := raftMetrics.Register(reg, n.raft); err != nil {
			return nil, err
		}
		n.certs.reloads = metrics.NewCertReloads()
		if err := reg.Register(n.certs.reloads); err != nil {
			return nil, fmt.Errorf("register certificate reloads: %w", err)
		}
		if err := metrics.RegisterCertExpiry(reg, metrics.CertSources{Local: n.localCerts(ca), State: n.raft.State}); err != nil {
			return nil, err
		}
		if err := metrics.RegisterBuildInfo(reg, buildVersion()); err != nil {
			return nil, err
		}
		if n.metrics, err = metrics.Listen(metrics.Config{Addr: cfg.HTTP.Addr, Gatherer: reg, Source: n.raft,
			Logger: n.log.With("component", "http"), Pprof: cfg.HTTP.Pprof, Checks: []func() error{n.registered, n.admin.DrainCheck}}); err != nil {
			return nil, fmt.Errorf("http.addr: %w", err)
		}
	}

	// 7. Serve nothing from state older than what this node had when it
	// stopped: the SIP plane opens only once the log is re-applied.
	if err := n.awaitRestored(ctx); err != nil {
		return nil, err
	}

	// 8. SIP plane.
	if !n.removed && (cfg.SIP.UDP != "" || cfg.SIP.TCP != "" || cfg.SIP.TLS != "") {
		hcfg := hub.Config{
			NodeID:             n.id,
			UDPAddr:            cfg.SIP.UDP,
			TCPAddr:            cfg.SIP.TCP,
			TLSAddr:            cfg.SIP.TLS,
			Hostname:           cfg.SIP.Hostname,
			ServerTLS:          serveReloaded(sipServerTLS(nodeCert), n.certs),
			ClientCertificate:  nodeCert,
			TransactionTimeout: cfg.SIP.TransactionTimeout,
			IdleTimeout:        cfg.SIP.IdleTimeout,
			HeaderTimeout:      cfg.SIP.HeaderTimeout,
			HandshakeTimeout:   cfg.SIP.HandshakeTimeout,
			MaxConnections:     cfg.SIP.MaxConnections,
			RefusalsPerSource:  cfg.SIP.RefusalsPerSource,
			AggregateInterval:  cfg.SIP.AggregateInterval,
			AuditKeepalives:    cfg.SIP.AuditKeepalives,
			DialogRouteTTL:     cfg.SIP.DialogRouteTTL,
			RouteSecret:        routeSecret(ca),
			Logger:             n.log.With("component", "sip"),
			Registerer:         reg,

			MaxConnectionsPerSource:  cfg.SIP.MaxConnectionsPerSource,
			MaxConnectionsPerNetwork: cfg.SIP.MaxConnectionsPerNetwork,
			RateLimits:               cfg.SIP.RateLimits.hub(),
			MaxTransactions:          cfg.SIP.MaxTransactions,
			MaxPendingAppends:        cfg.SIP.MaxPendingAppends,
			QueueDelayTarget:         cfg.SIP.QueueDelayTarget,
			RetransmissionCache:      int64(cfg.SIP.RetransmissionCacheMB) << 20,
		}
		// New outbound handshakes take a reloaded certificate (reload.go).
		hcfg.GetClientCertificate = n.certs.GetClientCertificate
		if n.queue != nil {
			hcfg.Deferrer = n.queue // store and forward (queue.go)
		}
		if d := strings.ToLower(cfg.Lists.Domain); d != "" {
			n.lists = &listsWiring{domain: d} // lists.go
			if hcfg.Hosted == nil {
				hcfg.Hosted = map[string]hub.HostedService{}
			}
			hcfg.Hosted[d] = n.lists
		}
		if d := strings.ToLower(cfg.Rooms.Domain); d != "" {
			n.rooms = &roomsWiring{domain: d} // rooms.go
			if hcfg.Hosted == nil {
				hcfg.Hosted = map[string]hub.HostedService{}
			}
			hcfg.Hosted[d] = n.rooms
		}
		hcfg.Tap = n.intercept // intercept.go
		if d := strings.ToLower(cfg.Hub.ServiceDomain); d != "" {
			n.echo = newEchoWiring(d, n.id) // echo.go
			if hcfg.Hosted == nil {
				hcfg.Hosted = map[string]hub.HostedService{}
			}
			hcfg.Hosted[d] = n.echo
		}
		if cfg.MSRP.TCP != "" || cfg.MSRP.TLS != "" {
			if n.msrp, err = n.startMSRP(bg, cfg, reg); err != nil { // msrp.go
				return nil, err
			}
			hcfg.Anchor = n.msrp.anchor()
		}
		if n.sip, err = hub.New(hcfg, n.raft, n.ledger); err != nil {
			return nil, fmt.Errorf("sip: %w", err)
		}
		if n.echo != nil {
			n.echo.sip.Store(n.sip)
		}
		if n.queue != nil {
			if err := n.startQueue(bg, n.queue, n.sip, sipHostname(cfg, n.sip), reg); err != nil {
				return nil, err
			}
		}
		if n.lists != nil {
			if err := n.startLists(bg, n.lists, n.sip, reg); err != nil {
				return nil, fmt.Errorf("lists: %w", err)
			}
		}
		if n.rooms != nil {
			if err := n.startRooms(n.rooms, n.sip, reg); err != nil {
				return nil, err
			}
		}
		n.sipDone = make(chan error, 1)
		go func() { n.sipDone <- n.sip.Run(bg) }()
		n.admin.OnDrain(n.sip.SetDraining) // hubctl cluster drain
	}
	return n, nil
}

// certificates loads the cluster CA and this node's certificate: the
// configured files (tls.*) when given, else the development PKI in
// data_dir/pki, made on first start and reissued when addresses change.
func (n *hubNode) certificates() (*pki.CA, tls.Certificate, error) {
	t := n.cfg.TLS
	var ca *pki.CA
	var err error
	if t.CACert != "" {
		certPEM, rerr := os.ReadFile(t.CACert)
		if rerr != nil {
			return nil, tls.Certificate{}, fmt.Errorf("tls.ca_cert: %w", rerr)
		}
		keyPEM, rerr := os.ReadFile(t.CAKey)
		if rerr != nil {
			return nil, tls.Certificate{}, fmt.Errorf("tls.ca_key: %w", rerr)
		}
		if ca, err = pki.ParseCA(certPEM, keyPEM); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("tls.ca_cert/tls.ca_key: %w", err)
		}
		// hubctl --data finds the CA certificate here.
		if err := pki.WriteFile(filepath.Join(n.pkiDir, pki.CACertFile), certPEM, 0o644); err != nil {
			return nil, tls.Certificate{}, err
		}
	} else if ca, err = pki.LoadOrCreateCA(n.pkiDir); err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("cluster CA: %w", err)
	}
	if t.Cert == "" {
		nodeCert, err := ca.LoadOrIssue(filepath.Join(n.pkiDir, "node.crt"), filepath.Join(n.pkiDir, "node.key"),
			pki.RoleNode, n.id, n.certHosts(), certTTL)
		if err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
		}
		return ca, nodeCert, nil
	}
	nodeCert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("tls.cert/tls.key: %w", err)
	}
	leaf, err := x509.ParseCertificate(nodeCert.Certificate[0])
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("tls.cert: %w", err)
	}
	if err := checkNodeCert(leaf, ca.Pool()); err != nil {
		return nil, tls.Certificate{}, err
	}
	if r := pki.RoleOf(leaf); r != pki.RoleNode {
		return nil, tls.Certificate{}, fmt.Errorf("tls.cert: role %q in the subject OU, want %q", r, pki.RoleNode)
	}
	nodeCert.Leaf = leaf
	return ca, nodeCert, nil
}

// join obtains a node certificate and the cluster CA from a member by
// proving the join token; the CA is checked against the token's fingerprint.
func (n *hubNode) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.JoinCluster(ctx, n.cfg.Join.Addr, n.cfg.Join.Token, admin.JoinParams{
		NodeID:    n.id,
		RaftAddr:  n.raftAdvertise(),
		AdminAddr: n.cfg.Admin.Addr,
		SIPAddrs:  n.sipAddrs(),
	})
	if err != nil {
		return fmt.Errorf("join %s: %w", n.cfg.Join.Addr, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"node.crt", res.CertPEM, 0o644},
		{"node.key", res.KeyPEM, 0o600},
		{pki.CAKeyFile, res.CA.KeyPEM, 0o600},
		{pki.CACertFile, res.CA.CertPEM, 0o644}, // last: its presence means "joined"
	} {
		if err := pki.WriteFile(filepath.Join(n.pkiDir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	n.log.Info("joined cluster: received node certificate", "via", n.cfg.Join.Addr)
	return nil
}

// registerSelf records this node (addresses, audit public key) in the
// replicated state once a leader is known, retrying until it lands.
func (n *hubNode) registerSelf(ctx context.Context, pub ed25519.PublicKey) {
	defer close(n.bgDone)
	want := &hubv1.Node{
		Id:        n.id,
		RaftAddr:  n.raftAdvertise(),
		AdminAddr: n.adminAdr,
		SipAddrs:  n.sipAddrs(),
		PublicKey: pub,
	}
	// Compare with the restored state, not the snapshot: else every
	// restart proposes the record again.
	if err := n.raft.WaitRestored(ctx); err != nil {
		return
	}
	if err := n.raft.WaitForLeader(ctx); err != nil {
		return
	}
	for delay := 50 * time.Millisecond; ; delay = min(delay*2, 2*time.Second) {
		if have := n.raft.State().Node(n.id); have != nil && proto.Equal(have, want) {
			return
		}
		cmd := &hubv1.Command{Version: 1, TimeUnixNano: time.Now().UnixNano(), Actor: "node:" + n.id,
			Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: want}}}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.admin.Propose(actx, cmd)
		cancel()
		if err == nil {
			n.log.Info("registered node in cluster state")
			return
		}
		n.log.Info("register node in cluster state: will retry", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// registered is a readiness check: the node's own record (admin address,
// audit key) is in the replicated state, so followers can forward to it.
func (n *hubNode) registered() error {
	if n.raft.State().Node(n.id) == nil {
		return fmt.Errorf("node %s not yet registered in the cluster state", n.id)
	}
	return nil
}

func (n *hubNode) raftAdvertise() string {
	if n.cfg.Raft.Advertise != "" {
		return n.cfg.Raft.Advertise
	}
	return n.cfg.Raft.Addr
}

func (n *hubNode) sipAddrs() []string {
	var out []string
	for _, a := range []string{n.cfg.SIP.UDP, n.cfg.SIP.TCP, n.cfg.SIP.TLS} {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// certHosts are the names and addresses the node certificate must cover.
func (n *hubNode) certHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", n.id}
	for _, a := range []string{n.cfg.Admin.Addr, n.raftAdvertise(), n.cfg.SIP.TLS, n.cfg.SIP.Hostname} {
		h := a
		if host, _, err := net.SplitHostPort(a); err == nil {
			h = host
		}
		if h != "" && !slices.Contains(hosts, h) && (net.ParseIP(h) == nil || !net.ParseIP(h).IsUnspecified()) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// printBanner says the node is up; start returns only once it is ready
// (state restored), so "is up" means it serves.
func (n *hubNode) printBanner(w io.Writer) {
	if n.removed {
		fmt.Fprintf(w, "clearhub node %s was removed from the cluster: not serving SIP (data in %s)\n", n.id, n.cfg.DataDir)
		return
	}
	fmt.Fprintf(w, "clearhub node %s is up (data in %s)\n", n.id, n.cfg.DataDir)
	for _, l := range []struct{ what, addr string }{
		{"SIP UDP", n.cfg.SIP.UDP}, {"SIP TCP", n.cfg.SIP.TCP}, {"SIP TLS", n.cfg.SIP.TLS},
		{"admin gRPC (mTLS)", n.adminAdr}, {"raft (mTLS)", n.raftAdvertise()}, {"metrics/health", httpURL(n.cfg.HTTP.Addr)},
	} {
		if l.addr != "" {
			fmt.Fprintf(w, "  %-18s %s\n", l.what, l.addr)
		}
	}
	n.console.printBanner(w) // console.go
	fmt.Fprintf(w, "point hubctl at it:\n  hubctl --addr %s --data %s cluster status\n", n.adminAdr, n.cfg.DataDir)
}

func httpURL(addr string) string {
	if addr == "" {
		return ""
	}
	return "http://" + addr + "/metrics"
}

// shutdown stops everything in reverse start order. Safe on a partly
// started node.
func (n *hubNode) shutdown() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n.metrics != nil {
		errs = append(errs, n.metrics.Close(ctx))
	}
	if n.sip != nil {
		errs = append(errs, n.sip.Close())
		if n.sipDone != nil {
			errs = append(errs, <-n.sipDone)
		}
	}
	if n.cancel != nil {
		n.cancel()
		n.queue.wait() // queue.go: its deliveries end with the SIP plane
		n.lists.close()
		n.rooms.close() // rooms.go
		n.msrp.close()  // msrp.go: MSRP legs end with the SIP plane
		n.echo.close()  // echo.go
		<-n.bgDone
		if n.reloadDone != nil {
			<-n.reloadDone
		}
	}
	if err := n.console.close(ctx); err != nil { // console.go
		errs = append(errs, fmt.Errorf("console: %w", err))
	}
	if n.grpc != nil {
		// Audit tails never end on their own and GracefulStop waits for
		// every stream: end them first (clients see Unavailable).
		n.admin.StopStreams()
		stopped := make(chan struct{})
		go func() { n.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpc.Stop()
		}
	}
	if n.admin != nil {
		n.admin.Close()
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Close())
	}
	errs = append(errs, n.intercept.close()) // intercept.go: after the SIP plane and the admin API
	if n.ledger != nil {
		errs = append(errs, n.ledger.Close())
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("shutdown", "err", err)
	} else {
		n.log.Info("stopped")
	}
	return err
}

// nodeID returns the configured id, or the one kept in the data directory,
// or makes one; a configured id that contradicts the kept one is refused.
func nodeID(cfg Config) (string, error) {
	path := filepath.Join(cfg.DataDir, "node-id")
	kept, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	have := strings.TrimSpace(string(kept))
	switch {
	case have != "" && cfg.NodeID != "" && have != cfg.NodeID:
		return "", fmt.Errorf("node_id %q: data directory %s belongs to node %q", cfg.NodeID, cfg.DataDir, have)
	case have != "":
		return have, nil
	}
	id := cfg.NodeID
	if id == "" {
		b := make([]byte, 3)
		rand.Read(b)
		id = "hub-" + hex.EncodeToString(b)
	}
	return id, pki.WriteFile(path, []byte(id+"\n"), 0o644)
}

type peerTLSConfigs struct{ server, client *tls.Config }

// nodeTLS is mutual TLS between nodes: both ends must present a node
// certificate from the cluster CA; member and operator certificates are
// refused.
func nodeTLS(ca *pki.CA, cert tls.Certificate) peerTLSConfigs {
	verify := pki.VerifyRole(pki.RoleNode)
	return peerTLSConfigs{
		server: &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{cert},
			ClientAuth:       tls.RequireAndVerifyClientCert,
			ClientCAs:        ca.Pool(),
			VerifyConnection: verify,
		},
		client: &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{cert},
			RootCAs:          ca.Pool(),
			VerifyConnection: verify,
		},
	}
}

// sipServerTLS presents the node certificate to members. Client
// authentication is the hub's own: it replaces these settings and checks
// member certificates against the CAs and pins the cluster state registers.
func sipServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
}

// routeSecret keys the HMAC in the hub's Record-Route so every node of the
// cluster can check a route another node wrote.
func routeSecret(ca *pki.CA) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(ca.Key)
	sum := sha256.Sum256(append([]byte("clearhub record-route v1\x00"), der...))
	return sum[:]
}

func loadOrCreateSigner(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an Ed25519 key", path)
		}
		return ek, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return k, pki.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
