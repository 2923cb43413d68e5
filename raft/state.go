package raft

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// State is an immutable view of the cluster state at one applied index. The
// FSM builds a new State on every apply and publishes it with an atomic
// pointer swap, so readers (the SIP routing path) never lock and never wait
// on Raft. Nothing reachable from a State may be modified: the protobuf
// messages it returns are shared.
type State struct {
	// Index is the Raft log index this state reflects.
	Index uint64

	networks []*hubv1.Network         // sorted by id
	byID     map[string]*NetworkView  // network id -> view
	byDomain map[string]*NetworkView  // lower-case domain -> owning network
	policies map[string]*hubv1.Policy // destination id -> policy
	nodes    []*hubv1.Node            // sorted by id
	nodeByID map[string]*hubv1.Node
	labCIDRs []cidrOwner            // every lab prefix, most specific first
	ident    identityIndex          // revocations and join tokens (identity.go)
	lists    listIndex              // resource lists (lists.go)
	rooms    map[string]*hubv1.Room // chat rooms by uri (rooms.go)
	queue    queueIndex             // store-and-forward queues (queue.go)
	// intercept: warrants (confidential) and capture (intercept.go)
	intercept interceptIndex
}

// NetworkView is one member network with its identity material pre-parsed
// for the hot path.
type NetworkView struct {
	*hubv1.Network
	// CAPool holds the network's registered CA certificates; nil if none.
	CAPool *x509.CertPool
	// Pins holds lower-case hex SHA-256 fingerprints of pinned certificates.
	Pins map[string]bool
	// CIDRs are the lab-mode source prefixes.
	CIDRs []netip.Prefix
	// TLSPrefixes, when not empty, bind the network's certificate to these
	// source prefixes: a TLS connection presenting it from elsewhere is not
	// attributed to the network.
	TLSPrefixes []netip.Prefix
	// Hosts are the lower-case domains and edge hosts a certificate's
	// subjectAltName DNS names may match.
	Hosts map[string]bool
}

type cidrOwner struct {
	prefix netip.Prefix
	net    *NetworkView
}

// TLSSourceAllowed reports whether a TLS connection from addr may be
// attributed to the network: always when no TLS prefixes are set.
func (n *NetworkView) TLSSourceAllowed(addr netip.Addr) bool {
	if len(n.TLSPrefixes) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range n.TLSPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Active reports whether the network may send and receive traffic.
func (n *NetworkView) Active() bool {
	return n.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
}

// Empty returns the state of a cluster with nothing in it.
func Empty() *State { return NewState(0, &hubv1.ClusterState{}) }

// NewState builds the immutable view of cs at index. It takes ownership of
// cs: the caller must not modify it afterwards.
func NewState(index uint64, cs *hubv1.ClusterState) *State {
	s := &State{
		Index:    index,
		byID:     make(map[string]*NetworkView, len(cs.GetNetworks())),
		byDomain: make(map[string]*NetworkView),
		policies: make(map[string]*hubv1.Policy, len(cs.GetPolicies())),
		nodeByID: make(map[string]*hubv1.Node, len(cs.GetNodes())),
	}
	s.networks = append([]*hubv1.Network(nil), cs.GetNetworks()...)
	sort.Slice(s.networks, func(i, j int) bool { return s.networks[i].GetId() < s.networks[j].GetId() })
	for _, n := range s.networks {
		v := newNetworkView(n)
		s.byID[n.GetId()] = v
		for _, d := range n.GetDomains() {
			s.byDomain[strings.ToLower(d)] = v
		}
		for _, p := range v.CIDRs {
			s.labCIDRs = append(s.labCIDRs, cidrOwner{prefix: p, net: v})
		}
	}
	sort.SliceStable(s.labCIDRs, func(i, j int) bool { return s.labCIDRs[i].prefix.Bits() > s.labCIDRs[j].prefix.Bits() })
	for _, p := range cs.GetPolicies() {
		s.policies[p.GetDestination()] = p
	}
	s.nodes = append([]*hubv1.Node(nil), cs.GetNodes()...)
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].GetId() < s.nodes[j].GetId() })
	for _, n := range s.nodes {
		s.nodeByID[n.GetId()] = n
	}
	s.ident = newIdentityIndex(cs)
	s.lists = newListIndex(cs)
	s.rooms = newRoomMap(cs)
	s.queue = newQueueIndex(cs)
	s.intercept = newInterceptIndex(cs) // intercept.go
	return s
}

func newNetworkView(n *hubv1.Network) *NetworkView {
	v := &NetworkView{Network: n, Pins: map[string]bool{}, Hosts: map[string]bool{}}
	for _, p := range n.GetIdentity().GetPins() {
		v.Pins[strings.ToLower(p)] = true
	}
	for _, c := range n.GetIdentity().GetCidrs() {
		if p, err := netip.ParsePrefix(c); err == nil {
			v.CIDRs = append(v.CIDRs, p.Masked())
		}
	}
	for _, c := range n.GetIdentity().GetTlsCidrs() {
		if p, err := netip.ParsePrefix(c); err == nil {
			v.TLSPrefixes = append(v.TLSPrefixes, p.Masked())
		}
	}
	for _, caPEM := range n.GetIdentity().GetCaPem() {
		rest := []byte(caPEM)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if cert, err := x509.ParseCertificate(b.Bytes); err == nil {
				if v.CAPool == nil {
					v.CAPool = x509.NewCertPool()
				}
				v.CAPool.AddCert(cert)
			}
		}
	}
	for _, d := range n.GetDomains() {
		v.Hosts[strings.ToLower(d)] = true
	}
	for _, e := range n.GetEdges() {
		if h := EdgeHost(e); h != "" {
			v.Hosts[h] = true
		}
	}
	return v
}

// EdgeHost returns the lower-case host part of a SIP URI such as
// "sips:edge.a.example:5061;transport=tls", or "" if there is none.
func EdgeHost(uri string) string {
	s := uri
	if i := strings.IndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], ".") {
		s = s[i+1:] // drop the scheme
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";?>"); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return strings.ToLower(s[1:i])
		}
		return ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(s)
}

// Network returns the network with id, or nil.
func (s *State) Network(id string) *NetworkView { return s.byID[id] }

// Networks returns every network sorted by id. The slice is shared: do not
// modify it.
func (s *State) Networks() []*hubv1.Network { return s.networks }

// DomainOwner returns the network owning the SIP domain (case-insensitive), or nil.
func (s *State) DomainOwner(domain string) *NetworkView {
	return s.byDomain[strings.ToLower(domain)]
}

// NetworkByAddr returns the network whose lab CIDRs contain addr (the most
// specific prefix wins), or nil.
func (s *State) NetworkByAddr(addr netip.Addr) *NetworkView {
	addr = addr.Unmap()
	for _, c := range s.labCIDRs {
		if c.prefix.Contains(addr) {
			return c.net
		}
	}
	return nil
}

// Policy returns destination's inbound policy, or nil (deny everything).
func (s *State) Policy(destination string) *hubv1.Policy { return s.policies[destination] }

// Policies returns every policy sorted by destination.
func (s *State) Policies() []*hubv1.Policy {
	out := make([]*hubv1.Policy, 0, len(s.policies))
	for _, p := range s.policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetDestination() < out[j].GetDestination() })
	return out
}

// Allowed reports whether source may reach destination for svc. Default
// deny; a network always reaches itself.
func (s *State) Allowed(source, destination string, svc hubv1.Service) bool {
	if source == destination {
		return true
	}
	p := s.policies[destination]
	if p == nil {
		return false
	}
	if p.GetAllowAll() && hasService(p.GetAllServices(), svc) {
		return true
	}
	for _, r := range p.GetRules() {
		if r.GetSource() == source {
			return hasService(r.GetServices(), svc)
		}
	}
	return false
}

func hasService(list []hubv1.Service, svc hubv1.Service) bool {
	for _, x := range list {
		if x == svc {
			return true
		}
	}
	return false
}

// Node returns the node with id, or nil.
func (s *State) Node(id string) *hubv1.Node { return s.nodeByID[id] }

// Nodes returns every node sorted by id.
func (s *State) Nodes() []*hubv1.Node { return s.nodes }

// Proto returns a deep copy of the state, for admin reads and tests:
// everything except the interception warrants, which only the FSM's own
// copy carries (fullProto, intercept.go).
func (s *State) Proto() *hubv1.ClusterState {
	cs := &hubv1.ClusterState{}
	for _, n := range s.networks {
		cs.Networks = append(cs.Networks, proto.Clone(n).(*hubv1.Network))
	}
	for _, p := range s.Policies() {
		cs.Policies = append(cs.Policies, proto.Clone(p).(*hubv1.Policy))
	}
	for _, n := range s.nodes {
		cs.Nodes = append(cs.Nodes, proto.Clone(n).(*hubv1.Node))
	}
	s.identityProto(cs)
	s.listsProto(cs)
	s.roomsProto(cs)
	s.queueProto(cs)
	s.captureProto(cs) // intercept.go; warrants stay out
	return cs
}
