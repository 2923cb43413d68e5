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
	var extra atomic.Bool
	s, err := Listen("127.0.0.1:0", reg, src, slog.New(slog.DiscardHandler), func() error {
		if extra.Load() {
			return errors.New("self not registered")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		name   string
		status raft.Status
		path   string
		code   int
		body   string
	}{
		{"healthz always", raft.Status{}, "/healthz", 200, "ok"},
		{"no leader", raft.Status{}, "/readyz", 503, "no raft leader"},
		{"behind", raft.Status{LeaderID: "n1", CommitIndex: 9, AppliedIndex: 3}, "/readyz", 503, "behind commit"},
		{"ready", raft.Status{LeaderID: "n1", CommitIndex: 9, AppliedIndex: 9}, "/readyz", 200, "ready"},
		{"extra check fails", raft.Status{LeaderID: "n1", CommitIndex: 9, AppliedIndex: 9}, "/readyz", 503, "self not registered"},
		{"metrics", raft.Status{LeaderID: "n1", State: "Leader", Term: 7}, "/metrics", 200, "clearhub_raft_term 7"},
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
