package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const cpimAsking = "From: Alice <sip:alice@a.example>\r\n" +
	"To: Bob <sip:bob@b.example>\r\n" +
	"NS: imdn <urn:ietf:params:imdn>\r\n" +
	"imdn.Message-ID: 34jk324j\r\n" +
	"DateTime: 2026-01-01T00:00:00Z\r\n" +
	"imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n" +
	"\r\n" +
	"Content-Type: text/plain\r\n\r\nhello"

func TestParseCPIM(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		ok       bool
		pos, neg bool
		id       string
	}{
		{"both", cpimAsking, true, true, true, "34jk324j"},
		{"other prefix", strings.NewReplacer("NS: imdn", "NS: x", "imdn.", "x.").Replace(cpimAsking), true, true, true, "34jk324j"},
		{"negative only", strings.Replace(cpimAsking, "positive-delivery, ", "", 1), true, false, true, "34jk324j"},
		{"display only", strings.Replace(cpimAsking, "positive-delivery, negative-delivery", "display", 1), false, false, false, "34jk324j"},
		{"no namespace", strings.Replace(cpimAsking, "NS: imdn <urn:ietf:params:imdn>\r\n", "", 1), false, false, false, ""},
		{"no message id", strings.Replace(cpimAsking, "imdn.Message-ID: 34jk324j\r\n", "", 1), false, true, true, ""},
		{"not cpim", "hello", false, false, false, ""},
		{"bad header line", "From Alice\r\n\r\n", false, false, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parseCPIM([]byte(tc.body))
			if ok != tc.ok || c.positive != tc.pos || c.negative != tc.neg || c.messageID != tc.id {
				t.Errorf("got %+v ok=%v", c, ok)
			}
		})
	}
}

func FuzzParseCPIM(f *testing.F) {
	f.Add([]byte(cpimAsking))
	f.Add([]byte("NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: x\r\nimdn.Disposition-Notification: negative-delivery\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, ok := parseCPIM(body)
		if ok {
			if _, err := imdnBody(c, "failed", "n1-x", time.Unix(0, 0)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func cpimMessage(t *testing.T, i int) *sip.Request {
	req := message(t, i)
	req.RemoveHeader("Content-Type")
	req.AppendHeader(sip.NewHeader("Content-Type", "message/cpim"))
	req.SetBody([]byte(cpimAsking))
	return req
}

// A stored CPIM MESSAGE asking for delivery notifications gets one back to
// the sender's network: delivered on a 2xx, failed on expiry.
func TestIMDNNotices(t *testing.T) {
	cases := []struct {
		name   string
		expire bool
		want   string
	}{
		{"delivered", false, "<delivered/>"},
		{"expired", true, "<failed/>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil, Config{})
			if tc.expire {
				r.s.set(down)
			} else {
				r.s.set(answer(200))
			}
			if _, err := r.q.Store(context.Background(), cpimMessage(t, 0), "neta", "netb", 5, r.clk.now()); err != nil {
				t.Fatal(err)
			}
			r.run(t)
			if tc.expire {
				r.clk.add(73 * time.Hour)
			}
			var imdn *sip.Request
			waitFor(t, "an IMDN", func() bool {
				r.s.mu.Lock()
				defer r.s.mu.Unlock()
				for i, g := range r.s.got {
					if r.s.dsts[i] == "neta" {
						imdn = g
						return true
					}
				}
				return false
			})
			b := string(imdn.Body())
			if imdn.Recipient.String() != "sip:alice@a.example" || !strings.Contains(b, tc.want) ||
				!strings.Contains(b, "<message-id>34jk324j</message-id>") || !strings.Contains(b, "Content-Disposition: notification") ||
				imdn.ContentType().Value() != "message/cpim" {
				t.Errorf("IMDN to %s:\n%s", imdn.Recipient.String(), b)
			}
		})
	}
}
