package load

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, fixed
// at 100 by the Linux ABI on every architecture Go supports (sysconf
// (_SC_CLK_TCK) would need cgo).
const userHZ = 100

// ProcSample is one reading of a process (and, with a tree, its
// descendants): CPU time spent in user and kernel mode, and memory.
type ProcSample struct {
	CPU   time.Duration
	Mem   int64 // bytes: VmRSS of one process, the sum of Pss over a tree
	Procs int
}

// parseStat reads utime+stime (in ticks) and the parent PID from the
// contents of /proc/PID/stat (proc(5): the command may contain spaces and
// parentheses, so fields are counted after the last ')').
func parseStat(b []byte) (ticks uint64, ppid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat: no command field")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] state, f[1] ppid, ... f[11] utime, f[12] stime
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command", len(f))
	}
	p, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, fmt.Errorf("stat ppid: %w", err)
	}
	u, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat utime: %w", err)
	}
	s, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat stime: %w", err)
	}
	return u + s, p, nil
}

// parseKB finds "Name:   123 kB" in a /proc status or smaps_rollup file.
func parseKB(b []byte, name string) (int64, bool) {
	key := []byte(name + ":")
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if !bytes.HasPrefix(line, key) {
			continue
		}
		f := bytes.Fields(line[len(key):])
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return n * 1024, true
	}
	return 0, false
}

// ReadProc samples pid; with tree, also every descendant (Kamailio forks
// its workers), summing CPU and proportional memory (Pss: shared memory
// counted once across the tree, not once per process as VmRSS would).
func ReadProc(pid int, tree bool) (ProcSample, error) {
	pids := []int{pid}
	if tree {
		pids = descendants(pid)
	}
	var s ProcSample
	for i, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			if i == 0 {
				return s, fmt.Errorf("read process %d: %w", p, err)
			}
			continue // a child that just ended
		}
		t, _, err := parseStat(b)
		if err != nil {
			return s, fmt.Errorf("process %d: %w", p, err)
		}
		s.CPU += time.Duration(t) * time.Second / userHZ
		s.Procs++
		if tree {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p)); err == nil {
				if kb, ok := parseKB(b, "Pss"); ok {
					s.Mem += kb
					continue
				}
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p)); err == nil {
			if kb, ok := parseKB(b, "VmRSS"); ok {
				s.Mem += kb
			}
		}
	}
	return s, nil
}

// descendants lists pid and all its descendants, by one scan of /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		_, pp, err := parseStat(b)
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		children[pp] = append(children[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out) && i < 100000; i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
