package admin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

const auditBaseTime = int64(1_750_000_000_000_000_000)

// openTestLedger opens a ledger in a temp dir that signs checkpoints only on
// request, so tests decide which tree sizes have one.
func openTestLedger(t *testing.T, id string, seed byte) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{
		Path:               filepath.Join(t.TempDir(), "audit.db"),
		NodeID:             id,
		Signer:             ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)),
		CheckpointEvery:    -1,
		CheckpointInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// auditEntry i is varied enough for every filter: kinds cycle, networks and
// users repeat, times are one second apart.
func auditEntry(i int) *ledger.Entry {
	nets := []string{"neta", "netb", "netc"}
	return &ledger.Entry{
		Time:   auditBaseTime + int64(i)*int64(time.Second),
		Kind:   []ledger.Kind{ledger.KindRequest, ledger.KindResponse, ledger.KindChat, ledger.KindAdmin}[i%4],
		Method: "MESSAGE",
		CallID: fmt.Sprintf("call-%d", i),
		From:   fmt.Sprintf("<sip:u%d@a.example>;tag=%d", i%3, i),
		To:     fmt.Sprintf("sip:v%d@b.example", i%2),
		SrcNet: nets[i%3],
		DstNet: nets[(i+1)%3],
		Status: 200,
	}
}

func appendEntries(t *testing.T, l *ledger.Ledger, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := l.Append(context.Background(), auditEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// startAuditNode is startNode with a ledger behind the audit RPCs (nil: none).
func startAuditNode(t *testing.T, ca *pki.CA, cl *fakeCluster, id string, l AuditLedger) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nodeCert := issue(t, ca, pki.RoleNode, id)
	n := &testNode{id: id, addr: lis.Addr().String(), store: cl.store(id), reg: prometheus.NewRegistry(), clock: newTestClock()}
	n.srv, err = NewServer(Options{
		NodeID: id, CA: ca, NodeClientTLS: NodeClientTLS(ca, nodeCert), Store: n.store,
		Ledger: l, Registerer: n.reg, Now: n.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis, ServerTLSConfig(ca, nodeCert))
	cl.mu.Lock()
	if cl.leaderID == "" {
		cl.leaderID = id
	}
	cl.mu.Unlock()
	if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 1, Actor: "test",
		Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: id, RaftAddr: "127.0.0.1:7000", AdminAddr: n.addr}}}}); err != nil {
		t.Fatal(err)
	}
	return n
}

// verifyCheckpointMsg checks the note's signature with the key the test
// trusts and that the message fields agree with the note.
func verifyCheckpointMsg(t *testing.T, l *ledger.Ledger, m *hubv1.Checkpoint) *ledger.Checkpoint {
	t.Helper()
	cp, err := ledger.VerifyCheckpoint([]byte(m.GetNote()), l.KeyName(), l.PublicKey())
	if err != nil {
		t.Fatalf("checkpoint note: %v", err)
	}
	if cp.Size != m.GetTreeSize() || !bytes.Equal(cp.Root, m.GetRootHash()) || cp.Origin != m.GetOrigin() ||
		!bytes.Equal(m.GetPublicKey(), l.PublicKey()) {
		t.Fatalf("checkpoint message %v disagrees with its note %+v", m, cp)
	}
	return cp
}

// The proof RPCs answer what a client can check on its own: signed
// checkpoints, inclusion and consistency proofs that verify, and errors
// naming the field at fault.
func TestAuditCheckpointAndProofs(t *testing.T) {
	ca := sharedCA(t)
	l := openTestLedger(t, "node-a", 1)
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", l)
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)

	appendEntries(t, l, 1, 10)
	cp10, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := verifyCheckpointMsg(t, l, cp10); got.Size != 10 || got.Origin != "clearhub/node-a" {
		t.Fatalf("latest checkpoint = %+v", got)
	}
	appendEntries(t, l, 11, 17)
	latest, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cp := verifyCheckpointMsg(t, l, latest); cp.Size != 17 {
		t.Fatalf("latest after more entries: size %d", cp.Size)
	}
	again, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{TreeSize: 10})
	if err != nil || again.GetNote() != cp10.GetNote() {
		t.Fatalf("checkpoint at 10 = %v, %v; want the one signed before", again, err)
	}
	_, err = c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{TreeSize: 12})
	wantStatus(t, err, codes.NotFound, "tree_size", "12")
	_, err = c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{TreeSize: 99})
	wantStatus(t, err, codes.InvalidArgument, "tree_size", "99")

	for _, tc := range []struct{ seq, size uint64 }{{1, 0}, {5, 0}, {17, 0}, {5, 10}, {10, 10}} {
		p, err := c.GetInclusionProof(ctx, &hubv1.InclusionProofRequest{Seq: tc.seq, TreeSize: tc.size})
		if err != nil {
			t.Fatalf("inclusion %+v: %v", tc, err)
		}
		cp := verifyCheckpointMsg(t, l, p.GetCheckpoint())
		if want := max(tc.size, 17); tc.size == 0 && cp.Size != want || tc.size != 0 && cp.Size != tc.size || p.GetTreeSize() != cp.Size {
			t.Fatalf("inclusion %+v against tree %d (message says %d)", tc, cp.Size, p.GetTreeSize())
		}
		var e ledger.Entry
		if err := json.Unmarshal(p.GetEntry().GetJson(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != tc.seq || p.GetEntry().GetSeq() != tc.seq || p.GetLeafIndex() != tc.seq-1 || !bytes.Equal(p.GetLeafHash(), ledger.LeafHash(&e)) {
			t.Fatalf("inclusion %+v: entry %d, leaf %d", tc, e.Seq, p.GetLeafIndex())
		}
		if err := ledger.VerifyEntryInclusion(&e, cp.Size, p.GetHashes(), cp.Root); err != nil {
			t.Fatalf("inclusion %+v: %v", tc, err)
		}
	}
	for _, tc := range []struct {
		req  *hubv1.InclusionProofRequest
		code codes.Code
		subs []string
	}{
		{&hubv1.InclusionProofRequest{}, codes.InvalidArgument, []string{"seq"}},
		{&hubv1.InclusionProofRequest{Seq: 18}, codes.NotFound, []string{"seq", "18"}},
		{&hubv1.InclusionProofRequest{Seq: 11, TreeSize: 10}, codes.InvalidArgument, []string{"seq", "11"}},
		{&hubv1.InclusionProofRequest{Seq: 3, TreeSize: 12}, codes.NotFound, []string{"tree_size"}},
	} {
		_, err := c.GetInclusionProof(ctx, tc.req)
		wantStatus(t, err, tc.code, tc.subs...)
	}

	cons, err := c.GetConsistencyProof(ctx, &hubv1.ConsistencyProofRequest{OldSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	oldCp, newCp := verifyCheckpointMsg(t, l, cons.GetOldCheckpoint()), verifyCheckpointMsg(t, l, cons.GetNewCheckpoint())
	if oldCp.Size != 10 || newCp.Size != 17 || cons.GetOldSize() != 10 || cons.GetNewSize() != 17 {
		t.Fatalf("consistency sizes %d..%d", oldCp.Size, newCp.Size)
	}
	if err := ledger.VerifyConsistency(10, 17, oldCp.Root, newCp.Root, cons.GetHashes()); err != nil {
		t.Fatal(err)
	}
	// The proof must not verify against another root: the test can fail.
	if err := ledger.VerifyConsistency(10, 17, newCp.Root, newCp.Root, cons.GetHashes()); err == nil {
		t.Fatal("consistency proof verified against a wrong old root")
	}
	for _, tc := range []struct {
		req  *hubv1.ConsistencyProofRequest
		code codes.Code
		sub  string
	}{
		{&hubv1.ConsistencyProofRequest{}, codes.InvalidArgument, "old_size"},
		{&hubv1.ConsistencyProofRequest{OldSize: 12}, codes.NotFound, "old_size"},
		{&hubv1.ConsistencyProofRequest{OldSize: 10, NewSize: 5}, codes.InvalidArgument, "old_size"},
		{&hubv1.ConsistencyProofRequest{OldSize: 10, NewSize: 16}, codes.NotFound, "new_size"},
		{&hubv1.ConsistencyProofRequest{OldSize: 30}, codes.InvalidArgument, "old_size"},
	} {
		_, err := c.GetConsistencyProof(ctx, tc.req)
		wantStatus(t, err, tc.code, tc.sub)
	}
}

// collectExport reads an export stream into its lines (each with "\n").
func collectExport(t *testing.T, st hubv1.AdminService_ExportAuditClient) ([]*hubv1.AuditRecord, []byte) {
	t.Helper()
	var recs []*hubv1.AuditRecord
	var file []byte
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return recs, file
		}
		if err != nil {
			t.Fatalf("export stream: %v", err)
		}
		recs = append(recs, r)
		file = append(append(file, r.GetJson()...), '\n')
	}
}

func entrySeqs(recs []*hubv1.AuditRecord) []uint64 {
	var seqs []uint64
	for _, r := range recs {
		if r.GetSeq() != 0 {
			seqs = append(seqs, r.GetSeq())
		}
	}
	return seqs
}

// ExportAudit streams exactly the entries the filter selects, as export
// lines that verify offline; a tampered line does not.
func TestAuditExport(t *testing.T) {
	ca := sharedCA(t)
	l := openTestLedger(t, "node-a", 1)
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", l)
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)
	const total = 40
	appendEntries(t, l, 1, total)
	trusted := map[string]ed25519.PublicKey{"node-a": l.PublicKey()}

	at := func(i int) int64 { return auditBaseTime + int64(i)*int64(time.Second) }
	for _, tc := range []struct {
		name string
		req  *hubv1.ExportAuditRequest
		f    ledger.Filter
	}{
		{"all", &hubv1.ExportAuditRequest{}, ledger.Filter{}},
		{"seq range", &hubv1.ExportAuditRequest{FromSeq: 5, ToSeq: 12}, ledger.Filter{FromSeq: 5, ToSeq: 12}},
		{"time range", &hubv1.ExportAuditRequest{SinceUnixNano: at(10), UntilUnixNano: at(20)},
			ledger.Filter{Since: time.Unix(0, at(10)), Until: time.Unix(0, at(20))}},
		{"network", &hubv1.ExportAuditRequest{Network: "netb"}, ledger.Filter{Network: "netb"}},
		{"user", &hubv1.ExportAuditRequest{User: "u1@a.example"}, ledger.Filter{User: "u1@a.example"}},
		{"kind", &hubv1.ExportAuditRequest{Kind: "chat"}, ledger.Filter{Kind: ledger.KindChat}},
		{"combined", &hubv1.ExportAuditRequest{Kind: "request", Network: "neta", FromSeq: 3}, ledger.Filter{Kind: ledger.KindRequest, Network: "neta", FromSeq: 3}},
		{"none match", &hubv1.ExportAuditRequest{Network: "nope"}, ledger.Filter{Network: "nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []uint64
			for s := uint64(1); s <= total; s++ {
				e, err := l.Get(s)
				if err != nil {
					t.Fatal(err)
				}
				if tc.f.Match(e) {
					want = append(want, s)
				}
			}
			st, err := c.ExportAudit(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			recs, file := collectExport(t, st)
			if got := entrySeqs(recs); !slices.Equal(got, want) {
				t.Fatalf("entries %v, want %v", got, want)
			}
			// The count is announced when known without a scan (all, seq
			// range only), and then exactly.
			md, _ := st.Header()
			announced := md.Get(ExportTotalHeader)
			if known := tc.name == "all" || tc.name == "seq range"; known {
				if len(announced) != 1 || announced[0] != strconv.Itoa(len(want)) {
					t.Fatalf("announced total %v, want %d", announced, len(want))
				}
			} else if len(announced) != 0 {
				t.Fatalf("announced total %v for a filtered export", announced)
			}
			for _, r := range recs {
				if r.GetNode() != "node-a" {
					t.Fatalf("record node %q", r.GetNode())
				}
				if r.GetSeq() != 0 {
					var e ledger.Entry
					if err := json.Unmarshal(r.GetJson(), &e); err != nil || e.Seq != r.GetSeq() || e.Time != r.GetTimeUnixNano() {
						t.Fatalf("record seq %d time %d, line says %d %d (%v)", r.GetSeq(), r.GetTimeUnixNano(), e.Seq, e.Time, err)
					}
				}
			}
			rep, err := ledger.VerifyExport(bytes.NewReader(file), trusted)
			if err != nil {
				t.Fatalf("streamed export does not verify: %v", err)
			}
			if rep.Entries != len(want) || rep.Proven != len(want) || rep.Nodes["node-a"] != "trusted" {
				t.Fatalf("report %+v for %d entries", rep, len(want))
			}
		})
	}

	// Tampering with one streamed entry line breaks verification at it.
	st, err := c.ExportAudit(ctx, &hubv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := collectExport(t, st)
	var tampered []byte
	for _, r := range recs {
		line := r.GetJson()
		if r.GetSeq() == 7 {
			line = bytes.Replace(line, []byte(`"call-7"`), []byte(`"call-X"`), 1)
		}
		tampered = append(append(tampered, line...), '\n')
	}
	_, err = ledger.VerifyExport(bytes.NewReader(tampered), trusted)
	var ve *ledger.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 7 {
		t.Fatalf("tampered export: %v, want a VerifyError at seq 7", err)
	}

	for _, tc := range []struct {
		req *hubv1.ExportAuditRequest
		sub string
	}{
		{&hubv1.ExportAuditRequest{Kind: "bogus"}, "kind"},
		{&hubv1.ExportAuditRequest{FromSeq: 9, ToSeq: 3}, "to_seq"},
		{&hubv1.ExportAuditRequest{SinceUnixNano: at(5), UntilUnixNano: at(5)}, "until_unix_nano"},
		{&hubv1.ExportAuditRequest{SinceUnixNano: -1}, "since_unix_nano"},
		{&hubv1.ExportAuditRequest{User: "<>"}, "user"},
	} {
		st, err := c.ExportAudit(ctx, tc.req)
		if err == nil {
			_, err = st.Recv()
		}
		wantStatus(t, err, codes.InvalidArgument, tc.sub)
	}
}

// Without a ledger every audit RPC says so with FailedPrecondition.
func TestAuditNoLedger(t *testing.T) {
	ca := sharedCA(t)
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", nil)
	c := operatorConn(t, ca, n)
	ctx := ctxT(t)
	_, err := c.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
	wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
	_, err = c.GetInclusionProof(ctx, &hubv1.InclusionProofRequest{Seq: 1})
	wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
	_, err = c.GetConsistencyProof(ctx, &hubv1.ConsistencyProofRequest{OldSize: 1})
	wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
	for _, cluster := range []bool{false, true} {
		st, err := c.ExportAudit(ctx, &hubv1.ExportAuditRequest{Cluster: cluster})
		if err == nil {
			_, err = st.Recv()
		}
		wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
	}
	st, err := c.TailAudit(ctx, &hubv1.TailAuditRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
}

// TailAudit replays from from_seq, then follows new entries; from_seq 0
// starts at the next entry.
func TestAuditTail(t *testing.T) {
	ca := sharedCA(t)
	l := openTestLedger(t, "node-a", 1)
	n := startAuditNode(t, ca, newFakeCluster(), "node-a", l)
	c := operatorConn(t, ca, n)
	appendEntries(t, l, 1, 3)

	recvSeqs := func(st hubv1.AdminService_TailAuditClient, k int) []uint64 {
		t.Helper()
		var got []uint64
		for range k {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("tail: %v", err)
			}
			var e ledger.Entry
			if err := json.Unmarshal(r.GetJson(), &e); err != nil || e.Seq != r.GetSeq() {
				t.Fatalf("tail record %d: %v", r.GetSeq(), err)
			}
			got = append(got, r.GetSeq())
		}
		return got
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	fromTwo, err := c.TailAudit(ctx, &hubv1.TailAuditRequest{FromSeq: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := recvSeqs(fromTwo, 2); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("replay %v", got)
	}
	newOnly, err := c.TailAudit(ctx, &hubv1.TailAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The server sends headers once it has fixed where "from now on" starts.
	if _, err := newOnly.Header(); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 4, 5)
	if got := recvSeqs(fromTwo, 2); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("follow %v", got)
	}
	if got := recvSeqs(newOnly, 2); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("new-only tail %v", got)
	}
	cancel()
	if _, err := fromTwo.Recv(); err == nil {
		t.Fatal("tail went on after cancel")
	}
}

// A cluster export asks every node (node certificates over ClusterInternal)
// and merges the exports by entry time, each node's lines in their own
// order; the result verifies with both nodes' keys. ClusterInternal refuses
// operator certificates.
func TestAuditClusterExport(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	la, lb := openTestLedger(t, "node-a", 1), openTestLedger(t, "node-b", 2)
	na := startAuditNode(t, ca, cl, "node-a", la)
	startAuditNode(t, ca, cl, "node-b", lb)
	appendEntries(t, la, 1, 6)
	appendEntries(t, lb, 1, 9)
	ctx := ctxT(t)

	st, err := operatorConn(t, ca, na).ExportAudit(ctx, &hubv1.ExportAuditRequest{Cluster: true, Kind: "request"})
	if err != nil {
		t.Fatal(err)
	}
	recs, file := collectExport(t, st)
	var order []string
	var last int64
	lastSeq := map[string]uint64{}
	for _, r := range recs {
		if r.GetSeq() == 0 {
			continue
		}
		if r.GetTimeUnixNano() < last {
			t.Fatalf("entry %s/%d at %d after one at %d: not merged by time", r.GetNode(), r.GetSeq(), r.GetTimeUnixNano(), last)
		}
		last = r.GetTimeUnixNano()
		if r.GetSeq() <= lastSeq[r.GetNode()] {
			t.Fatalf("node %s: seq %d after %d", r.GetNode(), r.GetSeq(), lastSeq[r.GetNode()])
		}
		lastSeq[r.GetNode()] = r.GetSeq()
		if len(order) == 0 || order[len(order)-1] != r.GetNode() {
			order = append(order, r.GetNode())
		}
	}
	// Requests are entries 4 (node-a) and 4, 8 (node-b), at the times of
	// their index: a4 and b4 tie (node-id order), then b8.
	if !slices.Equal(order, []string{"node-a", "node-b"}) {
		t.Fatalf("entry order by node %v", order)
	}
	// Unfiltered, the two ledgers' entries interleave by time.
	st2, err := operatorConn(t, ca, na).ExportAudit(ctx, &hubv1.ExportAuditRequest{Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	all, allFile := collectExport(t, st2)
	var switches int
	prev := ""
	for _, r := range all {
		if r.GetSeq() != 0 && r.GetNode() != prev {
			switches++
			prev = r.GetNode()
		}
	}
	if switches < 10 {
		t.Fatalf("unfiltered cluster export switched nodes %d times, want interleaving by time", switches)
	}
	if _, err := ledger.VerifyExport(bytes.NewReader(allFile), map[string]ed25519.PublicKey{"node-a": la.PublicKey(), "node-b": lb.PublicKey()}); err != nil {
		t.Fatalf("time-merged export: %v", err)
	}
	rep, err := ledger.VerifyExport(bytes.NewReader(file), map[string]ed25519.PublicKey{"node-a": la.PublicKey(), "node-b": lb.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	// Kinds cycle every 4: requests are entries 4, 8 of each ledger's
	// auditEntry(i) with i%4 == 0 -> seqs 4 (a), 4 and 8 (b).
	if rep.Entries != 3 || len(rep.Nodes) != 2 {
		t.Fatalf("report %+v", rep)
	}
	// Only node-a's key: node-b's block is refused.
	if _, err := ledger.VerifyExport(bytes.NewReader(file), map[string]ed25519.PublicKey{"node-a": la.PublicKey()}); err == nil {
		t.Fatal("cluster export verified without node-b's key")
	}

	op := issue(t, ca, pki.RoleOperator, "alice")
	ci := hubv1.NewClusterInternalClient(dialT(t, na.addr, clientTLS(ca, &op)))
	lst, err := ci.ExportLocalAudit(ctx, &hubv1.ExportAuditRequest{})
	if err == nil {
		_, err = lst.Recv()
	}
	wantStatus(t, err, codes.PermissionDenied, "ClusterInternal")
}

// A cluster export fails, naming the node, when a node cannot answer.
func TestAuditClusterExportPeerDown(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	la := openTestLedger(t, "node-a", 1)
	na := startAuditNode(t, ca, cl, "node-a", la)
	startAuditNode(t, ca, cl, "node-b", nil) // serves, but has no ledger
	appendEntries(t, la, 1, 2)
	st, err := operatorConn(t, ca, na).ExportAudit(ctxT(t), &hubv1.ExportAuditRequest{Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = st.Recv()
	}
	wantStatus(t, err, codes.FailedPrecondition, "node node-b", "no audit ledger")
}
