package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

const auditT0 = int64(1_750_000_000_000_000_000)

// stubStore is a one-node cluster state with no Raft behind it: the audit
// RPCs need only State().
type stubStore struct{}

func (stubStore) State() *raft.State { return raft.Empty() }
func (stubStore) Apply(context.Context, *hubv1.Command) (uint64, error) {
	return 0, raft.ErrNotLeader
}
func (stubStore) ApplyBytes(context.Context, []byte) (uint64, error) { return 0, raft.ErrNotLeader }
func (stubStore) AddVoter(context.Context, string, string) error     { return raft.ErrNotLeader }
func (stubStore) RemoveServer(context.Context, string) error         { return raft.ErrNotLeader }
func (stubStore) Status() raft.Status                                { return raft.Status{NodeID: "n1"} }
func (stubStore) Leader() (string, string)                           { return "", "" }
func (stubStore) WaitForApplied(context.Context, uint64) error       { return nil }

// auditEnv is a dev-hub data directory and a real admin.Server over mutual
// TLS serving a real ledger of node n1.
type auditEnv struct {
	data     string
	ca       *pki.CA
	l        *ledger.Ledger
	addr     string
	nodeCert tls.Certificate
	opCert   tls.Certificate
}

func openAuditLedger(t *testing.T, seed byte) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{
		Path: filepath.Join(t.TempDir(), "audit.db"), NodeID: "n1",
		Signer:          ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)),
		CheckpointEvery: -1, CheckpointInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	data, ca, opPair := newDataDir(t)
	nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l := openAuditLedger(t, 1)
	srv, err := admin.NewServer(admin.Options{NodeID: "n1", CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert),
		Store: stubStore{}, Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	env := &auditEnv{data: data, ca: ca, l: l, nodeCert: nodeCert, opCert: opPair}
	env.addr = serveGRPC(t, srv.NewGRPCServer(admin.ServerTLSConfig(ca, nodeCert)))
	t.Cleanup(func() { srv.Close() })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(env.addr+"\n"), 0o644)
	return env
}

// serveGRPC serves g on a loopback port until cleanup.
func serveGRPC(t *testing.T, g *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return lis.Addr().String()
}

func (e *auditEnv) appendN(t *testing.T, from, to int) {
	t.Helper()
	nets := []string{"neta", "netb", "netc"}
	for i := from; i <= to; i++ {
		_, err := e.l.Append(context.Background(), &ledger.Entry{
			Time:   auditT0 + int64(i)*int64(time.Second),
			Kind:   []ledger.Kind{ledger.KindRequest, ledger.KindResponse, ledger.KindChat, ledger.KindAdmin}[i%4],
			Method: "MESSAGE", CallID: fmt.Sprintf("call-%d", i), From: fmt.Sprintf("sip:u%d@a.example", i%3),
			To: "sip:v@b.example", SrcNet: nets[i%3], DstNet: nets[(i+1)%3], Status: 200, Reason: "OK, \"fine\"",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (e *auditEnv) keyFlag() string {
	return "n1=" + base64.StdEncoding.EncodeToString(e.l.PublicKey())
}

// hubctl runs the CLI in-process against the env's data directory.
func (e *auditEnv) hubctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), append([]string{"--data", e.data, "--timeout", "5s"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// export → verify round trip: the file hubctl writes is the ledger's
// verifiable export, filters select exactly the right entries, and a
// tampered or wrongly-keyed file fails naming where.
func TestAuditExportVerify(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 30)
	dir := t.TempDir()
	all := filepath.Join(dir, "all.jsonl")

	_, errOut, code := env.hubctl(t, "audit", "export", all)
	if code != 0 || !strings.Contains(errOut, "exported 30 entries to "+all) {
		t.Fatalf("export: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code := env.hubctl(t, "audit", "verify", all, "--key", env.keyFlag())
	if code != 0 || !strings.HasPrefix(out, "OK: 30 entries verified (30 proven") || strings.Contains(errOut, "warning") {
		t.Fatalf("verify: exit %d out %q err %q", code, out, errOut)
	}
	if out, errOut, code := env.hubctl(t, "audit", "verify", all); code != 0 || !strings.Contains(out, "self-asserted") || !strings.Contains(errOut, "warning: no --key") {
		t.Fatalf("verify without key: exit %d out %q err %q", code, out, errOut)
	}

	// Filters: chat entries from seq 5 on are 6, 10, ..., 30.
	chat := filepath.Join(dir, "chat.jsonl")
	if _, errOut, code := env.hubctl(t, "audit", "export", "--kind", "chat", "--from-seq", "5", "--file", chat); code != 0 ||
		!strings.Contains(errOut, "exported 7 entries") {
		t.Fatalf("filtered export: exit %d %q", code, errOut)
	}
	f, err := os.Open(chat)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.VerifyExport(f, map[string]ed25519.PublicKey{"n1": env.l.PublicKey()})
	f.Close()
	if err != nil || rep.Entries != 7 {
		t.Fatalf("filtered export: %+v, %v", rep, err)
	}

	// Default output is stdout, byte for byte the same kind of file.
	stdout, errOut, code := env.hubctl(t, "audit", "export", "--since", time.Unix(0, auditT0+10*int64(time.Second)).UTC().Format(time.RFC3339),
		"--until", time.Unix(0, auditT0+20*int64(time.Second)).UTC().Format(time.RFC3339))
	if code != 0 || !strings.Contains(errOut, "exported 10 entries to stdout") {
		t.Fatalf("stdout export: exit %d %q", code, errOut)
	}
	if rep, err := ledger.VerifyExport(strings.NewReader(stdout), nil); err != nil || rep.Entries != 10 {
		t.Fatalf("stdout export: %+v, %v", rep, err)
	}

	// Tampering with entry 7 is caught at entry 7.
	b, err := os.ReadFile(all)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	writeFile(t, bad, bytes.Replace(b, []byte(`"call-7"`), []byte(`"call-x"`), 1), 0o644)
	_, errOut, code = env.hubctl(t, "audit", "verify", bad, "--key", env.keyFlag())
	if code != exitFailure || !strings.Contains(errOut, "verification FAILED at line") || !strings.Contains(errOut, "node n1, seq 7") {
		t.Fatalf("tampered verify: exit %d %q", code, errOut)
	}
	// Dropping an entry of a complete export is caught too.
	var kept [][]byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"call-12"`)) {
			kept = append(kept, line)
		}
	}
	writeFile(t, bad, bytes.Join(kept, nil), 0o644)
	if _, errOut, code := env.hubctl(t, "audit", "verify", bad); code != exitFailure || !strings.Contains(errOut, "seq 12") {
		t.Fatalf("verify with an entry removed: exit %d %q", code, errOut)
	}
	other := "n1=" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)).Public().(ed25519.PublicKey))
	if _, errOut, code := env.hubctl(t, "audit", "verify", all, "--key", other); code != exitFailure || !strings.Contains(errOut, "key") {
		t.Fatalf("verify with another key: exit %d %q", code, errOut)
	}

	for _, args := range [][]string{
		{"audit", "export", "--kind", "bogus"},
		{"audit", "export", "--since", "yesterday"},
		{"audit", "export", "--from-seq", "9", "--to-seq", "2"},
		{"audit", "export", "--format", "xml"},
		{"audit", "verify", all, "--key", base64.StdEncoding.EncodeToString(env.l.PublicKey())},
		{"audit", "verify", all, "--key", "n1=notakey"},
		{"audit", "prove", "zero"},
		{"audit", "consistency", "0"},
	} {
		if _, errOut, code := env.hubctl(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d %q, want usage error", args, code, errOut)
		}
	}
}

// CSV rows are exactly ledger.WriteCSV's, so the client-side conversion
// cannot drift from the ledger's own.
func TestAuditExportCSV(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 12)
	file := filepath.Join(t.TempDir(), "x.csv")
	if _, errOut, code := env.hubctl(t, "audit", "export", "-o", "csv", "--network", "netb", file); code != 0 {
		t.Fatalf("csv export: exit %d %q", code, errOut)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := env.l.WriteCSV(t.Context(), &want, ledger.Filter{Network: "netb"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) || bytes.Count(got, []byte("\n")) < 3 {
		t.Fatalf("csv export:\n%s\nwant:\n%s", got, want.Bytes())
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"1h", now.Add(-time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-01-01T01:00:00.5+01:00", time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC)},
	} {
		got, err := parseWhen("--since", tc.in, now)
		want := int64(0)
		if !tc.want.IsZero() {
			want = tc.want.UnixNano()
		}
		if err != nil || got != want {
			t.Errorf("parseWhen(%q) = %d, %v; want %d", tc.in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "soon", "2026-13-01"} {
		if _, err := parseWhen("--since", in, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", in)
		}
	}
}

// liar forwards the audit RPCs to the real node and tampers with answers.
type liar struct {
	hubv1.UnimplementedAdminServiceServer
	real        hubv1.AdminServiceClient
	inclusion   func(*hubv1.InclusionProof)
	consistency func(*hubv1.ConsistencyProof)
}

func (l *liar) GetInclusionProof(ctx context.Context, r *hubv1.InclusionProofRequest) (*hubv1.InclusionProof, error) {
	p, err := l.real.GetInclusionProof(ctx, r)
	if err == nil && l.inclusion != nil {
		l.inclusion(p)
	}
	return p, err
}

func (l *liar) GetConsistencyProof(ctx context.Context, r *hubv1.ConsistencyProofRequest) (*hubv1.ConsistencyProof, error) {
	p, err := l.real.GetConsistencyProof(ctx, r)
	if err == nil && l.consistency != nil {
		l.consistency(p)
	}
	return p, err
}

// startLiar serves a liar with the node's certificate and returns its
// address (for --addr).
func (e *auditEnv) startLiar(t *testing.T, lr *liar) string {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{e.opCert}, MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	lr.real = hubv1.NewAdminServiceClient(cc)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{e.nodeCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: e.ca.Pool(),
	})))
	hubv1.RegisterAdminServiceServer(g, lr)
	return serveGRPC(t, g)
}

// prove and consistency check proofs locally: they pass against the real
// node and fail, saying why, when the node lies.
func TestAuditProveAndConsistency(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 10)
	if _, err := env.l.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	env.appendN(t, 11, 17)
	if _, err := env.l.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	key := env.keyFlag()

	out, errOut, code := env.hubctl(t, "audit", "prove", "5", "--node-key", key)
	if code != 0 || !strings.HasPrefix(out, "OK: entry 5 is leaf 4 of clearhub/n1's tree of size 17") || errOut != "" {
		t.Fatalf("prove: exit %d out %q err %q", code, out, errOut)
	}
	if out, errOut, code := env.hubctl(t, "audit", "prove", "3", "--tree-size", "10"); code != 0 ||
		!strings.Contains(out, "tree of size 10") || !strings.Contains(errOut, "warning: no --node-key") {
		t.Fatalf("prove unpinned: exit %d out %q err %q", code, out, errOut)
	}
	if out, _, code := env.hubctl(t, "-o", "json", "audit", "prove", "17", "--node-key", key); code != 0 ||
		!strings.Contains(out, `"key_pinned": true`) || !strings.Contains(out, `"call_id": "call-17"`) {
		t.Fatalf("prove json: exit %d %q", code, out)
	}
	if _, errOut, code := env.hubctl(t, "audit", "prove", "18"); code != exitFailure || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("prove missing: exit %d %q", code, errOut)
	}
	out, _, code = env.hubctl(t, "audit", "consistency", "10", "17", "--node-key", key)
	if code != 0 || !strings.HasPrefix(out, "OK: clearhub/n1's tree of size 10 is a prefix of its tree of size 17") {
		t.Fatalf("consistency: exit %d %q", code, out)
	}
	if out, _, code := env.hubctl(t, "audit", "consistency", "10", "--node-key", key); code != 0 || !strings.Contains(out, "size 17") {
		t.Fatalf("consistency to latest: exit %d %q", code, out)
	}
	if out, _, code := env.hubctl(t, "audit", "checkpoint", "--node-key", key); code != 0 ||
		!strings.Contains(out, "verified with the pinned key") || !strings.Contains(out, "clearhub/n1\n17\n") {
		t.Fatalf("checkpoint: exit %d %q", code, out)
	}

	// A fork: same key, history rewritten from entry 5 on, signed at 17.
	fork := openAuditLedger(t, 1)
	forkEnv := &auditEnv{l: fork}
	forkEnv.appendN(t, 1, 4)
	forkEnv.appendN(t, 105, 117)
	forkCp, err := fork.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	attacker := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

	lr := &liar{}
	addr := env.startLiar(t, lr)
	for _, tc := range []struct {
		name        string
		args        []string
		inclusion   func(*hubv1.InclusionProof)
		consistency func(*hubv1.ConsistencyProof)
		want        string
	}{
		{"flipped proof hash", []string{"prove", "5"}, func(p *hubv1.InclusionProof) { p.Hashes[0][0] ^= 1 }, nil,
			"entry 5 is not in the signed tree"},
		{"altered entry", []string{"prove", "5"}, func(p *hubv1.InclusionProof) {
			p.Entry.Json = bytes.Replace(p.Entry.Json, []byte("call-5"), []byte("call-6"), 1)
		}, nil, "does not match its own hash"},
		{"other entry", []string{"prove", "5"}, func(p *hubv1.InclusionProof) {
			e, _ := env.l.Get(6)
			p.Entry.Json = ledger.AppendEntryJSON(nil, e)
		}, nil, "asked for entry 5, got entry 6"},
		{"checkpoint signed by another key", []string{"prove", "5", "--node-key", key}, func(p *hubv1.InclusionProof) {
			cp, _ := ledger.ParseCheckpoint([]byte(p.Checkpoint.Note))
			note, _ := ledger.SignCheckpoint(cp.Origin, cp.Size, cp.Root, cp.Origin, attacker)
			p.Checkpoint.Note, p.Checkpoint.PublicKey = string(note), attacker.Public().(ed25519.PublicKey)
		}, nil, "checkpoint signature does not verify"},
		{"forked new checkpoint", []string{"consistency", "10", "17", "--node-key", key}, nil, func(p *hubv1.ConsistencyProof) {
			p.NewCheckpoint.Note = string(forkCp.Note)
		}, "tree 10 is not a prefix of tree 17"},
		{"flipped consistency hash", []string{"consistency", "10", "17"}, nil, func(p *hubv1.ConsistencyProof) { p.Hashes[0][0] ^= 1 },
			"not a prefix"},
		{"wrong old checkpoint", []string{"consistency", "10", "17", "--node-key", key}, nil, func(p *hubv1.ConsistencyProof) {
			p.OldCheckpoint = p.NewCheckpoint
		}, "asked for tree size 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr.inclusion, lr.consistency = tc.inclusion, tc.consistency
			_, errOut, code := env.hubctl(t, append([]string{"--addr", addr, "audit"}, tc.args...)...)
			if code != exitFailure || !strings.Contains(errOut, "verification FAILED") || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want failure containing %q", code, errOut, tc.want)
			}
		})
	}
	// The liar passes through untouched answers, so the failures above are
	// the lies' doing.
	lr.inclusion, lr.consistency = nil, nil
	if _, errOut, code := env.hubctl(t, "--addr", addr, "audit", "prove", "5", "--node-key", key); code != 0 {
		t.Fatalf("honest liar: exit %d %q", code, errOut)
	}
}

// syncBuffer is a bytes.Buffer safe for the tail goroutine and the test.
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

// tail prints the backlog from --from-seq, then new entries, and ends
// cleanly on cancellation (Ctrl-C).
func TestAuditTail(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 4)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data", env.data, "-o", "json", "audit", "tail", "--from-seq", "3"}, &out, &errb)
	}()
	waitLines := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) >= n && lines[0] != "" {
				return lines
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("tail printed %q (stderr %q), want %d lines", out.String(), errb.String(), n)
		return nil
	}
	lines := waitLines(2)
	env.appendN(t, 5, 5)
	lines = waitLines(3)
	for i, want := range []string{`"seq":3,`, `"seq":4,`, `"seq":5,`} {
		if !strings.Contains(lines[i], want) {
			t.Fatalf("tail line %d = %q, want %s", i, lines[i], want)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail ended with exit %d, stderr %q", code, errb.String())
	}
}

// writeExport writes the ledger's own JSON Lines export of f to a file
// (not through 'audit export', whose flags are not what is tested here).
func (e *auditEnv) writeExport(t *testing.T, f ledger.Filter) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.l.WriteJSONL(t.Context(), &buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// forgedAfter is the entry an attacker appends after prev: right seq,
// prev_hash and hash, contents of their choosing.
func forgedAfter(t *testing.T, l *ledger.Ledger, seq uint64) []byte {
	t.Helper()
	prev, err := l.Get(seq)
	if err != nil {
		t.Fatal(err)
	}
	e := &ledger.Entry{Seq: seq + 1, Time: prev.Time + 1, Node: prev.Node, Kind: ledger.KindRequest,
		Method: "MESSAGE", CallID: "forged", SrcNet: "neta", DstNet: "netb", Status: 200, PrevHash: prev.Hash}
	e.Hash = ledger.ComputeHash(e)
	return append(ledger.AppendEntryJSON(nil, e), '\n')
}

// audit verify fails on any entry no signed checkpoint proves (the two
// forgeries of the security review among them) and names it; with
// --allow-unproven it passes and says exactly how many are unproven; a
// lying header fails either way; CSV is refused as unverifiable.
func TestAuditVerifyUnproven(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 30)
	dir := t.TempDir()
	full := env.writeExport(t, ledger.Filter{})
	appended := append(bytes.Clone(full), forgedAfter(t, env.l, 30)...)
	raised := bytes.Replace(appended, []byte(`"tree_size":30,`), []byte(`"tree_size":31,`), 1)
	if bytes.Equal(raised, appended) {
		t.Fatal("no tree_size in the header")
	}
	// Insert a forged entry after the proof of a run of the netc export,
	// where the ledger's own entry of that seq is not exported (nor the
	// next, which would have to link to it): netc's gaps are single
	// entries, so that is the run ending at 29, before 30 (absent).
	netExport := env.writeExport(t, ledger.Filter{Network: "netc"})
	var inserted []byte
	lines := bytes.SplitAfter(netExport, []byte("\n"))
	present := map[uint64]bool{}
	for _, ln := range lines {
		var o struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		json.Unmarshal(ln, &o)
		if o.Type == "entry" {
			present[o.Seq] = true
		}
	}
	for i, ln := range lines {
		var o struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		json.Unmarshal(ln, &o)
		if o.Type == "proof" && !present[o.Seq+1] && !present[o.Seq+2] && o.Seq+1 <= 30 {
			inserted = bytes.Join(append(append(lines[:i+1:i+1], forgedAfter(t, env.l, o.Seq)), lines[i+1:]...), nil)
			break
		}
	}
	if inserted == nil {
		t.Fatal("no run end followed by a gap of two entries in the netc export")
	}
	var csvBuf bytes.Buffer
	if err := env.l.WriteCSV(t.Context(), &csvBuf, ledger.Filter{}); err != nil {
		t.Fatal(err)
	}
	pinnedName := "n1=" + ledger.VerifierKey(env.l.KeyName(), env.l.PublicKey())
	otherName := "n1=" + ledger.VerifierKey("someone-else", env.l.PublicKey())
	cases := []struct {
		name    string
		file    []byte
		args    []string
		code    int
		stdout  []string
		stderr  []string
		notErr  []string
		jsonOut bool
	}{
		{"honest", full, nil, 0, []string{"OK: 30 entries verified (30 proven by signed checkpoints, 0 unproven)"}, nil, []string{"NOT proven"}, false},
		{"honest, verifier key pins the name", full, []string{"--key", pinnedName}, 0, []string{"OK: 30 entries"}, nil, nil, false},
		{"honest, verifier key of another name", full, []string{"--key", otherName}, exitFailure, nil, []string{"line 2", "checkpoint"}, nil, false},
		{"appended", appended, nil, exitFailure, nil, []string{"seq 31", "unproven", "--allow-unproven"}, nil, false},
		{"appended, allowed", appended, []string{"--allow-unproven"}, 0,
			[]string{"OK: 31 entries verified (30 proven by signed checkpoints, 1 unproven)"},
			[]string{"warning: 1 of 31 entries are NOT proven", "node n1 seq 31..31", "beyond the newest signed checkpoint"}, nil, false},
		{"appended, allowed, json", appended, []string{"--allow-unproven", "-o", "json"}, 0,
			[]string{`"unproven": 1`, `"from_seq": 31`}, nil, nil, true},
		{"repro: appended with tree_size raised", raised, nil, exitFailure, nil, []string{"seq 31", "unproven"}, nil, false},
		{"repro: appended with tree_size raised, allowed", raised, []string{"--allow-unproven"}, exitFailure, nil,
			[]string{"line 1", "header tree_size 31 disagrees with the newest signed checkpoint (tree size 30)"}, nil, false},
		{"repro: inserted into a --network export", inserted, nil, exitFailure, nil, []string{"unproven", "no inclusion proof"}, nil, false},
		{"csv", csvBuf.Bytes(), nil, exitFailure, nil, []string{"CSV", "cannot be verified"}, nil, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("case%d.jsonl", i))
			writeFile(t, path, c.file, 0o644)
			args := append([]string{"audit", "verify", path}, c.args...)
			if !slices.Contains(c.args, "--key") {
				args = append(args, "--key", env.keyFlag())
			}
			out, errOut, code := env.hubctl(t, args...)
			t.Logf("exit %d\n%s%s", code, out, errOut)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, c.code, out, errOut)
			}
			for _, s := range c.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout %q lacks %q", out, s)
				}
			}
			for _, s := range c.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr %q lacks %q", errOut, s)
				}
			}
			for _, s := range c.notErr {
				if strings.Contains(errOut, s) {
					t.Errorf("stderr %q has %q", errOut, s)
				}
			}
			if c.jsonOut {
				var rep map[string]any
				if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["ok"] != true {
					t.Errorf("json output %q: %v", out, err)
				}
			}
		})
	}
}
