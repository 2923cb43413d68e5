package hub

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// Taps: lawful interception and SIP capture (hub/intercept) see a copy of
// the messages the hub forwards. The proxy calls the tap where it already
// holds the message and both networks — after a request's audit append,
// after a relayed final response's — and only on the transaction's own
// goroutine. A tap never changes the message or holds it back: Wants is an
// allocation-free check against the immutable state the call runs on, and
// Tap copies what it needs and returns at once (it may drop, never block).

// Tap receives copies of SIP traffic the hub forwards.
type Tap interface {
	// Wants reports whether the message of a transaction from network
	// srcNet to dstNet with these From and To addresses (nil when absent)
	// is to be copied, under state st. It runs for every forwarded
	// message: no lock, no allocation, no blocking.
	Wants(st *raft.State, srcNet, dstNet string, from, to *sip.Uri) bool
	// Tap takes one copy (Wants said yes). It must not block.
	Tap(ev TapEvent)
}

// TapEvent is one message as the hub received it.
type TapEvent struct {
	State *raft.State // the state the call ran on (what Wants saw)
	Time  time.Time
	// Wire is the message marshalled; the tap owns it. Body starts at
	// BodyOffset (len(Wire) without a body).
	Wire       []byte
	BodyOffset int
	// Src is where the message came from and Dst where it arrived (the
	// hub's listener), "ip:port"; Transport is lower-case.
	Src, Dst  string
	Transport string
	// SrcNet and DstNet orient the transaction: the request's sender and
	// its destination network (a response travels DstNet -> SrcNet).
	SrcNet, DstNet string
	Response       bool
	Method         string // the transaction's method
	CallID         string
	// From and To are the transaction's addresses, as in its request.
	From, To *sip.Uri
}

// tap offers m (c.req itself, or a response to it that came from src over
// transport) to the configured tap.
func (c *call) tap(m sip.Message, src, transport string) {
	t := c.h.cfg.Tap
	if t == nil {
		return
	}
	var from, to *sip.Uri
	if f := c.req.From(); f != nil {
		from = &f.Address
	}
	if x := c.req.To(); x != nil {
		to = &x.Address
	}
	if !t.Wants(c.st, c.srcID, c.dstID, from, to) {
		return
	}
	if src == "" { // a request the hub originated
		src = c.h.localAddr(transport)
	}
	var b bytes.Buffer
	b.Grow(1024)
	m.StringWrite(&b)
	ev := TapEvent{
		State: c.st, Time: time.Now(), Wire: b.Bytes(), BodyOffset: b.Len() - len(m.Body()),
		Src: src, Dst: c.h.localAddr(transport), Transport: transport,
		SrcNet: c.srcID, DstNet: c.dstID, Method: string(c.req.Method), From: from, To: to,
	}
	_, ev.Response = m.(*sip.Response)
	if cid := c.req.CallID(); cid != nil {
		ev.CallID = cid.Value()
	}
	t.Tap(ev)
}

// tapRequest offers the call's request as received.
func (c *call) tapRequest() {
	if c.h.cfg.Tap != nil {
		c.tap(c.req, c.req.Source(), c.transport)
	}
}

// tapResponse offers a relayed response as received from downstream.
func (c *call) tapResponse(res *sip.Response) {
	if c.h.cfg.Tap != nil {
		c.tap(res, res.Source(), strings.ToLower(res.Transport()))
	}
}

// localAddr is the hub's address for transport, "ip:port" (0.0.0.0 when
// it listens on a wildcard address and knows no specific IP).
func (h *Hub) localAddr(transport string) string {
	ip := "0.0.0.0"
	if len(h.ips) > 0 {
		ip = h.ips[0].String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(h.port(transport)))
}
