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

// Identity.tls_cidrs binds a network's certificate to source prefixes: the
// same certificate presented from another address is not the network's
// (audited 403 naming the binding), while the bound address keeps working
// and a network without the binding is attributed from anywhere.
func TestTLSSourceBinding(t *testing.T) {
	ca, err := pki.NewCA("members", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubCert := issue(t, ca, pki.RoleNode, "hub", "127.0.0.1")
	aCert := issue(t, ca, pki.RoleMember, "a.example", "a.example")
	a := newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "tls", tlsConf: memberTLS(aCert, ca)})
	b := newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "b.example", "b.example"), ca)})
	// a's key, stolen and used from another host.
	thief := newMember(t, "thief", "a.example", "127.0.0.4", memberOpts{network: "tls", tlsConf: memberTLS(aCert, ca)})
	// b's certificate from another host: b has no binding, so it is b.
	bAway := newMember(t, "b-away", "b.example", "127.0.0.5", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "b.example", "b.example"), ca)})

	all := []hubv1.Service{hubv1.Service_SERVICE_IM}
	st := &fakeState{}
	st.set(&hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{a.edge()},
				Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}, TlsCidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{b.edge()},
				Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}},
		},
		Policies: []*hubv1.Policy{
			{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}},
			{Destination: "neta", Rules: []*hubv1.PolicyRule{{Source: "netb", Services: all}}},
		},
	})
	au := &memAudit{}
	h := startHub(t, Config{
		NodeID: "n1", TLSAddr: "127.0.0.1:0", Hostname: "127.0.0.1",
		TransactionTimeout: 3 * time.Second,
		ServerTLS:          &tls.Config{Certificates: []tls.Certificate{hubCert}},
		ClientCertificate:  hubCert,
		RouteSecret:        []byte("s"),
	}, st, au)
	hubAddr := h.Addrs()[0].String()

	if res := a.do(a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)); res.StatusCode != 200 {
		t.Fatalf("a from its bound address: %d %s", res.StatusCode, res.Reason)
	}
	b.expect(sip.MESSAGE)

	stolen := thief.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)
	if res := thief.do(stolen); res.StatusCode != 403 {
		t.Fatalf("a's certificate from 127.0.0.4: got %d %s, want 403", res.StatusCode, res.Reason)
	}
	if e := au.waitAudit(t, ledger.KindRequest, "MESSAGE", 403, stolen.CallID().Value()); !strings.Contains(e.Reason, "outside its tls_cidrs") {
		t.Errorf("audit reason %q, want it to name the TLS source binding", e.Reason)
	}

	if res := bAway.do(bAway.newRequest(sip.MESSAGE, "sip:alice@a.example", hubAddr)); res.StatusCode != 200 {
		t.Fatalf("b (no binding) from another address: %d %s", res.StatusCode, res.Reason)
	}
	a.expect(sip.MESSAGE)
}
