package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// audit export: -o is the format, the file an argument or --file. Before,
// "audit export -o json" wrote a file named json.
func TestAuditExportTarget(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 5)
	t.Chdir(t.TempDir()) // where a file named after a format would land
	dir := t.TempDir()

	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		wantErr string
		// what must exist afterwards, and in which format ("" for none)
		file, format string
		stdout       string // format of stdout, "" for nothing
	}{
		{name: "-o json is JSON Lines on stdout", args: []string{"-o", "json"}, stdout: "jsonl"},
		{name: "-o csv", args: []string{"-o", "csv"}, stdout: "csv"},
		{name: "--format csv", args: []string{"--format", "csv"}, stdout: "csv"},
		{name: "FILE", args: []string{filepath.Join(dir, "a.jsonl")}, file: filepath.Join(dir, "a.jsonl"), format: "jsonl"},
		{name: "--file with -o csv", args: []string{"--file", filepath.Join(dir, "b.csv"), "-o", "csv"}, file: filepath.Join(dir, "b.csv"), format: "csv"},
		{name: "FILE -", args: []string{"-"}, stdout: "jsonl"},
		{name: "FILE and --file differ", args: []string{"x.jsonl", "--file", "y.jsonl"}, code: exitUsage, wantErr: "name different files"},
		{name: "-o table", args: []string{"-o", "table"}, code: exitUsage, wantErr: "writes jsonl or csv, not table"},
		{name: "-o a word", args: []string{"-o", "jsonn"}, code: exitUsage, wantErr: `"jsonn" is not an export format`},
		{name: "-o and --format disagree", args: []string{"-o", "csv", "--format", "jsonl"}, code: exitUsage, wantErr: "disagree"},
		{name: "-o a path still works, with a warning", args: []string{"-o", filepath.Join(dir, "old.jsonl")},
			wantErr: "-o FILE is deprecated", file: filepath.Join(dir, "old.jsonl"), format: "jsonl"},
		{name: "-o a path and FILE", args: []string{"-o", "old.jsonl", "new.jsonl"}, code: exitUsage, wantErr: "not an export format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := env.hubctl(t, append([]string{"audit", "export"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.wantErr)
			}
			checkFormat := func(what, body, format string) {
				t.Helper()
				switch format {
				case "jsonl":
					if rep, err := ledger.VerifyExport(strings.NewReader(body), nil); err != nil || rep.Entries != 5 {
						t.Errorf("%s is not a verifiable export of 5 entries: %+v %v", what, rep, err)
					}
				case "csv":
					if !strings.HasPrefix(body, strings.Join(ledger.CSVHeader, ",")+"\n") || strings.Count(body, "\n") != 6 {
						t.Errorf("%s is not CSV of 5 entries:\n%s", what, body)
					}
				}
			}
			if tc.stdout == "" && out != "" {
				t.Errorf("stdout %q", out)
			}
			checkFormat("stdout", out, tc.stdout)
			if tc.file != "" {
				b, err := os.ReadFile(tc.file)
				if err != nil {
					t.Fatal(err)
				}
				checkFormat(tc.file, string(b), tc.format)
			}
			for _, stray := range []string{"json", "csv", "jsonl", "table", "jsonn", "x.jsonl", "y.jsonl", "new.jsonl", "old.jsonl"} {
				if _, err := os.Stat(stray); err == nil {
					t.Errorf("export wrote a file named %q", stray)
					os.Remove(stray)
				}
			}
		})
	}
}

// flakyTail forwards to the real node and breaks each tail stream after
// breakAfter records, as a restarting node or a dropped link does.
type flakyTail struct {
	hubv1.UnimplementedAdminServiceServer
	real       hubv1.AdminServiceClient
	breakAfter int

	mu     sync.Mutex
	tails  []uint64 // from_seq of every TailAudit
	origin string   // non-empty: answer checkpoints as another node's
}

func (f *flakyTail) GetCheckpoint(ctx context.Context, r *hubv1.GetCheckpointRequest) (*hubv1.Checkpoint, error) {
	cp, err := f.real.GetCheckpoint(ctx, r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.origin != "" {
		cp.Origin = f.origin
	}
	return cp, err
}

func (f *flakyTail) TailAudit(r *hubv1.TailAuditRequest, st hubv1.AdminService_TailAuditServer) error {
	f.mu.Lock()
	f.tails = append(f.tails, r.GetFromSeq())
	f.mu.Unlock()
	up, err := f.real.TailAudit(st.Context(), r)
	if err != nil {
		return err
	}
	for i := 0; i < f.breakAfter; i++ {
		rec, err := up.Recv()
		if err != nil {
			return err
		}
		if err := st.Send(rec); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "node restarting")
}

func (f *flakyTail) fromSeqs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.tails...)
}

// startFlaky serves f with the node's certificate and returns its address.
func (e *auditEnv) startFlaky(t *testing.T, f *flakyTail) string {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{e.opCert}, MinVersion: tls.VersionTLS13,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	f.real = hubv1.NewAdminServiceClient(cc)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{e.nodeCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: e.ca.Pool(),
	})))
	hubv1.RegisterAdminServiceServer(g, f)
	return serveGRPC(t, g)
}

// startTail runs audit tail in the background; stop cancels it as Ctrl-C
// does and returns the exit status and how long the exit took.
func startTail(t *testing.T, data string, args ...string) (out, errb *syncBuffer, stop func() (int, time.Duration)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out, errb = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"--data", data, "-o", "json"}, args...), out, errb)
	}()
	stop = func() (int, time.Duration) {
		start := time.Now()
		cancel()
		select {
		case code := <-done:
			return code, time.Since(start)
		case <-time.After(10 * time.Second):
			t.Fatal("tail did not end within 10 s of Ctrl-C")
			return 0, 0
		}
	}
	t.Cleanup(func() { cancel() })
	return out, errb, stop
}

// waitSeqs waits until out holds entries with exactly these sequence
// numbers, in order.
func waitSeqs(t *testing.T, out, errb *syncBuffer, want ...int) {
	t.Helper()
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got = strings.TrimSpace(out.String())
		if lines := strings.Split(got, "\n"); len(lines) == len(want) && got != "" {
			for i, w := range want {
				if !strings.Contains(lines[i], `"seq":`+strconv.Itoa(w)+`,`) {
					t.Fatalf("line %d = %q, want seq %d (stderr %q)", i, lines[i], w, errb.String())
				}
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("tail printed %q, want seqs %v (stderr %q)", got, want, errb.String())
}

// -n prints the last N entries first, then new ones; Ctrl-C ends the tail
// at once with exit 0.
func TestAuditTailBacklog(t *testing.T) {
	env := newAuditEnv(t)
	env.appendN(t, 1, 6)
	out, errb, stop := startTail(t, env.data, "audit", "tail", "-n", "2")
	waitSeqs(t, out, errb, 5, 6)
	env.appendN(t, 7, 7)
	waitSeqs(t, out, errb, 5, 6, 7)
	if code, took := stop(); code != 0 || took > time.Second {
		t.Errorf("Ctrl-C: exit %d after %s (stderr %q)", code, took, errb.String())
	}

	// More than there are: everything.
	out, errb, stop = startTail(t, env.data, "audit", "tail", "-n", "100")
	waitSeqs(t, out, errb, 1, 2, 3, 4, 5, 6, 7)
	stop()

	if _, errOut, code := env.hubctl(t, "audit", "tail", "-n", "2", "--from-seq", "3"); code != exitUsage || !strings.Contains(errOut, "not both") {
		t.Errorf("-n with --from-seq: exit %d %q", code, errOut)
	}
}

// A broken stream is resumed after the last entry printed: nothing lost,
// nothing twice. Landing on another node's ledger is said, not hidden.
func TestAuditTailReconnects(t *testing.T) {
	saved := tailBackoff
	tailBackoff = [2]time.Duration{10 * time.Millisecond, 50 * time.Millisecond}
	t.Cleanup(func() { tailBackoff = saved })

	env := newAuditEnv(t)
	env.appendN(t, 1, 7)
	f := &flakyTail{breakAfter: 3}
	addr := env.startFlaky(t, f)
	out, errb, stop := startTail(t, env.data, "--endpoints", addr, "audit", "tail", "--from-seq", "1")
	waitSeqs(t, out, errb, 1, 2, 3, 4, 5, 6, 7)
	if got := f.fromSeqs(); len(got) < 3 || got[0] != 1 || got[1] != 4 || got[2] != 7 {
		t.Errorf("tails asked from %v, want 1, 4, 7, ...", got)
	}
	if !strings.Contains(errb.String(), "Unavailable: node restarting; reconnecting in") {
		t.Errorf("stderr %q", errb.String())
	}

	// Another node answers: it is said, and its own numbering is followed
	// from its next entry.
	f.mu.Lock()
	f.origin = "clearhub/n9"
	f.mu.Unlock()
	env.appendN(t, 8, 9) // the stream breaks after 7, 8, 9
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errb.String(), "now connected to clearhub/n9, not clearhub/n1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errb.String(), "now connected to clearhub/n9") {
		t.Errorf("origin change not reported: %q", errb.String())
	}
	if code, took := stop(); code != 0 || took > time.Second {
		t.Errorf("Ctrl-C: exit %d after %s", code, took)
	}
}

// The first connection failing is an error, not an endless retry.
func TestAuditTailNoNode(t *testing.T) {
	env := newAuditEnv(t)
	_, errOut, code := env.hubctl(t, "--endpoints", "127.0.0.1:1", "audit", "tail")
	if code != exitFailure || !strings.Contains(errOut, "Unavailable") {
		t.Errorf("exit %d %q", code, errOut)
	}
}
