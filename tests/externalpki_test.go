package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clearhub/ops/pki"
)

// A node started with externally issued certificates (tls.* in its config)
// serves with them, and refuses a node certificate its CA did not sign.
func TestExternalCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	ca, err := pki.NewCA("example operator CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nodeCrt, nodeKey := write("n1.crt", certPEM), write("n1.key", keyPEM)
	cfg := write("hubd.yaml", []byte(fmt.Sprintf("tls:\n  ca_cert: %s\n  ca_key: %s\n  cert: %s\n  key: %s\n",
		filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile), nodeCrt, nodeKey)))

	n1 := newNode(t, "n1")
	n1.start(t, "--config", cfg)
	n1.waitReady(t, 30*time.Second)
	// hubctl --data trusts the configured CA and reaches the node.
	out := mustHubctl(t, n1, "cluster", "status", "-o", "json")
	if !strings.Contains(out, `"leader": "n1"`) {
		t.Fatalf("cluster status: %s", out)
	}
	got, err := os.ReadFile(filepath.Join(n1.dir, "pki", pki.CACertFile))
	if err != nil || string(got) != string(ca.CertPEM) {
		t.Fatalf("data dir CA is not the configured one (%v)", err)
	}

	// A second node with the same CA waits to be added (no token, no
	// bootstrap) and then replicates.
	_, c2, k2, err := ca.IssueKeyPair(pki.RoleNode, "n3", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg3 := write("hubd3.yaml", []byte(fmt.Sprintf("raft:\n  bootstrap: never\ntls:\n  ca_cert: %s\n  ca_key: %s\n  cert: %s\n  key: %s\n",
		filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile), write("n3.crt", c2), write("n3.key", k2))))
	n3 := newNode(t, "n3")
	n3.start(t, "--config", cfg3)
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5060", "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "cluster", "join", "n3", n3.raft, "--admin-addr", n3.admin)
	n3.waitReady(t, 30*time.Second)
	eventually(t, 10*time.Second, "n3 has the network", func() error { return checkNetworks(t, n3, "net-a") })

	// A node certificate from another CA is refused at start.
	other, err := pki.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, oc, ok, err := other.IssueKeyPair(pki.RoleNode, "n2", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bad := write("bad.yaml", []byte(fmt.Sprintf("tls:\n  ca_cert: %s\n  ca_key: %s\n  cert: %s\n  key: %s\n",
		filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile), write("o.crt", oc), write("o.key", ok))))
	n2 := newNode(t, "n2")
	n2.start(t, "--config", bad)
	select {
	case <-n2.exited:
		if !strings.Contains(n2.logs.String(), "tls.cert") {
			t.Fatalf("refusal does not name tls.cert:\n%s", n2.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node with a foreign certificate kept running")
	}
}
