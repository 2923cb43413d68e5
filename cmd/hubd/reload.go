package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ops/admin"
	"clearhub/ops/metrics"
	"clearhub/ops/pki"
)

// certReloadEvery is how often the node certificate files are checked for
// a change (size or modification time), besides SIGHUP.
const certReloadEvery = 10 * time.Second

// certReloader holds the node certificate in use and re-reads it from its
// files on SIGHUP or when they change. Every TLS endpoint of the node takes
// it through GetCertificate/GetClientCertificate, so new handshakes use a
// renewed certificate without a restart; connections already open keep
// theirs. A file that fails the start-up checks (key pair, chain to the
// cluster CA, both usages, node role) is refused and the old one stays.
type certReloader struct {
	certFile, keyFile string
	roots             *x509.CertPool
	log               *slog.Logger
	reloads           *prometheus.CounterVec // optional

	cur atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serialises reloads
	stamp fileStamp
}

// fileStamp is what tells a changed file: size and mtime of both.
type fileStamp struct {
	certSize, keySize int64
	certMod, keyMod   time.Time
}

func stampOf(certFile, keyFile string) (fileStamp, error) {
	ci, err := os.Stat(certFile)
	if err != nil {
		return fileStamp{}, err
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{ci.Size(), ki.Size(), ci.ModTime(), ki.ModTime()}, nil
}

func newCertReloader(certFile, keyFile string, initial tls.Certificate, roots *x509.CertPool, log *slog.Logger) *certReloader {
	r := &certReloader{certFile: certFile, keyFile: keyFile, roots: roots, log: log}
	r.stamp, _ = stampOf(certFile, keyFile)
	c := initial
	r.cur.Store(&c)
	return r
}

// Current is the node certificate in use.
func (r *certReloader) Current() tls.Certificate { return *r.cur.Load() }

// GetCertificate serves the current certificate to TLS clients.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// GetClientCertificate presents the current certificate to TLS servers.
func (r *certReloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// loadNodeCert reads and checks a node certificate as hubd does at start.
func loadNodeCert(certFile, keyFile string, roots *x509.CertPool) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s/%s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certFile, err)
	}
	if err := checkNodeCert(leaf, roots); err != nil {
		return tls.Certificate{}, err
	}
	if role := pki.RoleOf(leaf); role != pki.RoleNode {
		return tls.Certificate{}, fmt.Errorf("%s: role %q in the subject OU, want %q", certFile, role, pki.RoleNode)
	}
	pair.Leaf = leaf
	return pair, nil
}

// Reload re-reads the files; force reloads even when they look unchanged
// (SIGHUP). It reports whether a new certificate is in use.
func (r *certReloader) Reload(force bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := stampOf(r.certFile, r.keyFile)
	if err != nil {
		if !force {
			return false, nil // being replaced (rename dance): look again next poll
		}
		return false, r.failed(fmt.Errorf("node certificate reload: %w", err))
	}
	if !force && st == r.stamp {
		return false, nil
	}
	// Remember the stamp even on failure: a bad file is reported once, not
	// every poll, and a fixed one (new mtime) is picked up.
	r.stamp = st
	pair, err := loadNodeCert(r.certFile, r.keyFile, r.roots)
	if err != nil {
		return false, r.failed(fmt.Errorf("node certificate reload (the previous certificate stays in use): %w", err))
	}
	if old := r.cur.Load(); old.Leaf != nil && old.Leaf.Equal(pair.Leaf) {
		return false, nil
	}
	r.cur.Store(&pair)
	r.count("ok")
	r.log.Info("node certificate reloaded; new TLS handshakes use it",
		"file", r.certFile, "subject", pair.Leaf.Subject.String(), "serial", pair.Leaf.SerialNumber.Text(16),
		"not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

func (r *certReloader) failed(err error) error {
	r.count("error")
	r.log.Error("certificate reload failed", "err", err)
	return err
}

func (r *certReloader) count(result string) {
	if r.reloads != nil {
		r.reloads.WithLabelValues(result).Inc()
	}
}

// watch reloads on SIGHUP and when the files change, until ctx ends. The
// SIGHUP handler is installed before watch returns (so a SIGHUP no longer
// kills the process); done closes when the goroutine has stopped.
func (r *certReloader) watch(ctx context.Context, every time.Duration) (done <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	d := make(chan struct{})
	go func() {
		defer close(d)
		defer signal.Stop(hup)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.log.Info("SIGHUP: reloading the node certificate")
				_, _ = r.Reload(true)
			case <-t.C:
				_, _ = r.Reload(false)
			}
		}
	}()
	return d
}

// serveReloaded makes a server configuration present r's current
// certificate at every handshake.
func serveReloaded(c *tls.Config, r *certReloader) *tls.Config {
	c.Certificates = nil
	c.GetCertificate = r.GetCertificate
	return c
}

// reloading makes both node-to-node configurations (raft, and the admin
// client that forwards to the leader) take r's current certificate.
func (p peerTLSConfigs) reloading(r *certReloader) peerTLSConfigs {
	serveReloaded(p.server, r)
	p.client.Certificates = nil
	p.client.GetClientCertificate = r.GetClientCertificate
	return p
}

// adminServerTLS is the admin API's server configuration with the current
// certificate (and the CA appended to its chain, as admin.ServerTLSConfig
// does) at every handshake.
func adminServerTLS(ca *pki.CA, r *certReloader) *tls.Config {
	c := admin.ServerTLSConfig(ca, r.Current())
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert := admin.ServerTLSConfig(ca, r.Current()).Certificates[0]
		return &cert, nil
	}
	return c
}

// nodeCertFiles are the files the node certificate is (re)loaded from.
func (n *hubNode) nodeCertFiles() (certFile, keyFile string) {
	if n.cfg.TLS.Cert != "" {
		return n.cfg.TLS.Cert, n.cfg.TLS.Key
	}
	return filepath.Join(n.pkiDir, "node.crt"), filepath.Join(n.pkiDir, "node.key")
}

// localCerts lists, at each scrape, the node certificate in use, the
// cluster CA and the operator certificate in the data directory.
func (n *hubNode) localCerts(ca *pki.CA) func() []metrics.LocalCert {
	return func() []metrics.LocalCert {
		out := []metrics.LocalCert{{Kind: "cluster_ca", Cert: ca.Cert}}
		if leaf := n.certs.Current().Leaf; leaf != nil {
			out = append(out, metrics.LocalCert{Kind: "node", Cert: leaf})
		}
		if b, err := os.ReadFile(filepath.Join(n.pkiDir, "operator.crt")); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
					out = append(out, metrics.LocalCert{Kind: "operator", Cert: c})
				}
			}
		}
		return out
	}
}
