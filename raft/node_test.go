package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func fastConfig(id, dir string) Config {
	c := DefaultConfig()
	c.ID, c.Dir = id, dir
	// Short enough for quick elections, long enough that a -race build
	// on a busy 2-core machine keeps a stable leader.
	c.HeartbeatTimeout = 150 * time.Millisecond
	c.ElectionTimeout = 150 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ApplyTimeout = 5 * time.Second
	c.Logger = discardLogger()
	return c
}

// inmemCluster is up to n nodes over hraft.InmemTransport, each with its own
// Dir so nodes can be stopped and reopened.
type inmemCluster struct {
	t      *testing.T
	cfgs   []Config
	trans  []*hraft.InmemTransport
	nodes  []*Node
	tweaks func(*Config)
}

func newInmemCluster(t *testing.T, n int, tweak func(*Config)) *inmemCluster {
	c := &inmemCluster{t: t, nodes: make([]*Node, n), trans: make([]*hraft.InmemTransport, n), tweaks: tweak}
	for i := range n {
		cfg := fastConfig(fmt.Sprintf("n%d", i), t.TempDir())
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	ctx := ctxT(t)
	for i := range n {
		c.cfgs[i].Bootstrap = i == 0
		c.start(i)
	}
	if err := c.nodes[0].WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		onLeader(t, c.nodes, func(l *Node) error { return l.AddVoter(ctx, c.cfgs[i].ID, c.addr(i)) })
	}
	return c
}

func (c *inmemCluster) addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 7000+i) }

// start opens node i on a fresh transport wired to every running peer.
func (c *inmemCluster) start(i int) {
	c.t.Helper()
	_, tr := hraft.NewInmemTransport(hraft.ServerAddress(c.addr(i)))
	for j, p := range c.trans {
		if j != i && p != nil && c.nodes[j] != nil {
			tr.Connect(p.LocalAddr(), p)
			p.Connect(tr.LocalAddr(), tr)
		}
	}
	cfg := c.cfgs[i]
	cfg.Transport = tr
	n, err := Open(ctxT(c.t), cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", cfg.ID, err)
	}
	c.trans[i], c.nodes[i] = tr, n
}

func (c *inmemCluster) stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close %s: %v", c.cfgs[i].ID, err)
	}
	for j, p := range c.trans {
		if j != i && p != nil {
			p.Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.nodes[i] = nil
}

// leader waits for a leader among the running nodes and returns its index.
func (c *inmemCluster) leader() int {
	c.t.Helper()
	ctx := ctxT(c.t)
	for {
		for i, n := range c.nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
		select {
		case <-ctx.Done():
			c.t.Fatal("no leader elected")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// converged waits until every running node has applied index and holds the
// same state.
func (c *inmemCluster) converged(index uint64) {
	c.t.Helper()
	var want *hubv1.ClusterState
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		if err := n.WaitForApplied(ctxT(c.t), index); err != nil {
			c.t.Fatalf("%s: %v", n.ID(), err)
		}
		if want == nil {
			want = n.State().Proto()
		} else if got := n.State().Proto(); !proto.Equal(got, want) {
			c.t.Fatalf("%s state differs:\n got %v\nwant %v", n.ID(), got, want)
		}
	}
}

// onLeader runs f on the current leader among nodes, retrying while
// leadership moves (a loaded test machine can trigger an election).
func onLeader(t *testing.T, nodes []*Node, f func(*Node) error) {
	t.Helper()
	ctx := ctxT(t)
	for {
		var err error = ErrNoLeader
		for _, n := range nodes {
			if n != nil && n.IsLeader() {
				err = f(n)
				break
			}
		}
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no stable leader: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A write on the leader reaches every node; a follower refuses writes and
// names the leader; when the leader goes, the others elect a new one that
// takes writes; the old leader reopened from its Dir catches up.
func TestClusterReplicatesFailsOverAndCatchesUp(t *testing.T) {
	c := newInmemCluster(t, 3, nil)
	ctx := ctxT(t)
	changes, cancel := c.nodes[1].LeaderChanges()
	defer cancel()

	l := c.leader()
	idx, err := c.nodes[l].Apply(ctx, addNet("a"))
	if err != nil {
		t.Fatal(err)
	}
	c.converged(idx)
	for _, n := range c.nodes {
		if n.State().DomainOwner("a.example") == nil {
			t.Fatalf("%s lacks network a", n.ID())
		}
	}

	f := (l + 1) % 3
	_, err = c.nodes[f].Apply(ctx, addNet("b"))
	var nle *NotLeaderError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.LeaderID != c.cfgs[l].ID || nle.LeaderAddr != c.addr(l) {
		t.Fatalf("follower Apply = %v, want NotLeaderError naming %s", err, c.cfgs[l].ID)
	}
	if id, addr := c.nodes[f].Leader(); id != c.cfgs[l].ID || addr != c.addr(l) {
		t.Errorf("Leader() = %s %s", id, addr)
	}
	// The FSM's verdict comes back through Apply on the leader.
	if _, err := c.nodes[l].Apply(ctx, addNet("a", "other.example")); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate add = %v, want ErrAlreadyExists", err)
	}
	// ApplyBytes refuses garbage without proposing it.
	if _, err := c.nodes[l].ApplyBytes(ctx, []byte{0xff, 0x01}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ApplyBytes(garbage) = %v, want ErrInvalid", err)
	}

	st := c.nodes[l].Status()
	if st.State != "Leader" || st.LeaderID != c.cfgs[l].ID || len(st.Servers) != 3 || st.Term == 0 || st.AppliedIndex < idx || st.LastIndex < idx || st.CommitIndex < idx {
		t.Errorf("leader Status = %+v", st)
	}
	for _, s := range st.Servers {
		if s.Suffrage != "voter" {
			t.Errorf("server %+v not a voter", s)
		}
	}

	// Leader goes away.
	c.stop(l)
	nl := c.leader()
	if nl == l {
		t.Fatal("stopped node still leader")
	}
	data, _ := proto.Marshal(addNet("b"))
	idx, err = c.nodes[nl].ApplyBytes(ctx, data)
	if err != nil {
		t.Fatalf("write on new leader: %v", err)
	}
	c.converged(idx)

	// Node 1 observed at least one leader; the latest value is the
	// current one, or an election's empty interlude.
	select {
	case li := <-changes:
		if li.ID != "" && li.ID != c.cfgs[nl].ID && li.ID != c.cfgs[l].ID {
			t.Errorf("leader change %+v names an unknown node", li)
		}
	default:
		t.Error("no leader change observed on n1")
	}

	// The old leader restarts from its Dir and catches up.
	c.cfgs[l].Bootstrap = true // must be ignored: state exists
	c.start(l)
	idx, err = c.nodes[nl].Apply(ctx, cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b"}))
	if err != nil {
		t.Fatal(err)
	}
	c.converged(idx)
	if !c.nodes[l].State().Allowed("b", "a", hubv1.Service_SERVICE_IM) {
		t.Error("restarted node missed the policy")
	}
	if n := len(c.nodes[nl].Status().Servers); n != 3 {
		t.Errorf("configuration has %d servers after restart, want 3", n)
	}

	// RemoveServer shrinks the configuration.
	if err := c.nodes[nl].RemoveServer(ctx, c.cfgs[l].ID); err != nil {
		t.Fatal(err)
	}
	if n := len(c.nodes[nl].Status().Servers); n != 2 {
		t.Errorf("configuration has %d servers after remove, want 2", n)
	}
	if err := c.nodes[nl].Barrier(ctx); err != nil {
		t.Errorf("Barrier: %v", err)
	}
}

// A node that was down while the leader compacted its log is brought up to
// date by an installed snapshot.
func TestClusterSnapshotInstall(t *testing.T) {
	logger, count := newRecorder()
	c := newInmemCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.Logger = logger
	})
	ctx := ctxT(t)
	l := c.leader()
	lag := (l + 1) % 3
	idx, err := c.nodes[l].Apply(ctx, addNet("base"))
	if err != nil {
		t.Fatal(err)
	}
	c.converged(idx)
	c.stop(lag)

	for i := range 60 {
		onLeader(t, c.nodes, func(l *Node) (err error) { idx, err = l.Apply(ctx, addNet(fmt.Sprintf("net%d", i))); return err })
	}
	// Wait until both running nodes (either may lead when the lagging one
	// returns) have compacted past what the lagging node holds.
	for i, n := range c.nodes {
		for n != nil {
			var si uint64
			fmt.Sscan(n.raft.Stats()["last_snapshot_index"], &si)
			if si > 40 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("n%d never snapshotted (last_snapshot_index %d)", i, si)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	before := count("Installed remote snapshot")
	c.start(lag)
	c.converged(idx)
	if got := c.nodes[lag].State().Networks(); len(got) != 61 {
		t.Errorf("lagging node has %d networks, want 61", len(got))
	}
	// Raft logs the install just after the FSM restore returns.
	for count("Installed remote snapshot") == before {
		select {
		case <-ctx.Done():
			t.Fatal("the lagging node caught up without a snapshot install")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Config.Validate names the bad field.
func TestConfigValidate(t *testing.T) {
	ca := newTestCA(t, "hub")
	srv, cli := tlsConfigs(ca, ca.issue(t, "node", "n1"))
	base := func() Config {
		c := fastConfig("n1", "/tmp/x")
		c.BindAddr, c.ServerTLS, c.ClientTLS = "127.0.0.1:0", srv, cli
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"id", func(c *Config) { c.ID = "N 1" }, "ID"},
		{"dir", func(c *Config) { c.Dir = "" }, "Dir"},
		{"no server tls", func(c *Config) { c.ServerTLS = nil }, "ServerTLS"},
		{"no client auth", func(c *Config) { s := srv.Clone(); s.ClientAuth = tls.RequestClientCert; c.ServerTLS = s }, "ServerTLS.ClientAuth"},
		{"no verify", func(c *Config) { s := srv.Clone(); s.VerifyConnection = nil; c.ServerTLS = s }, "ServerTLS.VerifyConnection"},
		{"client verify", func(c *Config) { s := cli.Clone(); s.VerifyConnection = nil; c.ClientTLS = s }, "ClientTLS.VerifyConnection"},
		{"bind", func(c *Config) { c.BindAddr = "nowhere" }, "BindAddr"},
		{"advertise unspecified", func(c *Config) { c.Advertise = "0.0.0.0:7000" }, "Advertise"},
		{"advertise port 0", func(c *Config) { c.Advertise = "10.0.0.1:0" }, "Advertise"},
		{"transport and tls", func(c *Config) { _, c.Transport = hraft.NewInmemTransport("") }, "Transport"},
		{"lease", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "LeaderLeaseTimeout"},
		{"election", func(c *Config) { c.ElectionTimeout = time.Millisecond }, "ElectionTimeout"},
		{"threshold", func(c *Config) { c.SnapshotThreshold = 0 }, "SnapshotThreshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "raft config "+tt.want) {
				t.Errorf("Validate = %v, want ErrInvalid naming %s", err, tt.want)
			}
		})
	}
}

// Reopening a Dir that another live node holds fails after bbolt's lock
// timeout instead of hanging.
func TestOpenLockedDir(t *testing.T) {
	dir := t.TempDir()
	cfg := fastConfig("n0", dir)
	cfg.Bootstrap = true
	_, cfg.Transport = hraft.NewInmemTransport("127.0.0.1:7000")
	n, err := Open(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	_, cfg.Transport = hraft.NewInmemTransport("127.0.0.1:7001")
	if n2, err := Open(ctxT(t), cfg); err == nil {
		n2.Close()
		t.Fatal("second Open of a held Dir succeeded")
	}
	if err := n.WaitForLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if !n.IsLeader() {
		t.Error("single bootstrapped node is not leader")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(context.Background(), addNet("a")); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v", err)
	}
}
