package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

var (
	testPEMOnce         sync.Once
	testCAPEM, testLeaf string
	testPEMErr          error
	presence, im, sess  = hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_SESSION
	active, suspended   = hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE, hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
)

// testPEMs returns a member CA certificate and a leaf certificate (PEM).
func testPEMs(t testing.TB) (ca, leaf string) {
	t.Helper()
	testPEMOnce.Do(func() {
		c, err := pki.NewCA("Member CA", time.Hour)
		if err != nil {
			testPEMErr = err
			return
		}
		_, cert, _, err := c.IssueKeyPair(pki.RoleMember, "member", []string{"edge.a.example"}, time.Hour)
		testCAPEM, testLeaf, testPEMErr = string(c.CertPEM), string(cert), err
	})
	if testPEMErr != nil {
		t.Fatal(testPEMErr)
	}
	return testCAPEM, testLeaf
}

const docHeader = "apiVersion: clearhub/v1\nkind: Membership\n"

// stored builds a network as the cluster lists it.
func stored(id string, mod func(n *hubv1.Network)) *hubv1.Network {
	n := &hubv1.Network{
		Id: id, Domains: []string{id + ".example"}, Edges: []string{"sip:" + id + ".example:5060"},
		Identity: &hubv1.Identity{Cidrs: []string{map[string]string{"a": "10.0.1.0/24", "b": "10.0.2.0/24", "c": "10.0.3.0/24", "x": "10.0.9.0/24"}[id]}},
		Status:   active, CreatedUnixNano: 100, UpdatedUnixNano: 200,
	}
	if mod != nil {
		mod(n)
	}
	return n
}

// yamlNet is net(id) as a document entry plus extra lines.
func yamlNet(id string, extra ...string) string {
	cidr := map[string]string{"a": "10.0.1.0/24", "b": "10.0.2.0/24", "c": "10.0.3.0/24", "x": "10.0.9.0/24"}[id]
	s := "- id: " + id + "\n"
	given := func(key string) bool {
		return slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, key+":") })
	}
	if !given("domains") {
		s += "  domains: [" + id + ".example]\n"
	}
	if !given("edges") {
		s += "  edges: [\"sip:" + id + ".example:5060\"]\n"
	}
	for _, e := range extra {
		s += "  " + e + "\n"
	}
	if !given("identity") {
		s += "  identity: {cidrs: [" + cidr + "]}\n"
	}
	return s
}

func TestParseDocument(t *testing.T) {
	ca, leaf := testPEMs(t)
	indented := "      " + strings.ReplaceAll(strings.TrimSpace(ca), "\n", "\n      ")
	tests := []struct {
		name string
		doc  string
		// wantErrs are substrings of the error, one per expected problem;
		// none means the document is valid.
		wantErrs []string
		check    func(t *testing.T, d *desiredState)
	}{
		{name: "empty networks and policies", doc: docHeader},
		{name: "JSON is YAML", doc: `{"apiVersion": "clearhub/v1", "kind": "Membership", "networks": [], "policies": []}`},
		{
			name: "every field",
			doc: docHeader + "networks:\n" + yamlNet("a", "display_name: Provider A", "status: suspended", "services: [IM, presence]",
				"keep_bodies: true", "created: \"2026-01-01T00:00:00Z\"", "updated: null",
				"identity:\n    ca_pem:\n    - |-\n"+indented+
					"\n    pins: [\"AB:"+strings.Repeat("ab:", 30)+"ab\"]\n    cidrs: [10.0.1.7/24]\n    tls_cidrs: [192.0.2.1]") +
				yamlNet("b") +
				"policies:\n- destination: a\n  all_services: [all]\n  rules:\n  - source: b\n    services: [im]\n",
			check: func(t *testing.T, d *desiredState) {
				a := d.networks[0]
				want := &hubv1.Network{
					Id: "a", DisplayName: "Provider A", Status: suspended, Domains: []string{"a.example"}, Edges: []string{"sip:a.example:5060"},
					Services: []hubv1.Service{presence, im}, KeepBodies: true,
					Identity: &hubv1.Identity{CaPem: []string{ca}, Pins: []string{strings.Repeat("ab", 32)}, Cidrs: []string{"10.0.1.0/24"}, TlsCidrs: []string{"192.0.2.1/32"}},
				}
				if !proto.Equal(a, want) {
					t.Errorf("network a:\n got %v\nwant %v", a, want)
				}
				wantGrants := grants{{"a", allMembers}: allServices(), {"a", "b"}: {im}}
				if diff := cmp.Diff(wantGrants, d.grants); diff != "" {
					t.Errorf("grants (-want +got):\n%s", diff)
				}
			},
		},
		{name: "no header", doc: "networks: []\n", wantErrs: []string{"1:1: apiVersion: required", "1:1: kind: required"}},
		{name: "wrong version", doc: "apiVersion: clearhub/v2\nkind: Membership\n", wantErrs: []string{`1:13: apiVersion: "clearhub/v2" is not a version`}},
		{name: "wrong kind", doc: "apiVersion: clearhub/v1\nkind: Rooms\n", wantErrs: []string{`2:7: kind: "Rooms" is not a document`}},
		{name: "empty", doc: "", wantErrs: []string{"empty document"}},
		{name: "not YAML", doc: "networks: [\n", wantErrs: []string{"not YAML"}},
		{name: "two documents", doc: docHeader + "---\n" + docHeader, wantErrs: []string{"more than one YAML document"}},
		{name: "not a mapping", doc: "- a\n", wantErrs: []string{"want a mapping of apiVersion, kind, networks, policies"}},
		{name: "unknown top-level key", doc: docHeader + "queues: []\n", wantErrs: []string{"3:1: queues: unknown key (valid: apiVersion, kind, networks, policies, lists, rooms)"}},
		{name: "duplicate key", doc: docHeader + "networks: []\nnetworks: []\n", wantErrs: []string{"4:1: networks: given twice"}},
		{name: "alias", doc: docHeader + "networks: &n []\npolicies: *n\n", wantErrs: []string{"networks: YAML anchors and aliases are not supported", "policies: YAML anchors"}},
		{name: "networks not a list", doc: docHeader + "networks: {a: 1}\n", wantErrs: []string{"3:11: networks: want a list"}},
		{
			name:     "unknown network key",
			doc:      docHeader + "networks:\n" + yamlNet("a", "colour: blue"),
			wantErrs: []string{"7:3: networks[0].colour: unknown key"},
		},
		{name: "missing id", doc: docHeader + "networks:\n- domains: [a.example]\n", wantErrs: []string{"4:3: networks[0].id: required"}},
		{name: "bad id", doc: docHeader + "networks:\n" + yamlNet("A"), wantErrs: []string{`networks[0].id: "A": must be 1..63`}},
		{name: "id not a string", doc: docHeader + "networks:\n- id: 7\n", wantErrs: []string{"4:7: networks[0].id: want a string (quote it)"}},
		{
			name:     "bad domain, from the hub's own validation",
			doc:      docHeader + "networks:\n" + yamlNet("a", "domains: [a.example, bad..x]"),
			wantErrs: []string{`networks[0].domains[1]: "bad..x": `},
		},
		{name: "no edge", doc: docHeader + "networks:\n- id: a\n  domains: [a.example]\n", wantErrs: []string{"networks[0].edges: at least one edge"}},
		{
			name: "bad values",
			doc: docHeader + "networks:\n" + yamlNet("a", "status: on", "keep_bodies: yes", "services: [im, sms]",
				"identity: {pins: [zz], cidrs: [10.0.0.300], tls_cidrs: [x], ca_pem: [hello]}"),
			wantErrs: []string{
				`networks[0].status: "on": want active or suspended`,
				`networks[0].keep_bodies: "yes": want true or false`,
				`networks[0].services[1]: unknown service "sms"`,
				`networks[0].identity.pins[0]: "zz" is not a SHA-256`,
				`networks[0].identity.cidrs[0]: "10.0.0.300" is not an address prefix`,
				`networks[0].identity.tls_cidrs[0]: "x" is not an address prefix`,
				`networks[0].identity.ca_pem[0]: no PEM certificate`,
			},
		},
		{
			name:     "a key instead of a certificate",
			doc:      docHeader + "networks:\n" + yamlNet("a", "identity: {ca_pem: [\"-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"]}"),
			wantErrs: []string{`networks[0].identity.ca_pem[0]: PEM block "PRIVATE KEY" is not a CERTIFICATE`},
		},
		{
			name:     "duplicate network",
			doc:      docHeader + "networks:\n" + yamlNet("a") + yamlNet("a", "identity: {cidrs: [10.9.9.0/24]}", "domains: [other.example]"),
			wantErrs: []string{`networks[1].id: "a": duplicate of networks[0]`},
		},
		{
			name: "claims shared between networks",
			doc: docHeader + "networks:\n" + yamlNet("a", "identity: {cidrs: [10.0.0.0/16], pins: [\""+strings.Repeat("cd", 32)+"\"]}") +
				yamlNet("b", "domains: [b.example, A.example]", "identity: {cidrs: [10.0.5.0/24], pins: [\""+strings.Repeat("CD", 32)+"\"]}"),
			wantErrs: []string{
				`networks[1].domains[1]: "a.example": also claimed by networks[0].domains[0]`,
				`networks[1].identity.pins[0]: "` + strings.Repeat("cd", 32) + `": also pinned by networks[0].identity.pins[0]`,
				`networks[1].identity.cidrs[0]: 10.0.5.0/24 overlaps 10.0.0.0/16 at networks[0].identity.cidrs[0]`,
			},
		},
		{
			name: "bad policies",
			doc: docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + "policies:\n" +
				"- destination: q\n" +
				"- destination: a\n  allow_all: true\n" +
				"- destination: b\n  allow_all: false\n  all_services: [im]\n  rules:\n  - source: a\n    services: []\n  - source: b\n    services: [im]\n  - source: z\n    services: [im]\n  - {services: [im]}\n  - {source: a, services: [im], note: x}\n" +
				"- destination: b\n",
			wantErrs: []string{
				`policies[0].destination: "q" is not a network of this file`,
				`policies[1].all_services: required when allow_all is true`,
				`policies[2].allow_all: false, but all_services lists services`,
				`policies[2].rules[0].services: at least one service`,
				`policies[2].rules[1].source: "b": a network always reaches itself`,
				`policies[2].rules[2].source: "z" is not a network of this file`,
				`policies[2].rules[3].source: required`,
				`policies[2].rules[4].note: unknown key`,
				`policies[3].destination: "b": policies[2] has the same destination`,
			},
		},
		{
			name:     "duplicate rule",
			doc:      docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + "policies:\n- destination: b\n  rules:\n  - {source: a, services: [im]}\n  - {source: a, services: [presence]}\n",
			wantErrs: []string{`policies[0].rules[1].source: "a": a second rule for the same source`},
		},
		{
			name: "share_views given true, given false, left out",
			doc: docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + yamlNet("c") + "policies:\n" +
				"- destination: a\n  rules:\n  - {source: b, services: [presence], share_views: true}\n  - {source: c, services: [all], share_views: false}\n" +
				"- destination: b\n  rules:\n  - {source: a, services: [presence]}\n",
			check: func(t *testing.T, d *desiredState) {
				want := map[grantKey]bool{{"a", "b"}: true, {"a", "c"}: false}
				if diff := cmp.Diff(want, d.shares); diff != "" {
					t.Errorf("shares (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "bad share_views",
			doc: docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + "policies:\n" +
				"- destination: a\n  rules:\n  - source: b\n    services: [presence]\n    share_views: maybe\n" +
				"- destination: b\n  rules:\n  - {source: a, services: [im], share_views: true}\n",
			wantErrs: []string{
				`17:18: policies[0].rules[0].share_views: "maybe": want true or false`,
				`policies[1].rules[0].share_views: true, but services does not include presence`,
			},
		},
		{
			name:     "share_views on the all-members switch",
			doc:      docHeader + "networks:\n" + yamlNet("a") + "policies:\n- destination: a\n  allow_all: true\n  all_services: [presence]\n  share_views: true\n",
			wantErrs: []string{"policies[0].share_views: unknown key (valid: destination, allow_all, all_services, rules)"},
		},
		{
			name:     "leaf certificate parses (the plan refuses it, as the hub would)",
			doc:      docHeader + "networks:\n" + yamlNet("a", "identity:\n    ca_pem:\n    - |\n      "+strings.ReplaceAll(strings.TrimSpace(leaf), "\n", "\n      ")),
			wantErrs: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDocument("f.yaml", []byte(tt.doc))
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v\n%s", err, tt.doc)
				}
				if tt.check != nil {
					tt.check(t, d)
				}
				return
			}
			var de *documentError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *documentError", err)
			}
			if len(de.errs) != len(tt.wantErrs) {
				t.Errorf("%d problems, want %d:\n%v", len(de.errs), len(tt.wantErrs), err)
			}
			for _, w := range tt.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "f.yaml: ") || !strings.Contains(err.Error(), "nothing changed") {
				t.Errorf("error does not name the file and say nothing changed: %v", err)
			}
		})
	}
}

// TestMakePlan checks the difference and the RPCs, in order, for each kind
// of edit, and that the steps, replayed on the cluster state, reach exactly
// what the file says (a second plan from there is empty).
func TestMakePlan(t *testing.T) {
	ca, leaf := testPEMs(t)
	pol := func(dst string, rules ...*hubv1.PolicyRule) *hubv1.Policy {
		return &hubv1.Policy{Destination: dst, Rules: rules}
	}
	rule := func(src string, s ...hubv1.Service) *hubv1.PolicyRule {
		return &hubv1.PolicyRule{Source: src, Services: s}
	}
	shared := func(r *hubv1.PolicyRule) *hubv1.PolicyRule { r.ShareViews = true; return r }
	abc := []*hubv1.Network{stored("a", nil), stored("b", nil), stored("c", nil)}
	nets3 := docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + yamlNet("c") + "policies:\n"
	tests := []struct {
		name      string
		cur       []*hubv1.Network
		pols      []*hubv1.Policy
		doc       string
		prune     bool
		wantSteps []string
		wantDiff  []string // lines of the diff, in order (notes and summary included)
		wantErr   string
	}{
		{
			name:      "nothing to do",
			cur:       []*hubv1.Network{stored("a", nil), stored("b", nil)},
			pols:      []*hubv1.Policy{pol("b", rule("a", presence, im)), pol("a")},
			doc:       docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + "policies:\n- destination: b\n  rules: [{source: a, services: [im, presence]}]\n",
			wantSteps: nil,
			wantDiff:  []string{"no changes"},
		},
		{
			name: "stored PEM in another layout is no change",
			cur: []*hubv1.Network{stored("a", func(n *hubv1.Network) {
				n.Identity.CaPem = []string{"subject=CN=Member CA\r\n" + strings.ReplaceAll(ca, "\n", "\r\n") + "\r\n"}
			})},
			doc:      docHeader + "networks:\n" + yamlNet("a", "identity:\n    cidrs: [10.0.1.0/24]\n    ca_pem:\n    - |-\n      "+strings.ReplaceAll(strings.TrimSpace(ca), "\n", "\n      ")),
			wantDiff: []string{"no changes"},
		},
		{
			name:      "one field",
			cur:       []*hubv1.Network{stored("a", nil)},
			doc:       docHeader + "networks:\n" + yamlNet("a", "edges: [\"sip:a.example:5070\", \"sip:a2.example:5060\"]"),
			wantSteps: []string{"update network a (edges)"},
			wantDiff: []string{
				"~ network a",
				"~     edges: [sip:a.example:5060] -> [sip:a.example:5070, sip:a2.example:5060]",
				"networks: 0 to add, 1 to change, 0 to remove; policy entries: 0 to add, 0 to change, 0 to remove (1 call)",
			},
		},
		{
			name: "identity lists and other fields, one update",
			cur:  []*hubv1.Network{stored("a", nil)},
			doc: docHeader + "networks:\n" + yamlNet("a", "display_name: A", "keep_bodies: true", "services: [im]",
				"identity: {cidrs: [10.0.1.0/24], tls_cidrs: [192.0.2.0/24], pins: [\""+strings.Repeat("ef", 32)+"\"]}"),
			wantSteps: []string{"update network a (display_name, services, identity, keep_bodies)"},
			wantDiff: []string{
				"~ network a",
				`~     display_name: "" -> "A"`,
				"~     services: [] (every service) -> [im]",
				"~     identity.pins: [] -> [" + strings.Repeat("ef", 32) + "]",
				"~     identity.tls_cidrs: [] -> [192.0.2.0/24]",
				"~     keep_bodies: false -> true",
			},
		},
		{
			name:      "suspend first, resume last",
			cur:       []*hubv1.Network{stored("a", nil), stored("b", func(n *hubv1.Network) { n.Status = suspended })},
			doc:       docHeader + "networks:\n" + yamlNet("a", "status: suspended", "display_name: A") + yamlNet("b") + "policies:\n- destination: a\n  rules: [{source: b, services: [im]}]\n",
			wantSteps: []string{"suspend network a", "update network a (display_name)", "allow a <- b: im", "resume network b"},
			wantDiff:  []string{"~ network a", `~     display_name: "" -> "A"`, "~     status: active -> suspended", "~ network b", "~     status: suspended -> active", "+ policy a <- b: im"},
		},
		{
			name:      "add, suspended from the start",
			doc:       docHeader + "networks:\n" + yamlNet("c", "status: suspended", "identity: {ca_pem: [\""+strings.ReplaceAll(ca, "\n", "\\n")+"\"]}"),
			wantSteps: []string{"add network c"},
			wantDiff: []string{
				"+ network c", `+     display_name: ""`, "+     status: suspended", "+     domains: [c.example]", "+     edges: [sip:c.example:5060]",
				"+     services: [] (every service)", "+     identity.ca_pem: [CN=Member CA sha256:", "+     identity.pins: []",
			},
		},
		{
			name:      "policy narrowed before widened, exact services",
			cur:       []*hubv1.Network{stored("a", nil), stored("b", nil), stored("c", nil)},
			pols:      []*hubv1.Policy{pol("b", rule("a", presence, im), rule("c", im)), {Destination: "c", AllowAll: true, AllServices: []hubv1.Service{presence}}},
			doc:       docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") + yamlNet("c") + "policies:\n- destination: b\n  rules: [{source: a, services: [presence, session]}]\n- destination: a\n  allow_all: true\n  all_services: [im]\n",
			wantSteps: []string{"deny b <- a: im", "deny b <- c: im", "deny c <- *: presence", "allow a <- *: im", "allow b <- a: session"},
			wantDiff:  []string{"+ policy a <- * (all members): im", "~ policy b <- a: presence,im -> presence,session", "- policy b <- c: im", "- policy c <- * (all members): presence"},
		},
		{
			name:      "share_views added: one SetViewSharing",
			cur:       abc,
			pols:      []*hubv1.Policy{pol("b", rule("a", presence, im))},
			doc:       nets3 + "- destination: b\n  rules: [{source: a, services: [presence, im], share_views: true}]\n",
			wantSteps: []string{"share views b <- a"},
			wantDiff: []string{
				"~ policy b <- a: presence,im; share_views: false -> true",
				"networks: 0 to add, 0 to change, 0 to remove; policy entries: 0 to add, 1 to change, 0 to remove (1 call)",
			},
		},
		{
			name:      "new rule with a shared view: allowed, then shared",
			cur:       abc,
			doc:       nets3 + "- destination: b\n  rules: [{source: a, services: [presence], share_views: true}]\n",
			wantSteps: []string{"allow b <- a: presence", "share views b <- a"},
			wantDiff:  []string{"+ policy b <- a: presence; share_views: true", "networks: 0 to add, 0 to change, 0 to remove; policy entries: 1 to add, 0 to change, 0 to remove (2 calls)"},
		},
		{
			name:      "share_views: false withdraws",
			cur:       abc,
			pols:      []*hubv1.Policy{pol("b", shared(rule("a", presence)))},
			doc:       nets3 + "- destination: b\n  rules: [{source: a, services: [presence], share_views: false}]\n",
			wantSteps: []string{"withdraw shared views b <- a"},
			wantDiff:  []string{"~ policy b <- a: presence; share_views: true -> false"},
		},
		{
			name:     "share_views left out keeps the view",
			cur:      abc,
			pols:     []*hubv1.Policy{pol("b", shared(rule("a", presence)))},
			doc:      nets3 + "- destination: b\n  rules: [{source: a, services: [presence]}]\n",
			wantDiff: []string{"# policy b <- a shares views in the cluster; the file's rule has no share_views: kept (apply --prune withdraws it)", "no changes"},
		},
		{
			name:      "share_views left out, --prune withdraws",
			cur:       abc,
			pols:      []*hubv1.Policy{pol("b", shared(rule("a", presence)))},
			doc:       nets3 + "- destination: b\n  rules: [{source: a, services: [presence]}]\n",
			prune:     true,
			wantSteps: []string{"withdraw shared views b <- a"},
			wantDiff:  []string{"~ policy b <- a: presence; share_views: true -> false", "networks: 0 to add, 0 to change, 0 to remove; policy entries: 0 to add, 1 to change, 0 to remove (1 call)"},
		},
		{
			name:      "presence denied takes the view along: no SetViewSharing",
			cur:       abc,
			pols:      []*hubv1.Policy{pol("b", shared(rule("a", presence, im)))},
			doc:       nets3 + "- destination: b\n  rules: [{source: a, services: [im]}]\n",
			wantSteps: []string{"deny b <- a: presence"},
			wantDiff:  []string{"~ policy b <- a: presence,im -> im; share_views: true -> false"},
		},
		{
			name:      "rule removed with its view",
			cur:       abc,
			pols:      []*hubv1.Policy{pol("b", shared(rule("a", presence)))},
			doc:       nets3,
			wantSteps: []string{"deny b <- a: presence"},
			wantDiff:  []string{"- policy b <- a: presence; share_views: true"},
		},
		{
			name: "withdrawn before the denies, granted after the allows",
			cur:  abc,
			pols: []*hubv1.Policy{pol("b", shared(rule("a", presence))), pol("c", rule("a", im))},
			doc: nets3 + "- destination: b\n  rules: [{source: a, services: [presence], share_views: false}]\n" +
				"- destination: c\n  rules: [{source: a, services: [presence], share_views: true}]\n",
			wantSteps: []string{"withdraw shared views b <- a", "deny c <- a: im", "allow c <- a: presence", "share views c <- a"},
			wantDiff:  []string{"~ policy b <- a: presence; share_views: true -> false", "~ policy c <- a: im -> presence; share_views: false -> true"},
		},
		{
			name:     "shared view in the file and the cluster: no change, also with --prune",
			cur:      []*hubv1.Network{stored("a", nil), stored("x", nil)},
			pols:     []*hubv1.Policy{pol("x", shared(rule("a", presence)))},
			doc:      docHeader + "networks:\n" + yamlNet("a") + yamlNet("x") + "policies:\n- destination: x\n  rules: [{source: a, services: [presence], share_views: true}]\n",
			prune:    true,
			wantDiff: []string{"no changes"},
		},
		{
			name:      "unmanaged network and its policy entries are kept",
			cur:       []*hubv1.Network{stored("a", nil), stored("x", nil)},
			pols:      []*hubv1.Policy{pol("a", rule("x", im)), pol("x", rule("a", im))},
			doc:       docHeader + "networks:\n" + yamlNet("a"),
			wantSteps: nil,
			wantDiff:  []string{"# network x is in the cluster but not in the file: kept (apply --prune removes it)", "no changes"},
		},
		{
			name:      "prune removes last, without denying what the removal drops",
			cur:       []*hubv1.Network{stored("a", nil), stored("x", nil)},
			pols:      []*hubv1.Policy{pol("a", rule("x", im)), pol("x", rule("a", im))},
			doc:       docHeader + "networks:\n" + yamlNet("a", "display_name: A"),
			prune:     true,
			wantSteps: []string{"update network a (display_name)", "remove network x"},
			wantDiff:  []string{"~ network a", `~     display_name: "" -> "A"`, "- network x"},
		},
		{
			name:      "domain moves between networks: released before claimed",
			cur:       []*hubv1.Network{stored("a", func(n *hubv1.Network) { n.Domains = []string{"a.example", "shared.example"} }), stored("b", nil)},
			doc:       docHeader + "networks:\n" + yamlNet("a") + yamlNet("b", "domains: [b.example, shared.example]"),
			wantSteps: []string{"update network a (domains)", "update network b (domains)"},
		},
		{
			name:      "domain taken from a pruned network: that removal comes first",
			cur:       []*hubv1.Network{stored("a", nil), stored("x", nil)},
			doc:       docHeader + "networks:\n" + yamlNet("a") + yamlNet("c", "domains: [x.example]"),
			prune:     true,
			wantSteps: []string{"remove network x", "add network c"},
		},
		{
			name:    "domain held by a network kept outside the file",
			cur:     []*hubv1.Network{stored("a", nil), stored("x", nil)},
			doc:     docHeader + "networks:\n" + yamlNet("a") + yamlNet("c", "domains: [x.example]"),
			wantErr: `networks[1]: add network c would be refused by the hub (network "x" is not in the file and keeps it; --prune removes that network): network.domains[0] "x.example": already exists`,
		},
		{
			name:    "domains swapped: no order works",
			cur:     []*hubv1.Network{stored("a", nil), stored("b", nil)},
			doc:     docHeader + "networks:\n" + yamlNet("a", "domains: [b.example]") + yamlNet("b", "domains: [a.example]"),
			wantErr: "networks[0]: update network a (domains) would be refused by the hub",
		},
		{
			name:    "leaf certificate as a member CA, refused by the hub's admission rule",
			doc:     docHeader + "networks:\n" + yamlNet("c", "identity: {ca_pem: [\""+strings.ReplaceAll(leaf, "\n", "\\n")+"\"]}"),
			wantErr: "network.identity.ca_pem[0]: certificate 0",
		},
		{
			name:    "a network nobody could identify",
			doc:     docHeader + "networks:\n" + yamlNet("c", "identity: {}"),
			wantErr: "add network c would be refused by the hub: network.identity: no ca_pem, pins or cidrs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := parseDocument("f.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, tt.doc)
			}
			pl, err := makePlan(tt.cur, tt.pols, want, tt.prune)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range pl.steps {
				got = append(got, s.String())
			}
			if diff := cmp.Diff(tt.wantSteps, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			var b bytes.Buffer
			writeDiff(&b, pl)
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			i := 0
			for _, w := range tt.wantDiff {
				for i < len(lines) && !strings.HasPrefix(lines[i], w) {
					i++
				}
				if i == len(lines) {
					t.Errorf("diff lacks %q (in this order):\n%s", w, b.String())
					break
				}
			}
			// Closing the loop: the steps reach the file's state.
			end, err := simulate(tt.cur, tt.pols, pl.steps)
			if err != nil {
				t.Fatal(err)
			}
			again, err := makePlan(end.Networks(), end.Policies(), want, tt.prune)
			if err != nil {
				t.Fatal(err)
			}
			if !again.empty() || len(again.networks)+len(again.grants) != 0 {
				var b bytes.Buffer
				writeDiff(&b, again)
				t.Errorf("after the steps the cluster still differs:\n%s", b.String())
			}
		})
	}
}

// TestExportRoundTrip: what export writes, apply reads back as no change,
// for every kind of value (suspended, PEM blocks, all-members switch,
// every-service networks, empty policies left out, shared views granted
// and not).
func TestExportRoundTrip(t *testing.T) {
	ca, _ := testPEMs(t)
	nets := []*hubv1.Network{
		stored("a", func(n *hubv1.Network) {
			n.DisplayName, n.Status, n.KeepBodies = "Provider: A # \"quoted\"", suspended, true
			n.Services = []hubv1.Service{presence, im}
			n.Identity = &hubv1.Identity{CaPem: []string{ca, ca}, Pins: []string{strings.Repeat("01", 32)}, TlsCidrs: []string{"2001:db8::/32"}}
		}),
		stored("b", func(n *hubv1.Network) { n.Domains = []string{"b.example", "true", "null", "1e3"} }),
		stored("c", nil),
	}
	pols := []*hubv1.Policy{
		{Destination: "a", AllowAll: true, AllServices: []hubv1.Service{sess}, Rules: []*hubv1.PolicyRule{
			{Source: "b", Services: allServices(), ShareViews: true}, {Source: "c", Services: []hubv1.Service{presence}}}},
		{Destination: "b"},
	}
	j, err := toJSON(exportDoc(nets, pols))
	if err != nil {
		t.Fatal(err)
	}
	y, err := jsonToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string][]byte{"yaml": y, "json": j} {
		want, err := parseDocument("export", doc)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, doc)
		}
		pl, err := makePlan(nets, pols, want, true)
		if err != nil {
			t.Fatal(err)
		}
		if !pl.empty() || len(pl.networks)+len(pl.grants) != 0 {
			var b bytes.Buffer
			writeDiff(&b, pl)
			t.Errorf("%s: export then apply is not a no-op:\n%s\n%s", name, b.String(), doc)
		}
	}
	if bytes.Contains(y, []byte("destination: b")) {
		t.Errorf("a policy granting nothing was exported:\n%s", y)
	}
	if !bytes.Contains(y, []byte("      - source: b\n        services:\n          - presence\n          - im\n          - session\n          - chat\n          - file\n        share_views: true\n")) ||
		!bytes.Contains(y, []byte("      - source: c\n        services:\n          - presence\n        share_views: false\n")) {
		t.Errorf("export does not carry share_views on each rule:\n%s", y)
	}
}

// TestApplyCommandLine: usage mistakes exit 2 before any connection.
func TestApplyCommandLine(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"apply"}, "-f/--file: required"},
		{"exit code without dry run", []string{"apply", "-f", "x.yaml", "--exit-code"}, "--exit-code: only with --dry-run"},
		{"missing file", []string{"apply", "-f", "/nonexistent/x.yaml"}, "-f: open /nonexistent/x.yaml"},
		{"argument", []string{"apply", "x.yaml"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := env.hubctl(t, tt.args...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
	if calls := env.fake.recorded(); len(calls) != 0 {
		t.Errorf("RPCs for usage errors: %v", calls)
	}
}

func TestReadDocumentStdin(t *testing.T) {
	cmd := &cobra.Command{}
	cmd.SetIn(strings.NewReader(docHeader))
	b, name, err := readDocument(cmd, "-")
	if err != nil || name != "stdin" || string(b) != docHeader {
		t.Errorf("readDocument(-) = %q, %q, %v", b, name, err)
	}
	cmd.SetIn(bytes.NewReader(make([]byte, maxDocumentBytes+10)))
	b, _, _ = readDocument(cmd, "-")
	if _, err := parseDocument("stdin", b); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized input: %v", err)
	}
}

// FuzzParseDocument: no input crashes the parser, and whatever it accepts
// survives export and parsing again unchanged.
func FuzzParseDocument(f *testing.F) {
	ca, _ := testPEMs(f)
	f.Add([]byte(docHeader))
	f.Add([]byte(docHeader + "networks:\n" + yamlNet("a", "status: suspended", "services: [im, all]") + yamlNet("b") +
		"policies:\n- destination: a\n  allow_all: true\n  all_services: [im]\n  rules: [{source: b, services: [presence]}]\n"))
	f.Add([]byte(docHeader + "networks:\n" + yamlNet("a", "identity: {ca_pem: [\""+strings.ReplaceAll(ca, "\n", "\\n")+"\"], pins: [\""+strings.Repeat("ab", 32)+"\"]}")))
	f.Add([]byte(docHeader + "networks:\n" + yamlNet("a") + yamlNet("b") +
		"policies:\n- destination: a\n  rules: [{source: b, services: [presence, im], share_views: true}]\n"))
	f.Add([]byte("networks: &a [*a]\n"))
	f.Add([]byte("{\"apiVersion\": 1, \"kind\": [], \"networks\": [null, {}], \"policies\": [{\"rules\": [null]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, err := parseDocument("fuzz", data)
		if err != nil {
			return
		}
		var pols []*hubv1.Policy
		byDst := map[string]*hubv1.Policy{}
		for k, svcs := range want.grants {
			p := byDst[k.dst]
			if p == nil {
				p = &hubv1.Policy{Destination: k.dst}
				byDst[k.dst] = p
				pols = append(pols, p)
			}
			if k.src == allMembers {
				p.AllowAll, p.AllServices = true, svcs
			} else {
				p.Rules = append(p.Rules, &hubv1.PolicyRule{Source: k.src, Services: svcs, ShareViews: want.shares[k]})
			}
		}
		j, err := toJSON(exportDoc(want.networks, pols))
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseDocument("again", j)
		if err != nil {
			t.Fatalf("export of an accepted document does not parse: %v\n%s", err, j)
		}
		if len(again.networks) != len(want.networks) {
			t.Fatalf("%d networks, then %d", len(want.networks), len(again.networks))
		}
		for i := range want.networks {
			if !proto.Equal(want.networks[i], again.networks[i]) {
				t.Fatalf("network %d changed:\n%v\n%v", i, want.networks[i], again.networks[i])
			}
		}
		if diff := cmp.Diff(want.grants, again.grants); diff != "" {
			t.Fatalf("grants changed:\n%s", diff)
		}
		// Export writes every rule's share_views: what was true stays true.
		for k, share := range want.shares {
			if again.shares[k] != share {
				t.Fatalf("share_views of %v: %v, then %v", k, share, again.shares[k])
			}
		}
	})
}
