package ledger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures durable (fsync'd) appends/s with W concurrent
// writers sharing the group-committing writer.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
			o.CheckpointEvery = 100000
			l := openTest(b, o)
			var next atomic.Int64
			e := sampleEntry(1)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						c := *e
						if _, err := l.Append(context.Background(), &c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkAppendDistinctUsers is BenchmarkAppend/writers=256 with a
// different From and To on every entry, as real traffic has: the user
// index's rows then land all over its key space.
func BenchmarkAppendDistinctUsers(b *testing.B) {
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointEvery = 100000
	l := openTest(b, o)
	var next atomic.Int64
	e := sampleEntry(1)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				c := *e
				c.From = fmt.Sprintf("<sip:user%d@a.example>;tag=x", i*7919%1000003)
				c.To = fmt.Sprintf("<sip:callee%d@b.example>", i*104729%1000003)
				if _, err := l.Append(context.Background(), &c); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// bulkLoad appends n synthetic entries through the writer with fsync off:
// a fast way to build a big tree for benchmarks.
func bulkLoad(b *testing.B, l *Ledger, n int) {
	l.db.NoSync = true
	l.wal.noSync.Store(true)
	defer func() { l.db.NoSync = false; l.wal.noSync.Store(false) }()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 512 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := l.Append(context.Background(), sampleEntry(int(i-1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkExportVerify measures JSON Lines export and offline verification
// in entries/s over a 100k-entry ledger.
func BenchmarkExportVerify(b *testing.B) {
	const n = 100_000
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointInterval = -1
	l := openTest(b, o)
	bulkLoad(b, l, n)
	var out bytes.Buffer
	if err := l.WriteJSONL(context.Background(), &out, Filter{}); err != nil {
		b.Fatal(err)
	}
	b.Run("export", func(b *testing.B) {
		for b.Loop() {
			if err := l.WriteJSONL(context.Background(), io.Discard, Filter{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			rep, err := VerifyExport(bytes.NewReader(out.Bytes()), nil)
			if err != nil || rep.Entries != n {
				b.Fatal(rep, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// BenchmarkInclusionProof1M measures serving an inclusion proof from a
// million-entry ledger (tree built once, unsynced, outside the timing).
func BenchmarkInclusionProof1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-entry ledger")
	}
	const n = 1_000_000
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointInterval = -1
	o.CheckpointEvery = -1
	l := openTest(b, o)
	bulkLoad(b, l, n)
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("prove", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			i = (i*7919 + 104729) % n
			if _, err := l.InclusionProof(i+1, cp.Size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prove+verify", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			i = (i*7919 + 104729) % n
			p, err := l.InclusionProof(i+1, cp.Size)
			if err != nil {
				b.Fatal(err)
			}
			e, _ := l.Get(i + 1)
			if err := VerifyEntryInclusion(e, cp.Size, p, cp.Root); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExportRareUser measures an indexed lookup of a user with one
// entry in a 100k-entry ledger: the index's cost per lookup, not the
// entries'.
func BenchmarkExportRareUser(b *testing.B) {
	const n = 100_000
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointInterval = -1
	l := openTest(b, o)
	bulkLoad(b, l, n/2)
	rare := sampleEntry(1)
	rare.From = "<sip:rare@a.example>"
	if _, err := l.Append(context.Background(), rare); err != nil {
		b.Fatal(err)
	}
	bulkLoad(b, l, n/2)
	for b.Loop() {
		got := 0
		if err := l.Export(context.Background(), Filter{User: "rare@a.example"}, func(*Entry) error { got++; return nil }); err != nil || got != 1 {
			b.Fatal(got, err)
		}
	}
}

// BenchmarkAppendLatency20k offers appends open-loop at 20,000/s (each
// started on schedule, whether or not earlier ones returned, as SIP traffic
// arrives) and reports the p50/p99 time from scheduled start to durable
// return, plus the rate achieved. b.N appends in all.
func BenchmarkAppendLatency20k(b *testing.B) {
	const rate = 20000
	o := testOptions(b, filepath.Join(b.TempDir(), "l.db"))
	o.CheckpointEvery = 100000
	l := openTest(b, o)
	e := sampleEntry(1)
	lat := make([]time.Duration, b.N)
	var failed atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / rate
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // coarse: the scheduler wakes late, never early
		}
		wg.Go(func() {
			c := *e
			if _, err := l.Append(context.Background(), &c); err != nil {
				failed.Add(1)
				return
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(failed.Load()), "failures")
}
