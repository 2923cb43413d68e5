package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ops/metrics"
	"clearhub/ops/pki"
)

// writeNodeCert issues a node (or other role) certificate into dir's
// node.crt/node.key and returns its serial.
func writeNodeCert(t *testing.T, ca *pki.CA, dir string, role pki.Role) *big.Int {
	t.Helper()
	pair, certPEM, keyPEM, err := ca.IssueKeyPair(role, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Replace like an operator's renewal script: write aside, rename.
	for _, f := range []struct {
		name string
		data []byte
	}{{"node.key", keyPEM}, {"node.crt", certPEM}} {
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	return pair.Leaf.SerialNumber
}

// handshakeSerial dials a TLS server that serves the reloader's
// certificate and returns the serial the client saw.
func handshakeSerial(t *testing.T, r *certReloader, ca *pki.CA) *big.Int {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// A renewed node certificate is taken by the next handshake without a
// restart, on SIGHUP or when the files change; a certificate that fails
// the start-up checks is refused and the old one stays in use.
func TestNodeCertificateReload(t *testing.T) {
	ca, err := pki.NewCA("cluster", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first := writeNodeCert(t, ca, dir, pki.RoleNode)
	crt, key := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	initial, err := loadNodeCert(crt, key, ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	r := newCertReloader(crt, key, initial, ca.Pool(), slog.New(slog.DiscardHandler))
	r.reloads = metrics.NewCertReloads()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.reloads)
	count := func(result string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	if got := handshakeSerial(t, r, ca); got.Cmp(first) != 0 {
		t.Fatalf("first handshake serial %v, want %v", got, first)
	}
	if changed, err := r.Reload(false); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v", changed, err)
	}

	steps := []struct {
		name    string
		role    pki.Role
		force   bool
		changed bool
		ok, bad float64
	}{
		{"renewed, seen by the poll", pki.RoleNode, false, true, 1, 0},
		{"renewed, SIGHUP", pki.RoleNode, true, true, 2, 0},
		{"a member certificate is refused", pki.RoleMember, true, false, 2, 1},
	}
	want := first
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			// mtime granularity: make sure the poll sees a new stamp.
			time.Sleep(20 * time.Millisecond)
			serial := writeNodeCert(t, ca, dir, s.role)
			changed, err := r.Reload(s.force)
			if changed != s.changed || (err == nil) != s.changed {
				t.Fatalf("Reload = %v, %v; want changed %v", changed, err, s.changed)
			}
			if s.changed {
				want = serial
			}
			if got := handshakeSerial(t, r, ca); got.Cmp(want) != 0 {
				t.Fatalf("handshake serial %v, want %v", got, want)
			}
			if ok, bad := count("ok"), count("error"); ok != s.ok || bad != s.bad {
				t.Fatalf("reloads ok %v error %v, want %v %v", ok, bad, s.ok, s.bad)
			}
		})
	}

	// SIGHUP reaches the watcher (and no longer ends the process).
	ctx, cancel := context.WithCancel(context.Background())
	done := r.watch(ctx, time.Hour)
	serial := writeNodeCert(t, ca, dir, pki.RoleNode)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Current().Leaf.SerialNumber.Cmp(serial) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
