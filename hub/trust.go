package hub

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"clearhub/ledger"
	"clearhub/raft"
)

// Handshake-time trust (RFC 5922 section 7.3 / RFC 5246 7.4.6: a server
// that requires client certificates may end the handshake when the chain is
// unacceptable). A TLS peer must present a certificate that chains to a CA
// some member network registered, or whose SHA-256 fingerprint some network
// pinned; anything else ends at the handshake, before a byte of SIP is read.
// Which network the peer is (subjectAltName against the network's domains
// and edge hosts) and whether it is active stays a per-request question
// (identify.go): a certificate from a registered CA with a name no network
// owns is authenticated but not attributable, and gets an audited 403.

// maxPeerChain bounds the certificates a peer may present: the path building
// work of a handshake stays small whatever a peer sends.
const maxPeerChain = 8

// trustIndex is the union of every network's registered CAs and pins for
// one cluster state, built once per state and shared by all handshakes.
type trustIndex struct {
	st    *raft.State
	roots *x509.CertPool // nil when no network registered a CA
	pins  map[string]bool
}

// trustCache holds the trustIndex of the latest state seen.
type trustCache struct {
	mu  sync.Mutex // serialises rebuilds
	cur atomic.Pointer[trustIndex]
}

// trust returns the trust index for st, building it on first use.
func (h *Hub) trust(st *raft.State) *trustIndex {
	if t := h.trusted.cur.Load(); t != nil && t.st == st {
		return t
	}
	h.trusted.mu.Lock()
	defer h.trusted.mu.Unlock()
	if t := h.trusted.cur.Load(); t != nil && t.st == st {
		return t
	}
	t := buildTrust(st)
	h.trusted.cur.Store(t)
	return t
}

func buildTrust(st *raft.State) *trustIndex {
	t := &trustIndex{st: st, pins: map[string]bool{}}
	if st == nil {
		return t
	}
	for _, n := range st.Networks() {
		if v := st.Network(n.GetId()); v != nil {
			for p := range v.Pins {
				t.pins[p] = true
			}
		}
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
				cert, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					continue
				}
				if t.roots == nil {
					t.roots = x509.NewCertPool()
				}
				t.roots.AddCert(cert)
			}
		}
	}
	return t
}

// refusal says why a peer certificate was refused at the handshake. label
// is the bounded metric label, detail the human-readable reason.
type refusal struct {
	label  string
	detail string
}

func (r *refusal) Error() string { return r.detail }

// check accepts chain when its leaf is pinned or chains, through the
// presented intermediates, to a registered CA for usage.
func (t *trustIndex) check(chain []*x509.Certificate, usage x509.ExtKeyUsage) *refusal {
	if len(chain) == 0 {
		return &refusal{"no_certificate", "no certificate presented"}
	}
	if len(chain) > maxPeerChain {
		return &refusal{"chain_too_long", fmt.Sprintf("%d certificates presented (at most %d)", len(chain), maxPeerChain)}
	}
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	if t.pins[hex.EncodeToString(sum[:])] {
		return nil
	}
	if t.roots == nil {
		return &refusal{"unknown_authority", "certificate not issued by any registered member CA (none registered) and not pinned"}
	}
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err == nil {
		return nil
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return &refusal{"unknown_authority", "certificate not issued by any registered member CA and not pinned"}
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return &refusal{"expired", "certificate expired or not yet valid"}
	case errors.As(err, &ci) && ci.Reason == x509.IncompatibleUsage:
		return &refusal{"key_usage", "certificate not valid for this use (extended key usage)"}
	}
	return &refusal{"invalid", "certificate does not verify: " + sanitize(err.Error())}
}

// serverTLS derives the listener's configuration from the configured one:
// a client certificate is requested, and each handshake gets a
// VerifyConnection bound to the remote address so that refusals can be
// logged and audited with it. VerifyConnection (unlike
// VerifyPeerCertificate) also runs on resumed sessions, so a session
// ticket cannot carry a certificate past a re-keyed or removed network.
func (h *Hub) serverTLS(configured *tls.Config) *tls.Config {
	base := configured.Clone()
	if base.MinVersion < tls.VersionTLS12 {
		base.MinVersion = tls.VersionTLS12
	}
	// RequestClientCert rather than RequireAnyClientCert: the missing
	// certificate is refused by verifyClient too, where it is logged,
	// counted and audited like any other refusal.
	base.ClientAuth = tls.RequestClientCert
	base.ClientCAs = nil
	base.VerifyPeerCertificate = nil
	base.VerifyConnection = nil
	base.GetConfigForClient = nil
	outer := base.Clone()
	outer.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		remote := remoteOf(hello.Conn)
		c := base.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error { return h.verifyClient(cs, remote) }
		return c, nil
	}
	// Should the listener ever be used without GetConfigForClient (it is
	// not), the handshake is still verified.
	outer.VerifyConnection = func(cs tls.ConnectionState) error { return h.verifyClient(cs, "") }
	return outer
}

// verifyClient is the inbound handshake check against the current state.
func (h *Hub) verifyClient(cs tls.ConnectionState, remote string) error {
	r := h.trust(h.state.State()).check(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
	if r == nil {
		return nil
	}
	h.handshakeRefused(r, cs.PeerCertificates, remote)
	return r
}

// handshakeRefused logs, counts and (asynchronously, on a bounded number of
// goroutines) audits a refused inbound handshake. A flood of refusals costs
// at most len(h.tlsSem) pending ledger appends; beyond that the audit entry
// is skipped (the counter still moves) so accepting never stalls.
func (h *Hub) handshakeRefused(r *refusal, chain []*x509.Certificate, remote string) {
	h.m.tlsRefused.WithLabelValues(r.label).Inc()
	subject, issuer := "", ""
	if len(chain) > 0 {
		subject = sanitize(chain[0].Subject.String())
		issuer = sanitize(chain[0].Issuer.String())
	}
	h.log.Info("TLS handshake refused", "remote", remote, "subject", subject, "issuer", issuer, "reason", r.detail)
	select {
	case h.tlsSem <- struct{}{}:
	default:
		return
	}
	reason := "TLS handshake refused: " + r.detail
	if subject != "" {
		reason += " (subject " + subject + ", issuer " + issuer + ")"
	}
	e := &ledger.Entry{
		Kind:      ledger.KindRequest,
		Method:    "TLS",
		Src:       remote,
		Transport: "tls",
		Status:    403,
		Reason:    reason,
	}
	if !h.spawn(func() {
		defer func() { <-h.tlsSem }()
		if _, err := h.audit.Append(h.ctx, e); err != nil {
			h.m.auditErrs.Inc()
			h.log.Error("audit append failed for a refused TLS handshake", "err", err, "remote", remote)
		}
	}) {
		<-h.tlsSem
	}
}

// verifyServer is the outbound handshake check: the member edge's server
// certificate must chain to a registered CA (or be pinned) and identify
// some member network. Which one the connection must belong to is checked
// by the forwarding code (peerIs) before anything is written: sipgo's
// dialler does not tell the TLS callback which edge it dialled (for an IP
// edge ServerName is empty, RFC 6066 section 3 forbids IP literals in SNI).
func (h *Hub) verifyServer(cs tls.ConnectionState) error {
	st := h.state.State()
	if r := h.trust(st).check(cs.PeerCertificates, x509.ExtKeyUsageServerAuth); r != nil {
		h.logOutboundRefusal(cs, r.detail)
		h.om.tlsOutRefused.WithLabelValues(r.label).Inc()
		return fmt.Errorf("member edge certificate refused: %w", r)
	}
	if v, why := identifyCert(st, cs.PeerCertificates, x509.ExtKeyUsageServerAuth); v == nil {
		h.logOutboundRefusal(cs, why)
		h.om.tlsOutRefused.WithLabelValues("unattributable").Inc()
		return fmt.Errorf("%w: %s", errUnattributable, why)
	}
	return nil
}

func (h *Hub) logOutboundRefusal(cs tls.ConnectionState, why string) {
	subject := ""
	if len(cs.PeerCertificates) > 0 {
		subject = sanitize(cs.PeerCertificates[0].Subject.String())
	}
	h.log.Warn("outbound TLS handshake refused", "server_name", cs.ServerName, "subject", subject, "reason", why)
}

// remoteOf is a helper for logs: the remote address of c, "" when unknown.
func remoteOf(c net.Conn) string {
	if c == nil || c.RemoteAddr() == nil {
		return ""
	}
	return c.RemoteAddr().String()
}
