package main

import (
	"context"
	"crypto/tls"
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
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	"clearhub/hub/lists"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// fakeLists records ListService requests and answers from a small map.
type fakeLists struct {
	hubv1.UnimplementedListServiceServer
	mu    sync.Mutex
	calls []call
	lists map[string]*hubv1.ResourceList
}

func (f *fakeLists) rec(m string, r proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{m, r})
}

func (f *fakeLists) CreateList(_ context.Context, r *hubv1.CreateListRequest) (*hubv1.ResourceList, error) {
	f.rec("CreateList", r)
	f.mu.Lock()
	defer f.mu.Unlock()
	l := proto.Clone(r.GetList()).(*hubv1.ResourceList)
	l.Revision = 1
	f.lists[l.GetUri()] = l
	return l, nil
}

func (f *fakeLists) GetList(_ context.Context, r *hubv1.GetListRequest) (*hubv1.ResourceList, error) {
	f.rec("GetList", r)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists[r.GetUri()], nil
}

func (f *fakeLists) AddListEntries(_ context.Context, r *hubv1.ListEntriesRequest) (*hubv1.ResourceList, error) {
	f.rec("AddListEntries", r)
	return &hubv1.ResourceList{Uri: r.GetUri()}, nil
}

func (f *fakeLists) SetViewSharing(_ context.Context, r *hubv1.SetViewSharingRequest) (*hubv1.SetViewSharingResponse, error) {
	f.rec("SetViewSharing", r)
	return &hubv1.SetViewSharingResponse{Destination: r.GetDestination(), Source: r.GetSource(), ShareViews: r.GetShare()}, nil
}

// newListEnv serves a fake AdminService and ListService like newTestEnv.
func newListEnv(t *testing.T) (*testEnv, *fakeLists) {
	t.Helper()
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
	fa := &fakeAdmin{errs: map[string]error{}}
	fl := &fakeLists{lists: map[string]*hubv1.ResourceList{}}
	hubv1.RegisterAdminServiceServer(srv, fa)
	hubv1.RegisterListServiceServer(srv, fl)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	writeFile(t, filepath.Join(data, "admin.addr"), []byte(lis.Addr().String()+"\n"), 0o644)
	return &testEnv{data: data, ca: ca, fake: fa, addr: lis.Addr().String()}, fl
}

// The list commands send what their arguments say; import reads RFC 4826
// and export writes a document that imports again.
func TestListCommands(t *testing.T) {
	env, fl := newListEnv(t)
	doc := `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` +
		`<list name="team"><display-name>Team</display-name><entry uri="sip:bob@b.example"><display-name>Bob</display-name></entry><entry-ref ref="x"/></list>` +
		`<list name="ops"><entry uri="sip:carol@b.example"/></list></resource-lists>`
	file := filepath.Join(t.TempDir(), "l.xml")
	writeFile(t, file, []byte(doc), 0o644)

	for _, tc := range []struct {
		args []string
		want []call
		out  string
	}{
		{[]string{"list", "create", "sip:alice-buddies@lists.hub.example", "--owner", "sip:alice@a.example", "--entry", "sip:bob@b.example=Bob B", "--entry", "sip:carol@b.example"},
			[]call{{"CreateList", &hubv1.CreateListRequest{List: &hubv1.ResourceList{Uri: "sip:alice-buddies@lists.hub.example", Owner: "sip:alice@a.example",
				Entries: []*hubv1.ListEntry{{Uri: "sip:bob@b.example", DisplayName: "Bob B"}, {Uri: "sip:carol@b.example"}}}}}}, "sip:bob@b.example"},
		{[]string{"list", "add", "sip:x@lists.hub.example", "sip:dave@b.example=Dave"},
			[]call{{"AddListEntries", &hubv1.ListEntriesRequest{Uri: "sip:x@lists.hub.example", Entries: []*hubv1.ListEntry{{Uri: "sip:dave@b.example", DisplayName: "Dave"}}}}}, ""},
		{[]string{"list", "import", file, "--domain", "lists.hub.example", "--replace"},
			[]call{
				{"CreateList", &hubv1.CreateListRequest{Replace: true, List: &hubv1.ResourceList{Uri: "sip:team@lists.hub.example", DisplayName: "Team", Entries: []*hubv1.ListEntry{{Uri: "sip:bob@b.example", DisplayName: "Bob"}}}}},
				{"CreateList", &hubv1.CreateListRequest{Replace: true, List: &hubv1.ResourceList{Uri: "sip:ops@lists.hub.example", Entries: []*hubv1.ListEntry{{Uri: "sip:carol@b.example"}}}}},
			}, "1 entry-ref/external elements skipped"},
		{[]string{"policy", "allow", "b", "--from", "a", "--services", "presence", "--share-views"},
			[]call{{"SetViewSharing", &hubv1.SetViewSharingRequest{Destination: "b", Source: "a", Share: true}}}, ""},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			fl.mu.Lock()
			fl.calls = nil
			fl.mu.Unlock()
			out, errOut, code := env.hubctl(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			fl.mu.Lock()
			got := fl.calls
			fl.mu.Unlock()
			if d := cmp.Diff(tc.want, got, protocmp.Transform(), cmp.AllowUnexported(call{})); d != "" {
				t.Errorf("requests (-want +got):\n%s", d)
			}
			if !strings.Contains(out+errOut, tc.out) {
				t.Errorf("output lacks %q:\n%s%s", tc.out, out, errOut)
			}
		})
	}

	// Export what was imported: it parses back to the same entries.
	out, errOut, code := env.hubctl(t, "list", "export", "sip:team@lists.hub.example", "sip:ops@lists.hub.example")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	docs, err := lists.ParseResourceLists([]byte(out), 100)
	if err != nil || len(docs) != 2 || docs[0].Name != "team" || docs[0].Entries[0].DisplayName != "Bob" || docs[1].Entries[0].URI != "sip:carol@b.example" {
		t.Fatalf("export: %v %+v\n%s", err, docs, out)
	}

	// Usage mistakes: a document of two lists with one --uri.
	if _, errOut, code := env.hubctl(t, "list", "import", file, "--uri", "sip:one@lists.hub.example"); code != exitUsage || !strings.Contains(errOut, "--uri names one list") {
		t.Errorf("import --uri of two lists: %d %s", code, errOut)
	}
	_ = os.Remove(file)
}
