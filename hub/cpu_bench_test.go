package hub

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the whole test process has
// used so far. The MESSAGE benchmarks divide its growth by the messages
// sent: issue 10's "CPU per forwarded MESSAGE". In-process it also counts
// the generator and the responder (both raw, a few µs per message), so it
// is an upper bound on the hub's own share.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
