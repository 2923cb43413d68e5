package main

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// fakeQueues records QueueService requests and answers a fixed queue.
type fakeQueues struct {
	hubv1.UnimplementedQueueServiceServer
	mu    sync.Mutex
	calls []call
}

func (f *fakeQueues) rec(m string, r proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{m, r})
}

var fakeSummary = &hubv1.QueueSummary{Network: "b", Messages: 2, Bytes: 900, OldestUnixNano: time.Now().Add(-time.Minute).UnixNano()}

func (f *fakeQueues) ListQueues(_ context.Context, r *hubv1.ListQueuesRequest) (*hubv1.ListQueuesResponse, error) {
	f.rec("ListQueues", r)
	return &hubv1.ListQueuesResponse{Queues: []*hubv1.QueueSummary{fakeSummary}}, nil
}

func (f *fakeQueues) ShowQueue(_ context.Context, r *hubv1.ShowQueueRequest) (*hubv1.ShowQueueResponse, error) {
	f.rec("ShowQueue", r)
	return &hubv1.ShowQueueResponse{Summary: fakeSummary, Messages: []*hubv1.QueuedMessageInfo{
		{Id: "n1-abc", Source: "a", CallId: "call-1", Bytes: 450, StoredUnixNano: fakeSummary.OldestUnixNano, ExpiresUnixNano: time.Now().Add(time.Hour).UnixNano(), Seq: 7}}}, nil
}

func (f *fakeQueues) RetryQueue(_ context.Context, r *hubv1.RetryQueueRequest) (*hubv1.RetryQueueResponse, error) {
	f.rec("RetryQueue", r)
	return &hubv1.RetryQueueResponse{Node: "n1"}, nil
}

func (f *fakeQueues) DropQueued(_ context.Context, r *hubv1.DropQueuedRequest) (*hubv1.DropQueuedResponse, error) {
	f.rec("DropQueued", r)
	return &hubv1.DropQueuedResponse{Dropped: 1}, nil
}

// The queue commands send what their arguments say and print it.
func TestQueueCommands(t *testing.T) {
	data, ca, _ := newDataDir(t)
	pair, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})))
	fq := &fakeQueues{}
	hubv1.RegisterAdminServiceServer(srv, &fakeAdmin{errs: map[string]error{}})
	hubv1.RegisterQueueServiceServer(srv, fq)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	env := &testEnv{data: data, ca: ca, addr: lis.Addr().String()}

	for _, tc := range []struct {
		args []string
		want call
		out  string
	}{
		{[]string{"queue", "list"}, call{"ListQueues", &hubv1.ListQueuesRequest{}}, "900"},
		{[]string{"queue", "list", "--network", "b"}, call{"ListQueues", &hubv1.ListQueuesRequest{Network: "b"}}, "MESSAGES"},
		{[]string{"queue", "show", "b"}, call{"ShowQueue", &hubv1.ShowQueueRequest{Network: "b"}}, "call-1"},
		{[]string{"queue", "show", "b", "-o", "json"}, call{"ShowQueue", &hubv1.ShowQueueRequest{Network: "b"}}, `"call_id": "call-1"`},
		{[]string{"queue", "retry", "b"}, call{"RetryQueue", &hubv1.RetryQueueRequest{Network: "b"}}, "node n1"},
		{[]string{"queue", "drop", "b", "--id", "n1-abc"}, call{"DropQueued", &hubv1.DropQueuedRequest{Network: "b", Id: "n1-abc"}}, "dropped 1"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fq.mu.Lock()
			fq.calls = nil
			fq.mu.Unlock()
			out, errOut, code := env.hubctl(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			fq.mu.Lock()
			got := fq.calls
			fq.mu.Unlock()
			if d := cmp.Diff([]call{tc.want}, got, protocmp.Transform(), cmp.AllowUnexported(call{})); d != "" {
				t.Errorf("requests (-want +got):\n%s", d)
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}
	if _, _, code := env.hubctl(t, "queue", "show"); code != 2 {
		t.Errorf("show without NETWORK: exit %d, want 2", code)
	}
}

// network update --defer... sends the merged store-and-forward setting
// under the "deferral" mask path, merged into the setting read first.
func TestNetworkUpdateDeferFlags(t *testing.T) {
	cases := []struct {
		args []string
		want *hubv1.Deferral
		code int
	}{
		{[]string{"--defer-on-480"}, &hubv1.Deferral{On_480: true}, 0},
		{[]string{"--defer=false"}, &hubv1.Deferral{Disabled: true}, 0},
		{[]string{"--defer-max-messages", "50", "--defer-max-bytes", "100000", "--defer-ttl", "24h"}, &hubv1.Deferral{MaxMessages: 50, MaxBytes: 100000, TtlSeconds: 86400}, 0},
		{[]string{"--defer-ttl", "1500ms"}, nil, 2},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			env := newTestEnv(t, pki.RoleNode)
			_, errOut, code := env.hubctl(t, append([]string{"network", "update", "a"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if tc.code != 0 {
				return
			}
			var upd *hubv1.UpdateNetworkRequest
			for _, c := range env.fake.recorded() {
				if c.method == "UpdateNetwork" {
					upd = c.req.(*hubv1.UpdateNetworkRequest)
				}
			}
			if upd == nil {
				t.Fatal("no UpdateNetwork")
			}
			if d := cmp.Diff(tc.want, upd.GetNetwork().GetDeferral(), protocmp.Transform()); d != "" || len(upd.GetUpdateMask()) != 1 || upd.GetUpdateMask()[0] != "deferral" {
				t.Errorf("deferral (-want +got) %s, mask %v", d, upd.GetUpdateMask())
			}
			if c := env.fake.recorded(); len(c) < 2 || c[0].method != "GetNetwork" {
				t.Errorf("the current setting was not read first: %v", c)
			}
		})
	}
}
