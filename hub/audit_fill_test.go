package hub

import (
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// TestFillCommonText: the entry fields written through one builder are the
// text the per-field String/Value calls gave before (the ledger's content
// must not change with the optimisation).
func TestFillCommonText(t *testing.T) {
	cases := []struct{ name, msg string }{
		{"plain", "MESSAGE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"},
		{"params", "MESSAGE sip:bob@b.example:5070;transport=tcp;lr SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: \"Alice\" <sip:alice:pw@a.example;user=phone>;tag=1\r\nTo: sip:bob@b.example;tag=9\r\nCall-ID: c2\r\nCSeq: 2147483647 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"},
		{"ipv6-tel", "NOTIFY sip:[2001:db8::1]:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <tel:+15551234>;tag=x\r\nTo: <sips:bob@[2001:db8::2]>\r\nCall-ID: c3\r\nCSeq: 100 NOTIFY\r\nContent-Length: 0\r\n\r\n"},
		{"no-from-to", "OPTIONS sip:hub.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nCall-ID: c4\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := sip.ParseMessage([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			req := m.(*sip.Request)
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte("ok"))
			for _, src := range []headerSource{req, res} {
				var e ledger.Entry
				fillCommon(&e, src, &req.Recipient, true)
				want := ledger.Entry{RURI: req.Recipient.String()}
				if c := src.CSeq(); c != nil {
					want.CSeq, want.Method = c.Value(), string(c.MethodName)
				}
				if f := src.From(); f != nil {
					want.From = f.Address.String()
				}
				if to := src.To(); to != nil {
					want.To = to.Address.String()
				}
				if c := src.CallID(); c != nil {
					want.CallID = c.Value()
				}
				got := fmt.Sprintf("%q %q %q %q %q %q", e.RURI, e.CSeq, e.Method, e.From, e.To, e.CallID)
				exp := fmt.Sprintf("%q %q %q %q %q %q", want.RURI, want.CSeq, want.Method, want.From, want.To, want.CallID)
				if got != exp {
					t.Errorf("%T:\n got %s\nwant %s", src, got, exp)
				}
				if len(src.Body()) > 0 && (!e.BodyKept || string(e.Body) != string(src.Body()) || len(e.BodySHA256) != 32) {
					t.Errorf("%T: body not recorded: %+v", src, e)
				}
			}
		})
	}
}
