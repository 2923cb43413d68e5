package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The member commands run through the command tree against a real
// two-node admin API (admin.Server with the real MemberAuditService and
// ClusterInternal between the nodes, real ledgers) over mutual TLS with
// member certificates of two networks, and against a fake
// MemberAuditService that sends forged checkpoints.

// stateStore is a fixed cluster state with no Raft behind it.
type stateStore struct {
	stubStore
	st *raft.State
}

func (s stateStore) State() *raft.State { return s.st }

// memberEntry is one entry appended to a node's ledger.
type memberEntry struct {
	node, src, dst, from, kind string
}

// memberHub is two nodes n1, n2 sharing one state in which networks neta
// and netb each have their own member CA; cred holds each credential's
// file prefix (PREFIX.crt, PREFIX.key).
type memberHub struct {
	data    string
	ca      *pki.CA
	ls      map[string]*ledger.Ledger
	seeds   map[string]byte
	addrs   map[string]string
	entries []memberEntry
	cred    map[string]string // "neta", "netb", "operator", "neta-wronghost"
}

var memberNets = []string{"neta", "netb", "netc"}

func openNodeLedger(t *testing.T, node string, seed byte) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{
		Path: filepath.Join(t.TempDir(), "audit.db"), NodeID: node,
		Signer:          ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)),
		CheckpointEvery: -1, CheckpointInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// writeCred writes a PEM certificate and key under dir/name.{crt,key}.
func writeCred(t *testing.T, dir, name string, certPEM, keyPEM []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p+".crt", certPEM, 0o644)
	writeFile(t, p+".key", keyPEM, 0o600)
	return p
}

func newMemberHub(t *testing.T) *memberHub {
	t.Helper()
	data, ca, _ := newDataDir(t)
	h := &memberHub{data: data, ca: ca, ls: map[string]*ledger.Ledger{}, seeds: map[string]byte{"n1": 1, "n2": 2},
		addrs: map[string]string{}, cred: map[string]string{}}
	lis := map[string]net.Listener{}
	cs := &hubv1.ClusterState{}
	for _, id := range []string{"n1", "n2"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[id], h.addrs[id] = l, l.Addr().String()
		h.ls[id] = openNodeLedger(t, id, h.seeds[id])
		cs.Nodes = append(cs.Nodes, &hubv1.Node{Id: id, RaftAddr: "127.0.0.1:7000", AdminAddr: h.addrs[id], PublicKey: h.ls[id].PublicKey()})
	}
	credDir := t.TempDir()
	for _, id := range []string{"neta", "netb"} {
		mca, err := pki.NewCA(id+" member CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cs.Networks = append(cs.Networks, &hubv1.Network{
			Id: id, Domains: []string{id + ".example"}, Edges: []string{"sips:edge." + id + ".example:5061"},
			Identity: &hubv1.Identity{CaPem: []string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mca.Cert.Raw}))}},
			Services: []hubv1.Service{hubv1.Service_SERVICE_IM}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
		})
		host := "edge." + id + ".example"
		_, certPEM, keyPEM, err := mca.IssueKeyPair(pki.RoleMember, host, []string{host}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		h.cred[id] = writeCred(t, credDir, id, certPEM, keyPEM)
		if id == "neta" {
			// Issued by neta's CA for a name neta does not own.
			_, certPEM, keyPEM, err := mca.IssueKeyPair(pki.RoleMember, "edge.netb.example", []string{"edge.netb.example"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			h.cred["neta-wronghost"] = writeCred(t, credDir, "neta-wronghost", certPEM, keyPEM)
		}
	}
	h.cred["operator"] = filepath.Join(data, "pki", "operator")
	store := stateStore{st: raft.NewState(1, cs)}
	for _, id := range []string{"n1", "n2"} {
		nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, id, []string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := admin.NewServer(admin.Options{NodeID: id, CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert),
			Store: store, Ledger: h.ls[id]})
		if err != nil {
			t.Fatal(err)
		}
		g := srv.NewGRPCServer(admin.ServerTLSConfig(ca, nodeCert))
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Serve(lis[id]) }()
		t.Cleanup(func() { g.Stop(); <-done; srv.Close() })
	}
	// Traffic of every pair of networks on both nodes: i%3 == 1 is
	// netb -> netc, which is none of neta's business.
	for i := 1; i <= 24; i++ {
		node := "n1"
		if i > 12 {
			node = "n2"
		}
		h.appendEntry(t, node, i)
	}
	for _, l := range h.ls {
		if _, err := l.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *memberHub) appendEntry(t *testing.T, node string, i int) {
	t.Helper()
	e := memberEntry{node: node, src: memberNets[i%3], dst: memberNets[(i+1)%3], from: fmt.Sprintf("sip:u%d@a.example", i%3),
		kind: string([]ledger.Kind{ledger.KindRequest, ledger.KindResponse, ledger.KindChat, ledger.KindAdmin}[i%4])}
	if _, err := h.ls[node].Append(context.Background(), &ledger.Entry{
		Time: auditT0 + int64(i)*int64(time.Second), Kind: ledger.Kind(e.kind), Method: "MESSAGE",
		CallID: fmt.Sprintf("call-%d", i), From: e.from, To: "sip:v@b.example", SrcNet: e.src, DstNet: e.dst, Status: 200,
	}); err != nil {
		t.Fatal(err)
	}
	h.entries = append(h.entries, e)
}

// want counts the appended entries of network net that match keep.
func (h *memberHub) want(net string, keep func(memberEntry) bool) int {
	n := 0
	for _, e := range h.entries {
		if (e.src == net || e.dst == net) && keep(e) {
			n++
		}
	}
	return n
}

// keyFlags are the published node keys as audit verify's --key flags.
func (h *memberHub) keyFlags() []string {
	return []string{"--key", "n1=" + b64(h.ls["n1"].PublicKey()), "--key", "n2=" + b64(h.ls["n2"].PublicKey())}
}

// hubctl runs the CLI against node n1 with credential cred ("" for none:
// commands that dial nothing).
func (h *memberHub) hubctl(ctx context.Context, cred string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := h.hubctlTo(ctx, &out, &errb, cred, args...)
	return out.String(), errb.String(), code
}

func (h *memberHub) hubctlTo(ctx context.Context, out, errOut io.Writer, cred string, args ...string) int {
	base := []string{"--data", h.data, "--endpoints", h.addrs["n1"]}
	if cred != "" {
		base = append(base, "--cert", h.cred[cred]+".crt", "--key", h.cred[cred]+".key")
	}
	return run(ctx, append(base, args...), out, errOut)
}

type exportedEntry struct {
	Type   string `json:"type"`
	Node   string `json:"node"`
	Seq    uint64 `json:"seq"`
	SrcNet string `json:"src_net"`
	DstNet string `json:"dst_net"`
	From   string `json:"from"`
	Kind   string `json:"kind"`
}

func readEntries(t *testing.T, file string) (lines [][]byte, entries []exportedEntry) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e exportedEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s: line %q: %v", file, line, err)
		}
		lines = append(lines, line)
		if e.Type == "entry" {
			entries = append(entries, e)
		}
	}
	return lines, entries
}

// member export writes a file audit verify accepts offline with the
// published node keys, holding exactly the member's own entries whatever
// the filters; another network's user or traffic cannot be reached.
func TestMemberExportVerify(t *testing.T) {
	h := newMemberHub(t)
	dir := t.TempDir()
	all := func(memberEntry) bool { return true }
	for _, tc := range []struct {
		name string
		cred string
		args []string
		net  string
		keep func(memberEntry) bool
	}{
		{"every node", "neta", nil, "neta", all},
		{"local node", "neta", []string{"--local"}, "neta", func(e memberEntry) bool { return e.node == "n1" }},
		{"kind", "neta", []string{"--kind", "chat"}, "neta", func(e memberEntry) bool { return e.kind == "chat" }},
		// u1 only ever sends netb -> netc: naming that user reaches nothing.
		{"another network's user", "neta", []string{"--user", "sip:u1@a.example"}, "neta", func(memberEntry) bool { return false }},
		{"own user", "neta", []string{"--user", "sip:u2@a.example"}, "neta", func(e memberEntry) bool { return e.from == "sip:u2@a.example" }},
		{"other member", "netb", nil, "netb", all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".jsonl")
			want := h.want(tc.net, tc.keep)
			_, errOut, code := h.hubctl(t.Context(), tc.cred, append([]string{"member", "export", file}, tc.args...)...)
			if code != 0 || !strings.Contains(errOut, fmt.Sprintf("%d entries written to %s", want, file)) {
				t.Fatalf("export: exit %d, stderr %q, want %d entries", code, errOut, want)
			}
			_, entries := readEntries(t, file)
			if len(entries) != want {
				t.Errorf("%d entries in the file, want %d", len(entries), want)
			}
			for _, e := range entries {
				if e.SrcNet != tc.net && e.DstNet != tc.net {
					t.Errorf("entry %s/%d (%s -> %s) in %s's export", e.Node, e.Seq, e.SrcNet, e.DstNet, tc.net)
				}
			}
			out, errOut, code := h.hubctl(t.Context(), "", append([]string{"audit", "verify", file}, h.keyFlags()...)...)
			if code != 0 || !strings.HasPrefix(out, fmt.Sprintf("OK: %d entries verified", want)) {
				t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
	if h.want("neta", all) == 0 || h.want("neta", all) == len(h.entries) {
		t.Fatalf("fixture: neta has %d of %d entries; the test needs some of others'", h.want("neta", all), len(h.entries))
	}

	// The member API has no way to name another network: the flag does
	// not exist, so nothing is sent.
	if _, errOut, code := h.hubctl(t.Context(), "neta", "member", "export", filepath.Join(dir, "x"), "--network", "netb"); code != exitUsage ||
		!strings.Contains(errOut, "unknown flag: --network") {
		t.Errorf("--network: exit %d %q", code, errOut)
	}

	// One byte changed in one entry: verify names the line, node and seq.
	file := filepath.Join(dir, "every_node.jsonl")
	lines, _ := readEntries(t, file)
	for i, line := range lines {
		if bytes.Contains(line, []byte(`"type":"entry"`)) {
			j := bytes.Index(line, []byte(`"call-`)) + 2
			lines[i] = append(append(append([]byte(nil), line[:j]...), 'C'), line[j+1:]...)
			break
		}
	}
	bad := filepath.Join(dir, "tampered.jsonl")
	writeFile(t, bad, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644)
	out, errOut, code := h.hubctl(t.Context(), "", append([]string{"audit", "verify", bad}, h.keyFlags()...)...)
	if code != exitFailure || !strings.Contains(errOut, "verification FAILED at line") || !strings.Contains(errOut, ", seq ") {
		t.Errorf("tampered export: exit %d\n%s%s", code, out, errOut)
	}
	// The right entries under another node's key do not verify either.
	wrong := []string{"--key", "n1=" + b64(h.ls["n2"].PublicKey()), "--key", "n2=" + b64(h.ls["n1"].PublicKey())}
	if _, errOut, code := h.hubctl(t.Context(), "", append([]string{"audit", "verify", file}, wrong...)...); code != exitFailure ||
		!strings.Contains(errOut, "verification FAILED") {
		t.Errorf("swapped keys: exit %d %q", code, errOut)
	}
}

// A refused export leaves no file, and an earlier export of that name as
// it was (it used to be truncated to nothing by os.Create before the call).
func TestMemberExportRefusedLeavesNoFile(t *testing.T) {
	h := newMemberHub(t)
	dir := t.TempDir()
	kept := filepath.Join(dir, "kept.jsonl")
	writeFile(t, kept, []byte("an earlier export\n"), 0o644)
	for _, file := range []string{filepath.Join(dir, "new.jsonl"), kept} {
		_, errOut, code := h.hubctl(t.Context(), "operator", "member", "export", file)
		if code != exitFailure || !strings.Contains(errOut, "PermissionDenied") {
			t.Fatalf("operator export: exit %d %q", code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new.jsonl")); !os.IsNotExist(err) {
		t.Errorf("refused export left a file: %v", err)
	}
	if b, err := os.ReadFile(kept); err != nil || string(b) != "an earlier export\n" {
		t.Errorf("earlier export now %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// member checkpoints shows both nodes' latest checkpoints with their
// published keys, checked; consistency between the size seen then and a
// later one verifies, pinned or not; the wrong pinned key or the wrong node
// is refused.
func TestMemberCheckpointsConsistency(t *testing.T) {
	h := newMemberHub(t)
	before := map[string]*ledger.Checkpoint{}
	for id, l := range h.ls {
		cp, err := l.LatestCheckpoint()
		if err != nil {
			t.Fatal(err)
		}
		before[id] = cp
	}
	out, errOut, code := h.hubctl(t.Context(), "neta", "member", "checkpoints")
	if code != 0 || errOut != "" || !strings.Contains(out, "network neta (answered by n1)") {
		t.Fatalf("checkpoints: exit %d\n%s%s", code, out, errOut)
	}
	for id, cp := range before {
		if !regexpRow(out, id, "key", b64(h.ls[id].PublicKey()), "size", fmt.Sprint(cp.Size), "root", b64(cp.Root), "signature", "ok") {
			t.Errorf("no row for %s size %d:\n%s", id, cp.Size, out)
		}
	}
	out, _, code = h.hubctl(t.Context(), "neta", "member", "checkpoints", "-o", "json")
	var resp struct {
		Network string `json:"network"`
		Nodes   []struct {
			Node       string `json:"node"`
			Checkpoint struct {
				Note string `json:"note"`
			} `json:"checkpoint"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &resp); code != 0 || err != nil || resp.Network != "neta" || len(resp.Nodes) != 2 {
		t.Fatalf("json: exit %d %v\n%s", code, err, out)
	}
	for _, n := range resp.Nodes {
		if _, err := ledger.VerifyCheckpoint([]byte(n.Checkpoint.Note), h.ls[n.Node].KeyName(), h.ls[n.Node].PublicKey()); err != nil {
			t.Errorf("json note of %s: %v", n.Node, err)
		}
	}

	for i := 30; i < 35; i++ {
		h.appendEntry(t, "n1", i)
	}
	after, err := h.ls["n1"].Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	oldS, newS := fmt.Sprint(before["n1"].Size), fmt.Sprint(after.Size)
	pin := "n1=" + b64(h.ls["n1"].PublicKey())
	for _, tc := range []struct {
		name             string
		args             []string
		code             int
		wantOut, wantErr string
	}{
		{"pinned", []string{oldS, newS, "--node-key", pin}, 0, "consistent: clearhub/n1's tree " + oldS + " is a prefix of tree " + newS, ""},
		{"served key, warned", []string{oldS, newS, "--node", "n1"}, 0, "is a prefix of tree " + newS, "warning: no --node-key given"},
		{"same size", []string{newS, newS, "--node-key", pin}, 0, "is a prefix of tree " + newS, ""},
		{"another node's key", []string{oldS, newS, "--node-key", "n1=" + b64(h.ls["n2"].PublicKey())}, exitFailure, "",
			"verification FAILED: old checkpoint: checkpoint signature does not verify"},
		{"another node", []string{"1", newS, "--node", "n2"}, exitFailure, "", "FailedPrecondition: node \"n2\": this is node n1; ask n2 at " + h.addrs["n2"]},
		{"size never checkpointed", []string{"3", newS}, exitFailure, "", "tree size 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.hubctl(t.Context(), "neta", append([]string{"member", "consistency"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tc.code, out, tc.wantOut, errOut, tc.wantErr)
			}
		})
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// member watch prints the node's latest checkpoint, then each newly signed
// one (from the signed note), and ends after --count or when interrupted,
// with exit 0.
func TestMemberWatch(t *testing.T) {
	h := newMemberHub(t)
	first, err := h.ls["n1"].LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	line := func(cp *ledger.Checkpoint) string {
		return fmt.Sprintf("n1\tsize %d\troot %s\n", cp.Size, b64(cp.Root))
	}
	for _, tc := range []struct {
		name      string
		args      []string
		interrupt bool
	}{
		{"count", []string{"--count", "2"}, false},
		{"interrupted", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			out := &syncBuffer{}
			errb := &syncBuffer{}
			code := make(chan int, 1)
			args := append([]string{"member", "watch", "--node-key", "n1=" + b64(h.ls["n1"].PublicKey())}, tc.args...)
			go func() { code <- h.hubctlTo(ctx, out, errb, "neta", args...) }()
			waitFor(t, "the first checkpoint", func() bool { return out.String() != "" })
			h.appendEntry(t, "n1", 40+len(h.entries))
			next, err := h.ls["n1"].Checkpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := line(first) + line(next)
			waitFor(t, "the new checkpoint", func() bool { return out.String() == want })
			if tc.interrupt {
				cancel()
			}
			select {
			case c := <-code:
				if c != 0 || errb.String() != "" {
					t.Errorf("exit %d, stderr %q", c, errb.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("watch did not stop")
			}
			if out.String() != want {
				t.Errorf("stdout %q, want %q", out.String(), want)
			}
			first = next
		})
	}
}

// A member certificate opens the member API and nothing else: operator
// commands are refused naming the service, and a certificate of the right
// CA for a name the network does not own, or an operator's, gets nothing
// from the member API.
func TestMemberCannotOperate(t *testing.T) {
	h := newMemberHub(t)
	for _, tc := range []struct {
		name string
		cred string
		args []string
		want string
	}{
		{"network list", "neta", []string{"network", "list"},
			"PermissionDenied: member certificate of network neta may not call AdminService/ListNetworks: members may call only MemberAuditService"},
		{"cluster status", "neta", []string{"cluster", "status"}, "PermissionDenied: member certificate of network neta may not call AdminService"},
		{"policy allow", "netb", []string{"policy", "allow", "netb", "--from", "neta", "--services", "im"}, "PermissionDenied: member certificate of network netb may not call AdminService"},
		{"operator audit export", "neta", []string{"audit", "export", "--file", filepath.Join(t.TempDir(), "x")}, "PermissionDenied: member certificate of network neta may not call"},
		{"operator on the member API", "operator", []string{"member", "checkpoints"}, "PermissionDenied: certificate role operator may not call MemberAuditService"},
		// Refused at the handshake, where the node does not say why; under
		// TLS 1.3 hubctl sees the alert or a closed connection (root.go).
		{"name outside the network", "neta-wronghost", []string{"member", "checkpoints"}, "this client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.hubctl(t.Context(), tc.cred, tc.args...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d\nstdout %q\nstderr %q, want %q", code, out, errOut, tc.want)
			}
		})
	}
}

// Command-line mistakes are usage errors (exit 2) naming the argument or
// flag, refused before anything is dialled.
func TestMemberUsageErrors(t *testing.T) {
	data, _, _ := newDataDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"member", "export"}, "FILE: give exactly one file"},
		{[]string{"member", "export", "a", "b"}, "FILE: give exactly one file"},
		{[]string{"member", "export", "f", "--kind"}, "flag needs an argument: --kind"},
		{[]string{"member", "checkpoints", "extra"}, `unknown command "extra"`},
		{[]string{"member", "consistency", "5"}, "accepts 2 arg(s)"},
		{[]string{"member", "consistency", "x", "5"}, `OLD: "x" is not a non-negative integer`},
		{[]string{"member", "consistency", "5", "x"}, `NEW: "x" is not a non-negative integer`},
		{[]string{"member", "consistency", "0", "5"}, "OLD: tree sizes start at 1"},
		{[]string{"member", "consistency", "9", "5"}, "NEW: 5 is smaller than OLD 9"},
		{[]string{"member", "consistency", "1", "2", "--node-key", "bogus"}, "--node-key: \"bogus\" is not"},
		{[]string{"member", "watch", "--count", "-1"}, "--count: -1 is negative"},
		{[]string{"member", "watch", "--count", "x"}, `invalid argument "x" for "--count"`},
		{[]string{"member", "watch", "--node-key", "n1=short"}, "--node-key:"},
		{[]string{"member", "bogus"}, `unknown command "bogus" for "hubctl member"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			// An address nothing listens on: a usage error must come first.
			code := run(t.Context(), append([]string{"--data", data, "--endpoints", "127.0.0.1:1"}, tc.args...), &out, &errb)
			if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q, want %q", code, errb.String(), tc.want)
			}
		})
	}
}

// fakeMemberAudit answers the member API with checkpoints of a real
// ledger, some re-signed by a key that is not the published one, and
// records what hubctl asks.
type fakeMemberAudit struct {
	hubv1.UnimplementedMemberAuditServiceServer
	pub   ed25519.PublicKey
	cps   []*hubv1.Checkpoint // Checkpoints rows n1, n2...; the watch sends them in order
	proof *hubv1.ConsistencyProof

	mu    sync.Mutex
	calls []call
}

func (f *fakeMemberAudit) rec(m string, r proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{m, r})
}

func (f *fakeMemberAudit) Export(r *hubv1.ExportAuditRequest, _ hubv1.MemberAuditService_ExportServer) error {
	f.rec("Export", r)
	return nil
}

func (f *fakeMemberAudit) Checkpoints(_ context.Context, r *hubv1.MemberCheckpointsRequest) (*hubv1.MemberCheckpointsResponse, error) {
	f.rec("Checkpoints", r)
	resp := &hubv1.MemberCheckpointsResponse{Network: "neta", NodeId: "n1"}
	for i, cp := range f.cps {
		resp.Nodes = append(resp.Nodes, &hubv1.NodeCheckpoint{Node: fmt.Sprintf("n%d", i+1), PublicKey: f.pub, Checkpoint: cp})
	}
	return resp, nil
}

func (f *fakeMemberAudit) GetConsistencyProof(_ context.Context, r *hubv1.MemberConsistencyRequest) (*hubv1.ConsistencyProof, error) {
	f.rec("GetConsistencyProof", r)
	return f.proof, nil
}

func (f *fakeMemberAudit) WatchCheckpoints(r *hubv1.MemberWatchRequest, st hubv1.MemberAuditService_WatchCheckpointsServer) error {
	f.rec("WatchCheckpoints", r)
	for _, cp := range f.cps {
		if err := st.Send(&hubv1.NodeCheckpoint{Node: "n1", PublicKey: f.pub, Checkpoint: cp}); err != nil {
			return err
		}
	}
	<-st.Context().Done()
	return nil
}

// What the member commands check themselves, whatever the node answers: a
// checkpoint not signed by the published (or pinned) key is reported and
// fails the command, in checkpoints, consistency and watch alike (before,
// the notes were only parsed, and watch printed the message's unsigned
// size and root); a tree that shrinks under watch is reported; and the
// requests carry what the flags say.
func TestMemberForgedCheckpoints(t *testing.T) {
	data, ca, _ := newDataDir(t)
	l := openNodeLedger(t, "n1", 1)
	for i := 1; i <= 8; i++ {
		if _, err := l.Append(t.Context(), &ledger.Entry{Time: auditT0 + int64(i), Kind: ledger.KindRequest, CallID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if i == 3 || i == 8 {
			if _, err := l.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	mallory := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{66}, ed25519.SeedSize))
	msg := func(size uint64, forged bool) *hubv1.Checkpoint {
		cp, err := l.CheckpointAt(size)
		if err != nil {
			t.Fatal(err)
		}
		note := cp.Note
		if forged {
			// The same statement signed under the node's key name by
			// another key: only the signature is wrong.
			if note, err = ledger.SignCheckpoint(cp.Origin, cp.Size, cp.Root, l.KeyName(), mallory); err != nil {
				t.Fatal(err)
			}
		}
		return &hubv1.Checkpoint{Origin: cp.Origin, TreeSize: cp.Size, RootHash: cp.Root, Note: string(note), PublicKey: l.PublicKey()}
	}
	hashes, err := l.ConsistencyProof(3, 8)
	if err != nil {
		t.Fatal(err)
	}
	proof := func(forged bool) *hubv1.ConsistencyProof {
		return &hubv1.ConsistencyProof{OldSize: 3, NewSize: 8, Hashes: hashes, OldCheckpoint: msg(3, false), NewCheckpoint: msg(8, forged)}
	}
	fake := &fakeMemberAudit{pub: l.PublicKey()}
	serverPair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAnyClientCert})))
	hubv1.RegisterMemberAuditServiceServer(g, fake)
	addr := serveGRPC(t, g)
	mca, err := pki.NewCA("neta member CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM, keyPEM, err := mca.IssueKeyPair(pki.RoleMember, "edge.neta.example", []string{"edge.neta.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred := writeCred(t, t.TempDir(), "neta", certPEM, keyPEM)
	pin := "n1=" + b64(l.PublicKey())
	good3, good8, bad8 := msg(3, false), msg(8, false), msg(8, true)
	// A message whose unsigned fields lie about the signed note.
	lying := proto.Clone(good3).(*hubv1.Checkpoint)
	lying.TreeSize, lying.RootHash = 99, []byte("not the root")
	exportFile := filepath.Join(t.TempDir(), "e.jsonl")
	for _, tc := range []struct {
		name             string
		args             []string
		cps              []*hubv1.Checkpoint
		proof            *hubv1.ConsistencyProof
		code             int
		wantOut, wantErr string
		sent             proto.Message
	}{
		{"checkpoints genuine", []string{"member", "checkpoints"}, []*hubv1.Checkpoint{good8, good3}, nil, 0,
			"signature ok", "", &hubv1.MemberCheckpointsRequest{}},
		{"checkpoints forged", []string{"member", "checkpoints"}, []*hubv1.Checkpoint{good8, bad8}, nil, exitFailure,
			"n2  key " + b64(l.PublicKey()) + "  signature INVALID",
			"verification FAILED: checkpoint signature of node n2 does not verify with its published key", &hubv1.MemberCheckpointsRequest{}},
		{"consistency genuine", []string{"member", "consistency", "3", "8", "--node-key", pin, "--node", "n1"}, nil, proof(false), 0,
			"consistent: clearhub/n1's tree 3 is a prefix of tree 8", "", &hubv1.MemberConsistencyRequest{Node: "n1", OldSize: 3, NewSize: 8}},
		{"consistency forged, pinned", []string{"member", "consistency", "3", "8", "--node-key", pin}, nil, proof(true), exitFailure,
			"", "verification FAILED: new checkpoint: checkpoint signature does not verify", &hubv1.MemberConsistencyRequest{OldSize: 3, NewSize: 8}},
		{"consistency forged, served key", []string{"member", "consistency", "3", "8"}, nil, proof(true), exitFailure,
			"", "verification FAILED: new checkpoint", &hubv1.MemberConsistencyRequest{OldSize: 3, NewSize: 8}},
		{"consistency of other sizes than asked", []string{"member", "consistency", "3", "5", "--node-key", pin}, nil, proof(false), exitFailure,
			"", "asked for tree size 5, the new checkpoint is of size 8", &hubv1.MemberConsistencyRequest{OldSize: 3, NewSize: 5}},
		{"watch genuine, sizes from the note", []string{"member", "watch", "--count", "2"}, []*hubv1.Checkpoint{lying, good8}, nil, 0,
			"n1\tsize 3\troot " + b64(good3.GetRootHash()) + "\nn1\tsize 8\troot " + b64(good8.GetRootHash()) + "\n", "", &hubv1.MemberWatchRequest{}},
		{"watch forged", []string{"member", "watch", "--count", "2"}, []*hubv1.Checkpoint{good3, bad8}, nil, exitFailure,
			"n1\tsize 3", "verification FAILED: node n1: checkpoint signature does not verify", &hubv1.MemberWatchRequest{}},
		{"watch forged, pinned key wins", []string{"member", "watch", "--count", "1", "--node-key", "n1=" + b64(mallory.Public().(ed25519.PublicKey))},
			[]*hubv1.Checkpoint{good3}, nil, exitFailure, "", "verification FAILED: node n1", &hubv1.MemberWatchRequest{}},
		{"watch shrinking tree", []string{"member", "watch", "--count", "2"}, []*hubv1.Checkpoint{good8, good3}, nil, exitFailure,
			"n1\tsize 8", "verification FAILED: node n1: tree shrank from 8 to 3", &hubv1.MemberWatchRequest{}},
		{"export sends the filters", []string{"member", "export", exportFile, "--user", "sip:u@neta.example", "--kind", "chat"}, nil, nil, 0,
			"", "0 entries written", &hubv1.ExportAuditRequest{Cluster: true, User: "sip:u@neta.example", Kind: "chat"}},
		{"export local", []string{"member", "export", exportFile, "--local"}, nil, nil, 0,
			"", "0 entries written", &hubv1.ExportAuditRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.cps, fake.proof, fake.calls = tc.cps, tc.proof, nil
			fake.mu.Unlock()
			var out, errb bytes.Buffer
			code := run(t.Context(), append([]string{"--data", data, "--endpoints", addr, "--timeout", "5s",
				"--cert", cred + ".crt", "--key", cred + ".key"}, tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tc.code, out.String(), tc.wantOut, errb.String(), tc.wantErr)
			}
			fake.mu.Lock()
			calls := fake.calls
			fake.mu.Unlock()
			if len(calls) != 1 || !proto.Equal(calls[0].req, tc.sent) {
				t.Errorf("sent %v, want %v", calls, tc.sent)
			}
		})
	}
}
