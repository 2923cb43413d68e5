package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"clearhub/ops/pki"
)

// An externally issued node certificate must allow both serverAuth and
// clientAuth; the old check (one Verify with both usages) passed a
// certificate with either one.
func TestCheckNodeCertNeedsBothUsages(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(signer *pki.CA, usages ...x509.ExtKeyUsage) *x509.Certificate {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: "n1", OrganizationalUnit: []string{string(pki.RoleNode)}},
			NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: usages,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.Cert, &key.PublicKey, signer.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	cases := []struct {
		name string
		leaf *x509.Certificate
		want string // "" = accepted
	}{
		{"both", issue(ca, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth), ""},
		{"server only", issue(ca, x509.ExtKeyUsageServerAuth), "does not allow clientAuth"},
		{"client only", issue(ca, x509.ExtKeyUsageClientAuth), "does not allow serverAuth"},
		{"code signing", issue(ca, x509.ExtKeyUsageCodeSigning), "does not allow serverAuth"},
		{"other CA", issue(other, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth), "not signed by tls.ca_cert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNodeCert(tc.leaf, ca.Pool())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tls.cert:") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
