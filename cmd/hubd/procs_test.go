package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestEnsureProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name  string
		start int
		env   string
		want  int
	}{
		{"one CPU, no env: raised", 1, "", minProcs},
		{"one CPU, GOMAXPROCS set by the operator: kept", 1, "1", 1},
		{"already enough", 3, "", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.start)
			got := ensureProcs(func(k string) string {
				if k == "GOMAXPROCS" {
					return tc.env
				}
				return ""
			}, quiet)
			if got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
				t.Fatalf("ensureProcs = %d, GOMAXPROCS now %d; want %d", got, runtime.GOMAXPROCS(0), tc.want)
			}
		})
	}
}

func TestEnsureGC(t *testing.T) {
	oldPct := debug.SetGCPercent(100)
	oldLim := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(oldPct); debug.SetMemoryLimit(oldLim) })
	cases := []struct {
		name    string
		env     map[string]string
		pct     int
		lim     int64
		wantPct int   // in force afterwards
		wantLim int64 // in force afterwards
	}{
		{"defaults", nil, defaultGCPercent, defaultMemoryLimit, defaultGCPercent, defaultMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "100"}, -1, defaultMemoryLimit, 100, defaultMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, defaultGCPercent, -1, defaultGCPercent, math.MaxInt64},
	}
	for _, tc := range cases {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		pct, lim := ensureGC(func(k string) string { return tc.env[k] }, slog.New(slog.DiscardHandler))
		if pct != tc.pct || lim != tc.lim {
			t.Errorf("%s: ensureGC = %d, %d; want %d, %d", tc.name, pct, lim, tc.pct, tc.lim)
		}
		if got := debug.SetGCPercent(100); got != tc.wantPct {
			t.Errorf("%s: GOGC in force %d, want %d", tc.name, got, tc.wantPct)
		}
		if got := debug.SetMemoryLimit(-1); got != tc.wantLim {
			t.Errorf("%s: memory limit in force %d, want %d", tc.name, got, tc.wantLim)
		}
	}
}

func TestMemoryLimitFollowsLiveHeap(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int64
	}{
		{0, defaultMemoryLimit},
		{50 << 20, defaultMemoryLimit},          // small state: the base bounds garbage
		{300 << 20, 300<<20 + 150<<20 + 64<<20}, // large state: never below the live heap
	} {
		if got := memoryLimitFor(tc.live); got != tc.want {
			t.Errorf("memoryLimitFor(%d MiB) = %d MiB, want %d MiB", tc.live>>20, got>>20, tc.want>>20)
		}
	}
	old := debug.SetMemoryLimit(1 << 20)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); followMemoryLimit(ctx, time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) < defaultMemoryLimit {
		if time.Now().After(deadline) {
			t.Fatal("the limit was not re-derived from the live heap")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("followMemoryLimit did not stop with its context")
	}
}
