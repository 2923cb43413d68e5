package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// operatorClient dials the node's admin API with the operator certificate
// hubd wrote beside its data.
func operatorClient(t *testing.T, n *hubNode) hubv1.AdminServiceClient {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(n.pkiDir, "operator.crt"), filepath.Join(n.pkiDir, "operator.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(n.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := admin.Dial(t.Context(), n.adminAdr, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return hubv1.NewAdminServiceClient(cc)
}

// A drained node fails /readyz with "draining" and its SIP plane refuses
// new requests; --undo restores both. Then quorum is lost for good (the
// second voter never comes back): the node cannot start serving, until
// hubd recover-cluster makes it a cluster of its own, after which it leads
// alone with the networks it had. Last, ledger-backup copies the stopped
// node's ledger (and refuses while the ledger is in use or has a WAL).
func TestDrainRecoverClusterAndLedgerBackup(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "solo"
	cfg.DataDir = t.TempDir()
	cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = freePort(t), "", ""
	cfg.Admin.Addr, cfg.Raft.Addr, cfg.HTTP.Addr = freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	n, err := start(ctx, cfg, log, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.shutdown()
		}
	}()
	pin := fmt.Sprintf("%x", sha256.Sum256([]byte("neta")))
	if _, err := n.admin.Propose(ctx, &hubv1.Command{Version: 1, TimeUnixNano: time.Now().UnixNano(), Actor: "test",
		Op: &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: &hubv1.Network{
			Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:edge.a.example"}, Identity: &hubv1.Identity{Pins: []string{pin}}}}}}); err != nil {
		t.Fatal(err)
	}
	waitReady := func(want int, sub string) {
		t.Helper()
		for i := 0; ; i++ {
			code, body := readyz(t, cfg.HTTP.Addr)
			if code == want && strings.Contains(body, sub) {
				return
			}
			if i > 200 {
				t.Fatalf("/readyz %d %q, want %d %q", code, body, want, sub)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady(200, "ready")

	op := operatorClient(t, n)
	if _, err := op.DrainNode(ctx, &hubv1.DrainNodeRequest{NodeId: "solo"}); err != nil {
		t.Fatal(err)
	}
	waitReady(503, "draining")
	if !n.sip.Draining() {
		t.Error("SIP plane not draining")
	}
	if _, err := op.DrainNode(ctx, &hubv1.DrainNodeRequest{NodeId: "solo", Undrain: true}); err != nil {
		t.Fatal(err)
	}
	waitReady(200, "ready")
	if n.sip.Draining() {
		t.Error("SIP plane still draining after undo")
	}

	// ledger-backup refuses while the node holds the ledger.
	var out, errb bytes.Buffer
	backup := filepath.Join(t.TempDir(), "ledger-backup.db")
	if err := run([]string{"ledger-backup", "--data", cfg.DataDir, backup}, &out, &errb); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("ledger-backup of a running node = %v", err)
	}

	// A second voter that never answers: the cluster of two has no
	// quorum once the node restarts.
	if err := n.raft.AddVoter(ctx, "gone", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if err := n.shutdown(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	if n2, err := start(sctx, cfg, log, new(slog.LevelVar)); err == nil {
		n2.shutdown()
		scancel()
		t.Fatal("node started serving without a quorum")
	}
	scancel()

	out.Reset()
	errb.Reset()
	err = run([]string{"recover-cluster", "--data", cfg.DataDir}, &out, &errb)
	if !errors.Is(err, errUsage) || !strings.Contains(out.String(), "gone=127.0.0.1:1") ||
		!strings.Contains(out.String(), "--peers solo="+cfg.Raft.Addr) {
		t.Fatalf("recover-cluster without --peers: %v\n%s%s", err, out.String(), errb.String())
	}
	out.Reset()
	if err := run([]string{"recover-cluster", "--data", cfg.DataDir, "--peers", "solo=" + cfg.Raft.Addr}, &out, &errb); err != nil {
		t.Fatalf("recover-cluster: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "1 networks") {
		t.Errorf("recover-cluster said %q", out.String())
	}

	n, err = start(ctx, cfg, log, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	stopped = false
	if err := n.raft.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if !n.raft.IsLeader() || len(n.raft.Status().Servers) != 1 {
		t.Fatalf("recovered node: leader %v, servers %+v", n.raft.IsLeader(), n.raft.Status().Servers)
	}
	if n.raft.State().Network("neta") == nil {
		t.Fatal("recovered node lost the network")
	}
	waitReady(200, "ready")
	if err := n.shutdown(); err != nil {
		t.Fatal(err)
	}
	stopped = true

	// A WAL beside the ledger means an unclean stop: refused.
	wal := filepath.Join(cfg.DataDir, "ledger.db-wal-0000000000000001")
	if err := os.WriteFile(wal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"ledger-backup", "--data", cfg.DataDir, backup}, &out, &errb); err == nil || !strings.Contains(err.Error(), "write-ahead log") {
		t.Fatalf("ledger-backup with a WAL = %v", err)
	}
	os.Remove(wal)
	out.Reset()
	if err := run([]string{"ledger-backup", "--data", cfg.DataDir, backup}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(backup, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	buckets := 0
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func([]byte, *bolt.Bucket) error { buckets++; return nil })
	})
	if buckets == 0 {
		t.Error("backup holds no buckets")
	}
	if err := run([]string{"ledger-backup", "--data", cfg.DataDir}, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("ledger-backup without FILE = %v, want a usage error", err)
	}
}
