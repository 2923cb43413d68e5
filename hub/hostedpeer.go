package hub

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"strings"
)

// PeerIdentity says how the hub attributed a hosted request to its member
// network: the connection, never a header (the echo user reports it back so
// a member can check what the hub saw).
type PeerIdentity struct {
	Transport string // lower-case
	Source    string // remote ip:port
	Local     string // the hub's listener it arrived on, ip:port
	// Certificate describes the TLS client certificate that proved the
	// network ("CN=edge.a.example; DNS:edge.a.example; issuer CN=..."),
	// "" without TLS.
	Certificate string
	// LabPrefix is the network's lab prefix holding Source (UDP, TCP).
	LabPrefix string
}

// Peer returns how the request was attributed.
func (r *HostedRequest) Peer() PeerIdentity {
	c := r.c
	p := PeerIdentity{Transport: c.transport, Source: c.req.Source(), Local: c.h.localAddr(c.transport)}
	if strings.EqualFold(c.transport, "tls") {
		var tc *tls.Conn
		switch x := c.conn().(type) {
		case *memberConn:
			tc = x.tls
		case *tls.Conn:
			tc = x
		}
		if tc != nil {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				p.Certificate = describeCert(certs[0])
			}
		}
		return p
	}
	if ap, err := netip.ParseAddrPort(p.Source); err == nil && c.src != nil {
		for _, pre := range c.src.CIDRs {
			if pre.Contains(ap.Addr().Unmap()) {
				p.LabPrefix = pre.String()
				break
			}
		}
	}
	return p
}

func describeCert(leaf *x509.Certificate) string {
	parts := []string{"CN=" + leaf.Subject.CommonName}
	for _, n := range certNames(leaf) {
		parts = append(parts, "SAN "+n)
	}
	parts = append(parts, "issuer CN="+leaf.Issuer.CommonName)
	return strings.Join(parts, "; ")
}
