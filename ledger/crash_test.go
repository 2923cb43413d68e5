package ledger

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "LEDGER_CRASH_CHILD_PATH"

// TestCrashChild is the child half of TestCrashRecovery: it appends from
// several goroutines forever, printing "seq callid" once Append returned.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only runs as TestCrashRecovery's child")
	}
	o := testOptions(t, path)
	o.CheckpointEvery = 100
	o.CheckpointInterval = 20 * time.Millisecond
	l, err := Open(context.Background(), o)
	if err != nil {
		fmt.Println("open error:", err)
		os.Exit(3)
	}
	// Tiny WAL files: kills also land around rotation, preallocation and
	// recycling.
	l.wal.fileSize, l.wal.preallocAfter = 64<<10, 16<<10
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	round := os.Getenv("LEDGER_CRASH_ROUND")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := sampleEntry(i)
				e.CallID = fmt.Sprintf("r%s-w%d-%d", round, w, i)
				seq, err := l.Append(context.Background(), e)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", seq, e.CallID)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashRecovery SIGKILLs an appending child at random moments; after
// each kill every acknowledged entry is present with its content, the whole
// chain and Merkle tree verify, and appends go on. Kills come soon after the
// first acknowledgement and often, so they land while the WAL is ahead of
// bbolt (acknowledged, not yet applied): the test requires that Open had to
// replay the WAL after at least one of them.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[uint64]string{}
	replays := 0
	for round := range 12 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, "LEDGER_CRASH_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first acknowledgement, then kill at a random moment.
		deadline := time.After(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		started := false
	read:
		for {
			select {
			case ln, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited early: %s", round, stderr.String())
				}
				seqStr, callID, _ := strings.Cut(ln, " ")
				seq, err := strconv.ParseUint(seqStr, 10, 64)
				if err != nil {
					t.Fatalf("round %d: child said %q", round, ln)
				}
				acked[seq] = callID
				started = true
			case <-deadline:
				if started {
					break read
				}
				deadline = time.After(time.Duration(1+rng.IntN(20)) * time.Millisecond)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for ln := range lines { // acknowledgements already printed still count
			seqStr, callID, _ := strings.Cut(ln, " ")
			if seq, err := strconv.ParseUint(seqStr, 10, 64); err == nil {
				acked[seq] = callID
			}
		}
		cmd.Wait()

		o := testOptions(t, path)
		o.VerifyTail = -1
		l, err := Open(context.Background(), o)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		for seq, callID := range acked {
			e, err := l.Get(seq)
			if err != nil || e.CallID != callID {
				t.Fatalf("round %d: acknowledged seq %d (%s) lost: %v %v", round, seq, callID, e, err)
			}
		}
		if err := l.Verify(context.Background(), 1); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		t.Logf("round %d: %d acknowledged, size %d, %d replayed from the wal", round, len(acked), l.Size(), l.replayed)
		if l.replayed > 0 {
			replays++
		}
		l.Close()
	}
	if len(acked) == 0 {
		t.Fatal("child acknowledged nothing")
	}
	if replays == 0 {
		t.Fatal("no kill landed between a WAL sync and its bbolt apply; the test proves nothing about replay")
	}
}
