package routing

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		method, event string
		file          bool
		want          hubv1.Service
		ok            bool
	}{
		{"MESSAGE", "", false, hubv1.Service_SERVICE_IM, true},
		{"SUBSCRIBE", "presence", false, hubv1.Service_SERVICE_PRESENCE, true},
		{"SUBSCRIBE", "presence.winfo", false, hubv1.Service_SERVICE_PRESENCE, true},
		{"PUBLISH", "presence", false, hubv1.Service_SERVICE_PRESENCE, true},
		{"NOTIFY", "refer", false, hubv1.Service_SERVICE_SESSION, true},
		{"SUBSCRIBE", "conference", false, hubv1.Service_SERVICE_CHAT, true},
		{"SUBSCRIBE", "dialog", false, 0, false},
		{"SUBSCRIBE", "", false, 0, false},
		{"OPTIONS", "", false, AnyService, true},
		{"INVITE", "", false, hubv1.Service_SERVICE_SESSION, true},
		{"INVITE", "", true, hubv1.Service_SERVICE_FILE, true},
		{"REFER", "", false, hubv1.Service_SERVICE_SESSION, true},
	}
	for _, tc := range cases {
		got, ok := Classify(tc.method, tc.event, tc.file)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Classify(%s, %q, %v) = %v %v, want %v %v", tc.method, tc.event, tc.file, got, ok, tc.want, tc.ok)
		}
	}
}

func TestEdgeHopsAndOrder(t *testing.T) {
	v := raft.NewState(1, &hubv1.ClusterState{Networks: []*hubv1.Network{{
		Id: "b", Domains: []string{"b.example"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE,
		Edges: []string{"sip:u.b.example", "not a uri", "sips:t.b.example", "sip:c.b.example:5070;transport=tcp", "sip:s.b.example;transport=sctp"},
	}}}).Network("b")
	hops := EdgeHops(v)
	var got []string
	for _, h := range hops {
		got = append(got, h.Transport+" "+h.Addr)
	}
	want := []string{"UDP u.b.example:5060", "TLS t.b.example:5061", "TCP c.b.example:5070"}
	if !slices.Equal(got, want) {
		t.Fatalf("EdgeHops: %v, want %v", got, want)
	}
	d := Decision{Hops: hops}
	cases := []struct {
		size  int
		first string
	}{{100, "UDP"}, {1300, "UDP"}, {1301, "TLS"}}
	for _, tc := range cases {
		o := d.Order(tc.size)
		if len(o) != 3 || o[0].Transport != tc.first {
			t.Errorf("Order(%d) = %+v, want %s first", tc.size, o, tc.first)
		}
	}
	if o := d.Order(2000); o[2].Transport != "UDP" {
		t.Errorf("UDP is not the fallback: %+v", o)
	}
}

func TestHopOfIPv6(t *testing.T) {
	var u sip.Uri
	if err := sip.ParseUri("sip:[2001:db8::1]:5080;transport=tcp", &u); err != nil {
		t.Fatal(err)
	}
	if h := HopOf(&u); h.Addr != "[2001:db8::1]:5080" || h.Transport != "TCP" {
		t.Errorf("HopOf = %+v", h)
	}
}

func TestDecideRefusals(t *testing.T) {
	active := hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE
	st := raft.NewState(1, &hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "a", Domains: []string{"a.example"}, Status: active},
			{Id: "b", Domains: []string{"b.example"}, Status: active, Edges: []string{"sip:edge.b.example"}},
			{Id: "s", Domains: []string{"s.example"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED},
		},
		Policies: []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}}}},
	})
	cases := []struct {
		r     Request
		code  int
		label string
	}{
		{Request{Method: "MESSAGE", Host: "B.example"}, 0, ""},
		{Request{Method: "MESSAGE", Host: "x.example"}, 404, LabelNotFound},
		{Request{Method: "MESSAGE", Host: "s.example"}, 403, LabelSuspended},
		{Request{Method: "SUBSCRIBE", Host: "b.example", Event: "dialog"}, 489, LabelBadEvent},
		{Request{Method: "SUBSCRIBE", Host: "b.example", Event: "presence"}, 403, LabelPolicy},
	}
	for _, tc := range cases {
		d := Decide(st, st.Network("a"), tc.r)
		if d.Code != tc.code || d.Label != tc.label {
			t.Errorf("Decide(%+v) = %d %q (%s), want %d %q", tc.r, d.Code, d.Label, d.Phrase, tc.code, tc.label)
		}
		if tc.code == 0 && !d.Forwardable() {
			t.Errorf("Decide(%+v): not forwardable: %+v", tc.r, d)
		}
	}
}
