package msrp

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// NetworkSettings are one member network's MSRP settings (the cluster
// state's Network.msrp, msrp.proto); zero values take the Config's.
type NetworkSettings struct {
	// MaxMessageSize refuses larger messages and files the network sends
	// with 413, audited (0: Config.MaxMessageSize).
	MaxMessageSize int64
	// BytesPerSecond paces the body bytes the network sends (0:
	// Config.BytesPerSecond).
	BytesPerSecond float64
	// MaxChunk bounds the body of each chunk the hub sends toward the
	// network (0: Config.MaxChunk).
	MaxChunk int
	// Relay, when set, is the member's own RFC 4976 relay: the hub's legs
	// toward the network AUTH to it and route through it.
	Relay *RelayAccount
}

// RelayAccount is where and how the hub authenticates to a member's relay.
type RelayAccount struct {
	URI      string // msrp[s]://host[:port][/id];tcp
	Username string
	Password string
}

// settings returns the effective settings of network.
func (r *Relay) settings(network string) NetworkSettings {
	var ns NetworkSettings
	if r.cfg.Network != nil {
		ns = r.cfg.Network(network)
	}
	if ns.MaxMessageSize <= 0 {
		ns.MaxMessageSize = r.cfg.MaxMessageSize
		if r.cfg.MaxMessageSizeFor != nil {
			if n := r.cfg.MaxMessageSizeFor(network); n > 0 {
				ns.MaxMessageSize = n
			}
		}
	}
	if ns.BytesPerSecond <= 0 {
		ns.BytesPerSecond = r.cfg.BytesPerSecond
	}
	if ns.MaxChunk <= 0 {
		ns.MaxChunk = r.cfg.MaxChunk
	}
	return ns
}

// connGate caps the node's inbound MSRP connections: in total, per source
// IP, and per source IP among those that have not yet named a session
// (an attacker opening many TCP connections gets them closed at once
// instead of holding goroutines and buffers).
type connGate struct {
	mu      sync.Mutex
	total   int
	perIP   map[string]int
	pending map[string]int
	max     int
	maxIP   int
	maxPend int
	// refused counts closed-at-accept connections; lastLog rate-limits the
	// log line about them.
	refused int64
	lastLog time.Time
}

func newConnGate(max, maxIP, maxPend int) *connGate {
	return &connGate{perIP: map[string]int{}, pending: map[string]int{}, max: max, maxIP: maxIP, maxPend: maxPend}
}

func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// admit takes a slot for a new connection from ip; why says which cap
// refused it.
func (g *connGate) admit(ip string) (ok bool, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		why = "node connection limit"
	case g.perIP[ip] >= g.maxIP:
		why = "per-source connection limit"
	case g.pending[ip] >= g.maxPend:
		why = "per-source limit of connections without a session"
	}
	if why != "" {
		g.refused++
		return false, why
	}
	g.total++
	g.perIP[ip]++
	g.pending[ip]++
	return true, ""
}

// bound: the connection named its session (it no longer counts as pending).
func (g *connGate) bound(ip string) {
	g.mu.Lock()
	g.dec(g.pending, ip)
	g.mu.Unlock()
}

// release frees the slot; pending says the connection never bound.
func (g *connGate) release(ip string, pending bool) {
	g.mu.Lock()
	g.total--
	g.dec(g.perIP, ip)
	if pending {
		g.dec(g.pending, ip)
	}
	g.mu.Unlock()
}

func (g *connGate) dec(m map[string]int, ip string) {
	if m[ip] <= 1 {
		delete(m, ip)
	} else {
		m[ip]--
	}
}

// shouldLog reports whether a refusal may be logged now (one line per
// second at most: the refusals themselves are the attack).
func (g *connGate) shouldLog(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.lastLog) < time.Second {
		return false
	}
	g.lastLog = now
	return true
}

// limiter is the byte-rate bucket of a member network (nil: unlimited). A
// changed rate in the cluster state applies to the existing bucket.
func (r *Relay) limiter(network string) *rate.Limiter {
	bps := r.settings(network).BytesPerSecond
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limits[network]
	if bps <= 0 {
		if l != nil {
			delete(r.limits, network)
		}
		return nil
	}
	burst := r.cfg.Burst
	if burst <= 0 {
		burst = max(int(bps), r.cfg.Limits.MaxBody)
	}
	if l == nil {
		l = rate.NewLimiter(rate.Limit(bps), burst)
		r.limits[network] = l
	} else if l.Limit() != rate.Limit(bps) {
		l.SetLimit(rate.Limit(bps))
		l.SetBurst(burst)
	}
	return l
}
