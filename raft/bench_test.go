package raft

import (
	"context"
	"fmt"
	"testing"

	"clearhub/proto/hubv1"
)

// BenchmarkApply3NodeTLS measures the latency of one replicated write — what
// an admin change costs before its gRPC round trip — on a three-node cluster
// over the real TLS transport with bbolt log stores (fsync'd) on this
// machine's disk, production timeouts.
func BenchmarkApply3NodeTLS(b *testing.B) {
	ca := newTestCA(b, "hub ca")
	ctx := context.Background()
	var nodes []*Node
	b.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	for i := range 3 {
		cfg := DefaultConfig()
		cfg.ID, cfg.Dir = fmt.Sprintf("n%d", i), b.TempDir()
		cfg.BindAddr = "127.0.0.1:0"
		cfg.Logger = discardLogger()
		cfg.ServerTLS, cfg.ClientTLS = tlsConfigs(ca, ca.issue(b, "node", cfg.ID))
		cfg.Bootstrap = i == 0
		n, err := Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	leader := nodes[0]
	if err := leader.WaitForLeader(ctx); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := leader.AddVoter(ctx, n.ID(), n.Addr()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c := cmd(&hubv1.PutNode{Node: &hubv1.Node{
			Id: fmt.Sprintf("x%d", i), RaftAddr: "127.0.0.1:1", AdminAddr: "127.0.0.1:2",
		}})
		if _, err := leader.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}
