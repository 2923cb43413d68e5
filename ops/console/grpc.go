package console

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"clearhub/proto/hubv1"
)

// Service is ConsoleService for the admin listener. Register it on the
// admin grpc.Server, whose interceptors decide who may call it
// (ops/admin/auth.go); CreateLogin checks the certificate once more.
type Service struct {
	hubv1.UnimplementedConsoleServiceServer
	S *Server
}

// CreateLogin mints a login link for the operator the call's client
// certificate names.
func (g Service) CreateLogin(ctx context.Context, _ *hubv1.CreateConsoleLoginRequest) (*hubv1.ConsoleLogin, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "console login: no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "console login: an operator client certificate is required")
	}
	id, err := g.S.Identify(ti.State.PeerCertificates)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "console login: %v", err)
	}
	link, exp, err := g.S.CreateLogin(id)
	if err != nil {
		return nil, status.Errorf(codes.ResourceExhausted, "console login: %v", err)
	}
	return &hubv1.ConsoleLogin{Url: link, ExpiresUnix: exp.Unix(), Name: id.Name, Role: string(id.Role)}, nil
}
