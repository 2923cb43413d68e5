package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// peerSerial handshakes with addr and returns the serial of the
// certificate the server presented (the handshake itself may then fail:
// the SIP port wants a member certificate).
func peerSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	var serial *big.Int
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // only the presented certificate is looked at
		VerifyConnection: func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber
			return nil
		},
	})
	if err == nil {
		c.Close()
	}
	if serial == nil {
		t.Fatalf("%s: no server certificate seen: %v", addr, err)
	}
	return serial
}

// A running node exports the operator's metrics, and a node certificate
// renewed on disk is served by the admin and SIP TLS ports at the next
// handshake, without a restart.
func TestNodeMetricsAndCertificateReload(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = "", "", freePort(t)
	cfg.Admin.Addr, cfg.Raft.Addr, cfg.HTTP.Addr = freePort(t), freePort(t), freePort(t)
	cfg.MSRP.TCP = freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := start(ctx, cfg, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer n.shutdown()

	resp, err := http.Get("http://" + cfg.HTTP.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"clearhub_ledger_append_duration_seconds", "clearhub_ledger_wal_fsync_duration_seconds",
		"clearhub_ledger_entries_appended_total", "clearhub_ledger_wal_bytes", "clearhub_ledger_last_checkpoint_timestamp_seconds",
		"clearhub_raft_last_contact_seconds", "clearhub_raft_transitions_total",
		`clearhub_cert_expiry_seconds{kind="node"`, `clearhub_cert_expiry_seconds{kind="cluster_ca"`, `clearhub_cert_expiry_seconds{kind="operator"`,
		"clearhub_cert_reloads_total", "clearhub_sip_lean_transactions", "clearhub_sip_invite_transactions",
		// The MSRP relay (msrp.go) and interception and capture (intercept.go):
		// no intercept.address or capture.address here, the series are served anyway.
		"clearhub_msrp_sessions", `clearhub_msrp_refusals_total{cause="pending_cap"}`, `clearhub_msrp_file_transfers_total{result="verified"}`,
		`clearhub_intercept_copies_dropped_total{reason="no_collector"}`, `clearhub_capture_frames_total{result="sent"}`,
	} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	before := n.certs.Current().Leaf.SerialNumber
	for _, addr := range []string{n.adminAdr, cfg.SIP.TLS} {
		if got := peerSerial(t, addr); got.Cmp(before) != 0 {
			t.Fatalf("%s serves serial %v, want %v", addr, got, before)
		}
	}
	ca, err := pki.LoadOrCreateCA(n.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM, err := ca.IssueKeyPair(pki.RoleNode, n.id, n.certHosts(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(filepath.Join(n.pkiDir, "node.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFile(filepath.Join(n.pkiDir, "node.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := n.certs.Reload(true); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	after := n.certs.Current().Leaf.SerialNumber
	if after.Cmp(before) == 0 {
		t.Fatal("serial unchanged after reload")
	}
	for _, addr := range []string{n.adminAdr, cfg.SIP.TLS} {
		if got := peerSerial(t, addr); got.Cmp(after) != 0 {
			t.Errorf("%s serves serial %v after the reload, want %v", addr, got, after)
		}
	}

	// Member CAs come from the replicated state at every handshake: a
	// network's CA replaced through the admin API takes effect on the next
	// handshake, without a restart.
	opPair, err := tls.LoadX509KeyPair(filepath.Join(n.pkiDir, "operator.crt"), filepath.Join(n.pkiDir, "operator.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := admin.Dial(ctx, n.adminAdr, &tls.Config{Certificates: []tls.Certificate{opPair}, RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := hubv1.NewAdminServiceClient(conn)
	memberCA := func(name string) (*pki.CA, tls.Certificate) {
		t.Helper()
		mca, err := pki.NewCA(name, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, _, _, err := mca.IssueKeyPair(pki.RoleMember, "edge.a.example", []string{"edge.a.example"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return mca, cert
	}
	ca1, cert1 := memberCA("member-ca-1")
	ca2, cert2 := memberCA("member-ca-2")
	netA := &hubv1.Network{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sips:edge.a.example:5061"},
		Identity: &hubv1.Identity{CaPem: []string{string(ca1.CertPEM)}}}
	if _, err := api.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: netA}); err != nil {
		t.Fatal(err)
	}
	handshakes := []struct {
		name     string
		cert     tls.Certificate
		accepted bool
	}{{"CA 1 registered: its member", cert1, true}, {"CA 1 registered: another CA's member", cert2, false}}
	check := func() {
		t.Helper()
		for _, h := range handshakes {
			if got := memberAccepted(t, cfg.SIP.TLS, h.cert); got != h.accepted {
				t.Errorf("%s: accepted %v, want %v", h.name, got, h.accepted)
			}
		}
	}
	check()
	netA.Identity = &hubv1.Identity{CaPem: []string{string(ca2.CertPEM)}}
	if _, err := api.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: netA, UpdateMask: []string{"identity"}}); err != nil {
		t.Fatal(err)
	}
	handshakes = []struct {
		name     string
		cert     tls.Certificate
		accepted bool
	}{{"CA replaced: the old CA's member", cert1, false}, {"CA replaced: the new CA's member", cert2, true}}
	check()
}

// memberAccepted handshakes with the SIP TLS port as a member edge and
// reports whether the hub kept the connection (a refused certificate ends
// in an alert right after the client's Finished).
func memberAccepted(t *testing.T, addr string, cert tls.Certificate) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, // the hub's certificate is not under test here
	})
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
