package hub

import (
	"encoding/binary"
	"net"
	"syscall"
	"time"
)

// Kernel receive timestamps (SO_TIMESTAMPNS, socket(7)): overload control
// counts a request's queueing from when the kernel took the datagram, so
// the time it waited in the socket buffer (where a flood's backlog sits
// when the read loops fall behind) counts too.

// oobSize holds one SCM_TIMESTAMPNS control message (16-byte header and a
// 16-byte timespec on 64-bit Linux), with room to spare.
const oobSize = 64

// kernelStamps switches timestamps on for c; false when it cannot.
func kernelStamps(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// stampOf reads the SCM_TIMESTAMPNS time from a datagram's control data;
// zero when there is none. Parsed by hand: syscall.ParseSocketControlMessage
// allocates, and this runs for every datagram.
func stampOf(oob []byte) time.Time {
	const hdr = syscall.SizeofCmsghdr
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > len(oob) {
			return time.Time{}
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return time.Unix(sec, nsec)
		}
		step := (l + 7) &^ 7 // CMSG_ALIGN on 64-bit
		if step > len(oob) {
			return time.Time{}
		}
		oob = oob[step:]
	}
	return time.Time{}
}
