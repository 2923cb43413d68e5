package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"clearhub/proto/hubv1"
)

func tlsNodeConfig(t *testing.T, ca *testCA, id string) Config {
	cfg := fastConfig(id, t.TempDir())
	cfg.BindAddr = "127.0.0.1:0"
	cfg.ServerTLS, cfg.ClientTLS = tlsConfigs(ca, ca.issue(t, "node", id))
	return cfg
}

// Three nodes over the real TLS transport on loopback form a cluster and
// replicate a write; a member certificate (same CA) and a node certificate
// from another CA are both refused at the Raft port.
func TestTLSCluster(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	ctx := ctxT(t)
	var nodes []*Node
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range 3 {
		cfg := tlsNodeConfig(t, ca, fmt.Sprintf("n%d", i))
		cfg.Bootstrap = i == 0
		n, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		if strings.HasSuffix(n.Addr(), ":0") || !strings.HasPrefix(n.Addr(), "127.0.0.1:") {
			t.Fatalf("advertised address %q", n.Addr())
		}
	}
	if err := nodes[0].WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		onLeader(t, nodes, func(l *Node) error { return l.AddVoter(ctx, n.ID(), n.Addr()) })
	}
	var idx uint64
	onLeader(t, nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("a")); return err })
	for _, n := range nodes {
		if err := n.WaitForApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
		if n.State().Network("a") == nil {
			t.Errorf("%s lacks network a", n.ID())
		}
	}

	other := newTestCA(t, "other ca")
	for _, tt := range []struct {
		name string
		cert tls.Certificate
	}{
		{"member cert, same CA", ca.issue(t, "member", "a.example")},
		{"operator cert, same CA", ca.issue(t, "operator", "admin")},
		{"node cert, other CA", other.issue(t, "node", "n9")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", nodes[0].Addr(), &tls.Config{
				MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tt.cert}, RootCAs: ca.pool, ServerName: "127.0.0.1",
			})
			if err == nil {
				// TLS 1.3: the server judges the client certificate after
				// the client's handshake returns; its alert arrives on read.
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Read(make([]byte, 1))
			}
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("connection with %s not refused: %v", tt.name, err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// The dialling side refuses a server that is not a hub node.
func TestTLSStreamLayerDialRefusesNonNode(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	member := ca.issue(t, "member", "a.example")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{member},
		ClientAuth: tls.RequireAnyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()

	_, cli := tlsConfigs(ca, ca.issue(t, "node", "n1"))
	dummy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dummy.Close()
	sl, err := NewTLSStreamLayer(dummy, nil, cli)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sl.Dial(hraft.ServerAddress(ln.Addr().String()), 5*time.Second)
	if err == nil {
		conn.Close()
		t.Fatal("Dial accepted a member certificate on the server side")
	}
	if !strings.Contains(err.Error(), "not a node") {
		t.Errorf("Dial error %v does not come from VerifyConnection", err)
	}
}

func TestNewTLSStreamLayerAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := NewTLSStreamLayer(ln, nil, &tls.Config{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unspecified listener address accepted: %v", err)
	}
	if _, err := NewTLSStreamLayer(ln, advertiseAddr("0.0.0.0:7000"), &tls.Config{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unspecified advertise address accepted: %v", err)
	}
	sl, err := NewTLSStreamLayer(ln, advertiseAddr("hub1.example:7000"), &tls.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sl.Addr().String(); got != "hub1.example:7000" {
		t.Errorf("Addr() = %q", got)
	}
}

// A peer that connects to the Raft port and never speaks TLS is dropped
// after the handshake timeout instead of holding a goroutine forever.
func TestTLSStreamLayerDropsSilentPeer(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	server, client := tlsConfigs(ca, ca.issue(t, "node", "n0"))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := NewTLSStreamLayer(ln, nil, client)
	if err != nil {
		t.Fatal(err)
	}
	layer.HandshakeTimeout = 200 * time.Millisecond
	defer layer.Close()
	done := make(chan error, 1)
	go func() {
		c, err := layer.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1)) // runs the handshake
		done <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("silent peer: read succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer still held after 5s with a 200ms handshake timeout")
	}
	// The server closed it: our read sees EOF or a reset.
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("server kept the silent connection open")
	}
}

// revocationLayers serves a TLSStreamLayer with serverCert on loopback and
// returns it with a dialling layer using clientCert; each checks peers
// against its own FSM's state.
func revocationLayers(t *testing.T, ca *testCA, serverCert, clientCert tls.Certificate) (srv, cli *TLSStreamLayer, srvFSM, cliFSM *FSM) {
	t.Helper()
	server, _ := tlsConfigs(ca, serverCert)
	_, client := tlsConfigs(ca, clientCert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	if srv, err = NewTLSStreamLayer(ln, nil, client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dummy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dummy.Close() })
	if cli, err = NewTLSStreamLayer(dummy, nil, client); err != nil {
		t.Fatal(err)
	}
	srvFSM, cliFSM = NewFSM(discardLogger(), nil), NewFSM(discardLogger(), nil)
	srv.SetState(srvFSM.State)
	cli.SetState(cliFSM.State)
	return srv, cli, srvFSM, cliFSM
}

// acceptRead accepts one connection on l and reads a byte from it (running
// the handshake); it returns the read's error.
func acceptRead(l *TLSStreamLayer) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

func revoke(t *testing.T, f *FSM, index uint64, r *hubv1.RevokeCertificate) {
	t.Helper()
	if res := applyLog(t, f, index, identityCmd(time.Now().UnixNano(), "root", r)); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// A node certificate in the replicated revocation list can no longer
// speak Raft: refused when it dials in, when it is dialled, by serial or
// by name, and on a connection made before the revocation.
func TestTLSStreamLayerRefusesRevoked(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	serverCert, clientCert := ca.issue(t, "node", "n0"), ca.issue(t, "node", "n1")
	bySerial := func(c tls.Certificate) *hubv1.RevokeCertificate {
		return &hubv1.RevokeCertificate{Serial: SerialString(c.Leaf.SerialNumber), Reason: "stolen"}
	}
	byName := func(c tls.Certificate) *hubv1.RevokeCertificate {
		return &hubv1.RevokeCertificate{Name: c.Leaf.Subject.CommonName}
	}
	for _, tc := range []struct {
		name          string
		onServer      *hubv1.RevokeCertificate // in the accepting node's state
		onClient      *hubv1.RevokeCertificate // in the dialling node's state
		dialErr       bool                     // Dial itself fails (the dialler refuses the server)
		serverRefuses bool                     // the accepted connection's first read fails as revoked
	}{
		{"nothing revoked", nil, nil, false, false},
		{"dialler revoked by serial", bySerial(clientCert), nil, false, true},
		{"dialler revoked by name", byName(clientCert), nil, false, true},
		{"server revoked by serial", nil, bySerial(serverCert), true, false},
		{"server revoked by name", nil, byName(serverCert), true, false},
		{"another certificate revoked", bySerial(ca.issue(t, "node", "n2")), nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli, srvFSM, cliFSM := revocationLayers(t, ca, serverCert, clientCert)
			if tc.onServer != nil {
				revoke(t, srvFSM, 1, tc.onServer)
			}
			if tc.onClient != nil {
				revoke(t, cliFSM, 1, tc.onClient)
			}
			done := acceptRead(srv)
			conn, err := cli.Dial(hraft.ServerAddress(srv.Addr().String()), 5*time.Second)
			if tc.dialErr {
				if err == nil || !strings.Contains(err.Error(), "revoked") {
					t.Fatalf("Dial to a revoked server: %v", err)
				}
				if err := <-done; err == nil {
					t.Fatal("server read succeeded after the dialler refused it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte{1}); err != nil && !tc.serverRefuses {
				t.Fatal(err)
			}
			err = <-done
			switch {
			case tc.serverRefuses && (err == nil || !strings.Contains(err.Error(), "revoked")):
				t.Fatalf("accepted a revoked dialler: %v", err)
			case !tc.serverRefuses && err != nil:
				t.Fatalf("refused a valid dialler: %v", err)
			}
		})
	}
}

// A connection established before the revocation ends on its next read,
// on both sides.
func TestTLSStreamLayerEndsRevokedConnection(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	serverCert, clientCert := ca.issue(t, "node", "n0"), ca.issue(t, "node", "n1")
	srv, cli, srvFSM, cliFSM := revocationLayers(t, ca, serverCert, clientCert)
	// The accepted side handshakes on its first read, as the Raft
	// transport's connection goroutine does.
	accepted := make(chan net.Conn, 1)
	go func() {
		defer close(accepted)
		c, err := srv.Accept()
		if err != nil {
			return
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			c.Close()
			return
		}
		accepted <- c
	}()
	conn, err := cli.Dial(hraft.ServerAddress(srv.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Both directions work before the revocation.
	buf := make([]byte, 1)
	if _, err := conn.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept or first read failed")
	}
	defer sc.Close()
	if _, err := sc.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	revoke(t, srvFSM, 1, &hubv1.RevokeCertificate{Serial: SerialString(clientCert.Leaf.SerialNumber)})
	revoke(t, cliFSM, 1, &hubv1.RevokeCertificate{Serial: SerialString(serverCert.Leaf.SerialNumber)})
	for name, c := range map[string]net.Conn{"accepted": sc, "dialled": conn} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("%s connection after the revocation: read %v, want a revocation error", name, err)
		}
	}
}

// Open wires the revocation check: once a node's certificate is revoked,
// the cluster stops replicating to it.
func TestTLSClusterCutsOffRevokedNode(t *testing.T) {
	ca := newTestCA(t, "hub ca")
	ctx := ctxT(t)
	var nodes []*Node
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	for i := range 3 {
		cfg := tlsNodeConfig(t, ca, fmt.Sprintf("n%d", i))
		cfg.Bootstrap = i == 0
		n, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	if err := nodes[0].WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		onLeader(t, nodes, func(l *Node) error { return l.AddVoter(ctx, n.ID(), n.Addr()) })
	}
	var idx uint64
	onLeader(t, nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("a")); return err })
	for _, n := range nodes {
		if err := n.WaitForApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	// n2 must not be the one that leads when we revoke it.
	if nodes[2].IsLeader() {
		t.Skip("n2 leads; the test needs it as a follower")
	}
	onLeader(t, nodes[:2], func(l *Node) (err error) {
		_, err = l.Apply(ctx, identityCmd(time.Now().UnixNano(), "root", &hubv1.RevokeCertificate{Name: "n2"}))
		return err
	})
	onLeader(t, nodes[:2], func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet("b")); return err })
	if err := nodes[1].WaitForApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := nodes[2].WaitForApplied(wctx, idx); err == nil {
		t.Fatal("the revoked node still receives the log")
	}
}
