package main

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// warnAdmin is the fake admin server with the audit stream calls the
// warning test needs; its TailAudit sends a warning header and refuses.
type warnAdmin struct {
	*fakeAdmin
	tailWarn string
}

func (w *warnAdmin) GetCheckpoint(context.Context, *hubv1.GetCheckpointRequest) (*hubv1.Checkpoint, error) {
	return &hubv1.Checkpoint{Origin: "n1", TreeSize: 3}, nil
}

func (w *warnAdmin) TailAudit(_ *hubv1.TailAuditRequest, st grpc.ServerStreamingServer[hubv1.AuditRecord]) error {
	if err := st.SendHeader(metadata.Pairs(warningHeader, w.tailWarn)); err != nil {
		return err
	}
	return status.Error(codes.PermissionDenied, "tail refused")
}

// Issue 9: RemoveNode answers with a clearhub-warning header when the
// cluster shrinks below three voters, and hubctl said nothing. Every
// command now prints every warning the node sends to stderr.
func TestWarningHeadersPrinted(t *testing.T) {
	const shrink = "the cluster now has 2 voter(s): it needs 3 to keep working when one node fails"
	data, ca, _ := newDataDir(t)
	serverPair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// unaryWarn: the header values each unary method answers with.
	unaryWarn := map[string][]string{
		"/clearhub.v1.AdminService/RemoveNode":   {shrink},
		"/clearhub.v1.AdminService/ListPolicies": {"first", "second"},
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverPair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})), grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		for _, v := range unaryWarn[info.FullMethod] {
			_ = grpc.SetHeader(ctx, metadata.Pairs(warningHeader, v))
		}
		return h(ctx, req)
	}))
	hubv1.RegisterAdminServiceServer(srv, &warnAdmin{fakeAdmin: &fakeAdmin{errs: map[string]error{}}, tailWarn: "tail warning"})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	env := &testEnv{data: data, ca: ca, addr: lis.Addr().String()}

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		warnings []string // lines expected on stderr, in order
	}{
		{"cluster remove below three voters", []string{"cluster", "remove", "n2"}, 0, []string{"warning: " + shrink}},
		{"no warning", []string{"network", "list"}, 0, nil},
		{"every value", []string{"policy", "list"}, 0, []string{"warning: first", "warning: second"}},
		{"streaming call", []string{"audit", "tail"}, 1, []string{"warning: tail warning"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := env.hubctl(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			var got []string
			for _, line := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(line, "warning: ") {
					got = append(got, line)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.warnings, "\n") {
				t.Errorf("warnings on stderr %q, want %q (stderr %q)", got, tc.warnings, errOut)
			}
		})
	}
}
