package metrics

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/raft"
)

// LocalCert is a certificate of this node whose expiry is exported: kind
// is node, cluster_ca or operator.
type LocalCert struct {
	Kind string
	Cert *x509.Certificate
}

// CertSources says where the expiry gauges look, at every scrape.
type CertSources struct {
	// Local lists this node's certificates as they are now (after any
	// reload), e.g. the node certificate in use, the cluster CA and the
	// operator certificates in the data directory.
	Local func() []LocalCert
	// State is the replicated state whose networks' registered CAs are
	// exported (pins are fingerprints: they carry no expiry).
	State func() *raft.State
	// Now defaults to time.Now.
	Now func() time.Time
}

var descCertExpiry = prometheus.NewDesc("clearhub_cert_expiry_seconds",
	"Seconds until a certificate's notAfter (negative once expired), computed at scrape time: kind node (in use now), cluster_ca, operator (in the data directory) or member_ca (registered for network in the cluster state; pinned certificates are fingerprints and carry no expiry).",
	[]string{"kind", "network", "subject", "serial"}, nil)

// RegisterCertExpiry adds clearhub_cert_expiry_seconds, read from src at
// every scrape so it never goes stale across reloads or state changes.
// Alert when it falls below the renewal lead time (e.g. 14 days).
func RegisterCertExpiry(reg prometheus.Registerer, src CertSources) error {
	if src.Now == nil {
		src.Now = time.Now
	}
	if err := reg.Register(&certCollector{src: src}); err != nil {
		return fmt.Errorf("register certificate expiry metrics: %w", err)
	}
	return nil
}

type memberCA struct {
	network string
	cert    *x509.Certificate
}

type certCollector struct {
	src CertSources

	mu    sync.Mutex
	st    *raft.State // the state members was parsed from
	items []memberCA
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.src.Now()
	seen := map[string]bool{}
	emit := func(kind, network string, cert *x509.Certificate) {
		serial := hex.EncodeToString(cert.SerialNumber.Bytes())
		// One series per certificate: the same CA registered twice for a
		// network, or listed twice locally, is reported once.
		key := kind + "\x00" + network + "\x00" + string(cert.Raw)
		if seen[key] {
			return
		}
		seen[key] = true
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue,
			cert.NotAfter.Sub(now).Seconds(), kind, network, cert.Subject.String(), serial)
	}
	if c.src.Local != nil {
		for _, lc := range c.src.Local() {
			if lc.Cert != nil {
				emit(lc.Kind, "", lc.Cert)
			}
		}
	}
	if c.src.State != nil {
		for _, m := range c.members(c.src.State()) {
			emit("member_ca", m.network, m.cert)
		}
	}
}

// members parses the registered CAs of st, once per state.
func (c *certCollector) members(st *raft.State) []memberCA {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st == nil {
		return nil
	}
	if st == c.st {
		return c.items
	}
	var out []memberCA
	for _, n := range st.Networks() {
		for _, caPEM := range n.GetIdentity().GetCaPem() {
			rest := []byte(caPEM)
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				if b.Type != "CERTIFICATE" {
					continue
				}
				if cert, err := x509.ParseCertificate(b.Bytes); err == nil {
					out = append(out, memberCA{n.GetId(), cert})
				}
			}
		}
	}
	c.st, c.items = st, out
	return out
}

// NewCertReloads counts certificate reloads by result (ok or error; an
// unchanged file is not counted): alert on error.
func NewCertReloads() *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "cert", Name: "reloads_total",
		Help: "Reloads of the node certificate and key from disk (on SIGHUP or a changed file), by result: ok (new handshakes use it) or error (the old one stays in use; the log says why)."},
		[]string{"result"})
	v.WithLabelValues("ok")
	v.WithLabelValues("error")
	return v
}
