package queue

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
)

// IMDN (RFC 5438): a stored MESSAGE whose CPIM body (RFC 3862) asks for a
// delivery notification gets one from the hub — "delivered" when the
// destination network took it (2xx), "failed" when it expired or the
// destination refused it — sent to the original sender through its own
// network. The hub speaks here as the store-and-forward intermediary of
// RFC 5438 section 9 ("failed" is its to give); "delivered" means handed
// to the destination network, whose recipient may send its own IMDNs too.

const imdnNS = "urn:ietf:params:imdn"

// Bounds on what the CPIM parser reads (a body from a member network).
const (
	maxCPIMHeaderBytes = 8 << 10
	maxCPIMHeaders     = 64
)

// cpimRequest is what a stored MESSAGE asked for.
type cpimRequest struct {
	messageID          string
	dateTime           string
	positive, negative bool
	from, to           string // CPIM From and To values
}

// parseCPIM reads the CPIM message headers of body (RFC 3862 section 3:
// header lines up to the first empty line) and the IMDN ones (RFC 5438
// section 6, under whatever prefix an NS header binds to the IMDN
// namespace). ok is false when the body is no CPIM or asks for nothing.
func parseCPIM(body []byte) (cpimRequest, bool) {
	var r cpimRequest
	end := bytes.Index(body, []byte("\r\n\r\n"))
	if end < 0 || end > maxCPIMHeaderBytes {
		return r, false
	}
	type hdr struct{ name, value string }
	var hs []hdr
	prefixes := map[string]bool{}
	for _, line := range strings.Split(string(body[:end]), "\r\n") {
		if len(hs) == maxCPIMHeaders {
			return r, false
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return r, false
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		hs = append(hs, hdr{name, value})
		if strings.EqualFold(name, "NS") {
			// NS: prefix <urn>
			p, urn, _ := strings.Cut(value, " ")
			if strings.Trim(strings.TrimSpace(urn), "<>") == imdnNS {
				prefixes[strings.ToLower(strings.TrimSpace(p))] = true
			}
		}
	}
	for _, h := range hs {
		p, local, dotted := strings.Cut(h.name, ".")
		switch {
		case strings.EqualFold(h.name, "From"):
			r.from = h.value
		case strings.EqualFold(h.name, "To"):
			r.to = h.value
		case strings.EqualFold(h.name, "DateTime"):
			r.dateTime = h.value
		case dotted && prefixes[strings.ToLower(p)] && strings.EqualFold(local, "Message-ID"):
			r.messageID = h.value
		case dotted && prefixes[strings.ToLower(p)] && strings.EqualFold(local, "Disposition-Notification"):
			for _, tok := range strings.Split(h.value, ",") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "positive-delivery":
					r.positive = true
				case "negative-delivery":
					r.negative = true
				}
			}
		}
	}
	return r, r.messageID != "" && (r.positive || r.negative)
}

// uriOf takes the URI out of a CPIM From/To value ("Name <uri>" or "<uri>").
func uriOf(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return strings.TrimSpace(v)
}

type imdnDoc struct {
	XMLName   xml.Name `xml:"urn:ietf:params:xml:ns:imdn imdn"`
	MessageID string   `xml:"message-id"`
	DateTime  string   `xml:"datetime"`
	Recipient string   `xml:"recipient-uri,omitempty"`
	Original  string   `xml:"original-recipient-uri,omitempty"`
	Status    struct {
		Inner string `xml:",innerxml"`
	} `xml:"delivery-notification>status"`
}

// imdnBody renders the CPIM-wrapped delivery notification (RFC 5438
// section 7.2.1.1, example in 8.3.2). status is "delivered" or "failed".
func imdnBody(c cpimRequest, status, hubID string, now time.Time) ([]byte, error) {
	d := imdnDoc{MessageID: c.messageID, DateTime: c.dateTime, Recipient: uriOf(c.to), Original: uriOf(c.to)}
	if d.DateTime == "" {
		d.DateTime = now.UTC().Format(time.RFC3339)
	}
	d.Status.Inner = "<" + status + "/>"
	x, err := xml.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("imdn document: %w", err)
	}
	x = append([]byte(xml.Header), x...)
	var b bytes.Buffer
	// The notification is about the recipient, to the sender.
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nNS: imdn <%s>\r\nimdn.Message-ID: %s\r\nDateTime: %s\r\n\r\n",
		c.to, c.from, imdnNS, hubID, now.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: %d\r\n\r\n", len(x))
	b.Write(x)
	return b.Bytes(), nil
}

// notify sends the IMDN status ("delivered", "failed") for stored message
// m if its body asked for it. The notification is a request of the hub
// itself to the sender's network; it is not stored if that network is
// down (no notification loops).
func (q *Queue) notify(ctx context.Context, m *hubv1.QueuedMessage, status string) {
	if m.GetSource() == "" {
		return
	}
	orig, err := q.parse(m)
	if err != nil {
		return
	}
	ct := orig.ContentType()
	if ct == nil || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct.Value())), "message/cpim") {
		return
	}
	c, ok := parseCPIM(orig.Body())
	if !ok || (status == "delivered" && !c.positive) || (status != "delivered" && !c.negative) {
		return
	}
	from := orig.From()
	if from == nil {
		return
	}
	body, err := imdnBody(c, status, q.newID(), q.cfg.Now())
	if err != nil {
		q.log.Warn("imdn", "id", m.GetId(), "err", err)
		return
	}
	req := sip.NewRequest(sip.MESSAGE, *from.Address.Clone())
	f := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "store-and-forward", Host: q.cfg.Hostname}, Params: sip.NewParams()}
	f.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(f)
	req.AppendHeader(&sip.ToHeader{Address: *from.Address.Clone(), Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + q.cfg.Hostname)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Content-Type", "message/cpim"))
	req.SetBody(body)
	note := fmt.Sprintf("store-and-forward IMDN %s for %s (request entry %s/%d)", status, m.GetId(), m.GetAuditNode(), m.GetAuditSeq())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 40*time.Second)
	defer cancel()
	res, err := q.send.Send(sctx, req, "", m.GetSource(), note)
	q.m.imdn.WithLabelValues(m.GetSource(), status, map[bool]string{true: "sent", false: "failed"}[err == nil && res != nil && res.StatusCode < 300]).Inc()
}

// notifyAsync runs notify off the delivery path (it waits for an answer).
func (q *Queue) notifyAsync(ctx context.Context, m *hubv1.QueuedMessage, status string) {
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.notify(ctx, m, status)
	}()
}
