package hub

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The hub reads its UDP socket itself, with several read loops that each
// take a batch of datagrams per system call (recvmmsg through x/net's
// ReadBatch). sipgo's listener reads one datagram per call on one
// goroutine, formats the peer address for every datagram and scans each
// for NUL padding; at the hub's rates that single loop was the point where
// a flood from one member made the kernel drop every member's datagrams
// alike (a member's share of the socket queue is its share of the
// arrivals). Here every datagram goes through readFilter at once (lean
// requests and responses are handled or shed without sipgo); what is left
// (INVITE, ACK, CANCEL and their responses) is handed to sipgo through
// stackConn, a net.PacketConn whose reads come from the loops.

// udpBatch is the number of datagrams one read asks for.
const udpBatch = 32

// stackQueue bounds the datagrams waiting for sipgo's goroutine; beyond it
// they are dropped (counted) as the kernel would have dropped them.
const stackQueue = 4096

// udpReaders is how many read loops share the socket: one per P, at most
// four (the kernel serialises receives on one socket beyond that).
func udpReaders() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

type datagram struct {
	b    []byte
	from net.Addr
}

// stackConn is the UDP socket as sipgo sees it: writes go to the socket,
// reads come from the hub's read loops.
type stackConn struct {
	*net.UDPConn
	in      chan datagram
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

func newStackConn(c *net.UDPConn) *stackConn {
	return &stackConn{UDPConn: c, in: make(chan datagram, stackQueue), done: make(chan struct{})}
}

// ReadFrom returns the next datagram the read loops passed on.
func (s *stackConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-s.in:
		return copy(b, d.b), d.from, nil
	case <-s.done:
		return 0, nil, net.ErrClosed
	}
}

// Close ends sipgo's reads; the socket itself is closed by the hub.
func (s *stackConn) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

// pass queues a datagram for sipgo without blocking a read loop.
func (s *stackConn) pass(b []byte, from netip.AddrPort) {
	d := datagram{b: append([]byte(nil), b...), from: net.UDPAddrFromAddrPort(from)}
	select {
	case s.in <- d:
	case <-s.done:
	default:
		s.dropped.Add(1)
	}
}

// batchReader is the batch I/O of one socket, for either address family.
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

type v6Batch struct{ *ipv6.PacketConn }

func (p v6Batch) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return p.PacketConn.ReadBatch(ms, flags)
}

func (p v6Batch) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return p.PacketConn.WriteBatch(ms, flags)
}

// replyBatch gathers the answers a read loop gives on its own (shed 503s)
// while it works through one read batch, and sends them with one
// sendmmsg: under a flood that halves the system calls per datagram.
type replyBatch struct {
	bw   batchReader
	ms   []ipv4.Message
	bufs [][]byte
	n    int
	log  interface{ Debug(string, ...any) }
}

const replyBufSize = 2048

func newReplyBatch(h *Hub, bw batchReader) *replyBatch {
	r := &replyBatch{bw: bw, log: h.log, ms: make([]ipv4.Message, udpBatch), bufs: make([][]byte, udpBatch)}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, 0, replyBufSize)
	}
	return r
}

// sendReply queues b for to in r; an answer too large for a slot, or one beyond
// the batch, goes out at once.
func (h *Hub) sendReply(r *replyBatch, b []byte, to netip.AddrPort) {
	if r == nil || len(b) > replyBufSize || r.n == len(r.ms) {
		if _, err := h.udp.WriteToUDPAddrPort(b, to); err != nil {
			h.log.Debug("UDP answer", "err", err)
		}
		return
	}
	r.bufs[r.n] = append(r.bufs[r.n][:0], b...)
	r.ms[r.n] = ipv4.Message{Buffers: [][]byte{r.bufs[r.n]}, Addr: net.UDPAddrFromAddrPort(to)}
	r.n++
}

// flush sends what sendReply queued.
func (r *replyBatch) flush() {
	ms := r.ms[:r.n]
	for len(ms) > 0 {
		n, err := r.bw.WriteBatch(ms, 0)
		if err != nil {
			r.log.Debug("UDP answers", "err", err, "unsent", len(ms))
			break
		}
		ms = ms[n:]
	}
	clear(r.ms[:r.n])
	r.n = 0
}

func newBatchReader(c *net.UDPConn) batchReader {
	if la, ok := c.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && la.IP != nil && !la.IP.IsUnspecified() {
		return v6Batch{ipv6.NewPacketConn(c)}
	}
	return ipv4.NewPacketConn(c)
}

// readUDP is one read loop; it returns when the socket is closed.
func (h *Hub) readUDP(br batchReader, sc *stackConn) error {
	size := h.cfg.MaxMessageSize + 1 // one more: an oversize datagram is seen as such
	ms := make([]ipv4.Message, udpBatch)
	stamps := h.udpStamps
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, size)}
		if stamps {
			ms[i].OOB = make([]byte, oobSize)
		}
	}
	replies := newReplyBatch(h, br)
	for {
		n, err := br.ReadBatch(ms, 0)
		if err != nil {
			if h.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// A transient error (ICMP-induced ECONNREFUSED on Linux
			// can surface here): keep reading, briefly backing off so
			// a persistent one cannot spin.
			h.log.Debug("UDP read", "err", err)
			select {
			case <-h.ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		for i := range n {
			m := &ms[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok || m.N == 0 {
				continue
			}
			data := m.Buffers[0][:m.N]
			ap := ua.AddrPort()
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			var at time.Time
			if stamps {
				at = stampOf(m.OOB[:m.NN])
			}
			h.udpDatagram(ap, data, sc, replies, at)
		}
		replies.flush()
	}
}

// udpDatagram handles one datagram on a read loop; a panic in it ends the
// datagram, never the loop.
func (h *Hub) udpDatagram(src netip.AddrPort, data []byte, sc *stackConn, replies *replyBatch, at time.Time) {
	defer h.recoverPanic("UDP datagram")
	if out := h.filterUDP(src, data, replies, at); out != nil {
		sc.pass(out, src)
	}
}
