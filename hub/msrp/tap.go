package msrp

import (
	"io"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ContentTap receives copies of the MSRP chunks the relay forwards: lawful
// interception's "msrp" delivery (hub/intercept; cmd/hubd adapts its
// Interceptor). Declared here, the consumer, so this package imports
// neither the interceptor nor the cluster state.
type ContentTap interface {
	// WantsMSRP is asked for every chunk the relay forwards, on the
	// reading goroutine: it must not block and should not allocate.
	// srcNet sent the chunk, dstNet receives it; from and to are the
	// session's SIP parties (nil when unparsable).
	WantsMSRP(srcNet, dstNet string, from, to *sip.Uri) bool
	// TapMSRP gets a chunk WantsMSRP wanted; it owns c.Wire and must not
	// block (the interceptor queues or drops).
	TapMSRP(c TapChunk)
}

// TapChunk is one chunk an endpoint sent through the hub, as it arrived.
type TapChunk struct {
	Time time.Time
	// Wire is the whole frame as received on the sending leg (start
	// line to end-line), a copy: not the hub's re-chunked copies.
	Wire []byte
	// Src is the sending endpoint (or its network's relay), Dst the
	// hub's address on that connection, both "ip:port"; Transport is
	// "tcp" or "tls".
	Src, Dst, Transport string
	SrcNet, DstNet      string
	// CallID is the SIP Call-ID of the session's dialog; From and To the
	// parties of its first offer (the INVITE's From and To when the
	// INVITE carried the offer).
	CallID   string
	From, To *sip.Uri
}

// newReader is NewReader with raw bytes kept when a tap may want them:
// the header section is copied into a reused buffer (no allocation once
// warm), the body is not copied.
func (r *Relay) newReader(c io.Reader) *Reader {
	rd := NewReader(c, r.cfg.Limits)
	rd.keepRaw = r.cfg.Tap != nil
	return rd
}

// ParseParty parses a session party's AoR for a ContentTap (nil: unparsable;
// the tap then matches on the networks only).
func ParseParty(aor string) *sip.Uri {
	if aor == "" {
		return nil
	}
	u := &sip.Uri{}
	if err := sip.ParseUri(aor, u); err != nil {
		return nil
	}
	return u
}

// tap offers chunk f, which l's endpoint sent and the hub forwarded, to
// the configured ContentTap. Called after the forward, so the relayed
// bytes never wait for it; with no tap, or a tap that does not want the
// session, it allocates nothing.
func (l *leg) tap(f *Frame, at time.Time) {
	s := l.s
	t := s.r.cfg.Tap
	if t == nil || !t.WantsMSRP(l.net, l.other().net, s.tapFrom, s.tapTo) {
		return
	}
	wire := f.AppendRaw(nil)
	if wire == nil {
		// A reader without raw bytes (not the relay's): re-encoded.
		wire = f.Append(nil)
	}
	c := TapChunk{Time: at, Wire: wire, Transport: "tcp", SrcNet: l.net, DstNet: l.other().net, CallID: s.callID, From: s.tapFrom, To: s.tapTo}
	if l.secure {
		c.Transport = "tls"
	}
	l.mu.Lock()
	c.Src = l.remote
	if l.conn != nil {
		c.Dst = l.conn.LocalAddr().String()
	}
	l.mu.Unlock()
	t.TapMSRP(c)
}
