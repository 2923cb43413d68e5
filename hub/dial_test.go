package hub

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Issue 9 wrong answer 9: connections the hub dials to member edges left
// from whatever address the kernel picked (127.0.0.1 on loopback), not the
// node's SIP address. The member edge must see the hub's listen IP.
func TestOutboundSourceAddress(t *testing.T) {
	const hubIP = "127.0.0.5"
	ca, err := pki.NewCA("members", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubCert := issue(t, ca, pki.RoleNode, "hub", hubIP)
	for _, network := range []string{"tcp", "tls"} {
		t.Run(network, func(t *testing.T) {
			var oa, ob memberOpts
			cfg := Config{NodeID: "n1", Hostname: hubIP, RouteSecret: []byte("s"), TransactionTimeout: 3 * time.Second}
			var idA, idB *hubv1.Identity
			switch network {
			case "tcp":
				oa, ob = memberOpts{network: "tcp"}, memberOpts{network: "tcp"}
				cfg.TCPAddr = hubIP + ":0"
				idA = &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}
				idB = &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}
			case "tls":
				oa = memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "a.example", "a.example"), ca)}
				ob = memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "b.example", "b.example"), ca)}
				cfg.TLSAddr = hubIP + ":0"
				cfg.ServerTLS = &tls.Config{Certificates: []tls.Certificate{hubCert}}
				cfg.ClientCertificate = hubCert
				idA = &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}
				idB = &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}
			}
			a := newMember(t, "a", "a.example", "127.0.0.2", oa)
			b := newMember(t, "b", "b.example", "127.0.0.3", ob)
			all := []hubv1.Service{hubv1.Service_SERVICE_IM}
			st := &fakeState{}
			st.set(&hubv1.ClusterState{
				Networks: []*hubv1.Network{
					{Id: "neta", Domains: []string{"a.example"}, Edges: []string{a.edge()}, Identity: idA},
					{Id: "netb", Domains: []string{"b.example"}, Edges: []string{b.edge()}, Identity: idB},
				},
				Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}}},
			})
			h := startHub(t, cfg, st, &memAudit{})
			hubAddr := h.Addrs()[0].String()

			if res := a.do(a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)); res.StatusCode != 200 {
				t.Fatalf("a->b over %s: %d %s", network, res.StatusCode, res.Reason)
			}
			got := b.expect(sip.MESSAGE)
			if src := hostOf(got.Source()); src != hubIP {
				t.Errorf("member edge saw the hub's connection from %s, want the hub's SIP address %s", got.Source(), hubIP)
			}
		})
	}
}
