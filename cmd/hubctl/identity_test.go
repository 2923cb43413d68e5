package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// identityFake answers the identity RPCs with canned records and keeps the
// requests.
type identityFake struct {
	hubv1.UnimplementedAdminServiceServer
	mu   sync.Mutex
	reqs []proto.Message
}

func (f *identityFake) got(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, m)
}

func (f *identityFake) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil
	}
	return f.reqs[len(f.reqs)-1]
}

const identityT0 = int64(1_767_000_000_000_000_000) // 2025-12-29T09:20:00Z

func (f *identityFake) RevokeCertificate(_ context.Context, r *hubv1.RevokeCertificateRequest) (*hubv1.Revocation, error) {
	f.got(r)
	return &hubv1.Revocation{Serial: r.GetSerial(), Name: r.GetName(), Reason: r.GetReason(), RevokedUnixNano: identityT0, RevokedBy: "root;role=admin"}, nil
}

func (f *identityFake) ListRevocations(_ context.Context, r *hubv1.ListRevocationsRequest) (*hubv1.ListRevocationsResponse, error) {
	f.got(r)
	return &hubv1.ListRevocationsResponse{Revocations: []*hubv1.Revocation{
		{Name: "bob", Reason: "left", RevokedUnixNano: identityT0, RevokedBy: "root;role=admin"},
		{Serial: "a1b", RevokedUnixNano: identityT0, RevokedBy: "root;role=admin"},
	}}, nil
}

func (f *identityFake) ListJoinTokens(_ context.Context, r *hubv1.ListJoinTokensRequest) (*hubv1.ListJoinTokensResponse, error) {
	f.got(r)
	future := time.Now().Add(time.Hour).Unix()
	return &hubv1.ListJoinTokensResponse{Tokens: []*hubv1.JoinTokenRecord{
		{Id: "aaaaaaaaaaaaaaaa", ExpiresUnix: future, CreatedBy: "root;role=admin", CreatedUnixNano: identityT0},
		{Id: "bbbbbbbbbbbbbbbb", ExpiresUnix: identityT0 / 1e9, CreatedBy: "root;role=admin", CreatedUnixNano: identityT0},
		{Id: "cccccccccccccccc", ExpiresUnix: future, Revoked: true, RevokedBy: "ann;role=admin", RevokedUnixNano: identityT0, Reason: "leaked"},
	}}, nil
}

func (f *identityFake) RevokeJoinToken(_ context.Context, r *hubv1.RevokeJoinTokenRequest) (*hubv1.JoinTokenRecord, error) {
	f.got(r)
	return &hubv1.JoinTokenRecord{Id: r.GetId(), ExpiresUnix: identityT0 / 1e9, Revoked: true, RevokedUnixNano: identityT0, RevokedBy: "root;role=admin", Reason: r.GetReason()}, nil
}

// newIdentityEnv serves identityFake over mutual TLS with a node
// certificate and writes DATA/admin.addr.
func newIdentityEnv(t *testing.T) (*testEnv, *identityFake) {
	t.Helper()
	data, ca, _ := newDataDir(t)
	serverPair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverPair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})))
	fake := &identityFake{}
	hubv1.RegisterAdminServiceServer(srv, fake)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	return &testEnv{data: data, ca: ca, addr: lis.Addr().String()}, fake
}

func TestCertsOperator(t *testing.T) {
	env, _ := newIdentityEnv(t)
	out, errOut, code := env.hubctl(t, "certs", "operator", "alice", "--role", "auditor", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res operatorCert
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	wantCert := filepath.Join(env.data, "operators", "alice.crt")
	wantKey := filepath.Join(env.data, "operators", "alice.key")
	if res.Certificate != wantCert || res.Key != wantKey || res.Role != "auditor" || res.Name != "alice" {
		t.Errorf("result %+v", res)
	}
	if fi, err := os.Stat(wantKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(wantCert, wantKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: env.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("operator certificate does not chain to the CA: %v", err)
	}
	if r, err := pki.AdminRoleOf(leaf); err != nil || r != pki.AdminRoleAuditor || leaf.Subject.CommonName != "alice" {
		t.Errorf("role %q, %v, CN %q", r, err, leaf.Subject.CommonName)
	}
	if res.Serial != raft.SerialString(leaf.SerialNumber) {
		t.Errorf("serial %q, certificate %s", res.Serial, raft.SerialString(leaf.SerialNumber))
	}
	// The table form names the role and serial too.
	out, errOut, code = env.hubctl(t, "certs", "operator", "bob", "--role", "readonly", "--out", t.TempDir(), "--ttl", "1h")
	if code != 0 || !regexpRow(out, "ROLE:", "readonly") || !strings.Contains(out, "SERIAL:") {
		t.Fatalf("exit %d %s\n%s", code, errOut, out)
	}

	usage := []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{"certs", "operator", "carol"}, "--role: required"},
		{"bad role", []string{"certs", "operator", "carol", "--role", "root"}, `--role: unknown role "root"`},
		{"bad name", []string{"certs", "operator", "bad name", "--role", "admin"}, `NAME "bad name"`},
		{"path as name", []string{"certs", "operator", "../x", "--role", "admin"}, `NAME "../x"`},
		{"bad ttl", []string{"certs", "operator", "carol", "--role", "admin", "--ttl", "-1h"}, "--ttl"},
	}
	for _, tt := range usage {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := env.hubctl(t, tt.args...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", code, errOut, exitUsage, tt.want)
			}
		})
	}
	if _, errOut, code := env.hubctl(t, "certs", "operator", "alice", "--role", "admin"); code != exitFailure || !strings.Contains(errOut, "--force") {
		t.Errorf("overwrite without --force: exit %d %q", code, errOut)
	}
}

// certs revoke sends a serial or a name as its argument says; certs
// revoked and cluster token list print RFC 3339 times and statuses.
func TestCertsRevokeAndTokens(t *testing.T) {
	env, fake := newIdentityEnv(t)
	certFile := filepath.Join(t.TempDir(), "x.crt")
	_, certPEM, _, err := env.ca.IssueOperatorKeyPair("x", pki.AdminRoleReadonly, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, certPEM, 0o644)
	leaf, err := parseLeaf(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want proto.Message
	}{
		{"name", []string{"certs", "revoke", "alice", "--reason", "left"}, &hubv1.RevokeCertificateRequest{Name: "alice", Reason: "left"}},
		{"serial with colons", []string{"certs", "revoke", "0A:1B"}, &hubv1.RevokeCertificateRequest{Serial: "a1b"}},
		{"long hex serial", []string{"certs", "revoke", "00112233445566778899"}, &hubv1.RevokeCertificateRequest{Serial: "112233445566778899"}},
		{"short hex is a name", []string{"certs", "revoke", "cafe"}, &hubv1.RevokeCertificateRequest{Name: "cafe"}},
		{"forced name", []string{"certs", "revoke", "--name", "00112233445566778899"}, &hubv1.RevokeCertificateRequest{Name: "00112233445566778899"}},
		{"file", []string{"certs", "revoke", certFile}, &hubv1.RevokeCertificateRequest{Serial: raft.SerialString(leaf.SerialNumber)}},
		{"token id", []string{"cluster", "token", "revoke", "aaaaaaaaaaaaaaaa", "--reason", "leaked"}, &hubv1.RevokeJoinTokenRequest{Id: "aaaaaaaaaaaaaaaa", Reason: "leaked"}},
		{"whole token", []string{"cluster", "token", "revoke", "chj1.abc.bbbbbbbbbbbbbbbb.mac.fp"}, &hubv1.RevokeJoinTokenRequest{Id: "bbbbbbbbbbbbbbbb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := env.hubctl(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if got := fake.last(); !proto.Equal(got, tt.want) {
				t.Fatalf("sent %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range [][]string{
		{"cluster", "token", "revoke", "nope"},
		{"certs", "revoke", " "},
		{"certs", "revoke"},
	} {
		if _, _, code := env.hubctl(t, bad...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
	if _, errOut, code := env.hubctl(t, "certs", "revoke", filepath.Join(t.TempDir(), "missing.crt")); code != exitFailure || !strings.Contains(errOut, "missing.crt") {
		t.Errorf("missing file: exit %d %q", code, errOut)
	}

	out, errOut, code := env.hubctl(t, "certs", "revoked", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var revs []map[string]any
	if err := json.Unmarshal([]byte(out), &revs); err != nil || len(revs) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	if revs[0]["name"] != "bob" || revs[0]["revoked_at"] != "2025-12-29T09:20:00Z" || revs[1]["serial"] != "a1b" {
		t.Errorf("revocations %v", revs)
	}
	out, _, code = env.hubctl(t, "certs", "revoked")
	if code != 0 || !regexpRow(out, "-", "bob", "2025-12-29T09:20:00Z", "root;role=admin", "left") {
		t.Errorf("table:\n%s", out)
	}

	out, errOut, code = env.hubctl(t, "cluster", "token", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var toks []tokenView
	if err := json.Unmarshal([]byte(out), &toks); err != nil || len(toks) != 3 {
		t.Fatalf("%v: %s", err, out)
	}
	if toks[0].Status != "active" || toks[1].Status != "expired" || toks[2].Status != "revoked" || toks[2].Reason != "leaked" {
		t.Errorf("tokens %+v", toks)
	}
	out, _, code = env.hubctl(t, "cluster", "token", "ls")
	if code != 0 || !regexpRow(out, "cccccccccccccccc", "revoked", toks[2].ExpiresAt, "-", "leaked") {
		t.Errorf("table:\n%s", out)
	}
}
