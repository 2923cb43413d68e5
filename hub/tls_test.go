package hub

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

func issue(t *testing.T, ca *pki.CA, role pki.Role, cn string, hosts ...string) tls.Certificate {
	t.Helper()
	c, _, _, err := ca.IssueKeyPair(role, cn, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func memberTLS(cert tls.Certificate, ca *pki.CA) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca.Pool(),                // verifies the hub's server certificate
		ClientAuth:   tls.RequireAnyClientCert, // the hub presents its certificate
		MinVersion:   tls.VersionTLS12,
	}
}

// Production mode: mutual TLS both ways. A member certificate from the
// registered CA is attributed by its subjectAltName; one from the same CA
// for a name no network owns completes the handshake and is refused per
// request with an audited 403; the hub's outbound connection verifies the
// member's server certificate.
func TestTLSMutualAuth(t *testing.T) {
	ca, err := pki.NewCA("members", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubCert := issue(t, ca, pki.RoleNode, "hub", "127.0.0.1")
	a := newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "a.example", "a.example"), ca)})
	b := newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "b.example", "b.example"), ca)})
	// Same registered CA, but a name no network owns: authenticated, not
	// attributable.
	stranger := newMember(t, "stranger", "a.example", "127.0.0.2", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "x.example", "x.example"), ca)})

	all := []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_SESSION}
	st := &fakeState{}
	st.set(&hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{a.edge()}, Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{b.edge()}, Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}},
		},
		Policies: []*hubv1.Policy{
			{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}},
			{Destination: "neta", Rules: []*hubv1.PolicyRule{{Source: "netb", Services: all}}},
		},
	})
	au := &memAudit{}
	h := startHub(t, Config{
		NodeID: "n1", TLSAddr: "127.0.0.1:0", Hostname: "127.0.0.1",
		// A TLS dial and handshake under -race on a loaded 2-core machine
		// can outlast the 300 ms default that the failover tests use.
		TransactionTimeout: 3 * time.Second,
		ServerTLS:          &tls.Config{Certificates: []tls.Certificate{hubCert}},
		ClientCertificate:  hubCert,
		RouteSecret:        []byte("s"),
	}, st, au)
	hubAddr := h.Addrs()[0].String()

	req := a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	if res := a.do(req); res.StatusCode != 200 {
		t.Fatalf("a->b over TLS: %d %s", res.StatusCode, res.Reason)
	}
	b.expect(sip.MESSAGE)
	e := au.waitAudit(t, ledger.KindRequest, "MESSAGE", 0, req.CallID().Value())
	if e.SrcNet != "neta" || e.DstNet != "netb" || e.Transport != "tls" {
		t.Errorf("entry = %+v", e)
	}
	if res := b.do(b.newRequest(sip.MESSAGE, "sip:alice@a.example", hubAddr)); res.StatusCode != 200 {
		t.Fatalf("b->a over TLS: %d %s", res.StatusCode, res.Reason)
	}
	a.expect(sip.MESSAGE)

	bad := stranger.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	if res := stranger.do(bad); res.StatusCode != 403 {
		t.Fatalf("registered CA, unowned name: got %d, want 403", res.StatusCode)
	}
	if e := au.waitAudit(t, ledger.KindRequest, "MESSAGE", 403, bad.CallID().Value()); !strings.Contains(e.Reason, "unattributable") {
		t.Errorf("audit reason %q", e.Reason)
	}
}

// The TLS connection is reached through sipgo's concrete types; this fails
// if an upgrade changes them (see tlsConnOf).
func TestConcreteTypes(t *testing.T) {
	var tx sip.ServerTransaction = &sip.ServerTx{}
	if _, ok := tx.(*sip.ServerTx); !ok {
		t.Fatal("ServerTx no longer implements ServerTransaction")
	}
	var c sip.Connection = &sip.TCPConnection{Conn: &memberConn{}}
	if tc, ok := c.(*sip.TCPConnection); !ok || tc.Conn == nil {
		t.Fatal("TCPConnection no longer carries its net.Conn")
	}
}
