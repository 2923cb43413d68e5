package hub

import (
	"crypto/sha256"
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

func fillCommon(e *ledger.Entry, m headerSource, keepBody bool) {
	if c := m.CallID(); c != nil {
		e.CallID = c.Value()
	}
	if c := m.CSeq(); c != nil {
		e.CSeq = c.Value()
		if e.Method == "" {
			e.Method = string(c.MethodName)
		}
	}
	if f := m.From(); f != nil {
		e.From = f.Address.String()
	}
	if t := m.To(); t != nil {
		e.To = t.Address.String()
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

// requestEntry records c.req with the outcome known so far (status 0 when
// the request was accepted for forwarding).
func (c *call) requestEntry(status int, reason string) *ledger.Entry {
	e := &ledger.Entry{
		Kind:      ledger.KindRequest,
		Method:    string(c.req.Method),
		RURI:      c.req.Recipient.String(),
		Src:       c.req.Source(),
		Transport: c.transport,
		SrcNet:    c.srcID,
		DstNet:    c.dstID,
		Status:    status,
		Reason:    reason,
	}
	fillCommon(e, c.req, c.src != nil && c.src.GetKeepBodies())
	return e
}

// responseEntry records a final response; relayed responses come from the
// destination network, generated ones from the hub.
func (c *call) responseEntry(res *sip.Response, relayed bool, detail string) *ledger.Entry {
	e := &ledger.Entry{
		Kind:      ledger.KindResponse,
		RURI:      c.req.Recipient.String(),
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
	fillCommon(e, res, keep)
	return e
}
