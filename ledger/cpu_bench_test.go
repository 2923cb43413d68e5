package ledger

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppendCPU is the ledger's share of issue 10's CPU per forwarded
// MESSAGE: open loop at rate=N appends/s (the hub appends two entries per
// MESSAGE, the request's durably before forwarding and the response's
// asynchronously), fsync'd, every append on its own goroutine as the hub's
// transactions are. It reports process CPU time (getrusage: user + system,
// the writer, WAL, applier and callers together) per append.
//
//	go test -run '^$' -bench AppendCPU -benchtime 50000x ./ledger/
func BenchmarkAppendCPU(b *testing.B) {
	for _, rate := range []int{10000} {
		b.Run("rate="+itoaBench(rate), func(b *testing.B) { benchAppendCPU(b, rate) })
	}
}

func benchAppendCPU(b *testing.B, rate int) {
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointEvery = 100000
	l := openTest(b, o)
	entries := make([]Entry, 64)
	for i := range entries {
		entries[i] = *sampleEntry(i)
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := rusageCPU()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > time.Millisecond {
			time.Sleep(d)
		}
		wg.Go(func() {
			c := entries[i%len(entries)]
			if _, err := l.Append(context.Background(), &c); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	cpu := rusageCPU() - cpu0
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/append")
	b.ReportMetric(float64(failed.Load()), "failures")
}

func rusageCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func itoaBench(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
