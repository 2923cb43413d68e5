package admin

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Every QueueService method has a row in the access table: retry and drop
// are changes for admin and operator, reads are open to readonly too.
func TestQueueServiceAccess(t *testing.T) {
	d := &hubv1.QueueService_ServiceDesc
	for _, m := range d.Methods {
		full := "/" + d.ServiceName + "/" + m.MethodName
		a, ok := methodAccess[full]
		if !ok {
			t.Errorf("%s has no entry in methodAccess", full)
			continue
		}
		read := m.MethodName == "ListQueues" || m.MethodName == "ShowQueue"
		if a.kind != pki.RoleOperator || !a.roles.has(pki.AdminRoleAdmin) || !a.roles.has(pki.AdminRoleOperator) ||
			a.roles.has(pki.AdminRoleReadonly) != read || a.change == read {
			t.Errorf("%s: access %+v", full, a)
		}
	}
}

type fakeQueue struct {
	mu      sync.Mutex
	leader  bool
	retried []string
	dropped []string
}

func (f *fakeQueue) Retry(d string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retried = append(f.retried, d)
	return f.leader
}

func (f *fakeQueue) Drop(_ context.Context, d, id, actor string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, d+"/"+id+"/"+actor)
	if id == "" {
		return 2, nil
	}
	return 1, nil
}

// Reads over the API from the replicated state; retry and drop through the
// node's queue, refused clearly where it does not run or does not deliver.
func TestQueueService(t *testing.T) {
	ca := sharedCA(t)
	cl := newFakeCluster()
	n := startNode(t, ca, cl, "node-a")
	op := issue(t, ca, pki.RoleOperator, "alice")
	conn := dialT(t, n.addr, clientTLS(ca, &op))
	adm, qs := hubv1.NewAdminServiceClient(conn), hubv1.NewQueueServiceClient(conn)
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := adm.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"m1", "m2"} {
		if _, err := cl.fsm.apply(&hubv1.Command{Version: 1, TimeUnixNano: 5, Actor: "test", Op: &hubv1.Command_QueueStore{QueueStore: &hubv1.QueueStore{
			Message:     &hubv1.QueuedMessage{Id: id, Destination: "b", Source: "a", Request: []byte("MESSAGE sip:x SIP/2.0\r\n\r\n"), StoredUnixNano: int64(100 + i), ExpiresUnixNano: 1000, CallId: "c" + id},
			MaxMessages: 10, MaxBytes: 1000}}}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := qs.ListQueues(ctx, &hubv1.ListQueuesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.GetQueues()) != 1 || l.GetQueues()[0].GetMessages() != 2 || l.GetQueues()[0].GetOldestUnixNano() != 100 || l.GetQueues()[0].GetBytes() == 0 {
		t.Fatalf("list %v", l)
	}
	s, err := qs.ShowQueue(ctx, &hubv1.ShowQueueRequest{Network: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.GetMessages()) != 2 || s.GetMessages()[0].GetId() != "m1" || s.GetMessages()[1].GetCallId() != "cm2" {
		t.Fatalf("show %v", s)
	}
	_, err = qs.ShowQueue(ctx, &hubv1.ShowQueueRequest{Network: "nope"})
	wantStatus(t, err, codes.NotFound)
	_, err = qs.RetryQueue(ctx, &hubv1.RetryQueueRequest{Network: "b"})
	wantStatus(t, err, codes.FailedPrecondition, "not running")

	// With a queue behind the service (called directly: the harness's
	// server has none).
	fq := &fakeQueue{}
	svc := &queueService{s: n.srv, q: fq}
	cctx := context.WithValue(ctx, callerKey{}, caller{Name: "alice", Kind: pki.RoleOperator, Role: pki.AdminRoleOperator})
	_, err = svc.RetryQueue(cctx, &hubv1.RetryQueueRequest{Network: "b"})
	wantStatus(t, err, codes.FailedPrecondition, "leader")
	fq.leader = true
	if r, err := svc.RetryQueue(cctx, &hubv1.RetryQueueRequest{Network: "b"}); err != nil || r.GetNode() != "node-a" {
		t.Fatalf("retry: %v %v", r, err)
	}
	if r, err := svc.DropQueued(cctx, &hubv1.DropQueuedRequest{Network: "b", Id: "m1"}); err != nil || r.GetDropped() != 1 {
		t.Fatalf("drop: %v %v", r, err)
	}
	if len(fq.dropped) != 1 || fq.dropped[0] != "b/m1/alice;role=operator" {
		t.Errorf("dropped %v", fq.dropped)
	}
}

// UpdateNetwork takes the store-and-forward setting under its own mask
// path and leaves it alone otherwise.
func TestUpdateNetworkDeferral(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	op := issue(t, ca, pki.RoleOperator, "alice")
	adm := hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &op)))
	ctx := ctxT(t)
	if _, err := adm.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	d := &hubv1.Deferral{On_480: true, TtlSeconds: 3600}
	got, err := adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", Deferral: d}, UpdateMask: []string{"deferral"}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetDeferral().GetOn_480() || got.GetDeferral().GetTtlSeconds() != 3600 {
		t.Fatalf("deferral %v", got.GetDeferral())
	}
	got, err = adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", KeepBodies: true}, UpdateMask: []string{"keep_bodies"}})
	if err != nil || !got.GetDeferral().GetOn_480() {
		t.Fatalf("another path changed the deferral: %v %v", got.GetDeferral(), err)
	}
}
