package hub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/raft"
)

// Attribution (RFC 5922 style): a request belongs to the member network the
// *connection* proves, never to anything written in a header. TLS peers are
// identified by their certificate (chain to the network's registered CA or a
// pinned fingerprint, and a subjectAltName that is one of the network's
// domains or edge hosts); UDP/TCP peers by their source address inside the
// network's lab prefixes.

// identity is a cached attribution result for one TLS connection, valid for
// the state index it was computed at.
type identity struct {
	index  uint64
	netID  string // "" when unattributable
	reason string
}

// certNames returns the lower-case DNS and IP subjectAltNames of leaf.
func certNames(leaf *x509.Certificate) []string { return routing.CertNames(leaf) }

// identifyCert returns the member network chain proves, or nil and a reason
// (routing.IdentifyCert, which hubctl network test runs on a member edge's
// certificate).
func identifyCert(st *raft.State, chain []*x509.Certificate, usage x509.ExtKeyUsage) (*raft.NetworkView, string) {
	return routing.IdentifyCert(st, chain, usage)
}

// errUnattributable is what an unattributable outbound TLS peer fails with.
var errUnattributable = errors.New("peer certificate is not a member network's")

// attribute returns the network that sent req over tc (the connection, for
// TLS; see tlsConnOf), or nil with a reason.
func (h *Hub) attribute(st *raft.State, req *sip.Request, tc net.Conn) (*raft.NetworkView, string) {
	if strings.EqualFold(req.Transport(), "TLS") {
		if tc == nil {
			return nil, "TLS connection not found"
		}
		return h.attributeTLS(st, tc)
	}
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return nil, "unparsable source address"
	}
	v := st.NetworkByAddr(ap.Addr())
	if v == nil {
		return nil, "source address not in any member network's lab prefixes"
	}
	return v, ""
}

// tlsConnOf digs the TLS connection out of a sipgo server transaction. It
// leans on sipgo's concrete types (*sip.ServerTx, *sip.TCPConnection);
// TestConcreteTypes fails if an upgrade changes them.
func tlsConnOf(tx sip.ServerTransaction) net.Conn {
	stx, ok := tx.(*sip.ServerTx)
	if !ok {
		return nil
	}
	tc, ok := stx.Connection().(*sip.TCPConnection)
	if !ok {
		return nil
	}
	switch c := tc.Conn.(type) {
	case *memberConn:
		return c
	case *tls.Conn:
		return c
	}
	return nil
}

func (h *Hub) attributeTLS(st *raft.State, c net.Conn) (*raft.NetworkView, string) {
	switch c := c.(type) {
	case *memberConn:
		if c.tls == nil {
			return nil, "not a TLS connection"
		}
		if id := c.ident.Load(); id != nil && id.index == st.Index {
			return lookupActive(st, id)
		}
		v, reason := identifyCert(st, c.tls.ConnectionState().PeerCertificates, x509.ExtKeyUsageClientAuth)
		if v != nil {
			// Optional source binding (Identity.tls_cidrs): a stolen key
			// alone does not make a connection the network's.
			if ap, err := netip.ParseAddrPort(remoteOf(c)); err != nil || !v.TLSSourceAllowed(ap.Addr()) {
				reason = "certificate of network " + v.GetId() + " presented from " + remoteOf(c) + ", outside its tls_cidrs"
				v = nil
			}
		}
		id := &identity{index: st.Index, reason: reason}
		if v != nil {
			id.netID = v.GetId()
		}
		c.ident.Store(id)
		return v, reason
	case *tls.Conn:
		// A connection the hub dialed to a member edge, on which the member
		// now sends a request: identified by its server certificate.
		return h.outIdentity(st, c)
	}
	return nil, "not a TLS connection"
}

func lookupActive(st *raft.State, id *identity) (*raft.NetworkView, string) {
	if id.netID == "" {
		return nil, id.reason
	}
	if v := st.Network(id.netID); v != nil {
		return v, ""
	}
	return nil, "network removed"
}

// outCache caches the identity of outbound TLS connections (few: one per
// member edge). It is cleared wholesale when it grows, which only costs a
// re-verification.
type outCache struct {
	mu sync.Mutex
	m  map[*tls.Conn]identity
}

func (h *Hub) outIdentity(st *raft.State, c *tls.Conn) (*raft.NetworkView, string) {
	h.out.mu.Lock()
	id, ok := h.out.m[c]
	h.out.mu.Unlock()
	if ok && id.index == st.Index {
		return lookupActive(st, &id)
	}
	v, reason := identifyCert(st, c.ConnectionState().PeerCertificates, x509.ExtKeyUsageServerAuth)
	id = identity{index: st.Index, reason: reason}
	if v != nil {
		id.netID = v.GetId()
	}
	h.out.mu.Lock()
	if h.out.m == nil || len(h.out.m) > 1024 {
		h.out.m = make(map[*tls.Conn]identity)
	}
	h.out.m[c] = id
	h.out.mu.Unlock()
	return v, reason
}

// clientTLS is the configuration for outbound TLS to member edges: the hub
// presents its certificate and accepts only a server certificate that chains
// to a registered member CA (or is pinned) and identifies some member
// network (verifyServer); the forwarding code then checks that it is the
// intended one (the dialled host alone cannot tell, see DESIGN.md).
func (h *Hub) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{h.cfg.ClientCertificate},
		InsecureSkipVerify: true, // verified by verifyServer against the cluster state
		VerifyConnection:   h.verifyServer,
		// Set: Go asks it instead of Certificates (a reloaded certificate).
		GetClientCertificate: h.cfg.GetClientCertificate,
	}
}
