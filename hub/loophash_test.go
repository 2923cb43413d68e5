package hub

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// loopHashRef is loopHash as first written (string concatenations): the
// allocation-free version must hash the same bytes, or a request looping
// back through a node running the other version would not be recognised.
func loopHashRef(req *sip.Request) string {
	var b bytes.Buffer
	b.WriteString(req.Recipient.String())
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		b.WriteString("|" + tag)
	}
	if t := req.To(); t != nil {
		tag, _ := t.Params.Get("tag")
		b.WriteString("|" + tag)
	}
	if c := req.CallID(); c != nil {
		b.WriteString("|" + c.Value())
	}
	if c := req.CSeq(); c != nil {
		b.WriteString("|" + strconv.FormatUint(uint64(c.SeqNo), 10) + string(c.MethodName))
	}
	for _, r := range req.GetHeaders("Route") {
		b.WriteString("|" + r.Value())
	}
	if p := req.GetHeader("Proxy-Require"); p != nil {
		b.WriteString("|" + p.Value())
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:8])
}

func TestLoopHashSameBytes(t *testing.T) {
	cases := []struct{ name, msg string }{
		{"minimal", "MESSAGE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"},
		{"routes", "SUBSCRIBE sip:bob@b.example;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nRoute: <sip:hub.example;lr>\r\nRoute: <sip:edge.b.example;lr;x=1>\r\nProxy-Require: foo\r\nFrom: <sip:alice@a.example>;tag=abc\r\nTo: <sip:bob@b.example>;tag=def\r\nCall-ID: c2@host\r\nCSeq: 2147483647 SUBSCRIBE\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"},
		{"no-tags", "OPTIONS tel:+15551234 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@a.example>\r\nTo: <tel:+15551234>\r\nCall-ID: c3\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := sip.ParseMessage([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			req := m.(*sip.Request)
			for i := 0; i < 2; i++ { // the second run reuses a pooled buffer
				if got, want := loopHash(req), loopHashRef(req); got != want {
					t.Errorf("run %d: loopHash = %s, want %s", i, got, want)
				}
			}
		})
	}
}
