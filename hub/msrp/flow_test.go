package msrp_test

import (
	"crypto/tls"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// A slow receiver: the hub's backlog toward it never exceeds the session
// buffer by more than one frame (it stops reading the sender instead), and
// every byte still arrives.
func TestRelayBackpressure(t *testing.T) {
	const buf = 32 << 10
	l := newRelay(t, func(c *msrp.Config) { c.SessionBuffer = buf; c.Limits.MaxBody = 1 << 20 })
	a := msrptest.New("127.0.0.2", nil)
	b, err := msrptest.ListenBuffer("127.0.0.3", nil, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	b.SetDiscard(true)
	b.SetSlowRead(100 * time.Microsecond)
	d := msrp.Dialog{CallID: "bp", OffererNet: "neta", AnswererNet: "netb"}
	offer, err := l.r.Offer(d, a.SDP())
	if err != nil {
		t.Fatal(err)
	}
	answer, err := l.r.Answer(d, b.SDP())
	if err != nil {
		t.Fatal(err)
	}
	_ = offer
	toHub := msrp.ParseSDP(answer)[0].Path
	if err := a.Connect(toHub, nil); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	// Failure-Report: no — a does not wait for responses and writes as
	// fast as the hub reads.
	if code, err := a.Send(toHub, "bulk", "application/octet-stream", payload(size), 256<<10, func(f *msrp.Frame) { f.FailureReport = "no" }); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	m, err := b.Wait("bulk", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Bytes != size {
		t.Fatalf("b got %d bytes, want %d", m.Bytes, size)
	}
	peak := l.r.PeakQueued()
	if peak < buf {
		t.Fatalf("backlog peaked at %d: the receiver never pushed back (test too weak)", peak)
	}
	if peak > buf+8192+1024 {
		t.Fatalf("backlog peaked at %d bytes, want at most the %d-byte buffer plus one frame", peak, buf)
	}
}

// The per-member byte rate paces the sender.
func TestRelayByteRate(t *testing.T) {
	l := newRelay(t, func(c *msrp.Config) { c.BytesPerSecond = 64 << 10; c.Burst = 16 << 10 })
	c := l.call(t, "rate", nil, nil, nil)
	c.connect(t)
	start := time.Now()
	if code, err := c.a.Send(c.toHubA, "r1", "text/plain", payload(64<<10), 8<<10, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if _, err := c.b.Wait("r1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// 64 KiB at 64 KiB/s with a 16 KiB burst: at least 0.75 s.
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Fatalf("64 KiB took %v at 64 KiB/s", el)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelay: MB/s through the hub's two MSRP legs (endpoints in the
// same process, 64 KiB chunks from the sender, 8 KiB toward the receiver)
// and CPU per MB of the whole process (endpoints included, so an upper
// bound for the hub).
func BenchmarkRelay(b *testing.B) {
	for _, tc := range []struct {
		name     string
		tls      bool
		sessions int
	}{{"tcp/1", false, 1}, {"tls/1", true, 1}, {"tls/100", true, 100}} {
		b.Run(tc.name, func(b *testing.B) {
			l := newRelay(b, nil)
			var conf *tls.Config
			var fp []string
			if tc.tls {
				cert := selfSigned(b, "ep.example")
				conf = &tls.Config{Certificates: []tls.Certificate{cert}}
				fp = []string{"a=fingerprint:" + fingerprintOf(cert.Certificate[0])}
			}
			calls := make([]*call, tc.sessions)
			for i := range calls {
				calls[i] = l.call(b, fmt.Sprintf("bench-%d", i), fp, fp, conf)
				calls[i].b.SetDiscard(true)
				calls[i].connect(b)
			}
			const size = 1 << 20
			body := payload(size)
			b.SetBytes(int64(size * tc.sessions))
			b.ResetTimer()
			cpu0 := cpuTime()
			for n := 0; n < b.N; n++ {
				var wg sync.WaitGroup
				for i, c := range calls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						id := fmt.Sprintf("m%d-%d", n, i)
						if code, err := c.a.Send(c.toHubA, id, "application/octet-stream", body, 64<<10, nil); err != nil || code != 200 {
							b.Errorf("send: %d %v", code, err)
							return
						}
						if _, err := c.b.Wait(id, 60*time.Second); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			mb := float64(b.N*size*tc.sessions) / 1e6
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/mb, "cpu-µs/MB")
		})
	}
}

// BenchmarkIdleSessions: memory of 1,000 connected, idle sessions (heap in
// use per session, the test's own two endpoints per session included, so
// an upper bound for the hub's share).
func BenchmarkIdleSessions(b *testing.B) {
	const n = 1000
	for i := 0; i < b.N; i++ {
		l := newRelay(b, nil)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for k := 0; k < n; k++ {
			c := l.call(b, fmt.Sprintf("idle-%d-%d", i, k), nil, nil, nil)
			c.connect(b)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/session")
		b.ReportMetric(float64(l.r.Sessions()), "sessions")
	}
}
