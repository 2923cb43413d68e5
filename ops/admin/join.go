package admin

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// maxCSRBytes bounds the CSR a certificate-less caller may make us parse.
const maxCSRBytes = 16 << 10

// joinService serves JoinService to callers without a certificate; the join
// token is the credential.
type joinService struct {
	hubv1.UnimplementedJoinServiceServer
	s *Server
}

// Join verifies the token and the CSR, records the node (id and addresses)
// in the cluster state and returns a node certificate for the CSR's key, the
// CA certificate and key, and the leader's admin address. The joiner then
// starts Raft and calls ClusterInternal.AddVoter with its new certificate
// (see AddSelfAsVoter).
func (j *joinService) Join(ctx context.Context, req *hubv1.JoinRequest) (*hubv1.JoinResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	s := j.s
	info, err := s.tokens.verify(req.GetToken(), s.now())
	if err != nil {
		return nil, err
	}
	if err := checkTokenRecord(s.store.State(), info); err != nil {
		return nil, err
	}
	id := req.GetNodeId()
	if err := requireID("node_id", id); err != nil {
		return nil, err
	}
	if err := checkHostPort("raft_addr", req.GetRaftAddr()); err != nil {
		return nil, err
	}
	if err := checkHostPort("admin_addr", req.GetAdminAddr()); err != nil {
		return nil, err
	}
	for i, a := range req.GetSipAddrs() {
		if err := checkHostPort(fmt.Sprintf("sip_addrs[%d]", i), a); err != nil {
			return nil, err
		}
	}
	csr, err := parseCSR(req.GetCsrPem())
	if err != nil {
		return nil, err
	}
	for _, srv := range s.store.Status().Servers {
		if srv.ID == id {
			return nil, fmt.Errorf("node_id %q: %w: already a raft server (remove it first, or join with a new id)", id, raft.ErrAlreadyExists)
		}
	}
	hosts := joinHosts(req)
	der, err := s.ca.Issue(pki.RoleNode, id, hosts, csr.PublicKey, s.nodeCertTTL)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	actor := "join-token:" + info.ID
	cmd := s.command(actor)
	cmd.Op = &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{
		Id: id, RaftAddr: req.GetRaftAddr(), AdminAddr: req.GetAdminAddr(),
		SipAddrs: append([]string(nil), req.GetSipAddrs()...),
	}}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, "Join", actor, fmt.Sprintf("node %s joined: certificate issued for %v", id, hosts))
	resp := &hubv1.JoinResponse{
		NodeCertPem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CaCertPem:   s.ca.CertPEM,
		CaKeyPem:    s.ca.KeyPEM,
	}
	if lid, _ := s.store.Leader(); lid != "" {
		if n := s.store.State().Node(lid); n != nil {
			resp.LeaderAdminAddr = n.GetAdminAddr()
		}
	}
	return resp, nil
}

// parseCSR decodes one PEM CERTIFICATE REQUEST and checks its self-signature
// (proof the joiner holds the key).
func parseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, fieldErr("csr_pem", "required")
	}
	if len(b) > maxCSRBytes {
		return nil, fieldErr("csr_pem", fmt.Sprintf("larger than %d bytes", maxCSRBytes))
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fieldErr("csr_pem", "no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fieldErr("csr_pem", "unparseable: "+err.Error())
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fieldErr("csr_pem", "bad signature: "+err.Error())
	}
	return csr, nil
}

// joinHosts lists the distinct hosts of a joiner's addresses: they become
// the node certificate's subjectAltNames.
func joinHosts(req *hubv1.JoinRequest) []string {
	var hosts []string
	for _, a := range append([]string{req.GetRaftAddr(), req.GetAdminAddr()}, req.GetSipAddrs()...) {
		h, _, err := net.SplitHostPort(a)
		if err != nil || h == "" || contains(hosts, h) {
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}
