package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// clusterStub is a fixed cluster for admin servers without Raft: the
// state (nodes, revocations) and configuration every node shares, seen
// from node id.
type clusterStub struct {
	stubStore
	id      string
	state   *raft.State
	servers []raft.Server
}

func (c clusterStub) State() *raft.State { return c.state }
func (c clusterStub) Status() raft.Status {
	return raft.Status{NodeID: c.id, State: "Follower", LeaderID: "n1", Servers: c.servers}
}
func (c clusterStub) Leader() (string, string) { return "n1", "127.0.0.1:7000" }

// liveCluster is two real admin servers (n1, n2) over mutual TLS, each
// with its own log level and version, and a data directory pointing at
// n1. revoked is put in the shared state's revocation list.
type liveCluster struct {
	data   string
	ca     *pki.CA
	levels map[string]*slog.LevelVar
}

func newLiveCluster(t *testing.T, revoked ...*hubv1.Revocation) *liveCluster {
	t.Helper()
	data, ca, _ := newDataDir(t)
	lc := &liveCluster{data: data, ca: ca, levels: map[string]*slog.LevelVar{}}
	ids := []string{"n1", "n2"}
	lis := map[string]net.Listener{}
	cs := &hubv1.ClusterState{Revocations: revoked}
	var servers []raft.Server
	for _, id := range ids {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[id] = l
		cs.Nodes = append(cs.Nodes, &hubv1.Node{Id: id, RaftAddr: "127.0.0.1:7000", AdminAddr: l.Addr().String()})
		servers = append(servers, raft.Server{ID: id, Address: "127.0.0.1:7000", Suffrage: "voter"})
	}
	state := raft.NewState(1, cs)
	for _, id := range ids {
		nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		lv := new(slog.LevelVar)
		lc.levels[id] = lv
		srv, err := admin.NewServer(admin.Options{NodeID: id, CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert),
			Store: clusterStub{id: id, state: state, servers: servers}, LogLevel: lv, Version: "v0.9." + id})
		if err != nil {
			t.Fatal(err)
		}
		g := srv.NewGRPCServer(admin.ServerTLSConfig(ca, nodeCert))
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Serve(lis[id]) }()
		t.Cleanup(func() { g.Stop(); <-done; srv.Close() })
	}
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis["n1"].Addr().String()+"\n"), 0o644)
	return lc
}

func (lc *liveCluster) hubctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), append([]string{"--data", lc.data, "--timeout", "5s"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// log-level reads and sets the connected node's level, or another node's
// (--node), or every node's (--all), reaching each at its admin address.
func TestLogLevelCommand(t *testing.T) {
	lc := newLiveCluster(t)
	for _, tc := range []struct {
		args       []string
		code       int
		want       map[string]string // every node's level afterwards
		out, errIn string
	}{
		{[]string{"log-level"}, exitOK, map[string]string{"n1": "INFO", "n2": "INFO"}, "n1", ""},
		{[]string{"log-level", "debug"}, exitOK, map[string]string{"n1": "DEBUG", "n2": "INFO"}, "debug", ""},
		{[]string{"log-level", "--node", "n2", "WARN"}, exitOK, map[string]string{"n1": "DEBUG", "n2": "WARN"}, "n2", ""},
		{[]string{"log-level", "--all", "error"}, exitOK, map[string]string{"n1": "ERROR", "n2": "ERROR"}, "error", ""},
		{[]string{"log-level", "verbose"}, exitUsage, map[string]string{"n1": "ERROR", "n2": "ERROR"}, "", `LEVEL: "verbose"`},
		{[]string{"log-level", "--node", "n9", "info"}, exitFailure, map[string]string{"n1": "ERROR", "n2": "ERROR"}, "", `no node "n9"`},
		{[]string{"log-level", "--node", "n2", "--all"}, exitUsage, map[string]string{"n1": "ERROR", "n2": "ERROR"}, "", "give one"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := lc.hubctl(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.errIn) {
				t.Fatalf("exit %d (want %d)\nout %q (want %q)\nerr %q (want %q)", code, tc.code, out, tc.out, errOut, tc.errIn)
			}
			for id, want := range tc.want {
				if got := lc.levels[id].Level().String(); got != want {
					t.Errorf("%s at %s, want %s", id, got, want)
				}
			}
		})
	}
	out, errOut, code := lc.hubctl(t, "log-level", "--all", "-o", "json")
	var got []logLevelView
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("--all -o json: exit %d %v %q %q", code, err, out, errOut)
	}
	want := []logLevelView{{Node: "n1", Level: "error"}, {Node: "n2", Level: "error"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("--all -o json (-want +got):\n%s", d)
	}
}

// cluster status and version show what each node reports as its version.
func TestNodeVersionsShown(t *testing.T) {
	lc := newLiveCluster(t)
	out, errOut, code := lc.hubctl(t, "cluster", "status")
	if code != 0 || !regexpRow(out, "ID", "STATE", "SUFFRAGE", "HEALTHY", "APPLIED", "RAFT", "ADMIN", "VERSION", "ERROR") ||
		!strings.Contains(out, "v0.9.n1") || !strings.Contains(out, "v0.9.n2") {
		t.Fatalf("cluster status: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = lc.hubctl(t, "version", "-o", "json")
	var v versionView
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version: exit %d %v %q %q", code, err, out, errOut)
	}
	if want := []nodeVersionView{{ID: "n1", Version: "v0.9.n1"}, {ID: "n2", Version: "v0.9.n2"}}; !cmp.Equal(v.Nodes, want) {
		t.Errorf("version nodes %+v, want %+v", v.Nodes, want)
	}
}

// A handshake the node refuses ("tls: bad certificate") comes with the
// likely reasons: a revoked certificate, or one of another CA.
func TestBadCertificateHint(t *testing.T) {
	// Every certificate named alice issued before an hour from now.
	lc := newLiveCluster(t, &hubv1.Revocation{Name: "alice", RevokedUnixNano: time.Now().Add(time.Hour).UnixNano(), Reason: "left"})
	other, err := pki.NewCA("another cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		ca   *pki.CA
		cn   string
		hint string // "": the call succeeds
	}{
		// The node refuses the handshake: the client sees the alert (or,
		// racing it, the closed connection).
		{"revoked", lc.ca, "alice", "revoked"},
		// The admin listener takes member certificates too (the member
		// audit API), so it names no acceptable CAs and the client offers
		// its certificate; the node refuses it in the handshake, seen as
		// the alert or, racing it, the closed connection.
		{"another CA", other, "bob", "this cluster's CA"},
		{"valid", lc.ca, "carol", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, certPEM, keyPEM, err := tc.ca.IssueOperatorKeyPair(tc.cn, pki.AdminRoleAdmin, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cert, key := filepath.Join(dir, tc.cn+".crt"), filepath.Join(dir, tc.cn+".key")
			writeFile(t, cert, certPEM, 0o644)
			writeFile(t, key, keyPEM, 0o600)
			_, errOut, code := lc.hubctl(t, "--cert", cert, "--key", key, "log-level")
			if tc.hint != "" {
				if code != exitFailure || !strings.Contains(errOut, tc.hint) {
					t.Fatalf("exit %d, stderr %q: want %q", code, errOut, tc.hint)
				}
			} else if code != exitOK {
				t.Fatalf("valid certificate: exit %d, stderr %q", code, errOut)
			}
		})
	}
}

func TestDescribeBadCertificate(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hint bool
	}{
		{"grpc transport", status.Error(codes.Unavailable, `connection error: desc = "error reading server preface: remote error: tls: bad certificate"`), true},
		{"wrapped", &runError{err: fmt.Errorf("node versions: %w", status.Error(codes.Unavailable, "remote error: tls: bad certificate"))}, true},
		{"plain error", errors.New("read: remote error: tls: bad certificate"), true},
		{"dropped", status.Error(codes.Unavailable, "write tcp 127.0.0.1:41210->127.0.0.1:41607: write: broken pipe"), true},
		{"hub down", status.Error(codes.Unavailable, `connection error: desc = "transport: dial tcp 127.0.0.1:1: connect: connection refused"`), false},
		{"server refusal", status.Error(codes.PermissionDenied, "alice (role readonly) may not call AdminService/AddNetwork"), false},
		{"no certificate offered", status.Error(codes.Unauthenticated, "client certificate required"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describe(tc.err)
			if has := strings.Contains(got, "revoked"); has != tc.hint {
				t.Errorf("describe = %q; hint %v, want %v", got, has, tc.hint)
			}
			if tc.hint && (strings.Contains(got, "is the hub running") || !strings.Contains(got, "this cluster's CA")) {
				t.Errorf("describe = %q: wrong or incomplete hint", got)
			}
		})
	}
}
