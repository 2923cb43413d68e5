package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Unknown subcommands are usage errors (exit 2) at every level, not help
// with exit 0; a bare group still prints its help.
func TestUnknownSubcommand(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	for _, tc := range []struct {
		args     []string
		code     int
		wantErr  string
		wantOut  string
		noStdout bool
	}{
		{args: []string{"network", "bogus"}, code: exitUsage, wantErr: `unknown command "bogus" for "hubctl network"`, noStdout: true},
		{args: []string{"cluster", "stauts"}, code: exitUsage, wantErr: "did you mean status?", noStdout: true},
		{args: []string{"audit", "bogus", "x"}, code: exitUsage, wantErr: `unknown command "bogus" for "hubctl audit"`, noStdout: true},
		{args: []string{"netwrk"}, code: exitUsage, wantErr: `unknown command "netwrk"`, noStdout: true},
		{args: []string{"network"}, code: exitOK, wantOut: "Available Commands:"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := env.hubctl(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) || !strings.Contains(out, tc.wantOut) {
				t.Errorf("exit %d (want %d), stderr %q (want %q), stdout %q", code, tc.code, errOut, tc.wantErr, out)
			}
			if tc.noStdout && out != "" {
				t.Errorf("stdout %q", out)
			}
		})
	}
}

func TestClusterProblems(t *testing.T) {
	healthy := func(id, suffrage string) *hubv1.NodeStatus {
		return &hubv1.NodeStatus{Id: id, Suffrage: suffrage, State: "follower", Healthy: true}
	}
	sick := &hubv1.NodeStatus{Id: "n3", Suffrage: "voter", State: "unreachable", Error: "dial refused"}
	for _, tc := range []struct {
		name string
		st   *hubv1.ClusterStatusResponse
		want []string
	}{
		{"healthy", &hubv1.ClusterStatusResponse{Leader: "n1", Nodes: []*hubv1.NodeStatus{healthy("n1", "voter"), healthy("n2", "voter")}}, nil},
		{"no leader", &hubv1.ClusterStatusResponse{Nodes: []*hubv1.NodeStatus{healthy("n1", "voter")}}, []string{"no leader known"}},
		{"sick voter", &hubv1.ClusterStatusResponse{Leader: "n1", Nodes: []*hubv1.NodeStatus{healthy("n1", "voter"), sick}},
			[]string{"voter n3 is unreachable (dial refused)"}},
		{"sick nonvoter does not count", &hubv1.ClusterStatusResponse{Leader: "n1", Nodes: []*hubv1.NodeStatus{
			healthy("n1", "voter"), {Id: "n4", Suffrage: "nonvoter", State: "unreachable"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clusterProblems(tc.st); !cmp.Equal(got, tc.want) {
				t.Errorf("clusterProblems = %q, want %q", got, tc.want)
			}
		})
	}
}

// cluster status --check exits 1 naming the unhealthy voter, after
// printing the status; without --check the exit status stays 0.
func TestClusterStatusCheck(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode) // the fake's n2 is an unreachable voter
	out, errOut, code := env.hubctl(t, "cluster", "status", "--check")
	if code != exitFailure || !strings.Contains(errOut, "cluster unhealthy: voter n2 is unreachable (dial refused)") || !strings.Contains(out, "LEADER:") {
		t.Errorf("--check: exit %d stderr %q stdout %q", code, errOut, out)
	}
	if _, errOut, code := env.hubctl(t, "cluster", "status"); code != exitOK {
		t.Errorf("without --check: exit %d %q", code, errOut)
	}
}

// --endpoints (and --addr) take a list and fail over past a dead node;
// HUBCTL_* stand in for the flags, and flags win.
func TestEndpointsAndEnvironment(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	dead := "127.0.0.1:1"
	// Credentials outside DATA, reachable only through flags or variables.
	other := t.TempDir()
	for _, f := range []string{"ca.crt", "operator.crt", "operator.key"} {
		b, err := os.ReadFile(filepath.Join(env.data, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(other, f), b, 0o600)
	}
	empty := t.TempDir()
	creds := map[string]string{
		envCACert: filepath.Join(other, "ca.crt"), envCert: filepath.Join(other, "operator.crt"), envKey: filepath.Join(other, "operator.key"),
	}

	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		wantErr string
	}{
		{name: "failover past a dead node", args: []string{"--endpoints", dead + "," + env.addr}, code: exitOK},
		{name: "--addr takes a list too", args: []string{"--addr", dead + ", " + env.addr}, code: exitOK},
		{name: "all dead", args: []string{"--endpoints", dead + ",127.0.0.1:2"}, code: exitFailure, wantErr: "Unavailable"},
		{name: "from the environment", env: map[string]string{envEndpoints: dead + "," + env.addr}, code: exitOK},
		{name: "flag wins over the environment", env: map[string]string{envEndpoints: env.addr}, args: []string{"--endpoints", dead},
			code: exitFailure, wantErr: "Unavailable"},
		{name: "both flags", args: []string{"--endpoints", env.addr, "--addr", env.addr}, code: exitUsage, wantErr: "give one of them"},
		{name: "bad endpoint", args: []string{"--endpoints", "localhost"}, code: exitUsage, wantErr: `--endpoints: "localhost" is not host:port`},
		{name: "bad endpoint in the environment", env: map[string]string{envEndpoints: "nohost"}, code: exitUsage, wantErr: envEndpoints + `: "nohost"`},
		{name: "credentials from the environment", env: creds, args: []string{"--data", empty, "--endpoints", env.addr}, code: exitOK},
		{name: "missing CA from the environment is named", env: map[string]string{envCACert: filepath.Join(empty, "nope.crt")},
			code: exitFailure, wantErr: envCACert + ": open "},
		{name: "--ca wins over HUBCTL_CACERT", env: map[string]string{envCACert: filepath.Join(empty, "nope.crt")},
			args: []string{"--ca", filepath.Join(other, "ca.crt")}, code: exitOK},
		{name: "deprecated --admin-ca still reaches the cluster CA", args: []string{"--admin-ca", filepath.Join(other, "ca.crt")}, code: exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, errOut, code := env.hubctl(t, append(tc.args, "network", "list")...)
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.wantErr)
			}
		})
	}
}

// walkJSON calls fn for every string value in a decoded JSON document.
func walkJSON(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			walkJSON(e, fn)
		}
	case map[string]any:
		for _, e := range x {
			walkJSON(e, fn)
		}
	}
}

// -o json is for scripts: numbers are numbers, enums the command line's
// words, times RFC 3339, and keys are present even when empty.
func TestJSONOutputShapes(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	for _, tc := range []struct {
		args  []string
		check func(t *testing.T, doc any)
	}{
		{[]string{"network", "get", "a"}, func(t *testing.T, doc any) {
			n := doc.(map[string]any)
			if !cmp.Equal(n["services"], []any{"presence", "im"}) || n["status"] != "active" || n["created"] != nil {
				t.Errorf("network: %v", n)
			}
			id := n["identity"].(map[string]any)
			if !cmp.Equal(id["tls_cidrs"], []any{}) || !cmp.Equal(id["cidrs"], []any{"127.0.0.1/32"}) {
				t.Errorf("identity: %v", id)
			}
		}},
		{[]string{"network", "list"}, func(t *testing.T, doc any) {
			if l := doc.([]any); len(l) != 2 || l[1].(map[string]any)["status"] != "suspended" {
				t.Errorf("list: %v", l)
			}
		}},
		{[]string{"network", "remove", "a"}, func(t *testing.T, doc any) {
			if !cmp.Equal(doc, map[string]any{"id": "a", "removed": true}) {
				t.Errorf("remove: %v", doc)
			}
		}},
		{[]string{"policy", "list"}, func(t *testing.T, doc any) {
			p := doc.([]any)[0].(map[string]any)
			rule := p["rules"].([]any)[0].(map[string]any)
			if !cmp.Equal(p["all_services"], []any{"presence"}) || !cmp.Equal(rule["services"], []any{"im", "chat"}) || rule["share_views"] != false {
				t.Errorf("policy: %v", p)
			}
		}},
		{[]string{"cluster", "status"}, func(t *testing.T, doc any) {
			st := doc.(map[string]any)
			n2 := st["nodes"].([]any)[1].(map[string]any)
			if st["term"] != 3.0 || st["last_index"] != 0.0 || n2["applied_index"] != 0.0 || n2["healthy"] != false {
				t.Errorf("status: %v", st)
			}
		}},
		{[]string{"cluster", "token"}, func(t *testing.T, doc any) {
			tok := doc.(map[string]any)
			exp, _ := tok["expires"].(string)
			if ts, err := time.Parse(time.RFC3339, exp); err != nil || ts.Unix() != 1_900_000_000 {
				t.Errorf("token expires %q: %v", exp, err)
			}
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := env.hubctl(t, append(tc.args, "-o", "json")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var doc any
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			walkJSON(doc, func(s string) {
				if strings.HasPrefix(s, "SERVICE_") || strings.HasPrefix(s, "NETWORK_STATUS_") {
					t.Errorf("enum spelled as in the proto: %q", s)
				}
			})
			tc.check(t, doc)
			// YAML carries the same document.
			yout, _, code := env.hubctl(t, append(tc.args, "-o", "yaml")...)
			var ydoc any
			if err := yaml.Unmarshal([]byte(yout), &ydoc); code != 0 || err != nil {
				t.Fatalf("yaml: exit %d %v", code, err)
			}
			jb, _ := json.Marshal(ydoc)
			var ydocJSON any
			_ = json.Unmarshal(jb, &ydocJSON)
			if d := cmp.Diff(doc, ydocJSON); d != "" {
				t.Errorf("yaml differs from json (-json +yaml):\n%s", d)
			}
		})
	}
}

// A message without a view of its own (another file's command printing a
// response as is) follows the same rules.
func TestProtoView(t *testing.T) {
	got := protoView(&hubv1.ScrubAuditResponse{Node: "n1", EntriesChecked: 1 << 40, Ok: true,
		StartedUnixNano: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()})
	want := map[string]any{
		"node": "n1", "entries_checked": uint64(1 << 40), "tree_nodes_checked": uint64(0), "ok": true, "first_bad_seq": uint64(0),
		"error": "", "started": ptr("2026-01-02T03:04:05.000000006Z"), "finished": (*string)(nil),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("protoView (-want +got):\n%s", d)
	}
	n := protoView(&hubv1.Network{Services: []hubv1.Service{hubv1.Service_SERVICE_PRESENCE}, Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED})
	if !cmp.Equal(n["services"], []any{"presence"}) || n["status"] != "suspended" || n["identity"] != nil {
		t.Errorf("network protoView: %v", n)
	}
	b, err := toJSON(&hubv1.JoinToken{ExpiresUnix: 1_900_000_000})
	if err != nil || !strings.Contains(string(b), `"expires": "2030-03-17T17:46:40Z"`) {
		t.Errorf("toJSON = %s, %v", b, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestVersion(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	out, errOut, code := env.hubctl(t, "version", "--client")
	if code != 0 || !strings.HasPrefix(out, "CLIENT:") || !strings.Contains(out, "dev") || strings.Contains(out, "NODE") {
		t.Errorf("version --client: exit %d out %q err %q", code, out, errOut)
	}
	out, errOut, code = env.hubctl(t, "version", "-o", "json")
	var v versionView
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version: exit %d %v %q %q", code, err, out, errOut)
	}
	// n1 reports its version; n2 did not answer the status probe.
	want := []nodeVersionView{{ID: "n1", Version: "v1.2.3"}, {ID: "n2", Version: nodeVersionUnknown, Error: "dial refused"}}
	if v.Client.Version != "dev" || !strings.HasPrefix(v.Client.Go, "go") || !cmp.Equal(v.Nodes, want) {
		t.Errorf("version: %+v", v)
	}
	// No node answering: the client's version is still printed.
	out, errOut, code = env.hubctl(t, "--endpoints", "127.0.0.1:1", "version")
	if code != exitFailure || !strings.HasPrefix(out, "CLIENT:") || !strings.Contains(errOut, "Unavailable") {
		t.Errorf("version, no node: exit %d out %q err %q", code, out, errOut)
	}
}

// certs member refuses names no certificate should carry, naming the
// argument, with the A-label for an internationalised name.
func TestCertsMemberNames(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	for _, tc := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"bad domain"}, exitUsage, `NAME "bad domain": not a DNS host name`},
		{[]string{"bücher.example"}, exitUsage, `NAME "bücher.example": internationalised names go in their ASCII (punycode) form: use "xn--bcher-kva.example"`},
		{[]string{"A.Example"}, exitUsage, `use "a.example"`},
		{[]string{"--", "-x.example"}, exitUsage, "not a DNS host name"},
		{[]string{"ok.example", "--host", "bad host"}, exitUsage, `--host "bad host": not a DNS host name`},
		{[]string{"ok.example", "--host", "127.0.0.1", "--host", "::1", "--host", "edge.ok.example"}, exitOK, ""},
		{[]string{"xn--bcher-kva.example"}, exitOK, ""},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			_, errOut, code := env.hubctl(t, append([]string{"certs", "member", "--out", t.TempDir()}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.wantErr)
			}
		})
	}
}

// network add with the old spelling --ca registers no member CA, and says
// what --ca is.
func TestNetworkAddCANote(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	_, errOut, code := env.hubctl(t, "network", "add", "c", "--domain", "c.example", "--edge", "sip:127.0.0.1:5090",
		"--ca", filepath.Join(env.data, "pki", "ca.crt"))
	if code != 0 || !strings.Contains(errOut, "a member network's CA is --member-ca") {
		t.Errorf("exit %d stderr %q", code, errOut)
	}
	calls := env.fake.recorded()
	if got := calls[len(calls)-1].req.(*hubv1.AddNetworkRequest).GetNetwork().GetIdentity().GetCaPem(); len(got) != 0 {
		t.Errorf("the cluster CA was registered as a member CA")
	}
	if _, errOut, code := env.hubctl(t, "network", "add", "d", "--domain", "d.example", "--edge", "sip:127.0.0.1:5090",
		"--tls-cidr", "300.1.2.3"); code != exitUsage || !strings.Contains(errOut, `--tls-cidr: "300.1.2.3"`) {
		t.Errorf("bad --tls-cidr: exit %d %q", code, errOut)
	}
}
