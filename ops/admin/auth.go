package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"clearhub/ops/pki"
)

// ServerTLSConfig is the admin listener's TLS configuration: it presents
// nodeCert followed by the CA certificate (joiners pin the CA's fingerprint
// from their token, so the CA must be in the chain) and verifies a client
// certificate against the cluster CA when one is given. Which role a method
// needs is decided per RPC by the interceptors, so one port serves
// operators, nodes and certificate-less joiners.
func ServerTLSConfig(ca *pki.CA, nodeCert tls.Certificate) *tls.Config {
	cert := nodeCert
	cert.Certificate = append([][]byte(nil), nodeCert.Certificate...)
	if n := len(cert.Certificate); n == 0 || !bytesEqual(cert.Certificate[n-1], ca.Cert.Raw) {
		cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2"},
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// caller is the authenticated client of one RPC.
type caller struct {
	Name string   // certificate common name; "" for certificate-less callers
	Role pki.Role // "" for certificate-less callers
}

type callerKey struct{}

// requiredRole says which certificate role a method needs; ok is false for
// methods nobody may call.
func requiredRole(fullMethod string) (role pki.Role, service string, ok bool) {
	switch {
	case strings.HasPrefix(fullMethod, "/clearhub.v1.AdminService/"):
		return pki.RoleOperator, "AdminService", true
	case strings.HasPrefix(fullMethod, "/grpc.reflection.v1.ServerReflection/"),
		strings.HasPrefix(fullMethod, "/grpc.reflection.v1alpha.ServerReflection/"):
		return pki.RoleOperator, "ServerReflection", true
	case strings.HasPrefix(fullMethod, "/clearhub.v1.ClusterInternal/"):
		return pki.RoleNode, "ClusterInternal", true
	case strings.HasPrefix(fullMethod, "/clearhub.v1.JoinService/"),
		strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"):
		return "", "", true
	}
	return "", "", false
}

// authorize decides whether the peer in ctx may call fullMethod and returns
// ctx carrying the caller.
func authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	role, service, ok := requiredRole(fullMethod)
	if !ok {
		return nil, permissionDenied("method %s is not served", fullMethod)
	}
	leaf := verifiedLeaf(ctx)
	c := caller{}
	if leaf != nil {
		c = caller{Name: leaf.Subject.CommonName, Role: pki.RoleOf(leaf)}
	}
	if role != "" {
		if leaf == nil {
			return nil, unauthenticated("client certificate required")
		}
		if c.Role != role {
			got := strings.TrimPrefix(string(c.Role), "clearhub-")
			if got == "" {
				got = "(none)"
			}
			return nil, permissionDenied("certificate role %s may not call %s", got, service)
		}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// verifiedLeaf returns the client certificate the TLS handshake verified
// against the cluster CA, or nil. Only verified chains count: with
// VerifyClientCertIfGiven an unverifiable certificate fails the handshake,
// but relying on VerifiedChains keeps that true whatever the config.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// callerFrom returns the caller the interceptor authorized. Handlers call
// it so that a grpc.Server built without the interceptors serves nothing.
func callerFrom(ctx context.Context) (caller, error) {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return caller{}, unauthenticated("admin: request not authorized (server built without admin interceptors)")
	}
	return c, nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := handler(ctx, req)
	return resp, toStatus(err)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return toStatus(err)
	}
	return toStatus(handler(srv, &authedStream{ServerStream: ss, ctx: ctx}))
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }
