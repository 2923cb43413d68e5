package hub

import (
	"crypto/sha256"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// Audit entries. Both request and response entries carry the transaction's
// orientation: SrcNet is the network that sent the request, DstNet the one
// it was routed to (empty when unknown). Src/Transport say where the
// recorded message itself came from; a response the hub generated has an
// empty Src.

type headerSource interface {
	CallID() *sip.CallIDHeader
	CSeq() *sip.CSeqHeader
	From() *sip.FromHeader
	To() *sip.ToHeader
	ContentType() *sip.ContentTypeHeader
	Body() []byte
}

// fillCommon fills the fields both kinds share. The Request-URI, From, To
// and CSeq are written into one builder and cut out of its one string:
// a Uri.String per field (and fmt for the CSeq) was ~5 allocations per
// entry, 5% of a forwarded MESSAGE's. The text is what String/Value give.
func fillCommon(e *ledger.Entry, m headerSource, ruri *sip.Uri, keepBody bool) {
	var b strings.Builder
	b.Grow(256)
	var nb [20]byte
	writeURI(&b, ruri)
	endR := b.Len()
	cs := m.CSeq()
	if cs != nil {
		b.Write(strconv.AppendUint(nb[:0], uint64(cs.SeqNo), 10))
		b.WriteByte(' ')
		b.WriteString(string(cs.MethodName))
	}
	endC := b.Len()
	f := m.From()
	if f != nil {
		writeURI(&b, &f.Address)
	}
	endF := b.Len()
	t := m.To()
	if t != nil {
		writeURI(&b, &t.Address)
	}
	all := b.String()
	e.RURI = all[:endR]
	if cs != nil {
		e.CSeq = all[endR:endC]
		if e.Method == "" {
			e.Method = string(cs.MethodName)
		}
	}
	if f != nil {
		e.From = all[endC:endF]
	}
	if t != nil {
		e.To = all[endF:]
	}
	if c := m.CallID(); c != nil {
		e.CallID = c.Value()
	}
	if body := m.Body(); len(body) > 0 {
		sum := sha256.Sum256(body)
		e.BodySHA256 = sum[:]
		if ct := m.ContentType(); ct != nil {
			e.BodyType = ct.Value()
		}
		if keepBody {
			e.Body = append([]byte(nil), body...)
			e.BodyKept = true
		}
	}
}

// writeURI writes u as sip.Uri.StringWrite does, byte for byte, without
// its IPv6 test on every host: sipgo v1.7.2 means to skip hosts with a dot
// but ranges over indices, so every host goes through net.ParseIP, which
// allocates an error for each name (three per entry). Here only a host with
// a colon can be an IPv6 literal.
func writeURI(b *strings.Builder, u *sip.Uri) {
	if u.Raw() != "" || u.HierarhicalSlashes {
		u.StringWrite(b) // non-SIP URIs and the rare forms: as sipgo writes them
		return
	}
	if u.Scheme == "" {
		b.WriteString("sip")
	} else {
		b.WriteString(u.Scheme)
	}
	b.WriteByte(':')
	if u.User != "" {
		b.WriteString(u.User)
		if u.Password != "" {
			b.WriteByte(':')
			b.WriteString(u.Password)
		}
		b.WriteByte('@')
	}
	if strings.IndexByte(u.Host, ':') >= 0 && isIPv6(u.Host) {
		b.WriteByte('[')
		b.WriteString(u.Host)
		b.WriteByte(']')
	} else {
		b.WriteString(u.Host)
	}
	if u.Port > 0 {
		var nb [8]byte
		b.WriteByte(':')
		b.Write(strconv.AppendInt(nb[:0], int64(u.Port), 10))
	}
	if u.UriParams != nil && u.UriParams.Length() > 0 {
		b.WriteByte(';')
		b.WriteString(u.UriParams.ToString(';'))
	}
	if u.Headers != nil && u.Headers.Length() > 0 {
		b.WriteByte('?')
		b.WriteString(u.Headers.ToString('&'))
	}
}

// isIPv6 is sipgo's test (an IPv4-mapped address is not bracketed).
func isIPv6(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() == nil
}

// requestEntry records c.req with the outcome known so far (status 0 when
// the request was accepted for forwarding).
func (c *call) requestEntry(status int, reason string) *ledger.Entry {
	e := &ledger.Entry{
		Kind:      ledger.KindRequest,
		Method:    string(c.req.Method),
		Src:       c.req.Source(),
		Transport: c.transport,
		SrcNet:    c.srcID,
		DstNet:    c.dstID,
		Status:    status,
		Reason:    reason,
	}
	fillCommon(e, c.req, &c.req.Recipient, c.src != nil && c.src.GetKeepBodies())
	return e
}

// responseEntry records a final response; relayed responses come from the
// destination network, generated ones from the hub.
func (c *call) responseEntry(res *sip.Response, relayed bool, detail string) *ledger.Entry {
	e := &ledger.Entry{
		Kind:      ledger.KindResponse,
		Transport: c.transport,
		SrcNet:    c.srcID,
		DstNet:    c.dstID,
		Status:    res.StatusCode,
		Reason:    res.Reason,
	}
	if detail != "" && detail != res.Reason {
		e.Reason = res.Reason + ": " + detail
	}
	keep := false
	if relayed {
		e.Src = res.Source()
		e.Transport = strings.ToLower(res.Transport())
		keep = c.dst != nil && c.dst.GetKeepBodies()
	}
	fillCommon(e, res, &c.req.Recipient, keep)
	return e
}
