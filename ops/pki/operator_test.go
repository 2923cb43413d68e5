package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAdminRoleOf(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(der []byte, err error) *x509.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pair, _, _, err := ca.IssueKeyPair(RoleNode, "k", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pub := pair.Leaf.PublicKey
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    AdminRole
		wantErr string
	}{
		// The development operator certificate hubd writes (no role OU)
		// keeps full rights.
		{"legacy operator", leaf(ca.Issue(RoleOperator, "operator", nil, pub, time.Hour)), AdminRoleAdmin, ""},
		{"admin", leaf(ca.IssueOperator("alice", AdminRoleAdmin, pub, time.Hour)), AdminRoleAdmin, ""},
		{"operator", leaf(ca.IssueOperator("bob", AdminRoleOperator, pub, time.Hour)), AdminRoleOperator, ""},
		{"auditor", leaf(ca.IssueOperator("carol", AdminRoleAuditor, pub, time.Hour)), AdminRoleAuditor, ""},
		{"readonly", leaf(ca.IssueOperator("dave", AdminRoleReadonly, pub, time.Hour)), AdminRoleReadonly, ""},
		{"lawful-intercept", leaf(ca.IssueOperator("lea", AdminRoleLawfulIntercept, pub, time.Hour)), AdminRoleLawfulIntercept, ""},
		{"node", leaf(ca.Issue(RoleNode, "node-a", nil, pub, time.Hour)), "", "not an operator"},
		{"member", leaf(ca.Issue(RoleMember, "a", nil, pub, time.Hour)), "", "not an operator"},
		{"unknown role", &x509.Certificate{Subject: pkix.Name{CommonName: "e", OrganizationalUnit: []string{string(RoleOperator), "clearhub-role-root"}}}, "", `unknown role "root"`},
		{"two roles", &x509.Certificate{Subject: pkix.Name{CommonName: "f", OrganizationalUnit: []string{string(RoleOperator), "clearhub-role-readonly", "clearhub-role-admin"}}}, "", "two roles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AdminRoleOf(tt.cert)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrWrongRole) {
					t.Fatalf("AdminRoleOf = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("AdminRoleOf = %q, %v; want %q", got, err, tt.want)
			}
			// Role certificates stay operator certificates for every
			// check that only knows the OU role.
			if RoleOf(tt.cert) != RoleOperator {
				t.Fatalf("RoleOf = %q", RoleOf(tt.cert))
			}
		})
	}

	// Per-person certificates are client-only and barely backdated, so a
	// revocation by name stops covering a replacement within a minute.
	c := leaf(ca.IssueOperator("alice", AdminRoleAuditor, pub, time.Hour))
	if age := time.Since(c.NotBefore); age > 2*time.Minute {
		t.Errorf("NotBefore backdated by %s", age)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v", c.ExtKeyUsage)
	}
}

func TestValidOperatorName(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"alice.smith@example.com", true},
		{"ops_1-b", true},
		{"A", true},
		{strings.Repeat("a", MaxOperatorNameLen), true},
		{strings.Repeat("a", MaxOperatorNameLen+1), false},
		{"", false},
		{"-alice", false},
		{".alice", false},
		{"alice smith", false},
		{"alice/../x", false},
		{"alice\n", false},
		{"CN=evil,OU=x", false},
		{"élodie", false},
	}
	for _, tt := range tests {
		err := ValidOperatorName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidOperatorName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		_, _, _, ierr := ca.IssueOperatorKeyPair(tt.name, AdminRoleReadonly, time.Hour)
		if (ierr == nil) != tt.ok {
			t.Errorf("IssueOperatorKeyPair(%q) = %v, want ok=%v", tt.name, ierr, tt.ok)
		}
	}
	if _, _, _, err := ca.IssueOperatorKeyPair("alice", "root", time.Hour); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("unknown role accepted: %v", err)
	}
}
