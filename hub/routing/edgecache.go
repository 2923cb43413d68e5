package routing

import (
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// Edge URIs used to be parsed on every routed request (EdgeHops) and again
// on every edge attempt (the hub's edge label for metrics): a sip.ParseUri,
// a Uri.String and a JoinHostPort per edge, ~5% of a forwarded MESSAGE's
// allocations. A raft.State and its NetworkViews are never modified once
// built, so the parse is done once per view and kept, keyed by the view's
// pointer (like the hub's trust index is keyed by the state's).

// edgeSet is what one view's edges parse to.
type edgeSet struct {
	hops []Hop // usable edges, in failover order (EdgeHops)
	// parsed is every edge that parses with a host, whatever its
	// transport, with URI the string as registered (EdgeLabel).
	parsed []Hop
}

// maxCachedViews bounds the cache: every state change brings new views, and
// the old ones must not be kept alive forever. Past the bound the cache is
// emptied and refills from the views in use (a few parses per network).
const maxCachedViews = 4096

var edgeCache struct {
	m sync.Map // *raft.NetworkView -> *edgeSet
	n atomic.Int64
}

func edgesOf(v *raft.NetworkView) *edgeSet {
	if v == nil {
		return &edgeSet{}
	}
	if s, ok := edgeCache.m.Load(v); ok {
		return s.(*edgeSet)
	}
	s := parseEdges(v)
	if _, loaded := edgeCache.m.LoadOrStore(v, s); !loaded && edgeCache.n.Add(1) > maxCachedViews {
		edgeCache.m.Clear()
		edgeCache.n.Store(0)
	}
	return s
}

func parseEdges(v *raft.NetworkView) *edgeSet {
	s := &edgeSet{}
	for _, e := range v.GetEdges() {
		var u sip.Uri
		if err := sip.ParseUri(e, &u); err != nil || u.Host == "" {
			continue
		}
		h := HopOf(&u)
		switch h.Transport {
		case "UDP", "TCP", "TLS":
			s.hops = append(s.hops, h)
		}
		s.parsed = append(s.parsed, Hop{Addr: h.Addr, Transport: h.Transport, URI: e})
	}
	return s
}

// EdgeLabel returns the edge of v, as the operator registered it, whose
// address and transport are addr and transport; false when none is.
func EdgeLabel(v *raft.NetworkView, addr, transport string) (string, bool) {
	for _, h := range edgesOf(v).parsed {
		if h.Addr == addr && h.Transport == transport {
			return h.URI, true
		}
	}
	return "", false
}
