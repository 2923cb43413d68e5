package raft

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"clearhub/proto/hubv1"
)

// leafPEM is a self-signed end-entity certificate: the kind of file an
// operator passes as a member CA by mistake.
func leafPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "edge.a.example"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// AdmitCommand refuses what CheckCommand lets through but an operator would
// regret: networks nobody can identify, leaf certificates as CAs, lab
// prefixes overlapping another network's. Each refusal names the field.
func TestAdmitCommand(t *testing.T) {
	ca := newTestCA(t, "member ca")
	s := Empty()
	owner := testNetwork("owner")
	owner.Identity = &hubv1.Identity{Cidrs: []string{"127.0.0.2/32", "10.1.0.0/16"}}
	var err error
	if s, err = ApplyTo(s, 1, cmd(&hubv1.AddNetwork{Network: owner})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      *hubv1.Identity
		wantErr string
		is      error
	}{
		{"pin", &hubv1.Identity{Pins: []string{strings.Repeat("ab", 32)}}, "", nil},
		{"ca", &hubv1.Identity{CaPem: []string{ca.pem}}, "", nil},
		{"disjoint prefix", &hubv1.Identity{Cidrs: []string{"127.0.0.3/32", "10.2.0.0/16"}}, "", nil},
		{"no identity", nil, "network.identity: no ca_pem, pins or cidrs", ErrInvalid},
		{"empty identity", &hubv1.Identity{}, "network.identity: no ca_pem, pins or cidrs", ErrInvalid},
		{"tls prefixes alone identify nothing", &hubv1.Identity{TlsCidrs: []string{"192.0.2.0/24"}}, "network.identity: no ca_pem", ErrInvalid},
		{"leaf as ca", &hubv1.Identity{CaPem: []string{leafPEM(t)}}, "network.identity.ca_pem[0]: certificate 0", ErrInvalid},
		{"leaf after a ca", &hubv1.Identity{CaPem: []string{ca.pem + leafPEM(t)}}, "certificate 1", ErrInvalid},
		{"wider prefix over another's", &hubv1.Identity{Cidrs: []string{"127.0.0.0/8"}}, `network.identity.cidrs[0] "127.0.0.0/8"`, ErrAlreadyExists},
		{"narrower prefix inside another's", &hubv1.Identity{Cidrs: []string{"10.1.2.0/24"}}, `overlaps 10.1.0.0/16 of network "owner"`, ErrAlreadyExists},
		{"same prefix", &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}, "used by network", ErrAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testNetwork("new")
			n.Identity = tt.id
			err := AdmitCommand(s, cmd(&hubv1.AddNetwork{Network: n}))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want one containing %q wrapping %v", err, tt.wantErr, tt.is)
			}
		})
	}
	// The owner may still update itself with its own prefixes.
	upd := testNetwork("owner")
	upd.Identity = owner.Identity
	if err := AdmitCommand(s, cmd(&hubv1.UpdateNetwork{Network: upd})); err != nil {
		t.Fatalf("owner updating its own prefixes: %v", err)
	}
	// The FSM itself stays as lenient as it was: an old log that once added
	// a network without identity must replay to the same state.
	n := testNetwork("legacy")
	n.Identity = nil
	if _, err := ApplyTo(s, 2, cmd(&hubv1.AddNetwork{Network: n})); err != nil {
		t.Fatalf("apply of a logged command refused on replay: %v", err)
	}
}

// Internationalised domains are refused with the punycode to use instead.
func TestDomainPunycodeHint(t *testing.T) {
	n := testNetwork("idn")
	n.Domains = []string{"bücher.example"}
	err := ValidateNetwork(n)
	if err == nil || !strings.Contains(err.Error(), `"xn--bcher-kva.example"`) {
		t.Fatalf("err = %v, want the punycode hint", err)
	}
}

// TLS source prefixes are validated like lab prefixes, stored masked, and
// bind the certificate to them.
func TestTLSPrefixes(t *testing.T) {
	n := testNetwork("tlsnet")
	n.Identity.TlsCidrs = []string{"not-a-prefix"}
	if err := ValidateNetwork(n); err == nil || !strings.Contains(err.Error(), "network.identity.tls_cidrs[0]") {
		t.Fatalf("err = %v, want the tls_cidrs field named", err)
	}
	n.Identity.TlsCidrs = []string{"192.0.2.9/24", "192.0.2.0/24"}
	if err := ValidateNetwork(n); err == nil || !strings.Contains(err.Error(), "duplicate prefix") {
		t.Fatalf("err = %v, want duplicate", err)
	}
	n.Identity.TlsCidrs = []string{"192.0.2.9/24", "2001:db8::/32"}
	s, err := ApplyTo(Empty(), 1, cmd(&hubv1.AddNetwork{Network: NormalizeNetwork(n)}))
	if err != nil {
		t.Fatal(err)
	}
	v := s.Network("tlsnet")
	if got := v.GetIdentity().GetTlsCidrs()[0]; got != "192.0.2.0/24" {
		t.Errorf("stored %q, want masked 192.0.2.0/24", got)
	}
	for addr, want := range map[string]bool{"192.0.2.77": true, "::ffff:192.0.2.1": true, "2001:db8::5": true, "198.51.100.1": false, "127.0.0.1": false} {
		if got := v.TLSSourceAllowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("TLSSourceAllowed(%s) = %v, want %v", addr, got, want)
		}
	}
	open := testNetwork("open")
	s2, err := ApplyTo(Empty(), 1, cmd(&hubv1.AddNetwork{Network: open}))
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Network("open").TLSSourceAllowed(netip.MustParseAddr("198.51.100.1")) {
		t.Error("a network without TLS prefixes must accept any source")
	}
}
