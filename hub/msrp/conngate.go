package msrp

import (
	"net"
	"sync"
	"time"
)

// Why a ConnGate refused a connection (the cap that was reached).
const (
	RefusedTotal      = "node connection limit"
	RefusedPerSource  = "per-source connection limit"
	RefusedPendingSrc = "per-source limit of connections without a session"
)

// NextAcceptDelay is the wait after another failed Accept: 5 ms, doubling
// to 1 s (d 0: the last Accept succeeded), as the SIP plane's listeners
// back off (hub/stream.go). The relay and the room focus both use it: a
// listener that returned on EMFILE or ECONNABORTED would stop for good.
func NextAcceptDelay(d time.Duration) time.Duration {
	return min(max(2*d, 5*time.Millisecond), time.Second)
}

// ConnGate caps a node's inbound MSRP connections: in total, per source
// IP, and per source IP among those that have not yet named a session
// (an attacker opening many TCP connections gets them closed at once
// instead of holding goroutines and buffers). The relay and the chat-room
// focus (chatroom/session.go) each have one. Safe for concurrent use.
type ConnGate struct {
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

// NewConnGate caps connections at max in total, maxIP per source IP and
// maxPend per source IP not yet bound to a session.
func NewConnGate(max, maxIP, maxPend int) *ConnGate {
	return &ConnGate{perIP: map[string]int{}, pending: map[string]int{}, max: max, maxIP: maxIP, maxPend: maxPend}
}

// SourceIP is the address a connection is counted under: the remote IP
// without the port.
func SourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Admit takes a slot for a new connection from ip; why (one of the
// Refused constants) says which cap refused it. An admitted connection
// counts as pending until Bound; Release frees its slot.
func (g *ConnGate) Admit(ip string) (ok bool, why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		why = RefusedTotal
	case g.perIP[ip] >= g.maxIP:
		why = RefusedPerSource
	case g.pending[ip] >= g.maxPend:
		why = RefusedPendingSrc
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

// Bound: the connection named its session (it no longer counts as
// pending). Call it at most once per admitted connection.
func (g *ConnGate) Bound(ip string) {
	g.mu.Lock()
	g.dec(g.pending, ip)
	g.mu.Unlock()
}

// Release frees the slot; pending says the connection never bound.
func (g *ConnGate) Release(ip string, pending bool) {
	g.mu.Lock()
	g.total--
	g.dec(g.perIP, ip)
	if pending {
		g.dec(g.pending, ip)
	}
	g.mu.Unlock()
}

func (g *ConnGate) dec(m map[string]int, ip string) {
	if m[ip] <= 1 {
		delete(m, ip)
	} else {
		m[ip]--
	}
}

// Open returns the connections holding a slot: in total, from ip, and
// from ip not yet bound.
func (g *ConnGate) Open(ip string) (total, fromIP, pending int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total, g.perIP[ip], g.pending[ip]
}

// Refused is how many connections Admit refused.
func (g *ConnGate) Refused() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// ShouldLog reports whether a refusal may be logged now (one line per
// second at most: the refusals themselves are the attack).
func (g *ConnGate) ShouldLog(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.lastLog) < time.Second {
		return false
	}
	g.lastLog = now
	return true
}
