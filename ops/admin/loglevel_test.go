package admin

import (
	"bytes"
	"crypto/ed25519"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// syncBuffer is a bytes.Buffer safe for the server's and the test's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startOptsNode is startNode with Options edited by edit (LogLevel,
// Version, Ledger) before the server is built.
func startOptsNode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string, edit func(*Options)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), audit: &fakeAuditor{},
		reg: prometheus.NewRegistry(), clock: newTestClock(), logs: &logRecorder{}}
	opts := Options{
		NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: n.store,
		Auditor: n.audit, Registerer: n.reg, Now: n.clock.Now, Logger: slog.New(n.logs),
	}
	edit(&opts)
	if n.srv, err = NewServer(opts); err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))
	raftAddr := "127.0.0.1:7000"
	cl.mu.Lock()
	if cl.leaderID == "" {
		cl.leaderID = id
	}
	cl.addrs[id] = raftAddr
	cl.servers = append(cl.servers, raftServer(id, raftAddr))
	cl.mu.Unlock()
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "test",
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: raftAddr, AdminAddr: n.addr}}}}); err != nil {
		t.Fatal(err)
	}
	return n
}

// SetLogLevel reads and changes the node's level, refuses a bad one naming
// the field, audits each change, and its "log level changed" line shows
// under whichever level hides less.
func TestSetLogLevel(t *testing.T) {
	ca := sharedCA(t)
	var lv slog.LevelVar
	var out syncBuffer
	n := startOptsNode(t, ca, newFakeCluster(), "node-a", func(o *Options) {
		o.LogLevel = &lv
		o.Logger = slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: &lv}))
	})
	c := adminClient(t, ca, n, issueOperator(t, ca, "ann", pki.AdminRoleAdmin))
	ctx := ctxT(t)

	for _, tc := range []struct {
		name, level string
		code        codes.Code
		want        slog.Level // the level in effect afterwards
		logged      string     // "" when no change line is expected
	}{
		{"read", "", codes.OK, slog.LevelInfo, ""},
		{"to debug", "debug", codes.OK, slog.LevelDebug, "from=info to=debug"},
		{"upper case", "WARN", codes.OK, slog.LevelWarn, "from=debug to=warn"},
		{"warning alias, unchanged", "warning", codes.OK, slog.LevelWarn, "from=warn to=warn"},
		// Info lines are hidden at error: the change is said before it.
		{"to error", "error", codes.OK, slog.LevelError, "from=warn to=error"},
		// And hidden at error before: said after it.
		{"back to info", "info", codes.OK, slog.LevelInfo, "from=error to=info"},
		{"unknown", "verbose", codes.InvalidArgument, slog.LevelInfo, ""},
		{"slog offset form refused", "info+2", codes.InvalidArgument, slog.LevelInfo, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(out.String(), "log level changed")
			resp, err := c.SetLogLevel(ctx, &hubv1.SetLogLevelRequest{Level: tc.level})
			if tc.code != codes.OK {
				wantStatus(t, err, tc.code, "level", tc.level)
			} else if err != nil {
				t.Fatal(err)
			} else if resp.GetNode() != "node-a" || resp.GetLevel() != LogLevelName(tc.want) {
				t.Fatalf("answer %v, want node-a %s", resp, LogLevelName(tc.want))
			}
			if got := lv.Level(); got != tc.want {
				t.Fatalf("level now %v, want %v", got, tc.want)
			}
			lines := strings.Count(out.String(), "log level changed") - before
			switch {
			case tc.logged == "" && lines != 0:
				t.Fatalf("unexpected change line:\n%s", out.String())
			case tc.logged != "" && (lines != 1 || !strings.Contains(out.String(), tc.logged) || !strings.Contains(out.String(), "actor=ann")):
				t.Fatalf("want one visible line with %q and the actor, got %d:\n%s", tc.logged, lines, out.String())
			}
		})
	}
	var audited []string
	n.audit.mu.Lock()
	for _, e := range n.audit.entries {
		if e.Method == "SetLogLevel" {
			audited = append(audited, e.From+": "+e.Reason)
		}
	}
	n.audit.mu.Unlock()
	want := []string{
		"ann;role=admin: log level of node node-a info -> debug",
		"ann;role=admin: log level of node node-a debug -> warn",
		"ann;role=admin: log level of node node-a warn -> error",
		"ann;role=admin: log level of node node-a error -> info",
	}
	if strings.Join(audited, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit entries:\n%s\nwant:\n%s", strings.Join(audited, "\n"), strings.Join(want, "\n"))
	}

	// Only admin may call it, reading included.
	otto := adminClient(t, ca, n, issueOperator(t, ca, "otto", pki.AdminRoleOperator))
	_, err := otto.SetLogLevel(ctx, &hubv1.SetLogLevelRequest{})
	wantStatus(t, err, codes.PermissionDenied, "otto", "admin")
}

// A node built without a LogLevel says it cannot change it.
func TestSetLogLevelUnsupported(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	_, err := operatorConn(t, ca, n).SetLogLevel(ctxT(t), &hubv1.SetLogLevelRequest{Level: "debug"})
	wantStatus(t, err, codes.FailedPrecondition, "log level")
}

// ListCheckpoints lists the stored checkpoints oldest first, the newest
// limit of them, without signing a new one.
func TestListCheckpoints(t *testing.T) {
	ca := sharedCA(t)
	l := openTestLedger(t, "node-a", 1)
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", l)
	ctx := ctxT(t)
	c := operatorConn(t, ca, n)
	var sizes []uint64
	for _, upTo := range []int{3, 7, 8, 12} {
		appendEntries(t, l, int(l.Size())+1, upTo)
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, cp.Size)
	}
	appendEntries(t, l, 13, 15) // not checkpointed: must not be listed or signed
	for _, tc := range []struct {
		limit uint32
		want  []uint64
	}{
		{0, sizes},
		{2, sizes[2:]},
		{4, sizes},
		{100, sizes},
	} {
		resp, err := c.ListCheckpoints(ctx, &hubv1.ListCheckpointsRequest{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, m := range resp.GetCheckpoints() {
			got = append(got, verifyCheckpointMsg(t, l, m).Size)
		}
		if !equalU64(got, tc.want) {
			t.Errorf("limit %d: sizes %v, want %v", tc.limit, got, tc.want)
		}
	}
	if _, err := l.CheckpointAt(15); err == nil {
		t.Error("listing signed a checkpoint")
	}
	// Readonly may list them: a checkpoint carries no entry.
	rita := adminClient(t, ca, n, issueOperator(t, ca, "rita", pki.AdminRoleReadonly))
	if _, err := rita.ListCheckpoints(ctx, &hubv1.ListCheckpointsRequest{}); err != nil {
		t.Errorf("readonly: %v", err)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeCheckpoints is an AuditLedger whose checkpoint list is n synthetic
// checkpoints of sizes 1..n.
type fakeCheckpoints struct {
	AuditLedger
	n int
}

func (f fakeCheckpoints) Checkpoints(fn func(*ledger.Checkpoint) error) error {
	for i := 1; i <= f.n; i++ {
		if err := fn(&ledger.Checkpoint{Origin: "o", Size: uint64(i), Root: make([]byte, 32)}); err != nil {
			return err
		}
	}
	return nil
}

func (fakeCheckpoints) PublicKey() ed25519.PublicKey { return nil }

// More checkpoints than one answer carries: the newest MaxListCheckpoints,
// oldest first, and a warning header saying so; a smaller limit is no cut.
func TestListCheckpointsCap(t *testing.T) {
	ca := sharedCA(t)
	total := MaxListCheckpoints + 7
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", fakeCheckpoints{n: total})
	c := operatorConn(t, ca, n)
	for _, tc := range []struct {
		limit      uint32
		first, num int
		warn       bool
	}{
		{0, 8, MaxListCheckpoints, true},
		{10, total - 9, 10, false},
		{MaxListCheckpoints + 100, 8, MaxListCheckpoints, true},
	} {
		var hdr metadata.MD
		resp, err := c.ListCheckpoints(ctxT(t), &hubv1.ListCheckpointsRequest{Limit: tc.limit}, grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		cps := resp.GetCheckpoints()
		if len(cps) != tc.num || cps[0].GetTreeSize() != uint64(tc.first) || cps[len(cps)-1].GetTreeSize() != uint64(total) {
			t.Fatalf("limit %d: %d checkpoints %d..%d, want %d from %d to %d", tc.limit, len(cps),
				cps[0].GetTreeSize(), cps[len(cps)-1].GetTreeSize(), tc.num, tc.first, total)
		}
		if w := hdr.Get(WarningHeader); (len(w) > 0) != tc.warn || tc.warn && !strings.Contains(w[0], "newest") {
			t.Errorf("limit %d: warning %q, want one: %v", tc.limit, w, tc.warn)
		}
	}
}

// Each node reports its build version, its own and its peers' (through
// the LocalStatus probe) in ClusterStatus.
func TestClusterStatusVersions(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	a := startOptsNode(t, ca, cl, "node-a", func(o *Options) { o.Version = "v1.2.3" })
	startOptsNode(t, ca, cl, "node-b", func(o *Options) { o.Version = "v1.3.0-rc1" })
	startOptsNode(t, ca, cl, "node-c", func(*Options) {}) // an older build: reports nothing
	st, err := operatorConn(t, ca, a).ClusterStatus(ctxT(t), &hubv1.ClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, ns := range st.GetNodes() {
		got[ns.GetId()] = ns.GetVersion()
	}
	want := map[string]string{"node-a": "v1.2.3", "node-b": "v1.3.0-rc1", "node-c": ""}
	for id, v := range want {
		if gv, ok := got[id]; !ok || gv != v {
			t.Errorf("%s: version %q (present %v), want %q", id, gv, ok, v)
		}
	}
}
