package hub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const spliceSrc = "127.0.0.2:5062"

// spliceCall is a lean call on req as the UDP read filter makes it.
func spliceCall(t testing.TB, data []byte) (*call, bool) {
	msg, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		return nil, false
	}
	req, ok := msg.(*sip.Request)
	if !ok || !isLeanMethod(req.Method) {
		return nil, false
	}
	if r, _ := missingMandatory(req); r != "" {
		return nil, false
	}
	req.SetTransport("UDP")
	req.SetSource(spliceSrc)
	h := &Hub{cfg: Config{Hostname: "hub.example"}, ports: map[string]int{"udp": 5060}}
	return &call{h: h, req: req, transport: "udp", lean: &leanServer{raw: bytes.Clone(data), size: len(data)}}, true
}

var spliceHop = hop{addr: "127.0.0.3:5060", transport: "UDP", uri: "sip:127.0.0.3"}

// checkSplice compares, as sipgo reads them, the spliced forward of data
// with the one buildForward makes. declined reports whether the splice
// declined (always allowed: the sipgo path is taken).
func checkSplice(t testing.TB, data []byte) (declined bool) {
	t.Helper()
	c, ok := spliceCall(t, data)
	if !ok {
		return true
	}
	mf := 70
	if m := c.req.MaxForwards(); m != nil {
		mf = int(m.Val())
	}
	if mf <= 0 {
		return true // answered 483 before forwarding
	}
	sp := c.spliceFor(spliceHop, 0, mf, "lh", nil)
	if sp == nil {
		return true
	}
	fwd := c.buildForward(spliceHop, 0, mf, "lh", nil)
	wantBranch, _ := fwd.Via().Params.Get("branch")
	msg, err := sip.NewParser().ParseSIP(sp.raw)
	if err != nil {
		t.Fatalf("spliced request does not parse: %v\n%q\nfrom %q", err, sp.raw, data)
	}
	got, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("spliced message is not a request: %q", sp.raw)
	}
	if b, _ := got.Via().Params.Get("branch"); b != sp.branch || !strings.HasPrefix(b, branchPrefix) {
		t.Fatalf("top Via branch %q, spliced says %q", b, sp.branch)
	}
	norm := func(s, branch string) string { return strings.ReplaceAll(s, branch, "BRANCH") }
	if got.Method != fwd.Method || got.Recipient.String() != fwd.Recipient.String() || got.SipVersion != fwd.SipVersion {
		t.Fatalf("start line %s %s %s, buildForward %s %s %s", got.Method, got.Recipient.String(), got.SipVersion, fwd.Method, fwd.Recipient.String(), fwd.SipVersion)
	}
	gh, wh := got.Headers(), fwd.Headers()
	for i := 0; i < max(len(gh), len(wh)); i++ {
		var g, w string
		if i < len(gh) {
			g = gh[i].Name() + ": " + norm(gh[i].Value(), sp.branch)
		}
		if i < len(wh) {
			w = wh[i].Name() + ": " + norm(wh[i].Value(), wantBranch)
		}
		if g != w {
			t.Fatalf("header %d: spliced %q, buildForward %q\nspliced: %q\ninput:   %q", i, g, w, sp.raw, data)
		}
	}
	if !bytes.Equal(got.Body(), fwd.Body()) {
		t.Fatalf("body %q, buildForward %q", got.Body(), fwd.Body())
	}
	return false
}

const spliceBase = "MESSAGE sip:bob@b.example SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.2:5062;rport;branch=z9hG4bK776\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:alice@a.example>;tag=a1\r\n" +
	"To: <sip:bob@b.example>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 MESSAGE\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Length: 5\r\n\r\nhello"

func TestSpliceRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		decline bool
		want    []string // substrings of the spliced request
		not     []string
	}{
		{"rport filled, Max-Forwards decremented, hub Via on top", spliceBase, false,
			[]string{"SIP/2.0\r\nVia: SIP/2.0/UDP hub.example:5060;branch=z9hG4bK-ch", "Via: SIP/2.0/UDP 127.0.0.2:5062;rport=5062;branch=z9hG4bK776\r\n", "Max-Forwards: 69\r\n", "\r\n\r\nhello"},
			[]string{"received=", "Max-Forwards: 70"}},
		{"received when the Via host is not the source",
			strings.Replace(spliceBase, "127.0.0.2:5062;rport;", "10.9.9.9:5062;", 1), false,
			[]string{"Via: SIP/2.0/UDP 10.9.9.9:5062;branch=z9hG4bK776;received=127.0.0.2\r\n"}, []string{"rport"}},
		{"compact Via and odd spacing kept",
			strings.Replace(strings.Replace(spliceBase, "Via: ", "v:  ", 1), "To: <sip:bob@b.example>", "To:   <sip:bob@b.example>", 1), false,
			[]string{"v:  SIP/2.0/UDP 127.0.0.2:5062;rport=5062;branch=z9hG4bK776\r\n", "To:   <sip:bob@b.example>\r\n"}, nil},
		{"missing Max-Forwards appended after the last header",
			strings.Replace(spliceBase, "Max-Forwards: 70\r\n", "", 1), false,
			[]string{"Content-Length: 5\r\nMax-Forwards: 69\r\n\r\nhello"}, nil},
		{"bytes past Content-Length dropped (RFC 3261 18.3)", spliceBase + "JUNK", false,
			[]string{"\r\n\r\nhello"}, []string{"JUNK"}},
		{"two values in the top Via line: declined",
			strings.Replace(spliceBase, ";branch=z9hG4bK776", ";branch=z9hG4bK776, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx", 1), true, nil, nil},
		{"folded header: declined",
			strings.Replace(spliceBase, "To: <sip:bob@b.example>\r\n", "To: <sip:bob@b.example>\r\n ;x=y\r\n", 1), true, nil, nil},
		{"received to overwrite: declined",
			strings.Replace(spliceBase, "127.0.0.2:5062;rport;", "10.9.9.9:5062;received=10.1.1.1;", 1), true, nil, nil},
		{"two Max-Forwards: declined",
			strings.Replace(spliceBase, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nMax-Forwards: 20\r\n", 1), true, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkSplice(t, []byte(tc.in)); got != tc.decline {
				t.Fatalf("declined = %v, want %v", got, tc.decline)
			}
			if tc.decline {
				return
			}
			c, _ := spliceCall(t, []byte(tc.in))
			sp := c.spliceFor(spliceHop, 0, 70, "lh", nil)
			for _, w := range tc.want {
				if !bytes.Contains(sp.raw, []byte(w)) {
					t.Errorf("spliced request lacks %q:\n%s", w, sp.raw)
				}
			}
			for _, n := range tc.not {
				if bytes.Contains(sp.raw, []byte(n)) {
					t.Errorf("spliced request has %q:\n%s", n, sp.raw)
				}
			}
		})
	}
}

// The splice only applies where it can: stream hops, a Route to pop and a
// Record-Route to add take buildForward.
func TestSpliceForDeclines(t *testing.T) {
	c, _ := spliceCall(t, []byte(spliceBase))
	for _, tc := range []struct {
		name string
		hp   hop
		popN int
		rr   *dialogRoute
	}{
		{"TCP hop", hop{addr: "127.0.0.3:5060", transport: "TCP"}, 0, nil},
		{"TLS hop", hop{addr: "127.0.0.3:5061", transport: "TLS"}, 0, nil},
		{"Route to pop", spliceHop, 1, nil},
		{"Record-Route to add", spliceHop, 0, &dialogRoute{}},
	} {
		if sp := c.spliceFor(tc.hp, tc.popN, 70, "lh", tc.rr); sp != nil {
			t.Errorf("%s: spliced", tc.name)
		}
	}
	// Session methods take buildForward (body rewrites happen there).
	for _, m := range []string{"UPDATE", "INFO", "PRACK", "BYE", "SUBSCRIBE", "REFER"} {
		sc, ok := spliceCall(t, []byte(strings.Replace(strings.Replace(spliceBase, "MESSAGE sip", m+" sip", 1), "1 MESSAGE", "1 "+m, 1)))
		if !ok {
			t.Fatalf("%s: does not parse", m)
		}
		if sp := sc.spliceFor(spliceHop, 0, 70, "lh", nil); sp != nil {
			t.Errorf("%s: spliced", m)
		}
	}
	// An IPv6 hub address is bracketed as sipgo renders it.
	v6, _ := spliceCall(t, []byte(spliceBase))
	v6.h.cfg.Hostname = "2001:db8::1"
	if sp := v6.spliceFor(spliceHop, 0, 70, "lh", nil); sp == nil || !bytes.Contains(sp.raw, []byte("Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=")) {
		t.Errorf("IPv6 hub Via: %q", sp.raw)
	} else if fwd := v6.buildForward(spliceHop, 0, 70, "lh", nil); !strings.HasPrefix(fwd.Via().Value(), "SIP/2.0/UDP [2001:db8::1]:5060;branch=") {
		t.Errorf("buildForward renders the IPv6 hub Via as %q", fwd.Via().Value())
	}
	c.lean.raw = nil // came over a stream
	if sp := c.spliceFor(spliceHop, 0, 70, "lh", nil); sp != nil {
		t.Error("spliced without received bytes")
	}
}

// FuzzSplice: whatever a member sends, the spliced forward reads (to
// sipgo) exactly as buildForward's, or the splice declines; it never
// panics.
func FuzzSplice(f *testing.F) {
	f.Add([]byte(spliceBase))
	f.Add([]byte(strings.Replace(spliceBase, "127.0.0.2:5062;rport;", "10.9.9.9;", 1)))
	f.Add([]byte(strings.Replace(spliceBase, "Via: ", "v: ", 1)))
	f.Add([]byte(strings.Replace(spliceBase, "Max-Forwards: 70\r\n", "", 1)))
	f.Add([]byte(strings.Replace(spliceBase, "Max-Forwards: 70", "max-forwards:3", 1)))
	f.Add([]byte(spliceBase + "trailing"))
	f.Add([]byte(strings.Replace(spliceBase, "Call-ID: c1\r\n", "Call-ID: c1\r\nVia: SIP/2.0/TCP 10.0.0.9;branch=z9hG4bKy\r\nRoute: <sip:10.0.0.1;lr>\r\n", 1)))
	f.Add([]byte(strings.Replace(spliceBase, ";rport;", "; rport ;", 1)))
	f.Add([]byte(strings.Replace(spliceBase, ";rport;", ";rport=1;", 1)))
	f.Add([]byte(strings.Replace(spliceBase, "MESSAGE sip", "NOTIFY sip", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSplice(t, data)
	})
}
