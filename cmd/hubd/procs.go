package main

import (
	"log/slog"
	"runtime"
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
