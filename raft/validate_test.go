package raft

import (
	"errors"
	"math"
	"strings"
	"testing"

	"clearhub/proto/hubv1"
)

// ValidateNetwork accepts well-formed networks and names the field at fault
// in everything else, wrapping ErrInvalid.
func TestValidateNetwork(t *testing.T) {
	ca := newTestCA(t, "member ca")
	pin := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		mutate  func(n *hubv1.Network)
		wantErr string // substring; "" means valid
	}{
		{"minimal", func(n *hubv1.Network) {}, ""},
		{"full identity", func(n *hubv1.Network) {
			n.Identity = &hubv1.Identity{CaPem: []string{ca.pem, ca.pem + ca.pem}, Pins: []string{pin, strings.ToUpper(strings.Repeat("cd", 32))}, Cidrs: []string{"10.1.0.0/16", "2001:db8::/32", "192.0.2.7/32"}}
		}, ""},
		{"mixed-case domain ok", func(n *hubv1.Network) { n.Domains = []string{"A.Example", "b.example"} }, ""},
		{"edge forms", func(n *hubv1.Network) {
			n.Edges = []string{"sip:edge.a.example", "SIPS:edge2.a.example:5061", "sip:192.0.2.1:5060;transport=udp;lr", "sip:[2001:db8::1]:5060", "sip:[::1]"}
		}, ""},
		{"nil network", nil, "network: missing"},
		{"empty id", func(n *hubv1.Network) { n.Id = "" }, "network.id"},
		{"upper id", func(n *hubv1.Network) { n.Id = "Abc" }, `network.id "Abc"`},
		{"long id", func(n *hubv1.Network) { n.Id = strings.Repeat("a", 64) }, "network.id"},
		{"id with dot", func(n *hubv1.Network) { n.Id = "a.b" }, "network.id"},
		{"display name too long", func(n *hubv1.Network) { n.DisplayName = strings.Repeat("é", 129) }, "network.display_name"},
		{"display name control", func(n *hubv1.Network) { n.DisplayName = "a\nb" }, "control characters"},
		{"no domains", func(n *hubv1.Network) { n.Domains = nil }, "network.domains: at least one"},
		{"bad domain", func(n *hubv1.Network) { n.Domains = []string{"a.example", "bad..domain"} }, `network.domains[1] "bad..domain": not a valid DNS name`},
		{"domain trailing dot", func(n *hubv1.Network) { n.Domains = []string{"a.example."} }, "network.domains[0]"},
		{"domain hyphen edge", func(n *hubv1.Network) { n.Domains = []string{"-a.example"} }, "network.domains[0]"},
		{"domain ip", func(n *hubv1.Network) { n.Domains = []string{"192.0.2.1"} }, "network.domains[0]"},
		{"domain underscore", func(n *hubv1.Network) { n.Domains = []string{"a_b.example"} }, "network.domains[0]"},
		{"domain long label", func(n *hubv1.Network) { n.Domains = []string{strings.Repeat("a", 64) + ".example"} }, "network.domains[0]"},
		{"duplicate domain case", func(n *hubv1.Network) { n.Domains = []string{"a.example", "A.EXAMPLE"} }, `network.domains[1] "A.EXAMPLE": duplicate`},
		{"no edges", func(n *hubv1.Network) { n.Edges = nil }, "network.edges: at least one"},
		{"edge scheme", func(n *hubv1.Network) { n.Edges = []string{"http://x.example"} }, "network.edges[0]"},
		{"edge no host", func(n *hubv1.Network) { n.Edges = []string{"sip:"} }, "missing host"},
		{"edge port zero", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example:0"} }, "port"},
		{"edge port big", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example:65536"} }, "port"},
		{"edge port empty", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example:"} }, "empty port"},
		{"edge user", func(n *hubv1.Network) { n.Edges = []string{"sip:bob@x.example"} }, "user part"},
		{"edge crlf", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example\r\nVia: evil"} }, "whitespace"},
		{"edge bad param", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example;=x"} }, "bad parameter"},
		{"edge bare ipv6", func(n *hubv1.Network) { n.Edges = []string{"sip:2001:db8::1"} }, "network.edges[0]"},
		{"edge duplicate", func(n *hubv1.Network) { n.Edges = []string{"sip:x.example", "sip:x.example"} }, "duplicate edge"},
		{"ca not pem", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{CaPem: []string{"hello"}} }, "network.identity.ca_pem[0]: no PEM"},
		{"ca wrong type", func(n *hubv1.Network) {
			n.Identity = &hubv1.Identity{CaPem: []string{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}}
		}, "want CERTIFICATE"},
		{"ca garbage der", func(n *hubv1.Network) {
			n.Identity = &hubv1.Identity{CaPem: []string{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}
		}, "ca_pem[0]: PEM block 0"},
		{"ca trailing junk", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{CaPem: []string{ca.pem + "junk"}} }, "trailing data"},
		{"pin short", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Pins: []string{"abcd"}} }, "network.identity.pins[0]"},
		{"pin not hex", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Pins: []string{strings.Repeat("zz", 32)}} }, "pins[0]"},
		{"pin dup", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Pins: []string{pin, strings.ToUpper(pin)}} }, "duplicate pin"},
		{"cidr bad", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Cidrs: []string{"10.0.0.0/33"}} }, "network.identity.cidrs[0]"},
		{"cidr dup after mask", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Cidrs: []string{"10.0.0.0/8", "10.1.2.3/8"}} }, "duplicate prefix"},
		{"service unspecified", func(n *hubv1.Network) { n.Services = []hubv1.Service{0} }, "network.services[0]"},
		{"service unknown", func(n *hubv1.Network) { n.Services = []hubv1.Service{hubv1.Service_SERVICE_IM, 99} }, "network.services[1]"},
		{"status unknown", func(n *hubv1.Network) { n.Status = 7 }, "network.status"},
		{"rate limits", func(n *hubv1.Network) {
			n.RateLimits = []*hubv1.RateLimit{{Service: 0, PerSecond: 1e6, Burst: 1e7}, {Service: hubv1.Service_SERVICE_IM, PerSecond: 0.5}, {Service: hubv1.Service_SERVICE_FILE}}
		}, ""},
		{"rate limit unknown service", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{Service: 9, PerSecond: 1}} }, "network.rate_limits[0].service"},
		{"rate limit twice", func(n *hubv1.Network) {
			n.RateLimits = []*hubv1.RateLimit{{Service: hubv1.Service_SERVICE_IM, PerSecond: 1}, {Service: hubv1.Service_SERVICE_IM, PerSecond: 2}}
		}, "network.rate_limits[1].service"},
		{"rate limit negative", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{PerSecond: -1}} }, "network.rate_limits[0].per_second"},
		{"rate limit NaN", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{PerSecond: math.NaN()}} }, "network.rate_limits[0].per_second"},
		{"rate limit infinite", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{PerSecond: math.Inf(1)}} }, "per_second"},
		{"rate limit too fast", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{PerSecond: 1e6 + 1}} }, "per_second"},
		{"rate limit burst too big", func(n *hubv1.Network) { n.RateLimits = []*hubv1.RateLimit{{PerSecond: 1, Burst: 1e7 + 1}} }, "network.rate_limits[0].burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n *hubv1.Network
			if tt.mutate != nil {
				n = testNetwork("a")
				tt.mutate(n)
			}
			err := ValidateNetwork(n)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateNetwork: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateNetwork accepted it; want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNormalizeNetwork(t *testing.T) {
	n := testNetwork("a", "A.Example")
	n.Identity = &hubv1.Identity{Pins: []string{strings.Repeat("AB", 32)}, Cidrs: []string{"10.1.2.3/8"}}
	n.Services = []hubv1.Service{3, 1, 3}
	got := NormalizeNetwork(n)
	if got.Domains[0] != "a.example" || got.Identity.Pins[0] != strings.Repeat("ab", 32) || got.Identity.Cidrs[0] != "10.0.0.0/8" {
		t.Errorf("NormalizeNetwork = %v", got)
	}
	if len(got.Services) != 2 || got.Services[0] != 1 || got.Services[1] != 3 {
		t.Errorf("services = %v, want [1 3]", got.Services)
	}
	n.RateLimits = []*hubv1.RateLimit{{Service: 2, PerSecond: 5}, {Service: 0, PerSecond: 9}}
	if rl := NormalizeNetwork(n).RateLimits; len(rl) != 2 || rl[0].Service != 0 || rl[1].Service != 2 || n.RateLimits[0].Service != 2 {
		t.Errorf("rate limits = %v, want sorted by service in a copy", rl)
	}
	if n.Domains[0] != "A.Example" {
		t.Error("NormalizeNetwork modified its argument")
	}
}

// CheckCommand gives each kind of bad command its sentinel, against a state
// holding networks a (a.example, 10.0.0.0/8, a pin), b and node n1.
func TestCheckCommand(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	na := testNetwork("a")
	na.Identity = &hubv1.Identity{Pins: []string{pin}, Cidrs: []string{"10.0.0.0/8"}}
	s := Empty()
	for i, c := range []*hubv1.Command{
		cmd(&hubv1.AddNetwork{Network: na}),
		addNet("b"),
		cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n1", RaftAddr: "127.0.0.1:7000"}}),
	} {
		var err error
		if s, err = ApplyTo(s, uint64(i+1), c); err != nil {
			t.Fatal(err)
		}
	}
	withID := func(id string, f func(*hubv1.Network)) *hubv1.Network {
		n := testNetwork(id)
		f(n)
		return n
	}
	tests := []struct {
		name string
		cmd  *hubv1.Command
		want error  // sentinel, nil for ok
		msg  string // substring of the message
	}{
		{"add ok", addNet("c"), nil, ""},
		{"nil", nil, ErrInvalid, "command: missing"},
		{"version 0", &hubv1.Command{TimeUnixNano: 1, Op: addNet("c").Op}, ErrUnknownVersion, "version 0"},
		{"version 2", &hubv1.Command{Version: 2, TimeUnixNano: 1, Op: addNet("c").Op}, ErrUnknownVersion, "version 2"},
		{"no time", cmdAt(0, &hubv1.RemoveNetwork{Id: "a"}), ErrInvalid, "time_unix_nano"},
		{"no op", cmd(nil), ErrInvalid, "no operation"},
		{"actor too long", func() *hubv1.Command { c := addNet("c"); c.Actor = strings.Repeat("x", 300); return c }(), ErrInvalid, "command.actor"},
		{"add existing", addNet("a", "other.example"), ErrAlreadyExists, `network "a"`},
		{"add taken domain", addNet("c", "c.example", "B.example"), ErrAlreadyExists, `"B.example": already exists: owned by network "b"`},
		{"add taken pin", cmd(&hubv1.AddNetwork{Network: withID("c", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Pins: []string{strings.ToUpper(pin)}} })}), ErrAlreadyExists, `pinned by network "a"`},
		{"add taken cidr", cmd(&hubv1.AddNetwork{Network: withID("c", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Cidrs: []string{"10.9.9.9/8"}} })}), ErrAlreadyExists, `used by network "a"`},
		{"add nested cidr ok", cmd(&hubv1.AddNetwork{Network: withID("c", func(n *hubv1.Network) { n.Identity = &hubv1.Identity{Cidrs: []string{"10.1.0.0/16"}} })}), nil, ""},
		{"add invalid", cmd(&hubv1.AddNetwork{Network: withID("c", func(n *hubv1.Network) { n.Domains = []string{"x..y"} })}), ErrInvalid, "network.domains[0]"},
		{"add nil network", cmd(&hubv1.AddNetwork{}), ErrInvalid, "network: missing"},
		{"update ok keeps own domain", cmd(&hubv1.UpdateNetwork{Network: withID("a", func(n *hubv1.Network) { n.DisplayName = "new" })}), nil, ""},
		{"update of the version read", cmd(&hubv1.UpdateNetwork{Network: testNetwork("b"), IfUpdatedUnixNano: s.Network("b").GetUpdatedUnixNano()}), nil, ""},
		{"update of a stale version", cmd(&hubv1.UpdateNetwork{Network: testNetwork("b"), IfUpdatedUnixNano: s.Network("b").GetUpdatedUnixNano() - 1}), ErrFailedPrecondition, "changed since it was read"},
		{"update unknown", cmd(&hubv1.UpdateNetwork{Network: testNetwork("zz")}), ErrNotFound, `network "zz"`},
		{"update steals domain", cmd(&hubv1.UpdateNetwork{Network: testNetwork("a", "a.example", "b.example")}), ErrAlreadyExists, `owned by network "b"`},
		{"suspend ok", cmd(&hubv1.SetNetworkStatus{Id: "a", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED}), nil, ""},
		{"suspend unknown", cmd(&hubv1.SetNetworkStatus{Id: "zz", Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED}), ErrNotFound, ""},
		{"status unspecified", cmd(&hubv1.SetNetworkStatus{Id: "a"}), ErrInvalid, "set_network_status.status"},
		{"remove unknown", cmd(&hubv1.RemoveNetwork{Id: "zz"}), ErrNotFound, ""},
		{"remove bad id", cmd(&hubv1.RemoveNetwork{Id: "Z!"}), ErrInvalid, "remove_network.id"},
		{"allow ok", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b"}), nil, ""},
		{"allow all ok", cmd(&hubv1.PolicyAllow{Destination: "a", All: true, Services: []hubv1.Service{2}}), nil, ""},
		{"allow neither", cmd(&hubv1.PolicyAllow{Destination: "a"}), ErrInvalid, "exactly one of source and all"},
		{"allow both", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b", All: true}), ErrInvalid, "exactly one"},
		{"allow self", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "a"}), ErrInvalid, "reaches itself"},
		{"allow unknown dst", cmd(&hubv1.PolicyAllow{Destination: "zz", Source: "b"}), ErrNotFound, `network "zz"`},
		{"allow unknown src", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "zz"}), ErrNotFound, `network "zz"`},
		{"allow star", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "*"}), ErrInvalid, "policy_allow.source"},
		{"allow bad service", cmd(&hubv1.PolicyAllow{Destination: "a", Source: "b", Services: []hubv1.Service{42}}), ErrInvalid, "policy_allow.services[0]"},
		{"deny absent rule ok", cmd(&hubv1.PolicyDeny{Destination: "a", Source: "b"}), nil, ""},
		{"deny unknown src", cmd(&hubv1.PolicyDeny{Destination: "a", Source: "zz"}), ErrNotFound, ""},
		{"deny unknown dst", cmd(&hubv1.PolicyDeny{Destination: "zz", All: true}), ErrNotFound, ""},
		{"put node ok", cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "node2.hub.example:7000", AdminAddr: "[::1]:9443", PublicKey: make([]byte, 32)}}), nil, ""},
		{"put node unspecified addr", cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "0.0.0.0:7000"}}), ErrInvalid, "node.raft_addr"},
		{"put node no port", cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "127.0.0.1"}}), ErrInvalid, "node.raft_addr"},
		{"put node bad key", cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "127.0.0.1:1", PublicKey: []byte{1}}}), ErrInvalid, "node.public_key"},
		{"put node bad sip addr", cmd(&hubv1.PutNode{Node: &hubv1.Node{Id: "n2", RaftAddr: "127.0.0.1:1", SipAddrs: []string{"x"}}}), ErrInvalid, "node.sip_addrs[0]"},
		{"put node nil", cmd(&hubv1.PutNode{}), ErrInvalid, "node: missing"},
		{"remove node ok", cmd(&hubv1.RemoveNode{Id: "n1"}), nil, ""},
		{"remove node unknown", cmd(&hubv1.RemoveNode{Id: "n9"}), ErrNotFound, `node "n9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCommand(s, tt.cmd)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckCommand: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckCommand = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			// Same verdict every time: replicas must agree.
			if err2 := CheckCommand(s, tt.cmd); err2.Error() != err.Error() {
				t.Errorf("second call gave %q, first %q", err2, err)
			}
		})
	}
}
