//go:build unix

package hub

import "syscall"

// defaultMaxConnections leaves a quarter of the descriptor limit to the
// ledger, Raft, the admin API and connections the hub dials.
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 768
	}
	return int(min(max(rl.Cur/4*3, 16), 10000))
}
