package hub

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
)

// guardLab is a UDP+TCP lab whose hub has cfg (ports and secret filled in)
// and a metrics registry.
func guardLab(t *testing.T, cfg Config) (*lab, *prometheus.Registry) {
	t.Helper()
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	l.state.set(labState(l.a, l.b))
	reg := prometheus.NewRegistry()
	cfg.NodeID, cfg.UDPAddr, cfg.TCPAddr, cfg.RouteSecret, cfg.Registerer = "n1", "127.0.0.1:0", "127.0.0.1:0", []byte("s"), reg
	l.hub = startHub(t, cfg, l.state, l.audit)
	addrs := l.hub.Addrs()
	l.udp, l.tcp = addrs[0].String(), addrs[1].String()
	return l, reg
}

// refusedTotal sums clearhub_sip_refused_unparsed_total for cause.
func refusedTotal(t *testing.T, reg *prometheus.Registry, cause string) (total float64, by map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	by = map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "clearhub_sip_refused_unparsed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["cause"] == cause {
				by[labels["outcome"]] += m.GetCounter().GetValue()
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total, by
}

func aggregates(es []*ledger.Entry, srcPrefix string) []*ledger.Entry {
	var out []*ledger.Entry
	for _, e := range es {
		if strings.HasPrefix(e.Reason, "aggregate: ") && strings.HasPrefix(e.Src, srcPrefix) {
			out = append(out, e)
		}
	}
	return out
}

// A non-member flooding the UDP port costs a handful of ledger entries and
// no goroutine per datagram, and a member's MESSAGEs keep getting 200
// meanwhile (issue 8 item 7: 40,000/s from a non-member wrote 640,384
// entries in 12 s and took 259,854 goroutines).
func TestNonMemberFloodUDP(t *testing.T) {
	// A generous transaction timeout: the race detector slows the read
	// loop, and the flood shares it with the member's responses.
	l, reg := guardLab(t, Config{AggregateInterval: time.Hour, TransactionTimeout: 2 * time.Second})
	flooder, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.9")})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	_ = flooder.SetReadBuffer(8 << 20)
	hub := mustUDPAddr(t, l.udp)

	var answered atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 65535)
		for {
			_ = flooder.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := flooder.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("SIP/2.0 403 ")) {
				answered.Add(1)
			}
		}
	}()

	base := runtime.NumGoroutine()
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Millisecond):
				if n := int64(runtime.NumGoroutine()); n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()

	// 10,000 datagrams at about 5,000/s (bursts of 50 every 10 ms): well
	// beyond any answer budget, within what a race-instrumented read loop
	// on a shared machine keeps up with.
	const n = 10000
	start := time.Now()
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		via := "SIP/2.0/UDP " + flooder.LocalAddr().String() + ";branch=z9hG4bKflood"
		for i := range n {
			_, _ = flooder.WriteToUDP(rawMessage(fmt.Sprintf("%s%d", via, i), fmt.Sprintf("flood-%d", i), "x"), hub)
			if i%50 == 49 {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	// The member keeps being served during the flood.
	for i := range 20 {
		if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 200 {
			t.Fatalf("member MESSAGE %d during the flood: %d %s", i, res.StatusCode, res.Reason)
		}
	}
	<-floodDone
	// Wait until the hub has read what the kernel kept.
	var accounted float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		before, _ := refusedTotal(t, reg, "unattributed")
		time.Sleep(100 * time.Millisecond)
		if accounted, _ = refusedTotal(t, reg, "unattributed"); accounted == before {
			break
		}
	}
	elapsed := time.Since(start)
	close(stopSampling)
	wg.Wait()
	<-readDone

	if accounted < n/10 {
		t.Fatalf("only %.0f of %d datagrams reached the guard", accounted, n)
	}
	if extra := peak.Load() - int64(base); extra > 64 {
		t.Errorf("goroutines rose by %d during the flood (base %d)", extra, base)
	}
	var perPacket int
	for _, e := range l.audit.all() {
		if strings.HasPrefix(e.CallID, "flood-") || strings.HasPrefix(e.Src, "127.0.0.9:") {
			perPacket++
		}
	}
	if perPacket > 4 {
		t.Errorf("%d ledger entries for %.0f flood datagrams before the aggregate, want at most 4", perPacket, accounted)
	}
	if max := int64(2 + 10*(elapsed.Seconds()+1)); answered.Load() > max || answered.Load() == 0 {
		t.Errorf("flooder got %d answers in %s, want 1..%d", answered.Load(), elapsed, max)
	}

	l.hub.flushAggregate(context.Background(), time.Now())
	agg := aggregates(l.audit.all(), "127.0.0.9:")
	if len(agg) != 1 {
		t.Fatalf("want one aggregate entry for the flooder, have %d: %+v", len(agg), agg)
	}
	_, by := refusedTotal(t, reg, "unattributed")
	e := agg[0]
	want := fmt.Sprintf("aggregate: %.0f requests from 127.0.0.9 over udp", by["answered"]+by["dropped"])
	if !strings.HasPrefix(e.Reason, want) || !strings.Contains(e.Reason, "unattributable source") ||
		e.Method != "MESSAGE" || e.Status != 403 || e.Kind != ledger.KindRequest {
		t.Errorf("aggregate entry %+v, want reason starting %q", e, want)
	}
	if by["audited"] > 2 {
		t.Errorf("%.0f flood datagrams audited one by one, want at most 2", by["audited"])
	}
}

// Everything the hub refuses before the pipeline is accounted for: audited
// one by one, answered where a response can be routed (issue 8 item 6:
// MESSAGE or OPTIONS without CSeq or Via got no answer and no entry; INVITE
// without them a 400 and no entry).
func TestJunkAccountedFor(t *testing.T) {
	l, _ := guardLab(t, Config{})
	strip := func(header string) func(string) string {
		return func(m string) string {
			var out []string
			for _, line := range strings.Split(m, "\r\n") {
				if !strings.HasPrefix(line, header+":") {
					out = append(out, line)
				}
			}
			return strings.Join(out, "\r\n")
		}
	}
	cases := []struct {
		name   string
		method string
		edit   func(string) string
		status int    // 0: nothing may be answered
		reason string // in the request entry
	}{
		{"MESSAGE without CSeq", "MESSAGE", strip("CSeq"), 400, "missing CSeq"},
		{"MESSAGE without Via", "MESSAGE", strip("Via"), 0, "Via"},
		{"OPTIONS without CSeq", "OPTIONS", strip("CSeq"), 400, "missing CSeq"},
		{"INVITE without CSeq", "INVITE", strip("CSeq"), 400, "missing CSeq"},
		{"INVITE without Via", "INVITE", strip("Via"), 0, "Via"},
		{"MESSAGE without Call-ID", "MESSAGE", strip("Call-ID"), 400, "missing Call-ID"},
		{"unparsable CSeq", "MESSAGE", func(m string) string { return strings.Replace(m, "CSeq: 1 ", "CSeq: x ", 1) }, 400, "malformed"},
	}
	for _, transport := range []string{"udp", "tcp"} {
		for i, tc := range cases {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				var conn net.Conn
				var err error
				if transport == "udp" {
					conn, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, mustUDPAddr(t, l.udp))
				} else {
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
					conn, err = d.Dial("tcp", l.tcp)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				cid := fmt.Sprintf("junk-%s-%d", transport, i)
				via := "SIP/2.0/" + strings.ToUpper(transport) + " " + conn.LocalAddr().String() + ";rport;branch=z9hG4bKjunk" + cid
				msg := strings.Replace(string(rawMessage(via, cid, "")), "MESSAGE", tc.method, -1)
				if _, err := conn.Write([]byte(tc.edit(msg))); err != nil {
					t.Fatal(err)
				}
				wait := 3 * time.Second
				if tc.status == 0 {
					wait = 300 * time.Millisecond
				}
				_ = conn.SetReadDeadline(time.Now().Add(wait))
				buf := make([]byte, 4096)
				n, err := conn.Read(buf)
				switch {
				case tc.status == 0 && n > 0:
					t.Errorf("answered %q, want nothing (no Via to route a response)", buf[:n])
				case tc.status != 0 && err != nil:
					t.Fatalf("no answer: %v", err)
				case tc.status != 0 && !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("SIP/2.0 %d ", tc.status)):
					t.Errorf("answer %q, want %d", buf[:n], tc.status)
				}
				// By source address: the Call-ID may be what is missing.
				var e *ledger.Entry
				for deadline := time.Now().Add(3 * time.Second); e == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					for _, x := range l.audit.find(ledger.KindRequest, tc.method, tc.status, "") {
						if x.Src == conn.LocalAddr().String() {
							e = x
						}
					}
				}
				if e == nil {
					t.Fatalf("no request entry from %s", conn.LocalAddr())
				}
				if !strings.Contains(e.Reason, tc.reason) || e.SrcNet != "neta" || e.Transport != transport {
					t.Errorf("request entry %+v, want reason with %q", e, tc.reason)
				}
				if tc.status != 0 && tc.name != "MESSAGE without Call-ID" {
					l.audit.waitAudit(t, ledger.KindResponse, tc.method, tc.status, cid)
				}
			})
		}
	}
}

// A relayed response's entry names where it came from over UDP too (issue
// 8 item 6: it had an empty src).
func TestRelayedResponseSource(t *testing.T) {
	l := newLab(t, "udp")
	req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
	if res := l.a.do(req); res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	e := l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", 200, req.CallID().Value())
	if e.Src != l.b.addr || e.Transport != "udp" {
		t.Errorf("response entry src %q transport %q, want %q udp", e.Src, e.Transport, l.b.addr)
	}
}

// The guard's buckets: one aggregate entry per source and cause, the
// table bounded (later sources share one bucket), idle budgets evicted.
func TestGuardAggregateBounded(t *testing.T) {
	g := newGuard(Config{AggregateInterval: time.Second, RefusalsPerSource: 2})
	var detailed, answered, dropped int
	for i := range guardMaxAgg + 50 {
		ip := fmt.Sprintf("10.%d.%d.1", i/256, i%256)
		src := netip.MustParseAddrPort(ip + ":5060")
		for range 5 {
			switch g.decide(aggKey{src: src.Addr(), transport: "udp", what: "requests", label: "unattributed", status: 403}, src, "MESSAGE", "test", true) {
			case vDetail:
				detailed++
			case vAnswer:
				answered++
			default:
				dropped++
			}
		}
	}
	buckets, _ := g.take(time.Now())
	if len(buckets) != guardMaxAgg+1 {
		t.Errorf("%d buckets, want %d (then one for other sources)", len(buckets), guardMaxAgg+1)
	}
	var counted uint64
	for _, c := range buckets {
		counted += c.count
	}
	if int(counted) != answered+dropped || detailed == 0 || dropped == 0 {
		t.Errorf("counted %d, answered %d, dropped %d, detailed %d", counted, answered, dropped, detailed)
	}
	es := aggregateEntries(buckets, time.Second)
	others := 0
	for _, e := range es {
		if strings.Contains(e.Reason, "other sources") {
			others++
		}
	}
	if others != 1 {
		t.Errorf("%d entries for other sources, want 1", others)
	}
	if n := len(g.budgets); n != guardMaxAgg+50 {
		t.Errorf("%d budgets, want %d", n, guardMaxAgg+50)
	}
	g.take(time.Now())
	g.take(time.Now())
	if n := len(g.budgets); n != 0 {
		t.Errorf("%d budgets left after two idle intervals", n)
	}
}

// The raw header scanners decide before anything is parsed: they must
// never panic, and what they return must be in the input.
func FuzzRawHeaders(f *testing.F) {
	for _, s := range []string{
		string(rawMessage("SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-ch1.2", "c1", "hi")),
		"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=z9hG4bK-chX, SIP/2.0/UDP g;branch=y\r\n\r\n",
		"INVITE sip:x SIP/2.0\r\nVia:\r\n\r\n",
		"ACK",
		"",
		"\x00 \xff\r\n:\r\n",
		"MESSAGE sip:a@b SIP/2.0\r\nVIA : a;branch\r\nCSeq: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := rawMethod(data)
		if m != "" && !bytes.HasPrefix(data, []byte(m+" ")) {
			t.Fatalf("method %q not at the start of %q", m, data)
		}
		if b := rawBranch(data); b != "" && !bytes.Contains(data, []byte(b)) {
			t.Fatalf("branch %q not in %q", b, data)
		}
		if v, ok := rawHeader(data, "via", "v"); ok && !bytes.Contains(data, v) {
			t.Fatalf("via %q not in %q", v, data)
		}
		echo, _ := salvage(data)
		res := buildRawResponse(403, "Forbidden", echo)
		if !bytes.HasSuffix(res, []byte("Content-Length: 0\r\n\r\n")) || bytes.Count(res, []byte("\r\n\r\n")) != 1 {
			t.Fatalf("answer %q is not one message", res)
		}
	})
}

// BenchmarkStrangerDatagram is what one datagram from a non-member costs
// the UDP read loop (the flood's whole cost: nothing else runs for it).
func BenchmarkStrangerDatagram(b *testing.B) {
	st := &fakeState{}
	st.set(labState(&member{ip: "127.0.0.2", addr: "127.0.0.2:5060", network: "udp"}, &member{ip: "127.0.0.3", addr: "127.0.0.3:5060", network: "udp"}))
	h, err := New(Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Logger: quietLogger(), RouteSecret: []byte("s")}, st, &memAudit{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	props := sip.TransportReadProps{Transport: "UDP", RemoteAddr: &net.UDPAddr{IP: net.ParseIP("192.0.2.9"), Port: 5060}}
	data := rawMessage("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKflood1", "flood-1", "hello")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = h.readFilter(props, data)
	}
}
