package main

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// checkNodeCert verifies an externally issued node certificate against the
// cluster CA once per extended key usage. The node presents it as a server
// (to members over SIP TLS, to peers over raft and admin) and as a client
// (dialling members and peers), so both are required. One Verify call with
// both usages would accept a certificate carrying either one: KeyUsages
// means "any of" (crypto/x509 VerifyOptions).
func checkNodeCert(leaf *x509.Certificate, roots *x509.CertPool) error {
	for _, u := range []struct {
		usage x509.ExtKeyUsage
		name  string
	}{
		{x509.ExtKeyUsageServerAuth, "serverAuth (TLS Web Server Authentication)"},
		{x509.ExtKeyUsageClientAuth, "clientAuth (TLS Web Client Authentication)"},
	} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u.usage}}); err != nil {
			var inv x509.CertificateInvalidError
			if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
				return fmt.Errorf("tls.cert: the certificate does not allow %s; a node certificate needs both serverAuth and clientAuth in its extended key usage", u.name)
			}
			return fmt.Errorf("tls.cert: not signed by tls.ca_cert for %s use: %w", u.name, err)
		}
	}
	return nil
}
