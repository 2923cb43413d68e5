package main

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// fakeConsole answers CreateLogin for the client certificate it sees, or
// with err.
type fakeConsole struct {
	hubv1.UnimplementedConsoleServiceServer
	mu    sync.Mutex
	err   error
	names []string
}

func (f *fakeConsole) CreateLogin(ctx context.Context, _ *hubv1.CreateConsoleLoginRequest) (*hubv1.ConsoleLogin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	p, _ := peer.FromContext(ctx)
	cn := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].Subject.CommonName
	f.names = append(f.names, cn)
	return &hubv1.ConsoleLogin{Url: "https://127.0.0.1:8443/login?token=tok", ExpiresUnix: 1800000000, Name: cn, Role: "admin"}, nil
}

func TestConsoleLogin(t *testing.T) {
	data, ca, _ := newDataDir(t)
	pair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})))
	fc := &fakeConsole{}
	hubv1.RegisterAdminServiceServer(srv, &fakeAdmin{errs: map[string]error{}})
	hubv1.RegisterConsoleServiceServer(srv, fc)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	env := &testEnv{data: data, ca: ca, addr: lis.Addr().String()}

	for _, tc := range []struct {
		name string
		args []string
		err  error
		code int
		out  string
	}{
		{"table", []string{"console", "login"}, nil, 0, "https://127.0.0.1:8443/login?token=tok\n(logs in operator, role admin; single use, until 2027-01-15T08:00:00Z)"},
		{"json", []string{"console", "login", "-o", "json"}, nil, 0, `"url": "https://127.0.0.1:8443/login?token=tok"`},
		{"refused", []string{"console", "login"}, status.Error(codes.PermissionDenied, "no"), 1, ""},
		{"extra argument", []string{"console", "login", "x"}, nil, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc.mu.Lock()
			fc.err = tc.err
			fc.mu.Unlock()
			out, errOut, code := env.hubctl(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if !strings.Contains(out, tc.out) {
				t.Fatalf("output %q lacks %q", out, tc.out)
			}
		})
	}
	if len(fc.names) != 2 || fc.names[0] != "operator" {
		t.Fatalf("logins asked for %v, want the data directory's operator twice", fc.names)
	}
}
