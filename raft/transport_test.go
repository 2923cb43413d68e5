package raft

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
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
