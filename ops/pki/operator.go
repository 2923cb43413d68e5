package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// AdminRole is what an operator certificate may do on the admin API. It
// travels in a second OrganizationalUnit, "clearhub-role-<role>", beside
// the certificate role RoleOperator, so node and member certificates are
// unchanged and one listener still tells them apart by OU alone.
type AdminRole string

const (
	// AdminRoleAdmin may do everything, cluster membership and certificate
	// revocation included.
	AdminRoleAdmin AdminRole = "admin"
	// AdminRoleOperator manages networks and policy and reads everything,
	// audit included, but changes neither membership nor revocations.
	AdminRoleOperator AdminRole = "operator"
	// AdminRoleAuditor reads and exports the audit ledger (checkpoints,
	// proofs, export, tail, scrub) and the cluster status, nothing else.
	AdminRoleAuditor AdminRole = "auditor"
	// AdminRoleReadonly reads networks, policy and status, never audit
	// bodies or exports.
	AdminRoleReadonly AdminRole = "readonly"
	// AdminRoleLawfulIntercept sets and reads lawful interception
	// warrants and reads the interception ledger (InterceptService),
	// nothing else; no other role may do either.
	AdminRoleLawfulIntercept AdminRole = "lawful-intercept"
)

// AdminRoles lists every admin role, most powerful first.
var AdminRoles = []AdminRole{AdminRoleAdmin, AdminRoleOperator, AdminRoleAuditor, AdminRoleReadonly, AdminRoleLawfulIntercept}

const adminRoleOUPrefix = "clearhub-role-"

// operatorBackdate is how far an operator certificate's NotBefore precedes
// its minting. Short, because a revocation by name covers certificates
// whose validity starts before it: a replacement minted a minute after the
// revocation works.
const operatorBackdate = time.Minute

// MaxOperatorNameLen bounds an operator certificate's common name.
const MaxOperatorNameLen = 64

// ParseAdminRole reads a role as the command line writes it.
func ParseAdminRole(s string) (AdminRole, error) {
	for _, r := range AdminRoles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (valid: admin, operator, auditor, readonly, lawful-intercept)", s)
}

// AdminRoleOf returns the admin role of an operator certificate. An
// operator certificate without a role OU is admin: that is what every
// operator certificate meant before roles existed (the development
// operator certificate hubd writes at first start among them). A
// certificate that is not an operator's, names an unknown role or names
// two has no role and gets an error.
func AdminRoleOf(c *x509.Certificate) (AdminRole, error) {
	if RoleOf(c) != RoleOperator {
		return "", fmt.Errorf("%w: %q is not an operator certificate", ErrWrongRole, c.Subject.CommonName)
	}
	var found AdminRole
	for _, ou := range c.Subject.OrganizationalUnit {
		v, ok := strings.CutPrefix(ou, adminRoleOUPrefix)
		if !ok {
			continue
		}
		r, err := ParseAdminRole(v)
		if err != nil {
			return "", fmt.Errorf("%w: certificate %q: %w", ErrWrongRole, c.Subject.CommonName, err)
		}
		if found != "" && found != r {
			return "", fmt.Errorf("%w: certificate %q names two roles, %s and %s", ErrWrongRole, c.Subject.CommonName, found, r)
		}
		found = r
	}
	if found == "" {
		return AdminRoleAdmin, nil
	}
	return found, nil
}

// ValidOperatorName checks the common name of a per-person operator
// certificate: it is what the audit trail and every admin log line name,
// and the file name hubctl writes, so it is kept to a login-like alphabet.
func ValidOperatorName(name string) error {
	if name == "" || len(name) > MaxOperatorNameLen {
		return fmt.Errorf("must be 1..%d characters", MaxOperatorNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("must start with a letter or digit")
		}
		if !alnum && c != '.' && c != '_' && c != '@' && c != '-' {
			return fmt.Errorf("character %q not allowed (letters, digits, '.', '_', '@' and '-')", c)
		}
	}
	return nil
}

// IssueOperator signs a client certificate for one person: common name
// name, role RoleOperator and admin role role.
func (ca *CA) IssueOperator(name string, role AdminRole, pub crypto.PublicKey, ttl time.Duration) ([]byte, error) {
	if err := ValidOperatorName(name); err != nil {
		return nil, fmt.Errorf("issue operator certificate: name %q: %w", name, err)
	}
	if _, err := ParseAdminRole(string(role)); err != nil {
		return nil, fmt.Errorf("issue operator certificate: %w", err)
	}
	return ca.issue(RoleOperator, role, name, nil, pub, ttl, operatorBackdate)
}

// IssueOperatorKeyPair generates a P-256 key and issues an operator
// certificate for it; it returns the pair and both PEM encodings.
func (ca *CA) IssueOperatorKeyPair(name string, role AdminRole, ttl time.Duration) (tls.Certificate, []byte, []byte, error) {
	return ca.issueKeyPair(func(pub crypto.PublicKey) ([]byte, error) {
		return ca.IssueOperator(name, role, pub, ttl)
	})
}
