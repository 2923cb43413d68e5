package hub

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestOCState(t *testing.T) {
	now := time.Unix(1_700_000_000, 123_000_000)
	var o ocState
	if p := o.params(now); p != "" {
		t.Fatalf("before any overload: %q, want nothing", p)
	}
	for range 75 {
		o.count(false)
	}
	for range 25 {
		o.count(true)
	}
	o.roll(now)
	if p := o.params(now); p != `;oc=25;oc-algo="loss";oc-validity=500;oc-seq=1700000000.123` {
		t.Errorf("a second with 25%% shed: %q", p)
	}
	o.count(true) // one shed among none admitted
	o.roll(now.Add(time.Second))
	if got := o.pct.Load(); got != 100 {
		t.Errorf("all shed: oc=%d, want 100", got)
	}
	o.count(false)
	o.roll(now.Add(2 * time.Second))
	if p := o.params(now.Add(2 * time.Second)); !strings.HasPrefix(p, ";oc=0;") || !strings.Contains(p, "oc-validity=0;") {
		t.Errorf("just after the overload: %q, want oc=0 with oc-validity=0 (RFC 7339 5.5)", p)
	}
	if p := o.params(now.Add(time.Second + ocLinger + time.Millisecond)); p != "" {
		t.Errorf("long after: %q, want nothing", p)
	}
}

func TestOCMarks(t *testing.T) {
	now := time.Now()
	var o ocState
	o.count(true)
	o.count(false)
	o.roll(now)
	parse := func(s string) *sip.Response {
		m, err := sip.NewParser().ParseSIP([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return m.(*sip.Response)
	}
	base := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1%s\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	cases := []struct {
		name, via string
		want      string // oc value after marking; "" none
	}{
		{"announced", ";oc", "50"},
		{"not announced", "", ""},
		{"already set downstream", ";oc=20", "20"},
	}
	for _, tc := range cases {
		res := parse(strings.Replace(base, "%s", tc.via, 1))
		o.markVia(res, now)
		got, _ := res.Via().Params.Get("oc")
		if got != tc.want {
			t.Errorf("%s: oc=%q, want %q", tc.name, got, tc.want)
		}
		if tc.name == "announced" {
			if a, _ := res.Via().Params.Get("oc-algo"); a != `"loss"` {
				t.Errorf("oc-algo %q", a)
			}
		}
	}

	// The raw 503 of early shedding.
	req := rawMessage("SIP/2.0/UDP 127.0.0.2:5999;rport;oc;branch=z9hG4bKoc1", "oc-1", "x")
	var b bytes.Buffer
	writeShed503(&b, req, &shedding{phrase: "Overloaded: queueing delay", retry: time.Second}, o.params(now))
	res := parse(b.String())
	if v, _ := res.Via().Params.Get("oc"); v != "50" {
		t.Errorf("raw 503 Via %q, want oc=50", res.Via().Value())
	}
	if br, _ := res.Via().Params.Get("branch"); br != "z9hG4bKoc1" {
		t.Errorf("raw 503 lost the branch: %q", res.Via().Value())
	}
	if !rawViaWantsOC([]byte("SIP/2.0/UDP h;oc;branch=z9hG4bK1")) || rawViaWantsOC([]byte("SIP/2.0/UDP h;oc=3;branch=z9hG4bK1")) || rawViaWantsOC([]byte("SIP/2.0/UDP h;branch=z9hG4bKoc")) {
		t.Error("rawViaWantsOC")
	}
}
