package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateCARoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != again.Fingerprint() {
		t.Fatalf("second load made a new CA: %s != %s", ca.Fingerprint(), again.Fingerprint())
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", fi.Mode(), err)
	}
	if _, err := LoadCA(t.TempDir()); !errors.Is(err, ErrNoCA) {
		t.Fatalf("LoadCA on empty dir: %v, want ErrNoCA", err)
	}
}

func TestIssueRolesAndVerify(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		issuer *CA
		role   Role
		want   Role
		verify bool // chains to ca
	}{
		{"node", ca, RoleNode, RoleNode, true},
		{"operator", ca, RoleOperator, RoleOperator, true},
		{"member", ca, RoleMember, RoleMember, true},
		{"foreign node", other, RoleNode, RoleNode, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pair, _, _, err := tc.issuer.IssueKeyPair(tc.role, "x.example", []string{"x.example", "127.0.0.1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := RoleOf(leaf); got != tc.want {
				t.Fatalf("role %q, want %q", got, tc.want)
			}
			_, verr := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if (verr == nil) != tc.verify {
				t.Fatalf("verify against ca: %v, want ok=%v", verr, tc.verify)
			}
			err = VerifyRole(RoleNode)(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
			if (err == nil) != (tc.role == RoleNode) {
				t.Fatalf("VerifyRole(node) on %s: %v", tc.role, err)
			}
		})
	}
}

func TestLoadOrIssueReissuesForNewHosts(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "n.crt"), filepath.Join(dir, "n.key")
	a, err := ca.LoadOrIssue(crt, key, RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.LoadOrIssue(crt, key, RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Certificate[0]) != string(b.Certificate[0]) {
		t.Fatal("same hosts: certificate was reissued")
	}
	c, err := ca.LoadOrIssue(crt, key, RoleNode, "n1", []string{"127.0.0.2"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Certificate[0]) == string(c.Certificate[0]) {
		t.Fatal("new host: certificate was not reissued")
	}
}
