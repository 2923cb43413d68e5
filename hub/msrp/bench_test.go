package msrp_test

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"clearhub/hub/msrp/msrptest"
)

// BenchmarkSendLatency: the latency the hub adds to one SEND (256 bytes,
// over TLS, from the sender's write to the receiver's complete message),
// idle and with background sessions pushing half of the relay's measured
// capacity through the same node. Reported: p50/p99 through the hub and
// the same endpoints connected directly, and the difference.
func BenchmarkSendLatency(b *testing.B) {
	cert := selfSigned(b, "ep.example")
	conf := &tls.Config{Certificates: []tls.Certificate{cert}}
	fp := []string{"a=fingerprint:" + fingerprintOf(cert.Certificate[0])}
	const bg = 4
	for _, load := range []struct {
		name string
		frac float64
	}{{"idle", 0}, {"load50", 0.5}} {
		b.Run(load.name, func(b *testing.B) {
			l := newRelay(b, nil)
			fg := l.call(b, "lat-fg", fp, fp, conf)
			fg.connect(b)
			var bgCalls []*call
			for i := 0; i < bg; i++ {
				c := l.call(b, fmt.Sprintf("lat-bg-%d", i), fp, fp, conf)
				c.b.SetDiscard(true)
				c.connect(b)
				bgCalls = append(bgCalls, c)
			}
			body := payload(64 << 10)
			push := func(c *call, id string) {
				if code, err := c.a.Send(c.toHubA, id, "application/octet-stream", body, 64<<10, nil); err != nil || code != 200 {
					b.Errorf("background send: %d %v", code, err)
					return
				}
				_, _ = c.b.Wait(id, 30*time.Second)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var rate float64
			if load.frac > 0 {
				// Calibrate: the background sessions flat out for 1 s.
				var sent atomic.Int64
				end := time.Now().Add(time.Second)
				for i, c := range bgCalls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n := 0; time.Now().Before(end); n++ {
							push(c, fmt.Sprintf("cal-%d-%d", i, n))
							sent.Add(int64(len(body)))
						}
					}()
				}
				wg.Wait()
				rate = float64(sent.Load()) * load.frac // bytes/s at the chosen load
				every := time.Duration(float64(time.Second) * float64(len(body)) * bg / rate)
				for i, c := range bgCalls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						t := time.NewTicker(every)
						defer t.Stop()
						for n := 0; ; n++ {
							select {
							case <-stop:
								return
							case <-t.C:
								push(c, fmt.Sprintf("bg-%d-%d", i, n))
							}
						}
					}()
				}
			}
			// Direct: the same kind of endpoints without the hub.
			da := msrptest.New("127.0.0.2", conf)
			db, err := msrptest.Listen("127.0.0.3", conf)
			if err != nil {
				b.Fatal(err)
			}
			defer da.Close()
			defer db.Close()
			if err := da.Connect([]string{db.Path()}, nil); err != nil {
				b.Fatal(err)
			}
			small := payload(256)
			measure := func(a, rcv *msrptest.Endpoint, to []string, prefix string) []time.Duration {
				// Enough samples for a p99 whatever -benchtime says (make
				// bench runs the package's benchmarks at 3x).
				samples := max(b.N, 2000)
				out := make([]time.Duration, 0, samples)
				for n := 0; n < samples; n++ {
					id := fmt.Sprintf("%s-%d", prefix, n)
					t0 := time.Now()
					if code, err := a.Send(to, id, "text/plain", small, 1024, nil); err != nil || code != 200 {
						b.Fatalf("send: %d %v", code, err)
					}
					if _, err := rcv.Wait(id, 10*time.Second); err != nil {
						b.Fatal(err)
					}
					out = append(out, time.Since(t0))
				}
				slices.Sort(out)
				return out
			}
			b.ResetTimer()
			hub := measure(fg.a, fg.b, fg.toHubA, "h")
			direct := measure(da, db, []string{db.Path()}, "d")
			b.StopTimer()
			close(stop)
			wg.Wait()
			pct := func(d []time.Duration, p float64) float64 {
				return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds())
			}
			if rate > 0 {
				b.ReportMetric(rate/1e6, "bg-MB/s")
			}
			b.ReportMetric(pct(hub, 0.5), "hub-p50-µs")
			b.ReportMetric(pct(hub, 0.99), "hub-p99-µs")
			b.ReportMetric(pct(direct, 0.5), "direct-p50-µs")
			b.ReportMetric(pct(hub, 0.5)-pct(direct, 0.5), "added-p50-µs")
		})
	}
}
