package admin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// memberEnv is a two-node cluster with real ledgers and two member
// networks, neta and netb, each with its own member CA.
type memberEnv struct {
	ca       *pki.CA
	cl       *fakeCluster
	n1, n2   *testNode
	l1, l2   *ledger.Ledger
	caA, caB *pki.CA
	op       hubv1.AdminServiceClient
}

func newMemberEnv(t *testing.T) *memberEnv {
	t.Helper()
	e := &memberEnv{ca: sharedCA(t), cl: newFakeCluster()}
	e.l1, e.l2 = openTestLedger(t, "n1", 1), openTestLedger(t, "n2", 2)
	e.n1 = startAuditNode(t, e.ca, e.cl, "n1", e.l1)
	e.n2 = startAuditNode(t, e.ca, e.cl, "n2", e.l2)
	// Publish the node keys in the state, as hubd does.
	for _, n := range []struct {
		node *testNode
		l    *ledger.Ledger
	}{{e.n1, e.l1}, {e.n2, e.l2}} {
		if _, err := e.cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 2, Actor: "test",
			Op: &hubv1.Command_PutNode{PutNode: &hubv1.PutNode{Node: &hubv1.Node{Id: n.node.id, RaftAddr: "127.0.0.1:7000",
				AdminAddr: n.node.addr, PublicKey: n.l.PublicKey()}}}}); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if e.caA, err = pki.NewCA("neta member CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.caB, err = pki.NewCA("netb member CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	e.op = operatorConn(t, e.ca, e.n1)
	for id, mca := range map[string]*pki.CA{"neta": e.caA, "netb": e.caB} {
		caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mca.Cert.Raw}))
		if _, err := e.op.AddNetwork(ctxT(t), &hubv1.AddNetworkRequest{Network: &hubv1.Network{
			Id: id, Domains: []string{id + ".example"}, Edges: []string{"sips:edge." + id + ".example:5061"},
			Identity: &hubv1.Identity{CaPem: []string{caPEM}},
			Services: []hubv1.Service{hubv1.Service_SERVICE_IM},
		}}); err != nil {
			t.Fatalf("add network %s: %v", id, err)
		}
	}
	appendEntries(t, e.l1, 0, 11)
	appendEntries(t, e.l2, 12, 23)
	return e
}

// member dials node n with a certificate cert.
func (e *memberEnv) member(t *testing.T, n *testNode, c tls.Certificate) hubv1.MemberAuditServiceClient {
	t.Helper()
	return hubv1.NewMemberAuditServiceClient(dialT(t, n.addr, clientTLS(e.ca, &c)))
}

func (e *memberEnv) memberCert(t *testing.T, mca *pki.CA, host string) tls.Certificate {
	t.Helper()
	c, _, _, err := mca.IssueKeyPair(pki.RoleMember, host, []string{host}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exportAll reads a whole member export into JSON Lines.
func exportAll(t *testing.T, c hubv1.MemberAuditServiceClient, req *hubv1.ExportAuditRequest) ([]byte, error) {
	t.Helper()
	st, err := c.Export(ctxT(t), req)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		buf.Write(r.GetJson())
		buf.WriteByte('\n')
	}
}

type entryNets struct {
	Type   string `json:"type"`
	Node   string `json:"node"`
	Seq    uint64 `json:"seq"`
	SrcNet string `json:"src_net"`
	DstNet string `json:"dst_net"`
}

// entriesOf returns the entry lines of an export.
func entriesOf(t *testing.T, jsonl []byte) []entryNets {
	t.Helper()
	var out []entryNets
	for _, line := range bytes.Split(bytes.TrimSpace(jsonl), []byte("\n")) {
		var e entryNets
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if e.Type == "entry" {
			out = append(out, e)
		}
	}
	return out
}

// wantNets counts auditEntry(0..23) that name net as source or
// destination.
func wantNets(net string) int {
	n := 0
	for i := 0; i <= 23; i++ {
		if e := auditEntry(i); e.SrcNet == net || e.DstNet == net {
			n++
		}
	}
	return n
}

// A member exports its own entries from every node, the export verifies
// offline with the node keys, and no other network's entry is in it,
// whatever network, user or kind the request names.
func TestMemberExportOwnTrafficOnly(t *testing.T) {
	e := newMemberEnv(t)
	a := e.member(t, e.n1, e.memberCert(t, e.caA, "edge.neta.example"))
	keys := map[string]ed25519.PublicKey{"n1": e.l1.PublicKey(), "n2": e.l2.PublicKey()}
	for _, tc := range []struct {
		name string
		req  *hubv1.ExportAuditRequest
		want int
	}{
		{"own", &hubv1.ExportAuditRequest{Cluster: true}, wantNets("neta")},
		{"forged network ignored", &hubv1.ExportAuditRequest{Cluster: true, Network: "netb"}, wantNets("neta")},
		{"user of another network narrows to nothing of theirs", &hubv1.ExportAuditRequest{Cluster: true, User: "sip:u1@a.example"}, -1},
		{"kind narrows", &hubv1.ExportAuditRequest{Cluster: true, Kind: "chat"}, -1},
		{"local node only", &hubv1.ExportAuditRequest{}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exportAll(t, a, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ledger.VerifyExport(bytes.NewReader(out), keys); err != nil {
				t.Fatalf("export does not verify: %v\n%s", err, out)
			}
			got := entriesOf(t, out)
			for _, en := range got {
				if en.SrcNet != "neta" && en.DstNet != "neta" {
					t.Errorf("entry %s/%d of %s->%s in neta's export", en.Node, en.Seq, en.SrcNet, en.DstNet)
				}
			}
			if tc.want >= 0 && len(got) != tc.want {
				t.Errorf("got %d entries, want %d", len(got), tc.want)
			}
			if tc.want < 0 && len(got) == 0 && tc.name == "local node only" {
				t.Error("local export is empty")
			}
		})
	}
	// B's own export: disjoint traffic (netb <-> netc) is B's, never A's.
	b := e.member(t, e.n2, e.memberCert(t, e.caB, "netb.example"))
	out, err := exportAll(t, b, &hubv1.ExportAuditRequest{Cluster: true, Network: "neta"})
	if err != nil {
		t.Fatal(err)
	}
	if got := entriesOf(t, out); len(got) != wantNets("netb") {
		t.Errorf("netb export: %d entries, want %d", len(got), wantNets("netb"))
	}
}

// Who may call what: a member certificate opens the member API only; an
// operator or node certificate cannot use it (no impersonation of a
// member); a member CA cannot mint an operator; an unknown CA or a name
// outside the network is refused; a suspended network keeps its audit
// access, a removed one loses it.
func TestMemberAccess(t *testing.T) {
	e := newMemberEnv(t)
	memberA := e.memberCert(t, e.caA, "edge.neta.example")
	forgedOp, _, _, err := e.caA.IssueKeyPair(pki.RoleOperator, "edge.neta.example", []string{"edge.neta.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forgedAdmin, _, _, err := e.caA.IssueOperatorKeyPair("mallory", pki.AdminRoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := pki.NewCA("stranger CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	operator := issue(t, e.ca, pki.RoleOperator, "alice")
	node := issue(t, e.ca, pki.RoleNode, "n9")
	for _, tc := range []struct {
		name        string
		cert        tls.Certificate
		adminCode   codes.Code // AdminService.ClusterStatus
		memberCode  codes.Code // MemberAuditService.Checkpoints
		memberInMsg string
	}{
		{"member", memberA, codes.PermissionDenied, codes.OK, ""},
		{"member CA cert claiming operator", forgedOp, codes.PermissionDenied, codes.OK, ""},
		{"member CA admin without network name", forgedAdmin, codes.Unavailable, codes.Unavailable, ""},
		{"unknown CA", e.memberCert(t, stranger, "edge.neta.example"), codes.Unavailable, codes.Unavailable, ""},
		{"name outside the network", e.memberCert(t, e.caA, "edge.netb.example"), codes.Unavailable, codes.Unavailable, ""},
		{"operator", operator, codes.OK, codes.PermissionDenied, "operator may not call MemberAuditService"},
		{"node", node, codes.PermissionDenied, codes.PermissionDenied, "node may not call MemberAuditService"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := dialT(t, e.n1.addr, clientTLS(e.ca, &tc.cert))
			_, err := hubv1.NewAdminServiceClient(cc).ClusterStatus(ctxT(t), &hubv1.ClusterStatusRequest{})
			if got := status.Code(err); got != tc.adminCode {
				t.Errorf("ClusterStatus: %v, want %v", err, tc.adminCode)
			}
			_, err = hubv1.NewMemberAuditServiceClient(cc).Checkpoints(ctxT(t), &hubv1.MemberCheckpointsRequest{})
			if got := status.Code(err); got != tc.memberCode {
				t.Errorf("Checkpoints: %v, want %v", err, tc.memberCode)
			}
			if tc.memberInMsg != "" && !strings.Contains(status.Convert(err).Message(), tc.memberInMsg) {
				t.Errorf("Checkpoints: %v, want it to say %q", err, tc.memberInMsg)
			}
		})
	}
	a := e.member(t, e.n1, memberA)
	if _, err := e.op.SuspendNetwork(ctxT(t), &hubv1.NetworkRef{Id: "neta"}); err != nil {
		t.Fatal(err)
	}
	if _, err := exportAll(t, a, &hubv1.ExportAuditRequest{}); err != nil {
		t.Errorf("suspended network's export: %v", err)
	}
	if _, err := e.op.RemoveNetwork(ctxT(t), &hubv1.NetworkRef{Id: "neta"}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Checkpoints(ctxT(t), &hubv1.MemberCheckpointsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "not registered for any member network")
}

// Checkpoints answers every node's latest checkpoint with the published
// key; a consistency proof between two checkpoints the member saw
// verifies; the watch delivers a newly signed checkpoint.
func TestMemberCheckpointsConsistencyWatch(t *testing.T) {
	old := memberWatchInterval
	memberWatchInterval = 10 * time.Millisecond
	t.Cleanup(func() { memberWatchInterval = old })
	e := newMemberEnv(t)
	a := e.member(t, e.n1, e.memberCert(t, e.caA, "edge.neta.example"))
	resp, err := a.Checkpoints(ctxT(t), &hubv1.MemberCheckpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNetwork() != "neta" || len(resp.GetNodes()) != 2 {
		t.Fatalf("checkpoints answer %v", resp)
	}
	ls := map[string]*ledger.Ledger{"n1": e.l1, "n2": e.l2}
	seen := map[string]*ledger.Checkpoint{}
	for _, row := range resp.GetNodes() {
		l := ls[row.GetNode()]
		if row.GetError() != "" || !bytes.Equal(row.GetPublicKey(), l.PublicKey()) {
			t.Fatalf("node row %v", row)
		}
		cp, err := ledger.VerifyCheckpoint([]byte(row.GetCheckpoint().GetNote()), l.KeyName(), row.GetPublicKey())
		if err != nil {
			t.Fatalf("node %s: %v", row.GetNode(), err)
		}
		seen[row.GetNode()] = cp
	}

	w, err := a.WatchCheckpoints(ctxT(t), &hubv1.MemberWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetCheckpoint().GetTreeSize() != seen["n1"].Size {
		t.Fatalf("watch starts at %d, want %d", first.GetCheckpoint().GetTreeSize(), seen["n1"].Size)
	}
	appendEntries(t, e.l1, 30, 34)
	if _, err := e.l1.Checkpoint(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	next, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	newCp, err := ledger.VerifyCheckpoint([]byte(next.GetCheckpoint().GetNote()), e.l1.KeyName(), e.l1.PublicKey())
	if err != nil || newCp.Size != seen["n1"].Size+5 {
		t.Fatalf("watched checkpoint %+v: %v", newCp, err)
	}

	p, err := a.GetConsistencyProof(ctxT(t), &hubv1.MemberConsistencyRequest{Node: "n1", OldSize: seen["n1"].Size, NewSize: newCp.Size})
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyConsistency(seen["n1"].Size, newCp.Size, seen["n1"].Root, newCp.Root, p.GetHashes()); err != nil {
		t.Fatalf("consistency proof does not verify: %v", err)
	}
	_, err = a.GetConsistencyProof(ctxT(t), &hubv1.MemberConsistencyRequest{Node: "n2", OldSize: 1})
	wantStatus(t, err, codes.FailedPrecondition, "ask n2 at "+e.n2.addr)
}
