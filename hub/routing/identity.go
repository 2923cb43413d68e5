package routing

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"

	"clearhub/raft"
)

// Which member network a certificate proves: the SIP plane's attribution
// of TLS peers (inbound clients and, with server auth, the member edges it
// dials), shared with hubctl network test.

// CertNames returns the lower-case DNS and IP subjectAltNames of leaf.
func CertNames(leaf *x509.Certificate) []string {
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	for _, d := range leaf.DNSNames {
		names = append(names, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// IdentifyCert returns the member network chain proves, or nil and a reason.
// usage is the extended key usage the leaf must allow (client auth for
// inbound connections, server auth for outbound ones).
func IdentifyCert(st *raft.State, chain []*x509.Certificate, usage x509.ExtKeyUsage) (*raft.NetworkView, string) {
	if len(chain) == 0 {
		return nil, "no client certificate"
	}
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	names := CertNames(leaf)
	var inter *x509.CertPool
	for _, n := range st.Networks() {
		v := st.Network(n.GetId())
		if v == nil {
			continue
		}
		hostOK := false
		for _, name := range names {
			if v.Hosts[name] {
				hostOK = true
				break
			}
		}
		if !hostOK {
			continue
		}
		if v.Pins[fp] {
			return v, ""
		}
		if v.CAPool == nil {
			continue
		}
		if inter == nil && len(chain) > 1 {
			inter = x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.CAPool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
			return v, ""
		}
	}
	return nil, "certificate not registered for any member network"
}
