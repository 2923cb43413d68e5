package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Dial returns a client connection to a node's admin address over TLS with
// tlsCfg (an operator or node certificate and the cluster CA as roots).
// Like grpc.NewClient it does not wait for the connection: the first RPC
// reports connection errors. ctx is only checked, reserved for a blocking
// variant.
func Dial(ctx context.Context, addr string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return dial(addr, tlsCfg)
}

func dial(addr string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	if tlsCfg == nil {
		return nil, errors.New("admin dial: TLS config required")
	}
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("admin dial %s: %w", addr, err)
	}
	return c, nil
}

// JoinParams describe the joining node.
type JoinParams struct {
	NodeID    string
	RaftAddr  string   // host:port other nodes reach this node's Raft on
	AdminAddr string   // host:port of this node's admin gRPC listener
	SIPAddrs  []string // host:port SIP listeners (optional)
}

// JoinResult is what a successful join hands the new node.
type JoinResult struct {
	// Cert is the node certificate with its private key, ready for TLS.
	Cert            tls.Certificate
	CertPEM, KeyPEM []byte
	// CA is the cluster CA (with key) the node now shares.
	CA              *pki.CA
	LeaderAdminAddr string
}

// JoinCluster asks the node at adminAddr for a node certificate, proving
// token. It trusts the server only if the chain it presents includes a CA
// certificate with the token's fingerprint that signs the server's
// certificate (the joiner has no other trust anchor yet). The key is a
// fresh ECDSA P-256 key generated here.
func JoinCluster(ctx context.Context, adminAddr, token string, p JoinParams) (*JoinResult, error) {
	info, err := ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("join: generate key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: p.NodeID},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("join: create CSR: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is not skipped: VerifyPeerCertificate pins the CA.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: pinnedCAVerifier(info.CAFingerprint),
	}
	conn, err := dial(adminAddr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := hubv1.NewJoinServiceClient(conn).Join(ctx, &hubv1.JoinRequest{
		Token: token, NodeId: p.NodeID, RaftAddr: p.RaftAddr, AdminAddr: p.AdminAddr,
		SipAddrs: p.SIPAddrs, CsrPem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
	})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", adminAddr, err)
	}
	ca, err := pki.ParseCA(resp.GetCaCertPem(), resp.GetCaKeyPem())
	if err != nil {
		return nil, fmt.Errorf("join: server sent a bad CA: %w", err)
	}
	if ca.Fingerprint() != info.CAFingerprint {
		return nil, fmt.Errorf("join: server sent CA %s, token names %s", ca.Fingerprint(), info.CAFingerprint)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(resp.GetNodeCertPem(), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("join: node certificate does not match our key: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("join: node certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("join: node certificate does not chain to the cluster CA: %w", err)
	}
	if pki.RoleOf(leaf) != pki.RoleNode {
		return nil, fmt.Errorf("join: issued certificate has role %q, want %q", pki.RoleOf(leaf), pki.RoleNode)
	}
	cert.Leaf = leaf
	return &JoinResult{Cert: cert, CertPEM: resp.GetNodeCertPem(), KeyPEM: keyPEM, CA: ca, LeaderAdminAddr: resp.GetLeaderAdminAddr()}, nil
}

// pinnedCAVerifier accepts a server chain only if it contains a CA
// certificate whose SHA-256 fingerprint is fp and the leaf verifies against
// that CA (with the other presented certificates as intermediates). The host
// name is not checked: any node of the pinned cluster may admit a joiner.
func pinnedCAVerifier(fp string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("join: server presented no certificate")
		}
		certs := make([]*x509.Certificate, 0, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return fmt.Errorf("join: server certificate %d: %w", i, err)
			}
			certs = append(certs, c)
		}
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		found := false
		for _, c := range certs[1:] {
			if c.IsCA && pki.Fingerprint(c) == fp {
				roots.AddCert(c)
				found = true
			} else {
				inter.AddCert(c)
			}
		}
		if !found {
			return fmt.Errorf("join: server chain has no CA with fingerprint %s (wrong cluster, or token for another CA)", fp)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("join: server certificate does not chain to the pinned CA: %w", err)
		}
		return nil
	}
}

// AddSelfAsVoter asks the node at adminAddr (any node: a follower forwards
// to the leader) to add id at raftAddr as a voter. tlsCfg carries the node
// certificate JoinCluster returned. Start Raft before calling it.
func AddSelfAsVoter(ctx context.Context, adminAddr string, tlsCfg *tls.Config, id, raftAddr string) error {
	conn, err := dial(adminAddr, tlsCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := hubv1.NewClusterInternalClient(conn).AddVoter(ctx, &hubv1.AddVoterRequest{Id: id, RaftAddr: raftAddr})
	if err != nil {
		return fmt.Errorf("add voter via %s: %w", adminAddr, err)
	}
	if err := responseError(resp); err != nil {
		return fmt.Errorf("add voter via %s: %w", adminAddr, err)
	}
	return nil
}

// NodeClientTLS is the client side of node-to-node admin calls: this node's
// certificate, the cluster CA as the only root, and a check that the server
// is a hub node.
func NodeClientTLS(ca *pki.CA, nodeCert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{nodeCert},
		RootCAs:          ca.Pool(),
		VerifyConnection: pki.VerifyRole(pki.RoleNode),
	}
}
