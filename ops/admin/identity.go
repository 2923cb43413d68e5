package admin

import (
	"context"
	"fmt"
	"time"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Operator identities: certificate revocation, join-token records and
// WhoAmI. Revocations live in the replicated state; every node checks its
// own copy at the admin TLS handshake and again per call (auth.go).

// RevokeCertificate revokes one certificate by serial, or every
// certificate of a name issued before now. Refused when it would revoke
// the certificate making the request, so an admin cannot lock the last
// admin out by mistake.
func (s *Server) RevokeCertificate(ctx context.Context, req *hubv1.RevokeCertificateRequest) (*hubv1.Revocation, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	op := &hubv1.RevokeCertificate{Name: req.GetName(), Reason: req.GetReason()}
	switch {
	case req.GetSerial() == "" && req.GetName() == "":
		return nil, fieldErr("serial", "one of serial and name is required")
	case req.GetSerial() != "" && req.GetName() != "":
		return nil, fieldErr("serial", "give a serial or a name, not both")
	case req.GetSerial() != "":
		serial, ok := raft.ParseSerial(req.GetSerial())
		if !ok {
			return nil, &raft.FieldError{Field: "serial", Value: req.GetSerial(), Reason: "not a certificate serial number (hex, colons allowed, at most 20 octets)"}
		}
		op.Serial = serial
		if serial == c.Serial {
			return nil, fmt.Errorf("serial %s is the certificate making this request: revoke it with another admin certificate: %w", serial, raft.ErrFailedPrecondition)
		}
	case req.GetName() == c.Name:
		return nil, fmt.Errorf("name %q covers the certificate making this request: revoke it with another admin certificate: %w", c.Name, raft.ErrFailedPrecondition)
	}
	cmd := s.command(c.actor())
	cmd.Op = &hubv1.Command_RevokeCertificate{RevokeCertificate: op}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	what := "serial " + op.GetSerial()
	if op.GetSerial() == "" {
		what = fmt.Sprintf("name %q", op.GetName())
	}
	s.audit(ctx, "RevokeCertificate", c.actor(), fmt.Sprintf("revoke certificate %s: %s", what, op.GetReason()))
	for _, r := range s.store.State().Revocations() {
		if r.GetSerial() == op.GetSerial() && r.GetName() == op.GetName() {
			return r, nil
		}
	}
	return nil, fmt.Errorf("revocation of %s applied but not found in the state", what)
}

// ListRevocations returns the replicated revocation list.
func (s *Server) ListRevocations(ctx context.Context, _ *hubv1.ListRevocationsRequest) (*hubv1.ListRevocationsResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	return &hubv1.ListRevocationsResponse{Revocations: s.store.State().Revocations()}, nil
}

// ListJoinTokens returns the recorded join tokens (public parts only).
func (s *Server) ListJoinTokens(ctx context.Context, _ *hubv1.ListJoinTokensRequest) (*hubv1.ListJoinTokensResponse, error) {
	if _, err := callerFrom(ctx); err != nil {
		return nil, err
	}
	return &hubv1.ListJoinTokensResponse{Tokens: s.store.State().JoinTokens()}, nil
}

// RevokeJoinToken marks a recorded token revoked: Join refuses it on every
// node from then on.
func (s *Server) RevokeJoinToken(ctx context.Context, req *hubv1.RevokeJoinTokenRequest) (*hubv1.JoinTokenRecord, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if id == "" {
		return nil, fieldErr("id", "required")
	}
	cmd := s.command(c.actor())
	cmd.Op = &hubv1.Command_RevokeJoinToken{RevokeJoinToken: &hubv1.RevokeJoinToken{Id: id, Reason: req.GetReason()}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.audit(ctx, "RevokeJoinToken", c.actor(), fmt.Sprintf("revoke join token %s: %s", id, req.GetReason()))
	if r := s.store.State().JoinToken(id); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("join token %s revoked but no longer recorded: %w", id, raft.ErrNotFound)
}

// WhoAmI reports the caller as this node sees it.
func (s *Server) WhoAmI(ctx context.Context, _ *hubv1.WhoAmIRequest) (*hubv1.WhoAmIResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	resp := &hubv1.WhoAmIResponse{Name: c.Name, Serial: c.Serial, Kind: kindName(c.Kind), Role: string(c.Role)}
	if leaf := verifiedLeaf(ctx); leaf != nil {
		resp.NotAfterUnix = leaf.NotAfter.Unix()
	}
	return resp, nil
}

// recordJoinToken records a just-issued token in the replicated state
// before it is handed out, so it can be listed and revoked, and Join on
// any node knows it.
func (s *Server) recordJoinToken(ctx context.Context, c caller, info JoinTokenInfo) error {
	cmd := s.command(c.actor())
	cmd.Op = &hubv1.Command_RecordJoinToken{RecordJoinToken: &hubv1.RecordJoinToken{Id: info.ID, ExpiresUnix: info.Expires.Unix()}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return fmt.Errorf("record join token %s: %w", info.ID, err)
	}
	return nil
}

// checkTokenRecord refuses a token the cluster state does not list, or
// lists as revoked. Its MAC was already verified.
func checkTokenRecord(state *raft.State, info JoinTokenInfo) error {
	r := state.JoinToken(info.ID)
	switch {
	case r == nil:
		return fmt.Errorf("join token %s: %w: not recorded in the cluster state (create a new one with hubctl cluster token)", info.ID, ErrTokenInvalid)
	case r.GetRevoked():
		msg := fmt.Sprintf("at %s", time.Unix(0, r.GetRevokedUnixNano()).UTC().Format(time.RFC3339))
		if r.GetReason() != "" {
			msg += " (" + r.GetReason() + ")"
		}
		return fmt.Errorf("join token %s: %w %s", info.ID, ErrTokenRevoked, msg)
	}
	return nil
}
