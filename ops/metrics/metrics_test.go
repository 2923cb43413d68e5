package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"clearhub/raft"
)

type fakeStatus struct{ v atomic.Pointer[raft.Status] }

func (f *fakeStatus) Status() raft.Status { return *f.v.Load() }

func TestEndpoints(t *testing.T) {
	src := &fakeStatus{}
	src.v.Store(&raft.Status{})
	reg := NewRegistry()
	if err := RegisterRaft(reg, src); err != nil {
		t.Fatal(err)
	}
	if err := RegisterBuildInfo(reg, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	var extra atomic.Bool
	s := listen(t, Config{Gatherer: reg, Source: src, Checks: []func() error{func() error {
		if extra.Load() {
			return errors.New("self not registered")
		}
		return nil
	}}})
	get := func(path string) (int, string) {
		t.Helper()
		return get(t, s, path)
	}
	cases := []struct {
		name   string
		status raft.Status
		path   string
		code   int
		body   string
	}{
		{"healthz always", raft.Status{}, "/healthz", 200, "ok"},
		{"restoring", raft.Status{LeaderID: "n1", StateIndex: 4, RestoreTarget: 9}, "/readyz", 503, "restoring state (applied 4 of 9)"},
		{"removed", raft.Status{LeaderID: "n1", Restored: true, Removed: true}, "/readyz", 503, "removed from the cluster"},
		{"no leader", raft.Status{Restored: true}, "/readyz", 503, "no raft leader"},
		{"behind", raft.Status{Restored: true, LeaderID: "n1", CommitIndex: 9, AppliedIndex: 3}, "/readyz", 503, "behind commit"},
		{"ready", raft.Status{Restored: true, LeaderID: "n1", CommitIndex: 9, AppliedIndex: 9}, "/readyz", 200, "ready"},
		{"extra check fails", raft.Status{Restored: true, LeaderID: "n1", CommitIndex: 9, AppliedIndex: 9}, "/readyz", 503, "self not registered"},
		{"metrics", raft.Status{LeaderID: "n1", State: "Leader", Term: 7}, "/metrics", 200, "clearhub_raft_term 7"},
		{"removed gauge", raft.Status{Removed: true}, "/metrics", 200, "clearhub_raft_removed 1"},
		{"build info", raft.Status{}, "/metrics", 200, `clearhub_build_info{goversion="go`},
		{"build info version", raft.Status{}, "/metrics", 200, `version="v1.2.3"`},
		{"pprof off by default", raft.Status{}, "/debug/pprof/", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.status
			src.v.Store(&st)
			extra.Store(tc.name == "extra check fails")
			code, body := get(tc.path)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.body)
			}
		})
	}
}

// pprof is served only when asked for.
func TestPprofOptIn(t *testing.T) {
	src := &fakeStatus{}
	src.v.Store(&raft.Status{})
	for _, on := range []bool{false, true} {
		s := listen(t, Config{Gatherer: NewRegistry(), Source: src, Pprof: on})
		want := 404
		if on {
			want = 200
		}
		if code, _ := get(t, s, "/debug/pprof/"); code != want {
			t.Errorf("Pprof=%v: GET /debug/pprof/ = %d, want %d", on, code, want)
		}
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" || strings.ContainsAny(v, " \n") {
		t.Fatalf("Version() = %q", v)
	}
}

func listen(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
