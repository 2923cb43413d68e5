package ledger

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the size, when it grew) without the
// other metadata a full fsync also writes.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
