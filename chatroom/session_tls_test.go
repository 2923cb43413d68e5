package chatroom

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

func testCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TCP/TLS/MSRP session participants (RFC 4975 14.1): the answer carries
// the node certificate's fingerprint (RFC 4572), the participant checks
// it, and the focus binds the session only to the certificate the offer
// named.
func TestSessionModeTLS(t *testing.T) {
	node := testCert(t, "hub")
	e := newEnv(t, func(c *Config) {
		c.SessionAddr, c.SessionTLSAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.SessionTLS = &tls.Config{Certificates: []tls.Certificate{node}, MinVersion: tls.VersionTLS12}
	})
	tests := []struct {
		name     string
		offerFP  func(own tls.Certificate) string
		wantBind bool
	}{
		{"fingerprint matches", func(own tls.Certificate) string { return "SHA-256 " + fpHex(own.Certificate[0]) }, true},
		{"fingerprint of another certificate", func(tls.Certificate) string { return "sha-256 " + fpHex(testCert(t, "other").Certificate[0]) }, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			own := testCert(t, "dave")
			ep := msrptest.New("127.0.0.1", &tls.Config{Certificates: []tls.Certificate{own}})
			defer ep.Close()
			sdp := strings.Replace(string(ep.SDP("a=setup:active", "a=fingerprint:"+tc.offerFP(own))), "TCP/MSRP", "TCP/TLS/MSRP", 1)
			user := []string{dave, "sip:erin@a.example"}[i]
			res := e.serve(invite(user, "call-tls-"+tc.name, []byte(sdp)), "a")
			path := answerPath(t, res)
			media := msrp.ParseSDP(res.Body())
			if media[0].Proto != msrp.ProtoTLS || !strings.HasPrefix(path, "msrps://") || !fingerprintMatches(node.Certificate[0], media[0].Fingerprint) {
				t.Fatalf("answer:\n%s", res.Body())
			}
			checked := false
			err := ep.Connect([]string{path}, func(cs *tls.ConnectionState) error {
				checked = true
				if !fingerprintMatches(cs.PeerCertificates[0].Raw, media[0].Fingerprint) {
					return errors.New("focus certificate does not match its a=fingerprint")
				}
				return nil
			})
			if !checked {
				t.Fatal("no TLS handshake")
			}
			if tc.wantBind != (err == nil) {
				t.Fatalf("connect: %v, want bound %v", err, tc.wantBind)
			}
		})
	}
	// Without a TLS listener the focus refuses TLS offers by name.
	e2 := newEnv(t, func(c *Config) { c.SessionAddr = "127.0.0.1:0" })
	ep := msrptest.New("127.0.0.1", nil)
	sdp := strings.Replace(string(ep.SDP()), "TCP/MSRP", "TCP/TLS/MSRP", 1)
	if res := e2.serve(invite(dave, "call-notls", []byte(sdp)), "a"); res.StatusCode != 488 || res.Reason != "Room Focus Takes TCP/MSRP Only" {
		t.Fatalf("TLS offer without TLS: %v", res)
	}
}
