// Package pki is the hub's certificate authority: the development CA a node
// makes for itself on first start, and the node, operator and member-network
// certificates it issues. A certificate's role travels in its Subject
// OrganizationalUnit so every listener can tell a node from an operator from
// a member network without a lookup.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Role is what a certificate may do.
type Role string

const (
	RoleNode     Role = "clearhub-node"     // a hub node: raft peers, internal RPCs
	RoleOperator Role = "clearhub-operator" // an operator: AdminService
	RoleMember   Role = "clearhub-member"   // a member network's SIP edge (lab certificates)
)

// File names inside a pki directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

var (
	ErrNoCA      = errors.New("no CA in directory")
	ErrWrongRole = errors.New("certificate has the wrong role")
	ErrNoPeer    = errors.New("no peer certificate")
)

// CA is a certificate authority with its private key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte
}

// LoadOrCreateCA loads DIR/ca.crt and DIR/ca.key, creating a fresh
// development CA there when neither exists.
func LoadOrCreateCA(dir string) (*CA, error) {
	ca, err := LoadCA(dir)
	if err == nil || !errors.Is(err, ErrNoCA) {
		return ca, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	ca, err = NewCA("clearhub development CA", 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA loads DIR/ca.crt and DIR/ca.key; the error wraps ErrNoCA when the
// certificate file is absent.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoCA, filepath.Join(dir, CACertFile))
	}
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// ParseCA builds a CA from PEM certificate and key, checking they match.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key pair: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("CA certificate %q is not a CA", cert.Subject.CommonName)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key is not a signer")
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: signer, KeyPEM: keyPEM}, nil
}

// NewCA makes a self-signed ECDSA P-256 CA.
func NewCA(name string, ttl time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"clearhub"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER))
}

// Save writes the CA into dir (key mode 0600).
func (ca *CA) Save(dir string) error {
	if err := WriteFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, CAKeyFile), ca.KeyPEM, 0o600)
}

// Pool returns a pool holding just this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Fingerprint is the CA certificate's SHA-256 fingerprint.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Issue signs a certificate for pub with role and commonName. hosts become
// subjectAltNames (IP addresses or DNS names). Node and member certificates
// serve both as TLS servers and clients; operator certificates as clients.
func (ca *CA) Issue(role Role, commonName string, hosts []string, pub crypto.PublicKey, ttl time.Duration) ([]byte, error) {
	return ca.issue(role, "", commonName, hosts, pub, ttl, time.Hour)
}

// issue signs a certificate; adminRole, when set, adds its OU beside the
// role's; backdate is how far NotBefore precedes now (clock skew).
func (ca *CA) issue(role Role, adminRole AdminRole, commonName string, hosts []string, pub crypto.PublicKey, ttl, backdate time.Duration) ([]byte, error) {
	if commonName == "" {
		return nil, errors.New("issue certificate: common name required")
	}
	ous := []string{string(role)}
	if adminRole != "" {
		ous = append(ous, adminRoleOUPrefix+string(adminRole))
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			CommonName:         commonName,
			Organization:       []string{"clearhub"},
			OrganizationalUnit: ous,
		},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if role != RoleOperator {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate for %q: %w", role, commonName, err)
	}
	return der, nil
}

// IssueKeyPair generates a P-256 key and issues a certificate for it.
func (ca *CA) IssueKeyPair(role Role, commonName string, hosts []string, ttl time.Duration) (tls.Certificate, []byte, []byte, error) {
	return ca.issueKeyPair(func(pub crypto.PublicKey) ([]byte, error) {
		return ca.Issue(role, commonName, hosts, pub, ttl)
	})
}

func (ca *CA) issueKeyPair(issue func(crypto.PublicKey) ([]byte, error)) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := issue(&key.PublicKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	return pair, certPEM, keyPEM, nil
}

// LoadOrIssue loads certFile/keyFile, or issues and writes them when absent
// or when the existing certificate no longer chains to ca.
func (ca *CA) LoadOrIssue(certFile, keyFile string, role Role, commonName string, hosts []string, ttl time.Duration) (tls.Certificate, error) {
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil &&
			RoleOf(leaf) == role && time.Now().Before(leaf.NotAfter) && leaf.CheckSignatureFrom(ca.Cert) == nil && coversHosts(leaf, hosts) {
			pair.Leaf = leaf
			return pair, nil
		}
	}
	pair, certPEM, keyPEM, err := ca.IssueKeyPair(role, commonName, hosts, ttl)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}

func coversHosts(leaf *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h != "" && leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// RoleOf returns the role a certificate carries ("" if none).
func RoleOf(c *x509.Certificate) Role {
	for _, ou := range c.Subject.OrganizationalUnit {
		switch r := Role(ou); r {
		case RoleNode, RoleOperator, RoleMember:
			return r
		}
	}
	return ""
}

// Fingerprint is the lower-case hex SHA-256 of the certificate's DER bytes.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// VerifyRole returns a tls.Config.VerifyConnection hook that insists the
// peer's verified leaf certificate carries role. Chain verification itself is
// left to the tls.Config (ClientCAs/RootCAs).
func VerifyRole(role Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return ErrNoPeer
		}
		if got := RoleOf(cs.PeerCertificates[0]); got != role {
			return fmt.Errorf("%w: peer %q is %q, want %q", ErrWrongRole, cs.PeerCertificates[0].Subject.CommonName, got, role)
		}
		return nil
	}
}

// WriteFile writes data atomically (temp file and rename) with perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}
