package load

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"sort"
	"strings"
	"testing"
)

func testParams(transport string) MessageParams {
	return MessageParams{Transport: transport, Host: "127.0.0.2", Port: 5100, RunID: "ab12",
		FromUser: "load", FromDomain: "a.example", ToUser: "bob", ToDomain: "b.example", Body: "hello"}
}

func TestTemplateFill(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		seq       uint64
		want      []string // substrings of the filled request
		notWant   []string
	}{
		{"udp has rport", "UDP", 7, []string{
			"MESSAGE sip:bob@b.example SIP/2.0\r\n",
			"Via: SIP/2.0/UDP 127.0.0.2:5100;branch=z9hG4bKab12x000000000007;rport\r\n",
			"From: <sip:load@a.example>;tag=ab12t000000000007\r\n",
			"Call-ID: ldab12-000000000007@a.example\r\n",
			"Content-Length: 5\r\n\r\nhello",
		}, nil},
		{"tcp without rport", "TCP", 123456789012, []string{
			"Via: SIP/2.0/TCP 127.0.0.2:5100;branch=z9hG4bKab12x123456789012\r\n",
			"Call-ID: ldab12-123456789012@a.example\r\n",
		}, []string{"rport"}},
		{"tls", "TLS", 0, []string{"Via: SIP/2.0/TLS 127.0.0.2:5100;branch=z9hG4bKab12x000000000000\r\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := NewMessageTemplate(testParams(tt.transport))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, tm.Len())
			got := string(tm.Fill(buf, tt.seq))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("request lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("request has %q:\n%s", w, got)
				}
			}
			// The body length must match Content-Length (framing over streams).
			_, n, _, err := FrameLen([]byte(got))
			if err != nil || n != len(got) {
				t.Errorf("FrameLen = %d, %v; want %d", n, err, len(got))
			}
		})
	}
}

func TestTemplateRejects(t *testing.T) {
	for _, p := range []MessageParams{
		{Transport: "SCTP", RunID: "a"},
		{Transport: "UDP", RunID: ""},
		{Transport: "UDP", RunID: "a-b"},
	} {
		if _, err := NewMessageTemplate(p); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

func TestFillDoesNotAllocate(t *testing.T) {
	tm, err := NewMessageTemplate(testParams("UDP"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, tm.Len())
	if a := testing.AllocsPerRun(100, func() { tm.Fill(buf, 42) }); a != 0 {
		t.Errorf("Fill allocates %.0f times", a)
	}
}

func TestParseResponse(t *testing.T) {
	prefix := []byte("ldab12-")
	tests := []struct {
		name    string
		in      string
		status  int
		seq     uint64
		wantErr error
	}{
		{"200", "SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: ldab12-000000000042@a.example\r\n\r\n", 200, 42, nil},
		{"compact i", "SIP/2.0 503 Service Unavailable\r\nI:   ldab12-000000000001@a\r\n\r\n", 503, 1, nil},
		{"case-insensitive name", "SIP/2.0 404 Not Found\r\ncall-id: ldab12-999999999999\r\n\r\n", 404, 999999999999, nil},
		{"folded header before", "SIP/2.0 100 Trying\r\nSubject: a\r\n b\r\nCall-ID: ldab12-000000000005\r\n\r\n", 100, 5, nil},
		{"LF only", "SIP/2.0 200 OK\nCall-ID: ldab12-000000000003\n\n", 200, 3, nil},
		{"foreign call-id", "SIP/2.0 200 OK\r\nCall-ID: other-000000000001\r\n\r\n", 200, 0, ErrForeign},
		{"short seq", "SIP/2.0 200 OK\r\nCall-ID: ldab12-123\r\n\r\n", 200, 0, ErrForeign},
		{"non-digit seq", "SIP/2.0 200 OK\r\nCall-ID: ldab12-00000000000x\r\n\r\n", 200, 0, ErrForeign},
		{"no call-id", "SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 200, 0, ErrMalformed},
		{"request", "MESSAGE sip:a SIP/2.0\r\nCall-ID: ldab12-000000000001\r\n\r\n", 0, 0, ErrMalformed},
		{"bad code", "SIP/2.0 2x0 OK\r\n\r\n", 0, 0, ErrMalformed},
		{"code below 100", "SIP/2.0 099 Odd\r\n\r\n", 0, 0, ErrMalformed},
		{"code glued to reason", "SIP/2.0 2000OK\r\n\r\n", 0, 0, ErrMalformed},
		{"empty", "", 0, 0, ErrMalformed},
		{"header without colon", "SIP/2.0 200 OK\r\nnonsense\r\n\r\n", 200, 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, seq, err := ParseResponse([]byte(tt.in), prefix)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if status != tt.status || seq != tt.seq {
				t.Errorf("got %d %d, want %d %d", status, seq, tt.status, tt.seq)
			}
		})
	}
}

func TestParseResponseOfTemplate(t *testing.T) {
	p := testParams("UDP")
	tm, _ := NewMessageTemplate(p)
	req := tm.Fill(make([]byte, tm.Len()), 31337)
	resp, ok := BuildResponse(nil, req, "x")
	if !ok {
		t.Fatal("no response")
	}
	status, seq, err := ParseResponse(resp, []byte(p.CallIDPrefix()))
	if err != nil || status != 200 || seq != 31337 {
		t.Fatalf("got %d %d %v", status, seq, err)
	}
}

func TestFrameLen(t *testing.T) {
	msg := "SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 3\r\n\r\nabc"
	tests := []struct {
		name       string
		in         string
		skip, n    int
		ping, fail bool
	}{
		{"whole", msg, 0, len(msg), false, false},
		{"two pipelined", msg + msg, 0, len(msg), false, false},
		{"body missing", msg[:len(msg)-1], 0, 0, false, false},
		{"headers partial", "SIP/2.0 200 OK\r\nCall-", 0, 0, false, false},
		{"compact l", "SIP/2.0 200 OK\r\nl: 0\r\n\r\n", 0, 24, false, false},
		{"ping", "\r\n\r\n" + msg, 4, 0, true, false},
		{"pong", "\r\n" + msg, 2, 0, false, false},
		{"no content-length", "SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n", 0, 0, false, true},
		{"bad content-length", "SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", 0, 0, false, true},
		{"huge content-length", "SIP/2.0 200 OK\r\nContent-Length: 999999999\r\n\r\n", 0, 0, false, true},
		{"header block too big", "SIP/2.0 200 OK\r\nX: " + strings.Repeat("a", MaxHeaderBytes+1), 0, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip, n, ping, err := FrameLen([]byte(tt.in))
			if (err != nil) != tt.fail {
				t.Fatalf("err = %v, want failure %v", err, tt.fail)
			}
			if skip != tt.skip || n != tt.n || ping != tt.ping {
				t.Errorf("got skip %d n %d ping %v, want %d %d %v", skip, n, ping, tt.skip, tt.n, tt.ping)
			}
		})
	}
}

func TestBuildResponse(t *testing.T) {
	req := "MESSAGE sip:bob@b.example SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKhub;rport=5060\r\n" +
		"v: SIP/2.0/UDP 127.0.0.2:5100;branch=z9hG4bKab\r\n" +
		"Record-Route: <sip:127.0.0.1;lr>\r\n" +
		"Max-Forwards: 69\r\n" +
		"From: <sip:load@a.example>;tag=t1\r\n" +
		"To: <sip:bob@b.example>\r\n" +
		"Call-ID: ldab12-000000000001@a.example\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Length: 2\r\n\r\nhi"
	tests := []struct {
		name   string
		in     string
		ok     bool
		want   string
		toLine string // the To line of the answer
	}{
		{"message", req, true, "SIP/2.0 200 OK\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKhub;rport=5060\r\n" +
			"v: SIP/2.0/UDP 127.0.0.2:5100;branch=z9hG4bKab\r\n" +
			"From: <sip:load@a.example>;tag=t1\r\n" +
			"To: <sip:bob@b.example>;tag=u\r\n" +
			"Call-ID: ldab12-000000000001@a.example\r\n" +
			"CSeq: 1 MESSAGE\r\n" +
			"Content-Length: 0\r\n\r\n", "To: <sip:bob@b.example>;tag=u"},
		{"to tag kept", strings.Replace(req, "To: <sip:bob@b.example>", "t: <sip:bob@b.example>;tag=old", 1), true, "", "t: <sip:bob@b.example>;tag=old"},
		{"tag inside the URI is no tag", strings.Replace(req, "To: <sip:bob@b.example>", "To: <sip:bob@b.example;tag=x>", 1), true, "", "To: <sip:bob@b.example;tag=x>;tag=u"},
		{"ack", strings.Replace(req, "MESSAGE sip", "ACK sip", 1), false, "", ""},
		{"response", "SIP/2.0 200 OK\r\nVia: x\r\n\r\n", false, "", ""},
		{"no call-id", strings.Replace(req, "Call-ID: ldab12-000000000001@a.example\r\n", "", 1), false, "", ""},
		{"no via", strings.Replace(strings.Replace(req, "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKhub;rport=5060\r\n", "", 1), "v: ", "X: ", 1), false, "", ""},
		{"not SIP/2.0", "MESSAGE sip:bob HTTP/1.1\r\n\r\n", false, "", ""},
		{"garbage", "\x00\x01", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := BuildResponse([]byte("keep"), []byte(tt.in), "u")
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v; out %q", ok, tt.ok, out)
			}
			if !bytes.HasPrefix(out, []byte("keep")) {
				t.Fatalf("dst prefix lost: %q", out)
			}
			got := string(out[4:])
			if !ok {
				if got != "" {
					t.Errorf("refused but wrote %q", got)
				}
				return
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			if !strings.Contains(got, "\r\n"+tt.toLine+"\r\n") {
				t.Errorf("no line %q in %q", tt.toLine, got)
			}
		})
	}
}

func TestHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	tests := []struct {
		name string
		gen  func() int64
		n    int
	}{
		{"small exact", func() int64 { return rng.Int63n(100) }, 10000},
		{"uniform to 10 ms", func() int64 { return rng.Int63n(10000) }, 50000},
		{"long tail", func() int64 { return int64(rng.ExpFloat64() * 300) }, 50000},
		{"seconds", func() int64 { return 1_000_000 + rng.Int63n(2_000_000) }, 2000},
		{"one sample", func() int64 { return 777 }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Hist
			vals := make([]int64, tt.n)
			for i := range vals {
				vals[i] = tt.gen()
				h.Record(vals[i])
			}
			sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
			for _, q := range []float64{0.5, 0.99, 0.999, 1} {
				rank := int(q*float64(len(vals))+0.999999) - 1
				if rank < 0 {
					rank = 0
				}
				exact := vals[rank]
				got := h.Quantile(q)
				tol := exact/64 + 1
				if got < exact-tol || got > exact+tol {
					t.Errorf("q%.3f = %d, exact %d (tolerance %d)", q, got, exact, tol)
				}
			}
			if h.Count() != uint64(tt.n) {
				t.Errorf("count %d, want %d", h.Count(), tt.n)
			}
		})
	}
}

func TestHistMergeAndEdges(t *testing.T) {
	var a, b, empty Hist
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := int64(1); i <= 100; i++ {
		a.Record(i)
		b.Record(i + 100)
	}
	a.Record(-5) // clamped to 0
	a.Merge(&b)
	if a.Count() != 201 || a.Max() != 200 {
		t.Fatalf("count %d max %d", a.Count(), a.Max())
	}
	if got := a.Quantile(0.5); got != 100 {
		t.Errorf("median %d, want 100", got)
	}
	if got := a.Quantile(1e-9); got != 0 {
		t.Errorf("min %d, want 0", got)
	}
	a.Reset()
	if a.Count() != 0 {
		t.Error("reset kept samples")
	}
	var big Hist
	big.Record(1 << 62)
	if got := big.Quantile(0.5); got != 1<<62 {
		t.Errorf("huge sample reported as %d", got)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		ticks uint64
		ppid  int
		fail  bool
	}{
		{"plain", "42 (hubd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0", 300, 1, false},
		{"spaces and parens in the command", "7 (a b) c)) R 3 7 7 0 -1 0 0 0 0 0 11 22 0 0", 33, 3, false},
		{"truncated", "7 (x) R 3 7", 0, 0, true},
		{"no command", "7 x R", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ticks, ppid, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.fail {
				t.Fatalf("err = %v", err)
			}
			if ticks != tt.ticks || ppid != tt.ppid {
				t.Errorf("got %d %d, want %d %d", ticks, ppid, tt.ticks, tt.ppid)
			}
		})
	}
	if kb, ok := parseKB([]byte("Name:\tx\nVmRSS:\t  2048 kB\n"), "VmRSS"); !ok || kb != 2048*1024 {
		t.Errorf("parseKB = %d %v", kb, ok)
	}
	if _, ok := parseKB([]byte("VmRSS:\n"), "VmRSS"); ok {
		t.Error("parseKB accepted an empty value")
	}
}

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	for _, tree := range []bool{false, true} {
		s, err := ReadProc(os.Getpid(), tree)
		if err != nil {
			t.Fatal(err)
		}
		if s.Mem <= 0 || s.Procs < 1 {
			t.Errorf("tree %v: %+v", tree, s)
		}
	}
	if _, err := ReadProc(-1, false); err == nil {
		t.Error("no error for a missing process")
	}
}
