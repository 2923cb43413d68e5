package main

import (
	"encoding/base64"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"clearhub/proto/hubv1"
)

// The -o json and -o yaml forms of what hubctl prints. They are written for
// scripts (OUTPUT.md documents them): numbers are JSON numbers, enums are
// the words the command line takes ("presence", "active"), times are RFC
// 3339 strings in UTC (null when unset), byte strings are standard base64,
// and every key is always present, lists as [] when empty.

// networkView is a member network.
type networkView struct {
	ID          string       `json:"id"`
	DisplayName string       `json:"display_name"`
	Status      string       `json:"status"`
	Domains     []string     `json:"domains"`
	Edges       []string     `json:"edges"`
	Services    []string     `json:"services"`
	Identity    identityView `json:"identity"`
	KeepBodies  bool         `json:"keep_bodies"`
	Created     *string      `json:"created"`
	Updated     *string      `json:"updated"`
	// RateLimits are the network's own token buckets; classes not listed
	// take the nodes' configured defaults (sip.rate_limits).
	RateLimits []rateLimitView `json:"rate_limits"`
	// Msrp: MSRP limits and relay (msrpflags.go); absent when unset.
	Msrp *msrpView `json:"msrp,omitempty"`
}

// rateLimitView is one token bucket: class is a service name or "all";
// per_second 0 is unlimited, burst 0 means max(1, per_second).
type rateLimitView struct {
	Class     string  `json:"class"`
	PerSecond float64 `json:"per_second"`
	Burst     uint32  `json:"burst"`
}

func viewRateLimits(rls []*hubv1.RateLimit) []rateLimitView {
	out := make([]rateLimitView, len(rls))
	for i, rl := range rls {
		out[i] = rateLimitView{Class: rateClassName(rl.GetService()), PerSecond: rl.GetPerSecond(), Burst: rl.GetBurst()}
	}
	return out
}

// identityView is how the hub attributes connections to a network.
type identityView struct {
	CAPEM    []string `json:"ca_pem"`
	Pins     []string `json:"pins"`
	CIDRs    []string `json:"cidrs"`
	TLSCIDRs []string `json:"tls_cidrs"`
}

func viewNetwork(n *hubv1.Network) networkView {
	id := n.GetIdentity()
	return networkView{
		ID:          n.GetId(),
		DisplayName: n.GetDisplayName(),
		Status:      statusWord(n.GetStatus()),
		Domains:     strs(n.GetDomains()),
		Edges:       strs(n.GetEdges()),
		Services:    serviceWords(n.GetServices()),
		Identity: identityView{
			CAPEM:    strs(id.GetCaPem()),
			Pins:     strs(id.GetPins()),
			CIDRs:    strs(id.GetCidrs()),
			TLSCIDRs: strs(id.GetTlsCidrs()),
		},
		KeepBodies: n.GetKeepBodies(),
		Created:    rfc3339(n.GetCreatedUnixNano()),
		Updated:    rfc3339(n.GetUpdatedUnixNano()),
		RateLimits: viewRateLimits(n.GetRateLimits()),
		Msrp:       viewMsrp(n.GetMsrp()),
	}
}

func viewNetworks(ns []*hubv1.Network) []networkView {
	out := make([]networkView, len(ns))
	for i, n := range ns {
		out[i] = viewNetwork(n)
	}
	return out
}

// policyView is a destination's inbound peering policy.
type policyView struct {
	Destination string           `json:"destination"`
	AllowAll    bool             `json:"allow_all"`
	AllServices []string         `json:"all_services"`
	Rules       []policyRuleView `json:"rules"`
}

type policyRuleView struct {
	Source   string   `json:"source"`
	Services []string `json:"services"`
	// ShareViews: the rule grants Source's watchers a shared presence
	// view (policy allow --share-views; docs/lists.md).
	ShareViews bool `json:"share_views"`
}

func viewPolicies(ps []*hubv1.Policy) []policyView {
	out := make([]policyView, len(ps))
	for i, p := range ps {
		out[i] = viewPolicy(p)
	}
	return out
}

func viewPolicy(p *hubv1.Policy) policyView {
	v := policyView{
		Destination: p.GetDestination(),
		AllowAll:    p.GetAllowAll(),
		AllServices: serviceWords(p.GetAllServices()),
		Rules:       make([]policyRuleView, len(p.GetRules())),
	}
	for i, r := range p.GetRules() {
		v.Rules[i] = policyRuleView{Source: r.GetSource(), Services: serviceWords(r.GetServices()), ShareViews: ruleShares(r)}
	}
	return v
}

// clusterView is the answer of cluster status, join and remove.
type clusterView struct {
	Leader       string     `json:"leader"`
	LeaderAddr   string     `json:"leader_addr"`
	Term         uint64     `json:"term"`
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	LastIndex    uint64     `json:"last_index"`
	NodeID       string     `json:"node_id"`
	State        string     `json:"state"`
	Healthy      bool       `json:"healthy"` // a leader is known and every voter is healthy
	Nodes        []nodeView `json:"nodes"`
}

type nodeView struct {
	ID           string   `json:"id"`
	RaftAddr     string   `json:"raft_addr"`
	AdminAddr    string   `json:"admin_addr"`
	SIPAddrs     []string `json:"sip_addrs"`
	Suffrage     string   `json:"suffrage"`
	State        string   `json:"state"`
	Healthy      bool     `json:"healthy"`
	AppliedIndex uint64   `json:"applied_index"`
	Draining     bool     `json:"draining"`
	Error        string   `json:"error"`
	PublicKey    string   `json:"public_key"`
	Version      string   `json:"version"` // the node's build; "" when it reports none
}

func viewCluster(st *hubv1.ClusterStatusResponse) clusterView {
	v := clusterView{
		Leader: st.GetLeader(), LeaderAddr: st.GetLeaderAddr(), Term: st.GetTerm(),
		CommitIndex: st.GetCommitIndex(), AppliedIndex: st.GetAppliedIndex(), LastIndex: st.GetLastIndex(),
		NodeID: st.GetNodeId(), State: st.GetState(), Healthy: len(clusterProblems(st)) == 0,
		Nodes: make([]nodeView, len(st.GetNodes())),
	}
	for i, n := range st.GetNodes() {
		v.Nodes[i] = nodeView{
			ID: n.GetId(), RaftAddr: n.GetRaftAddr(), AdminAddr: n.GetAdminAddr(), SIPAddrs: strs(n.GetSipAddrs()),
			Suffrage: n.GetSuffrage(), State: n.GetState(), Healthy: n.GetHealthy(), AppliedIndex: n.GetAppliedIndex(),
			Error: n.GetError(), PublicKey: base64.StdEncoding.EncodeToString(n.GetPublicKey()), Draining: n.GetDraining(),
			Version: n.GetVersion(),
		}
	}
	return v
}

// joinTokenView is a join token.
type joinTokenView struct {
	Token         string  `json:"token"`
	Expires       *string `json:"expires"`
	CAFingerprint string  `json:"ca_fingerprint"`
}

func viewJoinToken(t *hubv1.JoinToken) joinTokenView {
	var exp *string
	if t.GetExpiresUnix() != 0 {
		exp = rfc3339(t.GetExpiresUnix() * int64(time.Second))
	}
	return joinTokenView{Token: t.GetToken(), Expires: exp, CAFingerprint: t.GetCaFingerprint()}
}

// checkpointView is a signed checkpoint that hubctl checked.
type checkpointView struct {
	Origin      string `json:"origin"`
	TreeSize    uint64 `json:"tree_size"`
	RootHash    string `json:"root_hash"`
	PublicKey   string `json:"public_key"`
	VerifierKey string `json:"verifier_key"`
	KeyPinned   bool   `json:"key_pinned"`
	Note        string `json:"note"`
}

// removedView answers a removal.
type removedView struct {
	ID      string `json:"id"`
	Removed bool   `json:"removed"`
}

// strs turns nil into an empty list so JSON shows [] and not null.
func strs(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// rfc3339 renders a Unix time in nanoseconds, nil for 0 (unset).
func rfc3339(ns int64) *string {
	if ns == 0 {
		return nil
	}
	s := time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	return &s
}

// serviceWords names services as the command line does.
func serviceWords(ss []hubv1.Service) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = serviceName(s)
	}
	return out
}

// statusWord names a network status as tables do; "" when unset.
func statusWord(s hubv1.NetworkStatus) string {
	if s == hubv1.NetworkStatus_NETWORK_STATUS_UNSPECIFIED {
		return ""
	}
	return statusName(s)
}

// protoView renders a message that has no view of its own (a command of
// another file printing a response as is) by the same rules: proto field
// names, 64-bit integers as numbers, enum values as lower-case words without
// the enum's prefix, fields named *_unix_nano or *_unix as RFC 3339 times
// under the name without that suffix, bytes as base64, every field present.
func protoView(m proto.Message) map[string]any {
	return messageView(m.ProtoReflect())
}

func messageView(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, l.Len())
			for j := range items {
				items[j] = scalarView(fd, l.Get(j))
			}
			out[name] = items
		case fd.IsMap():
			mv := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, val protoreflect.Value) bool {
				mv[k.String()] = scalarView(fd.MapValue(), val)
				return true
			})
			out[name] = mv
		case fd.Kind() == protoreflect.Int64Kind && strings.HasSuffix(name, "_unix_nano"):
			out[strings.TrimSuffix(name, "_unix_nano")] = rfc3339(v.Int())
		case fd.Kind() == protoreflect.Int64Kind && strings.HasSuffix(name, "_unix"):
			var t *string
			if v.Int() != 0 {
				t = rfc3339(v.Int() * int64(time.Second))
			}
			out[strings.TrimSuffix(name, "_unix")] = t
		case fd.Kind() == protoreflect.MessageKind && !m.Has(fd):
			out[name] = nil
		default:
			out[name] = scalarView(fd, v)
		}
	}
	return out
}

func scalarView(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return enumWord(fd.Enum(), v.Enum())
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageView(v.Message())
	}
	return v.Interface() // bool, string, integers and floats as themselves
}

// enumWord turns SERVICE_PRESENCE of enum Service into "presence", and
// NETWORK_STATUS_ACTIVE of NetworkStatus into "active"; "" for the zero
// *_UNSPECIFIED value.
func enumWord(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return ""
	}
	prefix := upperSnake(string(ed.Name())) + "_"
	w := strings.ToLower(strings.TrimPrefix(string(vd.Name()), prefix))
	if w == "unspecified" {
		return ""
	}
	return w
}

// upperSnake turns NetworkStatus into NETWORK_STATUS.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
