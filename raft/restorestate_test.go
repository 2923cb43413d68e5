package raft

import (
	"errors"
	"slices"
	"strings"
	"testing"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func restoreCmd(cs *hubv1.ClusterState) *hubv1.Command {
	return &hubv1.Command{Version: 1, TimeUnixNano: clock + 1000, Actor: "test",
		Op: &hubv1.Command_RestoreState{RestoreState: &hubv1.RestoreState{State: cs}}}
}

// liveState is a cluster with networks a, b, c, a policy, a node, a
// revocation and a join token, built through the FSM.
func liveState(t *testing.T) *State {
	t.Helper()
	s := Empty()
	for i, c := range []*hubv1.Command{
		addNet("a"), addNet("b"), addNet("c"),
		cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b"}),
		cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n1", RaftAddr: "127.0.0.1:7000"}}),
		{Version: 1, TimeUnixNano: clock, Actor: "test", Op: &hubv1.Command_RevokeCertificate{RevokeCertificate: &hubv1.RevokeCertificate{Name: "mallory"}}},
		{Version: 1, TimeUnixNano: clock, Actor: "test", Op: &hubv1.Command_RecordJoinToken{RecordJoinToken: &hubv1.RecordJoinToken{Id: "0123456789abcdef", ExpiresUnix: clock/1e9 + 3600}}},
	} {
		next, err := ApplyTo(s, uint64(i+1), c)
		if err != nil {
			t.Fatalf("setup command %d: %v", i, err)
		}
		s = next
	}
	return s
}

// Restoring replaces networks and policies, keeps nodes, revocations and
// join tokens, normalises what it stores, and describes each change.
func TestRestoreStateApply(t *testing.T) {
	live := liveState(t)
	saved := live.Proto()
	// The saved state: a unchanged, b's display name changed, c gone, d new
	// (mixed case, unspecified status), policy of a now admits d instead
	// of b, and d admits everyone for IM. Its nodes, revocations and
	// tokens must be ignored.
	saved.Networks[1].DisplayName = "B renamed"
	d := testNetwork("d")
	d.Domains = []string{"D.Example"}
	saved.Networks = []*hubv1.Network{saved.Networks[0], saved.Networks[1], d}
	saved.Policies = []*hubv1.Policy{
		{Destination: "a", Rules: []*hubv1.PolicyRule{{Source: "d", Services: []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_IM}}}},
		{Destination: "d", AllowAll: true, AllServices: []hubv1.Service{hubv1.Service_SERVICE_IM}},
		{Destination: "b"}, // admits nothing: dropped
	}
	saved.Nodes = nil
	saved.Revocations = nil
	saved.JoinTokens = nil

	c := restoreCmd(saved)
	next, err := ApplyTo(live, live.Index+1, c)
	if err != nil {
		t.Fatal(err)
	}
	if next.Network("c") != nil || next.Network("d") == nil || next.DomainOwner("d.example") == nil {
		t.Fatalf("networks after restore: %v", next.Networks())
	}
	if got := next.Network("d").GetStatus(); got != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE {
		t.Errorf("restored network status %v, want active", got)
	}
	if !proto.Equal(next.Network("a").Network, live.Network("a").Network) {
		t.Errorf("unchanged network a was touched: %v", next.Network("a").Network)
	}
	if got := next.Network("b").GetUpdatedUnixNano(); got != c.GetTimeUnixNano() {
		t.Errorf("changed network b updated at %d, want the command's time %d", got, c.GetTimeUnixNano())
	}
	if next.Allowed("b", "a", hubv1.Service_SERVICE_IM) || !next.Allowed("d", "a", hubv1.Service_SERVICE_IM) || !next.Allowed("b", "d", hubv1.Service_SERVICE_IM) {
		t.Errorf("policies after restore: %v", next.Policies())
	}
	if next.Policy("b") != nil {
		t.Errorf("empty policy kept: %v", next.Policy("b"))
	}
	if len(next.Nodes()) != 1 || len(next.Revocations()) != 1 || len(next.JoinTokens()) != 1 {
		t.Errorf("nodes/revocations/tokens not kept: %d %d %d", len(next.Nodes()), len(next.Revocations()), len(next.JoinTokens()))
	}

	want := []string{
		"update network b: display_name",
		"remove network c",
		"add network d (domains d.example)",
		"change policy of a (now d: im)",
		"add policy of d (all members: im)",
	}
	if got := StateChanges(live, next); !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
	if got := StateChanges(next, next); len(got) != 0 {
		t.Errorf("no-op changes = %q", got)
	}

	// Through the FSM too: every replica gets the same bytes.
	a, _ := EncodeSnapshot(next)
	again, _ := ApplyTo(live, live.Index+1, c)
	b, _ := EncodeSnapshot(again)
	if string(a) != string(b) {
		t.Error("RestoreState is not deterministic")
	}
}

// CheckCommand refuses a restored state that could not be served, naming
// the network or policy at fault; nothing changes.
func TestRestoreStateCheck(t *testing.T) {
	pinOf := func(id string) string { return testNetwork(id).GetIdentity().GetPins()[0] }
	cases := []struct {
		name   string
		mutate func(cs *hubv1.ClusterState)
		want   error
		inErr  string
	}{
		{"missing state", func(cs *hubv1.ClusterState) {}, ErrInvalid, "restore_state.state: missing"},
		{"invalid network", func(cs *hubv1.ClusterState) { cs.Networks[1].Domains = []string{"bad..domain"} }, ErrInvalid, `networks[1] ("b"): network.domains[0]`},
		{"duplicate id", func(cs *hubv1.ClusterState) { cs.Networks = append(cs.Networks, testNetwork("a", "z.example")) }, ErrAlreadyExists, `network "a" twice`},
		{"shared domain", func(cs *hubv1.ClusterState) { cs.Networks[1].Domains = []string{"A.example"} }, ErrAlreadyExists, `"a.example": already exists: owned by network "a"`},
		{"shared pin", func(cs *hubv1.ClusterState) { cs.Networks[1].Identity.Pins = []string{pinOf("a")} }, ErrAlreadyExists, "pinned by network"},
		{"shared cidr", func(cs *hubv1.ClusterState) {
			cs.Networks[0].Identity.Cidrs = []string{"10.0.0.0/8"}
			cs.Networks[1].Identity.Cidrs = []string{"10.1.2.3/8"}
		}, ErrAlreadyExists, `used by network "a"`},
		{"policy for unknown", func(cs *hubv1.ClusterState) { cs.Policies = []*hubv1.Policy{{Destination: "zz"}} }, ErrInvalid, "policies[0].destination"},
		{"two policies", func(cs *hubv1.ClusterState) {
			cs.Policies = append(cs.Policies, &hubv1.Policy{Destination: "a"})
		}, ErrInvalid, "two policies"},
		{"rule from unknown", func(cs *hubv1.ClusterState) { cs.Policies[0].Rules[0].Source = "zz" }, ErrInvalid, "rules[0].source"},
		{"rule from self", func(cs *hubv1.ClusterState) { cs.Policies[0].Rules[0].Source = "a" }, ErrInvalid, "reaches itself"},
		{"two rules", func(cs *hubv1.ClusterState) {
			cs.Policies[0].Rules = append(cs.Policies[0].Rules, proto.Clone(cs.Policies[0].Rules[0]).(*hubv1.PolicyRule))
		}, ErrInvalid, "two rules"},
		{"bad service", func(cs *hubv1.ClusterState) { cs.Policies[0].Rules[0].Services = []hubv1.Service{99} }, ErrInvalid, "services[0]"},
		{"bad all service", func(cs *hubv1.ClusterState) {
			cs.Policies[0].AllowAll, cs.Policies[0].AllServices = true, []hubv1.Service{0}
		}, ErrInvalid, "all_services[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			live := liveState(t)
			cs := live.Proto()
			tc.mutate(cs)
			c := restoreCmd(cs)
			if tc.name == "missing state" {
				c = restoreCmd(nil)
			}
			err := CheckCommand(live, c)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("CheckCommand = %v, want %v naming %q", err, tc.want, tc.inErr)
			}
			f := NewFSM(nil, nil)
			f.publish(live, true)
			data, _ := proto.Marshal(c)
			res := f.Apply(&hraft.Log{Index: live.Index + 1, Type: hraft.LogCommand, Data: data}).(*ApplyResult)
			if res.Err == nil || !proto.Equal(f.State().Proto(), live.Proto()) {
				t.Fatalf("FSM applied a refused restore: %v", res.Err)
			}
		})
	}
	// The live state restored onto itself is valid and changes nothing.
	live := liveState(t)
	next, err := ApplyTo(live, live.Index+1, restoreCmd(live.Proto()))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(next.Proto(), live.Proto()) {
		t.Errorf("self-restore changed the state:\n got %v\nwant %v", next.Proto(), live.Proto())
	}
}
