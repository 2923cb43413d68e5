package hub

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestScanHeaders(t *testing.T) {
	cases := []struct {
		name, msg       string
		via, event      string
		toTag, via1, cs bool
	}{
		{"plain", "MESSAGE sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nTo: <sip:b@b>\r\nCSeq: 1 MESSAGE\r\n\r\nbody",
			"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "", false, true, true},
		{"compact, two values, tag", "NOTIFY sip:b@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bKa , SIP/2.0/UDP h2;branch=z9hG4bKb\r\nt: <sip:b@b>;tag=x\r\no: presence;id=1\r\nCSeq: 1 NOTIFY\r\n\r\n",
			"SIP/2.0/UDP h1;branch=z9hG4bKa", "presence", true, true, true},
		{"second Via ignored", "MESSAGE sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP top;branch=z9hG4bKt\r\nVia: SIP/2.0/UDP next;branch=z9hG4bKn\r\nTo: b <sip:b@b>\r\nCseq: 2 MESSAGE\r\n\r\n",
			"SIP/2.0/UDP top;branch=z9hG4bKt", "", false, true, true},
		{"tag inside the URI is not a To tag", "MESSAGE sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@b;tag=inuri>\r\nCSeq: 1 MESSAGE\r\n\r\n",
			"SIP/2.0/UDP h;branch=z9hG4bK1", "", false, true, true},
		{"tag with spaces", "MESSAGE sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTO : <sip:b@b> ; TAG = 9\r\nCSeq: 1 MESSAGE\r\n\r\n",
			"SIP/2.0/UDP h;branch=z9hG4bK1", "", true, true, true},
		{"no headers", "MESSAGE sip:b@b SIP/2.0", "", "", false, false, false},
		{"body lines are not headers", "MESSAGE sip:b@b SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKbody\r\nTo: <sip:b@b>;tag=body\r\n",
			"", "", false, false, true},
	}
	for _, tc := range cases {
		s := scanHeaders([]byte(tc.msg))
		if string(s.via) != tc.via || string(s.event) != tc.event || s.toTag != tc.toTag || s.hasVia != tc.via1 || s.hasCSeq != tc.cs {
			t.Errorf("%s: via %q event %q toTag %v hasVia %v hasCSeq %v; want %q %q %v %v %v",
				tc.name, s.via, s.event, s.toTag, s.hasVia, s.hasCSeq, tc.via, tc.event, tc.toTag, tc.via1, tc.cs)
		}
	}
}

func TestViaPartsAndDest(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.7:40000")
	cases := []struct {
		via            string
		sentBy, branch string
		ok             bool
		dest           string
	}{
		{"SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKx", "192.0.2.7:5070", "z9hG4bKx", true, "192.0.2.7:5070"},
		{"SIP/2.0/UDP host.example;rport;branch=z9hG4bKy", "host.example", "z9hG4bKy", true, "192.0.2.7:40000"},
		{"SIP/2.0/UDP host.example;branch=z9hG4bKz", "host.example", "z9hG4bKz", true, "192.0.2.7:5060"},
		{"SIP/2.0/UDP [2001:db8::1]:5080;branch=z9hG4bKv6", "[2001:db8::1]:5080", "z9hG4bKv6", true, "192.0.2.7:5080"},
		{"SIP/2.0/UDP host;branch=1234", "", "", false, "192.0.2.7:5060"}, // RFC 2543 branch
		{"garbage", "", "", false, "192.0.2.7:5060"},
	}
	for _, tc := range cases {
		sb, br, ok := viaParts([]byte(tc.via))
		if string(sb) != tc.sentBy || string(br) != tc.branch || ok != tc.ok {
			t.Errorf("viaParts(%q) = %q %q %v, want %q %q %v", tc.via, sb, br, ok, tc.sentBy, tc.branch, tc.ok)
		}
		if got := rawUDPDest([]byte(tc.via), src).String(); got != tc.dest {
			t.Errorf("rawUDPDest(%q) = %s, want %s", tc.via, got, tc.dest)
		}
	}
}

// The stateless 503 is a response sipgo reads, with the request's
// transaction headers, a To tag of the hub's and Retry-After.
func TestWriteShed503(t *testing.T) {
	req := rawMessage("SIP/2.0/UDP 127.0.0.2:5999;rport;branch=z9hG4bKshed1", "cid-1", "hello")
	var b bytes.Buffer
	writeShed503(&b, req, &shedding{phrase: "Overloaded: queueing delay", retry: 2 * time.Second}, "")
	msg, err := sip.NewParser().ParseSIP(b.Bytes())
	if err != nil {
		t.Fatalf("503 does not parse: %v\n%s", err, b.Bytes())
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.StatusCode != 503 || res.Reason != "Overloaded: queueing delay" {
		t.Fatalf("got %v", msg)
	}
	if br, _ := res.Via().Params.Get("branch"); br != "z9hG4bKshed1" {
		t.Errorf("Via branch %q", br)
	}
	if res.CallID().Value() != "cid-1" || res.CSeq().SeqNo != 1 || res.From().Params.GetOr("tag", "") != "a1" {
		t.Errorf("transaction headers not copied: %s", b.Bytes())
	}
	if res.To().Params.GetOr("tag", "") == "" {
		t.Errorf("no To tag (RFC 3261 8.2.6.2): %s", b.Bytes())
	}
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() != "2" {
		t.Errorf("Retry-After %v, want 2", h)
	}
	if len(res.Body()) != 0 {
		t.Errorf("body %q", res.Body())
	}
}

// The gate: a standing queue (an interval where most requests waited
// longer than the target) is reported for the next interval; a burst (a
// few slow requests among fast ones) is not; an interval without reports
// ends it.
func TestDelayGate(t *testing.T) {
	ms := int64(time.Millisecond)
	cases := []struct {
		name   string
		delays []int64 // one per 10 ms, in ms
		at     int64   // standing asked at this time (ms)
		want   bool
	}{
		{"fast", []int64{1, 2, 1, 3, 1, 2, 1, 1, 2, 1, 1, 1}, 120, false},
		{"burst", []int64{1, 90, 80, 70, 1, 1, 40, 1, 2, 1, 1, 1}, 120, false},
		{"most late", []int64{1, 30, 40, 35, 1, 50, 45, 30, 2, 40, 35, 30}, 120, true},
		{"standing", []int64{30, 40, 35, 50, 45, 30, 40, 35, 50, 45, 60, 30}, 120, true},
		{"over, then silence", []int64{30, 40, 35, 50, 45, 30, 40, 35, 50, 45, 60, 30}, 400, false},
		{"off with target 0", nil, 120, false},
	}
	for _, tc := range cases {
		d := delayGate{target: 20 * ms}
		if tc.delays == nil {
			d.target = 0
		}
		base := int64(1_000_000) * ms
		for i, dl := range tc.delays {
			d.observe(base+int64(i)*10*ms, dl*ms)
		}
		if got := d.standing(base + tc.at*ms); got != tc.want {
			t.Errorf("%s: standing %v, want %v", tc.name, got, tc.want)
		}
	}
	in := gateInput{maxTx: 1000, maxPending: 1000, attrib: true, delayed: true, inflight: minGateLoad, active: 2, mine: minGateLoad / 2}
	if got := shedReason(in); got != "queue_delay" {
		t.Errorf("standing queue at load: %q, want queue_delay", got)
	}
	if in.inflight = minGateLoad - 1; shedReason(in) != "" {
		t.Errorf("standing queue without load is shed")
	}
	if in.inflight, in.mine = 100, 1; shedReason(in) != "" {
		t.Errorf("a member below its fair share is shed by the delay gate")
	}
	if in.priority, in.mine = true, 100; shedReason(in) != "" {
		t.Errorf("in-dialog upkeep is shed by the delay gate")
	}
}

// Early shedding refuses new requests on the read loop, but never a
// retransmission of a request the hub admitted (its 503 would end the
// sender's transaction while the original is forwarded, RFC 3261 17.1.2),
// and leaves requests with a To tag to the parsed path.
func TestShedEarlyKeepsAdmitted(t *testing.T) {
	noLeaks(t)
	const limit = 3
	l, au, _ := shedLab(t, Config{MaxPendingAppends: limit})
	au.stall()
	s := newRawSender(t, "127.0.0.2", l.udp)
	for i := range limit {
		s.send(t, i)
	}
	waitFor(t, "the stalled appends", func() bool { return l.hub.ovl.pending.Load() >= limit })
	// Retransmissions of the admitted ones, and a new one.
	for i := range limit {
		s.send(t, i)
	}
	s.send(t, 100)
	waitFor(t, "the new request's 503", func() bool { return s.count("SIP/2.0 503") >= 1 })
	time.Sleep(100 * time.Millisecond)
	if n := s.count("SIP/2.0 503"); n != 1 {
		t.Fatalf("%d 503s, want 1 (only the new request; retransmissions are absorbed)", n)
	}
	if res := s.example("SIP/2.0 503"); !bytes.Contains(res, []byte("branch=z9hG4bKshed100")) {
		t.Errorf("the 503 answers %q, want the new request", res)
	}
	// A request with a To tag is judged by the parsed path: over the
	// soft limit it is shed there too, with the same answer.
	port := s.c.LocalAddr().(*net.UDPAddr).Port
	tagged := bytes.Replace(rawMessage("SIP/2.0/UDP 127.0.0.2:"+itoa(port)+";rport;branch=z9hG4bKtagged", "tagged", "x"),
		[]byte("To: <sip:bob@b.example>"), []byte("To: <sip:bob@b.example>;tag=t1"), 1)
	if _, err := s.c.WriteToUDP(tagged, s.to); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an answer to the tagged request", func() bool { return s.count("SIP/2.0 ") > 1 })
	au.unstall()
	waitFor(t, "the admitted MESSAGEs' 200s", func() bool { return s.count("SIP/2.0 200") == limit })
	time.Sleep(50 * time.Millisecond)
	if n := s.count("SIP/2.0 200"); n != limit {
		t.Errorf("%d 200s, want %d", n, limit)
	}
	if !strings.HasPrefix(string(s.example("SIP/2.0 503")), "SIP/2.0 503 Overloaded") {
		t.Errorf("503 phrase: %q", s.example("SIP/2.0 503"))
	}
}

// FuzzScanHeaders: the raw scan never panics, and where sipgo reads a
// request, the scan agrees with it on the top Via's branch and the To tag.
func FuzzScanHeaders(f *testing.F) {
	f.Add(rawMessage("SIP/2.0/UDP 127.0.0.2:5999;rport;branch=z9hG4bKf1", "c1", "hi"))
	f.Add([]byte("NOTIFY sip:b@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bKa, SIP/2.0/UDP h2;branch=z9hG4bKb\r\nt: <sip:b@b>;tag=x\r\nf: <sip:a@a>;tag=1\r\ni: c\r\nCSeq: 1 NOTIFY\r\no: presence\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("MESSAGE sip:b@b SIP/2.0\r\nTo: <sip:b@b;tag=u>\r\n\r\n"))
	p := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		s := scanHeaders(data)
		_ = topVia(data)
		_ = rawLeanMethod(data)
		var b bytes.Buffer
		writeShed503(&b, data, &shedding{phrase: "x", retry: time.Second}, ";oc=5;oc-algo=\"loss\";oc-validity=500;oc-seq=1.000")
		sentBy, branch, ok := viaParts(s.via)
		_ = rawUDPDest(s.via, netip.MustParseAddrPort("192.0.2.1:5060"))
		msg, err := p.ParseSIP(data)
		if err != nil {
			return
		}
		req, isReq := msg.(*sip.Request)
		if !isReq || req.Via() == nil || req.To() == nil {
			return
		}
		// Only plain header blocks: folded lines and duplicate To
		// headers are read differently, and the parsed path decides those.
		if bytes.Contains(data, []byte("\r\n ")) || bytes.Contains(data, []byte("\r\n\t")) || len(req.GetHeaders("To")) != 1 {
			return
		}
		// Transaction keys only need the scan to agree with itself (a
		// retransmission is byte-identical); sipgo is the reference for
		// plain single-value Vias.
		pb, _ := req.Via().Params.Get("branch")
		if v, _ := rawHeader(data, "via", "v"); ok && !bytes.ContainsAny(v, ",\"") && string(branch) != strings.TrimSpace(pb) && strings.HasPrefix(pb, sip.RFC3261BranchMagicCookie) {
			t.Errorf("branch: scan %q, sipgo %q (sent-by %q)", branch, pb, sentBy)
		}
		// A To tag gives a request in-dialog priority when shedding: the
		// scan must never see one the parsed path does not (that would
		// let a new request through as upkeep); for a well-formed tag
		// parameter it must see it. (sipgo also reads a bare "tag" after
		// the '>' without ';' as a parameter; the scan does not, which
		// only sheds such a request as a new one.)
		tag := req.To().Params.Has("tag")
		if s.toTag && !tag {
			t.Errorf("To tag: the scan sees one, sipgo does not: %q", req.To().Value())
		}
		if to, _ := rawHeader(data, "to", "t"); tag && !s.toTag && bytes.Contains(bytes.ToLower(to), []byte(";tag=")) {
			t.Errorf("To tag: sipgo sees one, the scan does not: %q", req.To().Value())
		}
	})
}
