package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// rawResponder answers every request it gets with 200, by hand, so the
// benchmark measures the hub rather than a SIP stack at the edge.
func rawResponder(b *testing.B, ip string) (addr string, stop func()) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		var out bytes.Buffer
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			head, _, _ := bytes.Cut(buf[:n], []byte("\r\n\r\n"))
			lines := bytes.Split(head, []byte("\r\n"))
			out.Reset()
			out.WriteString("SIP/2.0 200 OK\r\n")
			for _, l := range lines[1:] {
				lower := bytes.ToLower(l)
				switch {
				case bytes.HasPrefix(lower, []byte("via:")), bytes.HasPrefix(lower, []byte("from:")),
					bytes.HasPrefix(lower, []byte("call-id:")), bytes.HasPrefix(lower, []byte("cseq:")):
					out.Write(l)
					out.WriteString("\r\n")
				case bytes.HasPrefix(lower, []byte("to:")):
					out.Write(l)
					out.WriteString(";tag=r1\r\n")
				}
			}
			out.WriteString("Content-Length: 0\r\n\r\n")
			_, _ = c.WriteToUDP(out.Bytes(), from) // hub sends from its listener
		}
	}()
	return c.LocalAddr().String(), func() { c.Close(); <-done }
}

// BenchmarkMessageForwardUDP pushes pager MESSAGEs from a raw UDP sender
// (neta) through an in-process hub, durably audited in the real ledger
// (bbolt, group commit, fsync), to a raw responder (netb), with a window of
// outstanding transactions. It reports throughput and p50/p99 round trip.
func BenchmarkMessageForwardUDP(b *testing.B) {
	for _, window := range []int{64, 256} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchForward(b, window) })
	}
}

func benchForward(b *testing.B, window int) {
	dstAddr, stopDst := rawResponder(b, "127.0.0.3")
	defer stopDst()
	st := &fakeState{}
	all := []hubv1.Service{hubv1.Service_SERVICE_IM}
	st.set(&hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:127.0.0.2:5999"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:" + dstAddr + ";transport=udp"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}}},
	})
	seed := make([]byte, ed25519.SeedSize)
	led, err := ledger.Open(context.Background(), ledger.Options{
		Path: filepath.Join(b.TempDir(), "audit.db"), NodeID: "n1",
		Signer: ed25519.NewKeyFromSeed(seed), CheckpointInterval: -1, CheckpointEvery: 1 << 30,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer led.Close()
	h, err := New(Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Logger: quietLogger(), RouteSecret: []byte("s")}, st, led)
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = h.Run(context.Background()) }()
	defer h.Close()
	hubAddr := h.Addrs()[0].(*net.UDPAddr)

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(8 << 20)
	local := c.LocalAddr().String()

	var mu sync.Mutex
	sent := make(map[string]time.Time, window*2)
	lat := make([]time.Duration, 0, b.N)
	slots := make(chan struct{}, window)
	got := make(chan struct{})
	go func() {
		defer close(got)
		buf := make([]byte, 65535)
		received := 0
		for received < b.N {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				b.Errorf("after %d responses: %v", received, err)
				return
			}
			msg := string(buf[:n])
			i := strings.Index(msg, "Call-ID: ")
			if i < 0 || !strings.HasPrefix(msg, "SIP/2.0 200") {
				continue
			}
			id := msg[i+9:]
			id = id[:strings.Index(id, "\r\n")]
			mu.Lock()
			t0, ok := sent[id]
			delete(sent, id)
			if ok {
				lat = append(lat, time.Since(t0))
			}
			mu.Unlock()
			if ok {
				received++
				<-slots
			}
		}
	}()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		slots <- struct{}{}
		id := fmt.Sprintf("bench-%d", i)
		msg := "MESSAGE sip:bob@b.example SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + "\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: <sip:alice@a.example>;tag=a1\r\n" +
			"To: <sip:bob@b.example>\r\n" +
			"Call-ID: " + id + "\r\n" +
			"CSeq: 1 MESSAGE\r\n" +
			"Content-Type: text/plain\r\n" +
			"Content-Length: 5\r\n\r\nhello"
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		if _, err := c.WriteToUDP([]byte(msg), hubAddr); err != nil {
			b.Fatal(err)
		}
	}
	<-got
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "msg/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(ms1.HeapInuse)/(1<<20), "heap-MiB")
	}
}
