//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every SIP
// connection, ledger file and Raft peer is a descriptor, and the usual soft
// default (1,024) is far below what the hard limit allows. The hub sizes its
// connection caps from the result.
func raiseFileLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("read the file descriptor limit", "err", err)
		return
	}
	if rl.Cur < rl.Max {
		old := rl.Cur
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("raise the file descriptor limit", "soft", old, "hard", rl.Max, "err", err)
			return
		}
	}
	log.Info("file descriptor limit", "soft", rl.Cur, "hard", rl.Max)
}
