package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/pki"
)

// brokenScrub is a ledger whose scrub finds a break.
type brokenScrub struct{ *ledger.Ledger }

func (b brokenScrub) Scrub(context.Context) (ledger.ScrubResult, error) {
	now := time.Now()
	return ledger.ScrubResult{Node: "n1", EntriesChecked: 40107, TreeNodesChecked: 2500, FirstBadSeq: 206,
		Err: "ledger: broken chain at seq 206: hash does not match contents", Started: now, Finished: now}, nil
}

// TestAuditScrub: `hubctl audit scrub` prints the node's result and exits 1
// naming the first bad seq when the scrub found a break.
func TestAuditScrub(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 40)
	out, stderr, code := env.hubctl(t, "audit", "scrub")
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "40") {
		t.Fatalf("clean scrub: code %d\n%s%s", code, out, stderr)
	}
	out, _, code = env.hubctl(t, "audit", "scrub", "-o", "json")
	if code != 0 || !strings.Contains(out, `"ok": true`) && !strings.Contains(out, `"ok":true`) {
		t.Fatalf("json: code %d\n%s", code, out)
	}

	// A node whose scrub finds a break.
	nodeCert, _, _, err := env.ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.NewServer(admin.Options{NodeID: "n1", CA: env.ca, NodeClientTLS: admin.NodeClientTLS(env.ca, nodeCert),
		Store: stubStore{}, Ledger: brokenScrub{env.l}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr := serveGRPC(t, srv.NewGRPCServer(admin.ServerTLSConfig(env.ca, nodeCert)))
	writeFile(t, filepath.Join(env.data, "admin.addr"), []byte(addr+"\n"), 0o644)
	out, stderr, code = env.hubctl(t, "audit", "scrub")
	if code != exitFailure || !strings.Contains(out, "BROKEN at seq 206") || !strings.Contains(stderr, "first bad seq 206") {
		t.Fatalf("broken scrub: code %d\n%s%s", code, out, stderr)
	}
}
