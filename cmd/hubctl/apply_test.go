package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// realHub is one real node in-process: a bootstrapped Raft node (in-memory
// transport, bbolt log on disk) behind the real admin server over mutual
// TLS, as hubd wires them. Every admin RPC it serves is recorded.
type realHub struct {
	data string
	node *raft.Node

	mu      sync.Mutex
	methods []string
	// beforeCall, if set, runs before the handler of each RPC (the test's
	// "someone else" acting between hubctl's read and its write).
	beforeCall func(method string)
}

func newRealHub(t *testing.T) *realHub {
	t.Helper()
	data, ca, _ := newDataDir(t)
	nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := raft.DefaultConfig()
	cfg.ID, cfg.Dir, cfg.Bootstrap = "n1", t.TempDir(), true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 150*time.Millisecond, 150*time.Millisecond, 100*time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	_, cfg.Transport = hraft.NewInmemTransport("127.0.0.1:7000")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := raft.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("close raft: %v", err)
		}
	})
	if err := node.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	h := &realHub{data: data, node: node}
	srv, err := admin.NewServer(admin.Options{NodeID: "n1", CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert), Store: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	record := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		m := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		h.mu.Lock()
		h.methods = append(h.methods, m)
		hook := h.beforeCall
		h.mu.Unlock()
		if hook != nil {
			hook(m)
		}
		return handler(ctx, req)
	})
	addr := serveGRPC(t, srv.NewGRPCServer(admin.ServerTLSConfig(ca, nodeCert), record))
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(addr+"\n"), 0o644)
	return h
}

func (h *realHub) hubctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), append([]string{"--data", h.data, "--timeout", "10s"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// must runs hubctl and fails the test unless it exits 0.
func (h *realHub) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := h.hubctl(t, args...)
	if code != 0 {
		t.Fatalf("hubctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// writes returns the state-changing RPCs received since the last call.
func (h *realHub) writes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var w []string
	for _, m := range h.methods {
		if !strings.HasPrefix(m, "List") && !strings.HasPrefix(m, "Get") {
			w = append(w, m)
		}
	}
	h.methods = nil
	return w
}

func (h *realHub) network(t *testing.T, id string) *hubv1.Network {
	t.Helper()
	v := h.node.State().Network(id)
	if v == nil {
		return nil
	}
	return v.Network
}

// TestApplyEndToEnd drives export and apply against a real node: the round
// trip is a no-op, one edited field is one UpdateNetwork, --dry-run
// changes nothing, --prune removes, status and policy edits use the
// Suspend and Deny/Allow RPCs, and a change made by someone else between
// apply's read and its write fails with FailedPrecondition and is not
// overwritten.
func TestApplyEndToEnd(t *testing.T) {
	h := newRealHub(t)
	memberCA, err := pki.NewCA("Member A CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "a-ca.pem")
	writeFile(t, caFile, memberCA.CertPEM, 0o644)
	h.must(t, "network", "add", "a", "--name", "Provider A", "--domain", "a.example", "--edge", "sip:127.0.0.2:5060",
		"--member-ca", caFile, "--tls-cidr", "192.0.2.0/24", "--services", "presence,im,session")
	h.must(t, "network", "add", "b", "--domain", "b.example", "--edge", "sip:127.0.0.3:5060", "--cidr", "127.0.0.3", "--keep-bodies")
	h.must(t, "policy", "allow", "b", "--from", "a", "--services", "presence,im")
	h.must(t, "policy", "allow", "a", "--all", "--services", "presence")
	h.writes()

	dir := t.TempDir()
	file := filepath.Join(dir, "membership.yaml")
	exported := h.must(t, "export")
	if !strings.HasPrefix(exported, "apiVersion: clearhub/v1\nkind: Membership\n") {
		t.Fatalf("export header:\n%s", exported)
	}
	if !strings.Contains(exported, "- |\n") || !strings.Contains(exported, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("export: the member CA is not a PEM text block:\n%s", exported)
	}
	writeFile(t, file, []byte(exported), 0o644)
	edit := func(t *testing.T, old, new string) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("%q not in the file:\n%s", old, b)
		}
		writeFile(t, file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
	}

	t.Run("round trip is a no-op", func(t *testing.T) {
		out := h.must(t, "apply", "-f", file)
		if strings.TrimSpace(out) != "no changes" {
			t.Errorf("apply of the export:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		edit(t, "sip:127.0.0.3:5060", "sip:127.0.0.3:5070")
		out, _, code := h.hubctl(t, "apply", "-f", file, "--dry-run")
		if code != 0 || !strings.Contains(out, "~ network b\n~     edges: [sip:127.0.0.3:5060] -> [sip:127.0.0.3:5070]\n") || !strings.Contains(out, "dry run: nothing changed") {
			t.Errorf("dry run: exit %d\n%s", code, out)
		}
		if _, _, code := h.hubctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != exitDiffers {
			t.Errorf("--dry-run --exit-code with a difference: exit %d, want %d", code, exitDiffers)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
		if got := h.network(t, "b").GetEdges(); !slices.Equal(got, []string{"sip:127.0.0.3:5060"}) {
			t.Errorf("edges after dry run: %v", got)
		}
	})

	t.Run("one field is one UpdateNetwork", func(t *testing.T) {
		out := h.must(t, "apply", "-f", file)
		if !strings.Contains(out, "applied: update network b (edges)") {
			t.Errorf("apply:\n%s", out)
		}
		if w := h.writes(); !slices.Equal(w, []string{"UpdateNetwork"}) {
			t.Errorf("writes %v, want exactly one UpdateNetwork", w)
		}
		if got := h.network(t, "b").GetEdges(); !slices.Equal(got, []string{"sip:127.0.0.3:5070"}) {
			t.Errorf("edges: %v", got)
		}
		if _, _, code := h.hubctl(t, "apply", "-f", file, "--dry-run", "--exit-code"); code != 0 {
			t.Errorf("--dry-run --exit-code after applying: exit %d, want 0", code)
		}
	})

	t.Run("status and policy", func(t *testing.T) {
		edit(t, "status: active\n    domains:\n      - b.example", "status: suspended\n    domains:\n      - b.example")
		edit(t, "display_name: \"\"", "display_name: Provider B")
		edit(t, "- source: a\n        services:\n          - presence\n          - im\n", "- source: a\n        services:\n          - presence\n          - session\n")
		out := h.must(t, "apply", "-f", file)
		want := []string{"SuspendNetwork", "UpdateNetwork", "DenyPolicy", "AllowPolicy"}
		if w := h.writes(); !slices.Equal(w, want) {
			t.Errorf("writes %v, want %v\n%s", w, want, out)
		}
		b := h.network(t, "b")
		if b.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED || b.GetDisplayName() != "Provider B" {
			t.Errorf("b after apply: %v", b)
		}
		if got := h.node.State().Policy("b").GetRules()[0].GetServices(); !slices.Equal(got, []hubv1.Service{hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_SESSION}) {
			t.Errorf("b <- a services: %v", got)
		}
		if out := h.must(t, "apply", "-f", file); strings.TrimSpace(out) != "no changes" {
			t.Errorf("second apply:\n%s", out)
		}
		h.writes()
	})

	t.Run("prune", func(t *testing.T) {
		h.must(t, "network", "add", "c", "--domain", "c.example", "--edge", "sip:127.0.0.4:5060", "--cidr", "127.0.0.4")
		h.must(t, "policy", "allow", "c", "--from", "a", "--services", "im")
		h.writes()
		out := h.must(t, "apply", "-f", file)
		if !strings.Contains(out, "# network c is in the cluster but not in the file: kept") || !strings.Contains(out, "no changes") {
			t.Errorf("apply without --prune:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes without --prune %v, want none", w)
		}
		out = h.must(t, "apply", "-f", file, "--prune")
		if !strings.Contains(out, "- network c\n") {
			t.Errorf("apply --prune:\n%s", out)
		}
		if w := h.writes(); !slices.Equal(w, []string{"RemoveNetwork"}) {
			t.Errorf("writes %v, want exactly one RemoveNetwork", w)
		}
		if h.network(t, "c") != nil {
			t.Error("c still exists after --prune")
		}
	})

	t.Run("concurrent change fails cleanly", func(t *testing.T) {
		edit(t, "display_name: Provider A", "display_name: Provider A2")
		h.mu.Lock()
		h.beforeCall = func(m string) {
			if m != "UpdateNetwork" {
				return
			}
			// Another operator renames a after apply read it.
			n := proto.Clone(h.network(t, "a")).(*hubv1.Network)
			n.DisplayName = "Someone Else"
			cmd := &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: time.Now().UnixNano(), Actor: "other",
				Op: &hubv1.Command_UpdateNetwork{UpdateNetwork: &hubv1.UpdateNetwork{Network: n}}}
			if _, err := h.node.Apply(context.Background(), cmd); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		h.mu.Unlock()
		defer func() { h.mu.Lock(); h.beforeCall = nil; h.mu.Unlock() }()
		out, errOut, code := h.hubctl(t, "apply", "-f", file)
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		for _, want := range []string{"FailedPrecondition", "changed since it was read", "apply stopped: 0 of 1 call applied; not applied: update network a (display_name)"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		if !strings.Contains(out, "failed: update network a (display_name): FailedPrecondition") {
			t.Errorf("stdout:\n%s", out)
		}
		if got := h.network(t, "a").GetDisplayName(); got != "Someone Else" {
			t.Errorf("display name %q: the other operator's change was overwritten", got)
		}
	})

	t.Run("bad file changes nothing", func(t *testing.T) {
		h.writes()
		bad := filepath.Join(dir, "bad.yaml")
		writeFile(t, bad, []byte("apiVersion: clearhub/v1\nkind: Membership\nnetworks:\n- id: a\n  domains: [a.example]\n  edges: [sip:127.0.0.2:5060]\n  identity: {cidrs: [10.0.0.0/8]}\n  colour: blue\n"), 0o644)
		_, errOut, code := h.hubctl(t, "apply", "-f", bad)
		if code != exitUsage || !strings.Contains(errOut, bad+":8:3: networks[0].colour: unknown key") {
			t.Errorf("exit %d, stderr:\n%s", code, errOut)
		}
		h.mu.Lock()
		calls := len(h.methods)
		h.mu.Unlock()
		if calls != 0 {
			t.Errorf("%d RPCs for a bad file, want none", calls)
		}
	})
}

// TestApplyShareViewsEndToEnd drives the share_views grant of a policy rule
// through export and apply against a real node: the export carries it and
// re-applies as a no-op; a file granting it shows the diff, exits 3 with
// --dry-run --exit-code and sends one SetViewSharing; a rule without the
// key keeps the grant (noted) until --prune withdraws it; an explicit
// false withdraws it; a bad value is refused naming its YAML path before
// any call.
func TestApplyShareViewsEndToEnd(t *testing.T) {
	h := newRealHub(t)
	h.must(t, "network", "add", "a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5060", "--cidr", "127.0.0.2")
	h.must(t, "network", "add", "b", "--domain", "b.example", "--edge", "sip:127.0.0.3:5060", "--cidr", "127.0.0.3")
	h.must(t, "policy", "allow", "b", "--from", "a", "--services", "presence,im")
	h.writes()
	shares := func() bool { return h.node.State().ShareViews("b", "a") }

	dir := t.TempDir()
	file := filepath.Join(dir, "membership.yaml")
	const unshared = "      - source: a\n        services:\n          - presence\n          - im\n        share_views: false\n"
	const sharedRule = "      - source: a\n        services:\n          - presence\n          - im\n        share_views: true\n"
	const noKey = "      - source: a\n        services:\n          - presence\n          - im\n"
	set := func(t *testing.T, old, new string) {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("file lacks %q:\n%s", old, b)
		}
		writeFile(t, file, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
	}
	exported := h.must(t, "export")
	if !strings.Contains(exported, unshared) {
		t.Fatalf("export lacks the rule with share_views: false:\n%s", exported)
	}
	writeFile(t, file, []byte(exported), 0o644)

	steps := []struct {
		name      string
		from, to  string // edit of the file before the step ("" none)
		args      []string
		wantOut   []string // substrings of stdout
		wantCode  int
		wantCalls []string
		wantShare bool
	}{
		{name: "round trip without a grant", args: []string{"apply", "-f", file}, wantOut: []string{"no changes"}},
		{name: "dry run of a grant", from: unshared, to: sharedRule, args: []string{"apply", "-f", file, "--dry-run", "--exit-code"},
			wantOut:  []string{"~ policy b <- a: presence,im; share_views: false -> true\n", "policy entries: 0 to add, 1 to change, 0 to remove (1 call)"},
			wantCode: exitDiffers},
		{name: "grant", args: []string{"apply", "-f", file}, wantOut: []string{"applied: share views b <- a\n"},
			wantCalls: []string{"SetViewSharing"}, wantShare: true},
		{name: "granted: no drift", args: []string{"apply", "-f", file, "--dry-run", "--exit-code"}, wantOut: []string{"no changes"}, wantShare: true},
		{name: "key left out keeps the grant", from: sharedRule, to: noKey, args: []string{"apply", "-f", file},
			wantOut: []string{"# policy b <- a shares views in the cluster; the file's rule has no share_views: kept (apply --prune withdraws it)\n", "no changes"}, wantShare: true},
		{name: "key left out, --prune withdraws", args: []string{"apply", "-f", file, "--prune"},
			wantOut: []string{"~ policy b <- a: presence,im; share_views: true -> false\n", "applied: withdraw shared views b <- a\n"}, wantCalls: []string{"SetViewSharing"}},
		{name: "granted again", from: noKey, to: sharedRule, args: []string{"apply", "-f", file}, wantCalls: []string{"SetViewSharing"}, wantShare: true},
		{name: "explicit false withdraws without --prune", from: sharedRule, to: unshared, args: []string{"apply", "-f", file},
			wantOut: []string{"applied: withdraw shared views b <- a\n"}, wantCalls: []string{"SetViewSharing"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.from != "" {
				set(t, st.from, st.to)
			}
			out, errOut, code := h.hubctl(t, st.args...)
			if code != st.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, st.wantCode, out, errOut)
			}
			for _, w := range st.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if w := h.writes(); !slices.Equal(w, st.wantCalls) {
				t.Errorf("writes %v, want %v\n%s", w, st.wantCalls, out)
			}
			if got := shares(); got != st.wantShare {
				t.Errorf("b shares views with a: %v, want %v", got, st.wantShare)
			}
		})
	}

	t.Run("export after a grant re-applies as a no-op", func(t *testing.T) {
		h.must(t, "policy", "allow", "b", "--from", "a", "--services", "presence,im", "--share-views")
		h.writes()
		exported := h.must(t, "export")
		if !strings.Contains(exported, sharedRule) {
			t.Fatalf("export lacks share_views: true:\n%s", exported)
		}
		writeFile(t, file, []byte(exported), 0o644)
		if out := h.must(t, "apply", "-f", file, "--prune"); strings.TrimSpace(out) != "no changes" {
			t.Errorf("apply --prune of the export:\n%s", out)
		}
		if w := h.writes(); len(w) != 0 {
			t.Errorf("writes %v, want none", w)
		}
	})

	t.Run("bad value refused naming the YAML path", func(t *testing.T) {
		set(t, sharedRule, strings.Replace(sharedRule, "share_views: true", "share_views: maybe", 1))
		_, errOut, code := h.hubctl(t, "apply", "-f", file)
		if code != exitUsage || !strings.Contains(errOut, `policies[0].rules[0].share_views: "maybe": want true or false`) ||
			!strings.Contains(errOut, file+":") {
			t.Errorf("exit %d, stderr:\n%s", code, errOut)
		}
		h.mu.Lock()
		calls := len(h.methods)
		h.mu.Unlock()
		if calls != 0 {
			t.Errorf("%d RPCs for a bad file, want none", calls)
		}
		if !shares() {
			t.Error("the grant changed after a refused file")
		}
	})
}
