package main

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// minProcs is the fewest Ps hubd runs with. Under `taskset -c 0` (or any
// one-CPU affinity mask or cgroup quota) Go would pick GOMAXPROCS=1; then a
// goroutine blocked in fdatasync (the ledger's WAL and bbolt commits, ~0.1-2
// ms each, several per millisecond under load) holds the only P until
// sysmon retakes it, 20 µs to 10 ms later, and the SIP plane stalls behind
// every sync: issue 10 measured the pinned hub ~35% idle with 1,200
// goroutines runnable, failing at 4,000 MESSAGE/s. With a second P the
// scheduler keeps running goroutines on another thread while one sits in
// the kernel; on one CPU the two threads just share it.
const minProcs = 2

// ensureProcs raises GOMAXPROCS to minProcs unless the operator set
// GOMAXPROCS in the environment (then that value stands). It returns the
// value in force.
func ensureProcs(getenv func(string) string, log *slog.Logger) int {
	n := runtime.GOMAXPROCS(0)
	if getenv("GOMAXPROCS") != "" || n >= minProcs {
		return n
	}
	runtime.GOMAXPROCS(minProcs)
	log.Info("GOMAXPROCS raised so a blocking fsync cannot stall the SIP plane", "from", n, "to", minProcs,
		"cpus", runtime.NumCPU())
	return minProcs
}

// GC settings hubd runs with unless the operator sets GOGC or GOMEMLIMIT.
// The SIP plane allocates ~13 KB per forwarded MESSAGE, almost all of it
// garbage within a millisecond, over a live heap of a few tens of MB: with
// Go's default GOGC=100 the collector runs every few thousand messages and
// its assists land on the request goroutines (issue 10's profile: ~18% of
// the CPU in allocation and GC). A larger GOGC collects less often; the
// soft memory limit keeps the larger heap from growing past what the node
// is sized for (the collector works harder near it instead), so a flood
// cannot take the process past it through garbage alone. The limit follows
// the live heap (followMemoryLimit): replicated state can legitimately
// hold more than the base (stored messages alone may take 256 MiB), and a
// limit below the live heap would have the collector run without pause.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 192 << 20
)

// memoryLimitFor is the soft limit for a live heap of live bytes: the base,
// or room for the live heap plus half of it again and 64 MiB of garbage.
func memoryLimitFor(live uint64) int64 {
	return max(int64(defaultMemoryLimit), int64(live+live/2)+64<<20)
}

// followMemoryLimit re-derives the soft memory limit from the live heap
// every interval until ctx ends (only when ensureGC set the limit).
func followMemoryLimit(ctx context.Context, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			debug.SetMemoryLimit(memoryLimitFor(sample[0].Value.Uint64()))
		}
	}
}

// ensureGC applies the defaults above where the environment says nothing;
// it returns the GOGC and memory limit in force (-1: left to the runtime).
func ensureGC(getenv func(string) string, log *slog.Logger) (gcPercent int, memLimit int64) {
	gcPercent, memLimit = -1, -1
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
		gcPercent = defaultGCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
		memLimit = defaultMemoryLimit
	}
	if gcPercent > 0 || memLimit > 0 {
		log.Debug("GC settings", "gogc", gcPercent, "memory_limit", memLimit)
	}
	return gcPercent, memLimit
}
