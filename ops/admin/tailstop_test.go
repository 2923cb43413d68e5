package admin

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Issue 9: with `hubctl audit tail` attached, hubd took its whole 10 s stop
// timeout, because GracefulStop waits for every stream and a tail never
// ends. StopStreams ends tails at once with Unavailable (the client
// reconnects) and refuses new ones, so GracefulStop returns promptly.
func TestTailEndsAtShutdown(t *testing.T) {
	ca := sharedCA(t)
	for _, tc := range []struct {
		name      string
		tailFirst bool // a tail is attached before the stop; else it starts after
	}{
		{"attached tail", true},
		{"tail after stop", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openTestLedger(t, "node-a", 1)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			nodeCert := issue(t, ca, pki.RoleNode, "node-a")
			n := &testNode{id: "node-a", addr: lis.Addr().String(), store: newFakeCluster().store("node-a"), reg: prometheus.NewRegistry(), clock: newTestClock()}
			if n.srv, err = NewServer(Options{NodeID: n.id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: n.store,
				Ledger: l, Registerer: n.reg, Now: n.clock.Now}); err != nil {
				t.Fatal(err)
			}
			g := n.srv.NewGRPCServer(ServerTLSConfig(ca, nodeCert))
			served := make(chan struct{})
			go func() { defer close(served); _ = g.Serve(lis) }()
			t.Cleanup(func() { g.Stop(); <-served; _ = n.srv.Close() })
			c := operatorConn(t, ca, n)

			var tail hubv1.AdminService_TailAuditClient
			if tc.tailFirst {
				if tail, err = c.TailAudit(ctxT(t), &hubv1.TailAuditRequest{}); err != nil {
					t.Fatal(err)
				}
				if _, err := tail.Header(); err != nil { // the server is following the ledger
					t.Fatal(err)
				}
			}
			start := time.Now()
			n.srv.StopStreams()
			if !tc.tailFirst {
				if tail, err = c.TailAudit(ctxT(t), &hubv1.TailAuditRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = tail.Recv()
			wantStatus(t, err, codes.Unavailable, "node shutting down")

			stopped := make(chan struct{})
			go func() { g.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("GracefulStop still waiting 5 s after StopStreams")
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("stop took %s with a tail attached, want well under 1 s", d)
			}
		})
	}
}
