package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// crashImage appends 10 entries that reach bbolt and 10 more that are
// acknowledged while the applier is held up, copies the files as a crash at
// that moment would leave them, and returns the copy's path and the
// acknowledged call ids by seq.
func crashImage(t *testing.T) (string, map[uint64]string) {
	t.Helper()
	dir := t.TempDir()
	l := openTest(t, testOptions(t, filepath.Join(dir, "l.db")))
	ids := map[uint64]string{}
	add := func(i int) {
		e := sampleEntry(i)
		e.CallID = fmt.Sprintf("call-%d", i)
		seq, err := l.Append(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		ids[seq] = e.CallID
	}
	for i := range 10 {
		add(i)
	}
	if _, err := l.Get(10); err != nil { // waits for the apply
		t.Fatal(err)
	}
	release := make(chan struct{})
	hook := func() error { <-release; return nil }
	l.applyHook.Store(&hook)
	for i := 10; i < 20; i++ {
		add(i)
	}
	// bbolt writes its file only when a transaction commits, and the one
	// open now is parked in the hook: the file is bbolt's state at 10.
	img := copyImage(t, filepath.Join(dir, "l.db"))
	close(release)
	return img, ids
}

// copyImage copies a ledger's bbolt file and numbered WAL files (not a
// spare) to a new directory, as a crash would leave them (the copies'
// contents are whatever the page cache held).
func copyImage(t *testing.T, path string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "l.db")
	names, _, err := walFiles(path)
	if err != nil || len(names) == 0 {
		t.Fatalf("wal files %v, %v", names, err)
	}
	files := map[string]string{path: img}
	for _, n := range names {
		files[n] = img + "-wal-" + n[len(n)-16:]
	}
	for from, to := range files {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// TestWALRotation: with tiny WAL files, the log moves onto preallocated
// spares, seals full files and recycles them; a crash image taken while
// bbolt lags (several files, zero-filled and recycled tails) replays to
// every acknowledged entry.
func TestWALRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	o.VerifyTail = -1
	l := openTest(t, o)
	l.wal.fileSize, l.wal.preallocAfter = 32<<10, 8<<10
	var next atomic.Int64
	appendAll := func(n int64) {
		next.Store(int64(l.Size()))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1); i <= n; i = next.Add(1) {
					if _, err := l.Append(context.Background(), sampleEntry(int(i))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	appendAll(1500)
	release := make(chan struct{})
	hook := func() error { <-release; return nil }
	l.applyHook.Store(&hook)
	appendAll(2000)
	if t.Failed() {
		t.FailNow()
	}
	img := copyImage(t, path)
	close(release)
	l.wal.mu.Lock()
	recycled := l.wal.recycled
	l.wal.mu.Unlock()
	names, _, _ := walFiles(img)
	t.Logf("wal file %d, %d recycled; crash image has %d wal files", l.wal.num, recycled, len(names))
	if l.wal.num < 5 || len(names) < 2 {
		t.Fatalf("expected many rotations and an image spanning files: file number %d, %d files", l.wal.num, len(names))
	}
	l2 := openTest(t, testOptions(t, img))
	if l2.Size() != 2000 || l2.replayed < 500 {
		t.Fatalf("image: size %d, replayed %d; want 2000, >= 500", l2.Size(), l2.replayed)
	}
	if err := l2.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
}

// TestWALReplay: entries acknowledged from the WAL but not yet in bbolt
// when the process died are replayed by Open, whatever a crash left after
// the last complete frame; the chain verifies, the old WAL is gone, and
// appends continue.
func TestWALReplay(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, wal string)
	}{
		{"clean", func(*testing.T, string) {}},
		{"torn frame", func(t *testing.T, wal string) {
			// The last frame again, cut short: a write interrupted by the crash.
			data, _ := os.ReadFile(wal)
			last := lastFrame(t, data)
			appendFile(t, wal, last[:len(last)-7])
		}},
		{"bad crc", func(t *testing.T, wal string) {
			data, _ := os.ReadFile(wal)
			last := bytes.Clone(lastFrame(t, data))
			last[len(last)-1] ^= 1
			appendFile(t, wal, last)
		}},
		{"recycled file", func(t *testing.T, wal string) {
			// A complete, valid frame of an older file: what a recycled
			// file holds after the new frames.
			data, _ := os.ReadFile(wal)
			last := bytes.Clone(lastFrame(t, data))
			binary.BigEndian.PutUint64(last[4:], binary.BigEndian.Uint64(last[4:])-1)
			binary.BigEndian.PutUint32(last[16:], frameCRC(last))
			appendFile(t, wal, last)
		}},
		{"zero tail", func(t *testing.T, wal string) {
			appendFile(t, wal, make([]byte, 4096))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, ids := crashImage(t)
			names, _, _ := walFiles(img)
			if len(names) != 1 {
				t.Fatalf("image wal files: %v", names)
			}
			tc.damage(t, names[0])
			o := testOptions(t, img)
			o.VerifyTail = -1
			l := openTest(t, o)
			if l.replayed != 10 || l.Size() != 20 {
				t.Fatalf("replayed %d, size %d; want 10, 20", l.replayed, l.Size())
			}
			for seq, id := range ids {
				if e, err := l.Get(seq); err != nil || e.CallID != id {
					t.Fatalf("seq %d = %v, %v; want %s", seq, e, err, id)
				}
			}
			if err := l.Verify(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			if after, _, _ := walFiles(img); len(after) != 1 || after[0] == names[0] {
				t.Fatalf("wal files after replay: %v (before %v)", after, names)
			}
			appendN(t, l, 20, 5)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _, _ := walFiles(img); len(left) != 0 {
				t.Fatalf("wal files after a clean close: %v", left)
			}
			l2 := openTest(t, o)
			if l2.Size() != 25 || l2.replayed != 0 {
				t.Fatalf("reopened: size %d, replayed %d", l2.Size(), l2.replayed)
			}
		})
	}
}

// TestWALReplayRejectsTampering: a complete WAL frame whose record no
// longer hashes to its stored hash (CRC recomputed, so only the chain check
// can catch it) fails Open with a broken chain at that seq.
func TestWALReplayRejectsTampering(t *testing.T) {
	img, _ := crashImage(t)
	names, _, _ := walFiles(img)
	data, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	// Find the frame starting at seq 11 and flip a byte of its record
	// (past seq and time, well before the hashes).
	off := 0
	for {
		n := int(binary.BigEndian.Uint32(data[off+12:]))
		payload := data[off+walHeader : off+walHeader+n]
		if binary.BigEndian.Uint64(payload) == 11 { // one entry per frame: appended one by one
			rec := payload[12+4:]
			rec[seqOffset+40] ^= 0xff
			binary.BigEndian.PutUint32(data[off+16:], frameCRC(data[off:off+walHeader+n]))
			break
		}
		off += walHeader + n
	}
	if err := os.WriteFile(names[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), testOptions(t, img))
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Seq != 11 {
		t.Fatalf("Open = %v, want a broken chain at seq 11", err)
	}
}

// TestApplyFailure: when bbolt cannot take a batch that the WAL already
// made durable, new appends fail, Close keeps the WAL, and Open replays it.
func TestApplyFailure(t *testing.T) {
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.VerifyTail = -1
	l := openTest(t, o)
	appendN(t, l, 0, 5)
	errDisk := errors.New("disk on fire")
	hook := func() error { return errDisk }
	l.applyHook.Store(&hook)
	acked := 5
	var err error
	for i := 5; i < 100; i++ {
		if _, err = l.Append(context.Background(), sampleEntry(i)); err != nil {
			break
		}
		acked++
	}
	if !errors.Is(err, errApplyFailed) || !errors.Is(err, errDisk) {
		t.Fatalf("Append after a failed apply = %v", err)
	}
	if _, err := l.Get(uint64(acked)); !errors.Is(err, errApplyFailed) {
		t.Fatalf("Get of an unapplied entry = %v", err)
	}
	l.Close()
	l2 := openTest(t, o)
	if l2.Size() != uint64(acked) {
		t.Fatalf("size %d after replay, %d acknowledged", l2.Size(), acked)
	}
	if err := l2.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	appendN(t, l2, acked, 3)
}

// lastFrame returns the last complete frame of a WAL file's data.
func lastFrame(t *testing.T, data []byte) []byte {
	t.Helper()
	var last []byte
	for off := 0; off+walHeader <= len(data) && string(data[off:off+4]) == walMagic; {
		n := walHeader + int(binary.BigEndian.Uint32(data[off+12:]))
		last = data[off : off+n]
		off += n
	}
	if last == nil {
		t.Fatal("no frame in the wal")
	}
	return last
}

func appendFile(t *testing.T, name string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
