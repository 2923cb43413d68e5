//go:build !linux

package hub

import (
	"net"
	"time"
)

const oobSize = 0

// kernelStamps: receive timestamps are read on Linux only; elsewhere the
// queueing delay counts from the read loop.
func kernelStamps(*net.UDPConn) bool { return false }

func stampOf([]byte) time.Time { return time.Time{} }
