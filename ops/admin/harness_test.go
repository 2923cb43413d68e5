package admin

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

var (
	testCAOnce sync.Once
	testCA     *pki.CA
	testCAErr  error
)

// sharedCA is one CA for the package's tests (generating keys is cheap, but
// there is no reason to do it per test).
func sharedCA(t *testing.T) *pki.CA {
	t.Helper()
	testCAOnce.Do(func() { testCA, testCAErr = pki.NewCA("admin test CA", time.Hour) })
	if testCAErr != nil {
		t.Fatal(testCAErr)
	}
	return testCA
}

func issue(t *testing.T, ca *pki.CA, role pki.Role, cn string) tls.Certificate {
	t.Helper()
	c, _, _, err := ca.IssueKeyPair(role, cn, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clientTLS is what hubctl (or a node) uses: its certificate, the cluster CA
// as the only root.
func clientTLS(ca *pki.CA, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func newTestClock() *testClock               { c := &testClock{}; c.ns.Store(time.Now().UnixNano()); return c }

type testNode struct {
	id    string
	addr  string
	srv   *Server
	store *fakeStore
	audit *fakeAuditor
	reg   *prometheus.Registry
	clock *testClock
	logs  *logRecorder // the server's slog records (identity_test.go)
}

// serve runs n's server on lis until cleanup, then closes it.
func (n *testNode) serve(t *testing.T, lis net.Listener, tlsCfg *tls.Config) {
	t.Helper()
	g := n.srv.NewGRPCServer(tlsCfg)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		<-done
		if err := n.srv.Close(); err != nil {
			t.Error(err)
		}
	})
}

// startNode serves a Server for node id of cluster on 127.0.0.1 with real
// TLS, records it as a configured voter with its admin address, and stops
// it at cleanup.
func startNode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), audit: &fakeAuditor{},
		reg: prometheus.NewRegistry(), clock: newTestClock(), logs: &logRecorder{}}
	n.srv, err = NewServer(Options{
		NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: n.store,
		Auditor: n.audit, Registerer: n.reg, Now: n.clock.Now, Logger: slog.New(n.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))

	raftAddr := "127.0.0.1:7000" // never dialled: the fake store has no transport
	cl.mu.Lock()
	if cl.leaderID == "" {
		cl.leaderID = id
	}
	cl.addrs[id] = raftAddr
	cl.mu.Unlock()
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "test",
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: raftAddr, AdminAddr: n.addr}}}}); err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	cl.servers = append(cl.servers, raftServer(id, raftAddr))
	cl.mu.Unlock()
	return n
}

func dialT(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	c, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func operatorConn(t *testing.T, ca *pki.CA, n *testNode) hubv1.AdminServiceClient {
	t.Helper()
	op := issue(t, ca, pki.RoleOperator, "alice")
	return hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &op)))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails unless err is a gRPC status with code whose message
// contains every one of subs.
func wantStatus(t *testing.T, err error, code codes.Code, subs ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
	for _, s := range subs {
		if !strings.Contains(st.Message(), s) {
			t.Fatalf("message %q does not contain %q", st.Message(), s)
		}
	}
}
