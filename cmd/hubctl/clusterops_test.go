package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// realCluster is n in-process nodes (raft over InmemTransport, the real
// admin server over mutual TLS) sharing one data directory's CA and
// operator certificate, for commands whose meaning is in the server.
type realCluster struct {
	data    string
	ca      *pki.CA
	nodes   []*raft.Node
	servers []*admin.Server
	addrs   []string
	drained []chan bool // each node's SIP drain hook calls
}

func newRealCluster(t *testing.T, n int) *realCluster {
	t.Helper()
	data, ca, _ := newDataDir(t)
	c := &realCluster{data: data, ca: ca}
	var trans []*hraft.InmemTransport
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		_, tr := hraft.NewInmemTransport(hraft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", 7100+i)))
		for _, p := range trans {
			tr.Connect(p.LocalAddr(), p)
			p.Connect(tr.LocalAddr(), tr)
		}
		trans = append(trans, tr)
		cfg := raft.DefaultConfig()
		cfg.ID, cfg.Dir, cfg.Transport, cfg.Bootstrap = id, t.TempDir(), tr, i == 0
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 150*time.Millisecond, 150*time.Millisecond, 100*time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		node, err := raft.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := admin.NewServer(admin.Options{NodeID: id, CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert), Store: node})
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan bool, 16)
		srv.OnDrain(func(on bool) { drained <- on })
		<-drained // the initial call
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := srv.NewGRPCServer(admin.ServerTLSConfig(ca, nodeCert))
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Serve(lis) }()
		t.Cleanup(func() {
			g.Stop()
			<-done
			srv.Close()
			node.Close()
		})
		c.nodes, c.servers, c.addrs, c.drained = append(c.nodes, node), append(c.servers, srv), append(c.addrs, lis.Addr().String()), append(c.drained, drained)
		if i == 0 {
			if err := node.WaitForLeader(t.Context()); err != nil {
				t.Fatal(err)
			}
		} else if err := c.nodes[0].AddVoter(t.Context(), id, string(tr.LocalAddr())); err != nil {
			t.Fatal(err)
		}
		c.apply(t, &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: string(tr.LocalAddr()), AdminAddr: lis.Addr().String()}}})
	}
	for _, node := range c.nodes {
		if err := node.WaitForApplied(t.Context(), c.nodes[0].State().Index); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// apply proposes op on whichever node leads.
func (c *realCluster) apply(t *testing.T, op any) uint64 {
	t.Helper()
	cmd := &hubv1.Command{Version: 1, TimeUnixNano: time.Now().UnixNano(), Actor: "test"}
	switch op := op.(type) {
	case *hubv1.Command_PutNode:
		cmd.Op = op
	case *hubv1.Command_AddNetwork:
		cmd.Op = op
	case *hubv1.Command_RemoveNetwork:
		cmd.Op = op
	case *hubv1.Command_PolicyAllow:
		cmd.Op = op
	}
	for range 100 {
		for _, n := range c.nodes {
			if n.IsLeader() {
				idx, err := n.Apply(t.Context(), cmd)
				if err != nil {
					t.Fatal(err)
				}
				return idx
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return 0
}

func (c *realCluster) hubctl(t *testing.T, endpoint int, args ...string) (string, string, int) {
	t.Helper()
	env := &testEnv{data: c.data}
	return env.hubctl(t, append([]string{"--endpoints", c.addrs[endpoint]}, args...)...)
}

func (c *realCluster) leader(t *testing.T) string {
	t.Helper()
	for range 200 {
		if id, _ := c.nodes[0].Leader(); id != "" {
			return id
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return ""
}

func netCmd(id string) *hubv1.Command_AddNetwork {
	return &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: &hubv1.Network{
		Id: id, Domains: []string{id + ".example"}, Edges: []string{"sip:edge." + id + ".example"},
		Identity: &hubv1.Identity{Pins: []string{fmt.Sprintf("%x", sha256.Sum256([]byte(id)))}},
	}}}
}

// snapshot save writes the state with its header; restore --dry-run lists
// what would change and changes nothing; restore brings back what was
// removed since; a damaged file or one from another cluster is refused.
func TestSnapshotSaveRestore(t *testing.T) {
	c := newRealCluster(t, 1)
	c.apply(t, netCmd("neta"))
	c.apply(t, netCmd("netb"))
	c.apply(t, &hubv1.Command_PolicyAllow{PolicyAllow: &hubv1.PolicyAllow{Destination: "neta", Source: "netb"}})
	file := filepath.Join(t.TempDir(), "state.json")

	out, errOut, code := c.hubctl(t, 0, "cluster", "snapshot", "save", file)
	if code != 0 || !strings.Contains(out, "saved 2 networks and 1 policies") {
		t.Fatalf("save: %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	raw, _ := os.ReadFile(file)
	var hdr snapshotFile
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	caSum := sha256.Sum256(c.ca.Cert.Raw)
	if hdr.Format != snapshotFormat || hdr.ClusterCASHA256 != fmt.Sprintf("%x", caSum) || hdr.RaftIndex == 0 || hdr.Created == "" {
		t.Fatalf("header %+v", hdr)
	}

	c.apply(t, &hubv1.Command_RemoveNetwork{RemoveNetwork: &hubv1.RemoveNetwork{Id: "netb"}})
	before := c.nodes[0].State().Index

	out, errOut, code = c.hubctl(t, 0, "cluster", "snapshot", "restore", file, "--dry-run")
	want := "would change (2):\n  add network netb (domains netb.example)\n  add policy of neta (netb: presence, im, session, chat, file)\n"
	if code != 0 || out != want {
		t.Fatalf("dry run: %d\n%s\nwant\n%s\n%s", code, out, want, errOut)
	}
	if c.nodes[0].State().Index != before || c.nodes[0].State().Network("netb") != nil {
		t.Fatal("dry run changed the state")
	}

	out, errOut, code = c.hubctl(t, 0, "cluster", "snapshot", "restore", file)
	if code != 0 || !strings.HasPrefix(out, "restored at raft index") {
		t.Fatalf("restore: %d %q %q", code, out, errOut)
	}
	st := c.nodes[0].State()
	if st.Network("netb") == nil || !st.Allowed("netb", "neta", hubv1.Service_SERVICE_IM) || st.Node("n1") == nil {
		t.Fatalf("state after restore: %v", st.Proto())
	}
	out, _, code = c.hubctl(t, 0, "cluster", "snapshot", "restore", file)
	if code != 0 || !strings.HasPrefix(out, "no changes") {
		t.Fatalf("second restore: %d %q", code, out)
	}

	cases := []struct {
		name    string
		edit    func(string) string
		args    []string
		code    int
		inError string
	}{
		{"edited state", func(s string) string { return strings.Replace(s, "netb.example", "netc.example", 1) }, nil, 1, "state_sha256 mismatch"},
		{"other cluster", func(s string) string { return strings.Replace(s, hdr.ClusterCASHA256, strings.Repeat("0", 64), 1) }, nil, 2, "another cluster"},
		{"other cluster allowed", func(s string) string { return strings.Replace(s, hdr.ClusterCASHA256, strings.Repeat("0", 64), 1) }, []string{"--other-cluster", "--dry-run"}, 0, ""},
		{"not a snapshot", func(string) string { return `{"format":"something/1"}` }, nil, 1, "want \"clearhub-state-snapshot/1\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "edited.json")
			writeFile(t, f, []byte(tc.edit(string(raw))), 0o600)
			_, errOut, code := c.hubctl(t, 0, append([]string{"cluster", "snapshot", "restore", f}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.inError) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", code, errOut, tc.code, tc.inError)
			}
		})
	}
}

// transfer-leader works from a follower's endpoint (hubctl repeats it at
// the leader); drain reaches the named node, which then shows draining;
// --undo ends it.
func TestTransferLeaderAndDrainCommands(t *testing.T) {
	c := newRealCluster(t, 3)
	leader := c.leader(t)
	follower := 0
	for i, n := range c.nodes {
		if n.ID() != leader {
			follower = i
			break
		}
	}
	target := "n3"
	if leader == "n3" {
		target = "n2"
	}
	out, errOut, code := c.hubctl(t, follower, "cluster", "transfer-leader", target)
	if code != 0 || out != "leader is now "+target+"\n" {
		t.Fatalf("transfer-leader: %d %q %q", code, out, errOut)
	}

	// Drain the new leader through another node: leadership moves, its
	// hook fires, status shows it.
	ti := map[string]int{"n1": 0, "n2": 1, "n3": 2}[target]
	other := (ti + 1) % 3
	out, errOut, code = c.hubctl(t, other, "cluster", "drain", target)
	if code != 0 || !strings.Contains(out, "node "+target+" drained") {
		t.Fatalf("drain: %d %q %q", code, out, errOut)
	}
	if on := <-c.drained[ti]; !on || !c.servers[ti].Draining() {
		t.Fatal("drained node's hook not called with true")
	}
	if l := c.leader(t); l == target {
		t.Fatal("drained node still leads")
	}
	out, _, code = c.hubctl(t, other, "cluster", "status")
	if code != 0 || !hasRow(out, target, "follower,draining") {
		t.Fatalf("status does not show %s draining:\n%s", target, out)
	}
	out, _, code = c.hubctl(t, other, "-o", "json", "cluster", "status")
	if code != 0 || !strings.Contains(out, `"draining": true`) {
		t.Fatalf("json status lacks draining:\n%s", out)
	}

	out, errOut, code = c.hubctl(t, other, "cluster", "drain", target, "--undo")
	if code != 0 || !strings.Contains(out, "back in service") || c.servers[ti].Draining() {
		t.Fatalf("undo: %d %q %q", code, out, errOut)
	}
	if on := <-c.drained[ti]; on {
		t.Fatal("hook not called with false on --undo")
	}
	_, errOut, code = c.hubctl(t, other, "cluster", "drain")
	if code != 2 {
		t.Fatalf("drain without NODE: exit %d %q", code, errOut)
	}
}

// hasRow reports whether a table line starts with the given fields.
func hasRow(table string, fields ...string) bool {
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}
