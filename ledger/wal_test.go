package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
	// Until the first apply after the hook fails (applyEvery paces
	// applies, so that takes up to applyEvery of appends).
	for i := 5; i < 5000; i++ {
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

// walFrameOffsets lists the offsets of the valid frames of a WAL file's
// data, walking the length fields.
func walFrameOffsets(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off+walHeader <= len(data) && string(data[off:off+4]) == walMagic; {
		offs = append(offs, off)
		off += walHeader + int(binary.BigEndian.Uint32(data[off+12:]))
	}
	return offs
}

// appliedImage appends n entries, waits until bbolt holds them all, and
// copies the files: the WAL still holds every frame, all of them applied.
func appliedImage(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "l.db")
	l := openTest(t, testOptions(t, path))
	appendN(t, l, 0, n)
	if _, err := l.Get(uint64(n)); err != nil {
		t.Fatal(err)
	}
	return copyImage(t, path)
}

// frameOf returns the offset of the frame starting at seq (one entry per
// frame: the images append one at a time).
func frameOf(t *testing.T, data []byte, seq uint64) int {
	t.Helper()
	for _, off := range walFrameOffsets(t, data) {
		if binary.BigEndian.Uint64(data[off+walHeader:]) == seq {
			return off
		}
	}
	t.Fatalf("no frame starts at seq %d", seq)
	return 0
}

// TestWALCorruptRefuses: a damaged WAL frame that was acknowledged (a valid
// frame or a later file follows it, bbolt holds its entries, or its payload
// is complete) fails Open with a WALError naming the file and offset; the
// WAL files are left byte for byte as they were and bbolt is not touched.
// Before, each of these opened with a "torn tail" warning and dropped every
// entry from the damaged frame on, acknowledged or not.
func TestWALCorruptRefuses(t *testing.T) {
	cases := []struct {
		name    string
		image   func(t *testing.T) string
		seq     uint64 // the damaged frame's first seq
		damage  func(t *testing.T, data []byte, off int) []byte
		want    string // in the reason
		inBbolt bool
	}{
		{"payload bit flip in an applied first frame, valid frames after", func(t *testing.T) string { img, _ := crashImage(t); return img }, 1,
			func(t *testing.T, data []byte, off int) []byte { data[off+walHeader+20] ^= 0x10; return data }, "a valid frame follows", true},
		{"payload bit flip in an unapplied frame, valid frames after", func(t *testing.T) string { img, _ := crashImage(t); return img }, 15,
			func(t *testing.T, data []byte, off int) []byte { data[off+walHeader+40] ^= 1; return data }, "a valid frame follows", false},
		{"payload bit flip in the applied last frame", func(t *testing.T) string { return appliedImage(t, 20) }, 20,
			func(t *testing.T, data []byte, off int) []byte { data[off+walHeader+40] ^= 1; return data }, "bbolt already holds seq 20", true},
		{"magic bit flip in an unapplied frame", func(t *testing.T) string { img, _ := crashImage(t); return img }, 15,
			func(t *testing.T, data []byte, off int) []byte { data[off+1] ^= 4; return data }, "header damaged", false},
		{"file number bit flip in the unapplied last frame", func(t *testing.T) string { img, _ := crashImage(t); return img }, 20,
			func(t *testing.T, data []byte, off int) []byte { data[off+11] ^= 1; return data }, "header damaged", false},
		{"length field bit flip in the unapplied last frame", func(t *testing.T) string { img, _ := crashImage(t); return img }, 20,
			func(t *testing.T, data []byte, off int) []byte { data[off+13] ^= 8; return data }, "length field damaged", false},
		{"CRC field bit flip in the unapplied last frame", func(t *testing.T) string { img, _ := crashImage(t); return img }, 20,
			func(t *testing.T, data []byte, off int) []byte { data[off+17] ^= 1; return data }, "payload is complete", false},
		{"zeroed bytes where a frame starts, valid frames after", func(t *testing.T) string { img, _ := crashImage(t); return img }, 12,
			func(t *testing.T, data []byte, off int) []byte { clear(data[off : off+walHeader+8]); return data }, "a valid frame follows", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.image(t)
			names, _, _ := walFiles(img)
			data, err := os.ReadFile(names[0])
			if err != nil {
				t.Fatal(err)
			}
			off := frameOf(t, data, tc.seq)
			data = tc.damage(t, data, off)
			if err := os.WriteFile(names[0], data, 0o600); err != nil {
				t.Fatal(err)
			}
			dbBefore, _ := os.ReadFile(img)
			_, err = Open(context.Background(), testOptions(t, img))
			var we *WALError
			if !errors.As(err, &we) || !errors.Is(err, ErrWALCorrupt) {
				t.Fatalf("Open = %v, want a WALError", err)
			}
			p := we.Problems[0]
			if p.File != names[0] || p.Offset != int64(off) || !strings.Contains(p.Reason, tc.want) || p.InBbolt != tc.inBbolt {
				t.Fatalf("problem %+v, want file %s offset %d, reason with %q, in bbolt %v", p, names[0], off, tc.want, tc.inBbolt)
			}
			if msg := err.Error(); !strings.Contains(msg, names[0]) || !strings.Contains(msg, fmt.Sprintf("offset %d", off)) || !strings.Contains(msg, fmt.Sprintf("seq %d", tc.seq)) {
				t.Fatalf("error %q does not name the file, offset and seq", msg)
			}
			after, _, _ := walFiles(img)
			if len(after) != 1 || after[0] != names[0] {
				t.Fatalf("wal files after the refusal: %v, want %v", after, names)
			}
			if got, _ := os.ReadFile(names[0]); !bytes.Equal(got, data) {
				t.Fatal("the damaged wal file was changed")
			}
			if got, _ := os.ReadFile(img); !bytes.Equal(got, dbBefore) {
				t.Fatal("bbolt was changed by a refused Open")
			}
		})
	}
}

// TestWALTornTail: a partial last frame whose entries bbolt does not hold,
// with nothing after it, is a write cut short by a crash: Open drops it with
// a warning naming the file and offset, and starts with every entry before
// it.
func TestWALTornTail(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, wal string)
	}{
		{"short write in a growing file", func(t *testing.T, wal string) {
			data, _ := os.ReadFile(wal)
			last := lastFrame(t, data)
			appendFile(t, wal, last[:len(last)/2])
		}},
		{"partial frame in a preallocated file", func(t *testing.T, wal string) {
			// The frame's second half never reached the disk: zeros, as
			// preallocation left them, and more zeros after.
			data, _ := os.ReadFile(wal)
			last := bytes.Clone(lastFrame(t, data))
			clear(last[len(last)/2:])
			appendFile(t, wal, append(last, make([]byte, 8192)...))
		}},
		{"header only", func(t *testing.T, wal string) {
			data, _ := os.ReadFile(wal)
			appendFile(t, wal, lastFrame(t, data)[:walHeader+3])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, ids := crashImage(t)
			names, _, _ := walFiles(img)
			data, _ := os.ReadFile(names[0])
			tornAt := len(data)
			tc.damage(t, names[0])
			var logs bytes.Buffer
			o := testOptions(t, img)
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			l := openTest(t, o)
			if l.Size() != 20 || l.replayed != 10 {
				t.Fatalf("size %d, replayed %d; want 20, 10", l.Size(), l.replayed)
			}
			for seq, id := range ids {
				if e, err := l.Get(seq); err != nil || e.CallID != id {
					t.Fatalf("seq %d = %v, %v", seq, e, err)
				}
			}
			if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "torn tail") ||
				!strings.Contains(s, names[0]) || !strings.Contains(s, fmt.Sprintf("offset=%d", tornAt)) {
				t.Fatalf("no warning naming the torn frame:\n%s", s)
			}
		})
	}
}

// TestWALTornBeforeLaterFile: a bad last frame of a file is not torn when a
// later file holds a frame: the file was sealed after its last append
// succeeded.
func TestWALTornBeforeLaterFile(t *testing.T) {
	img, _ := crashImage(t)
	names, nums, _ := walFiles(img)
	data, _ := os.ReadFile(names[0])
	last := bytes.Clone(lastFrame(t, data))
	last[len(last)-1] ^= 1 // CRC mismatch, as a torn write would leave it
	appendFile(t, names[0], last)
	later := bytes.Clone(last)
	binary.BigEndian.PutUint64(later[4:], nums[0]+1)
	if err := os.WriteFile(walName(img, nums[0]+1), later, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), testOptions(t, img))
	var we *WALError
	if !errors.As(err, &we) || !strings.Contains(we.Problems[0].Reason, "a later wal file") || we.Problems[0].File != names[0] {
		t.Fatalf("Open = %v, want a WALError for %s citing the later file", err, names[0])
	}
}

// TestWALRecover: InspectWAL reports what would be replayed, dropped and
// lost without changing anything; RecoverWAL replays what still chains on,
// moves the damaged file aside, records the recovery in the ledger, and the
// ledger then opens and verifies.
func TestWALRecover(t *testing.T) {
	cases := []struct {
		name                 string
		seq                  uint64 // frame to damage
		replayFrom, replayTo uint64
		lostFrom, lostTo     uint64
		size                 uint64 // after the recovery, its own entry included
	}{
		// The case: the damaged frame is applied, so nothing is lost.
		{"applied frame", 1, 11, 20, 0, 0, 21},
		// The chain cannot go on past an unreadable acknowledged frame.
		{"unapplied frame", 15, 11, 14, 15, 20, 15},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, ids := crashImage(t)
			names, _, _ := walFiles(img)
			data, _ := os.ReadFile(names[0])
			off := frameOf(t, data, tc.seq)
			data[off+walHeader+40] ^= 1
			os.WriteFile(names[0], data, 0o600)
			dbBefore, _ := os.ReadFile(img)
			o := testOptions(t, img)

			rep, err := InspectWAL(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			rep.WriteText(&text)
			t.Logf("dry run:\n%s", text.String())
			if rep.Done || len(rep.Problems) != 1 || rep.Problems[0].Offset != int64(off) ||
				rep.ReplayFrom != tc.replayFrom || rep.ReplayTo != tc.replayTo || rep.LostFrom != tc.lostFrom || rep.LostTo != tc.lostTo ||
				len(rep.MovedAside) != 1 || rep.Applied != 10 {
				t.Fatalf("dry run report %+v", rep)
			}
			for _, want := range []string{names[0], fmt.Sprintf("offset %d", off), "CORRUPT", "dry run: nothing changed", "would replay"} {
				if !strings.Contains(text.String(), want) {
					t.Fatalf("dry run text lacks %q", want)
				}
			}
			if tc.lostTo > 0 && !strings.Contains(text.String(), fmt.Sprintf("WOULD LOSE seq %d..%d", tc.lostFrom, tc.lostTo)) {
				t.Fatal("dry run text does not say what would be lost")
			}
			if got, _ := os.ReadFile(img); !bytes.Equal(got, dbBefore) {
				t.Fatal("the dry run changed bbolt")
			}
			if got, _ := os.ReadFile(names[0]); !bytes.Equal(got, data) {
				t.Fatal("the dry run changed the wal")
			}

			rep, err = RecoverWAL(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Done || rep.RecordSeq != tc.size || len(rep.MovedAside) != 1 {
				t.Fatalf("recovery report %+v", rep)
			}
			if kept, err := os.ReadFile(rep.MovedAside[0]); err != nil || !bytes.Equal(kept, data) {
				t.Fatalf("the damaged file was not kept aside as it was: %v", err)
			}
			if left, _, _ := walFiles(img); len(left) != 0 {
				t.Fatalf("wal files after recovery: %v", left)
			}
			l := openTest(t, o)
			if l.Size() != tc.size {
				t.Fatalf("size %d after recovery, want %d", l.Size(), tc.size)
			}
			if err := l.Verify(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			for seq, id := range ids {
				if seq >= tc.size {
					continue
				}
				if e, err := l.Get(seq); err != nil || e.CallID != id {
					t.Fatalf("seq %d = %v, %v; want %s", seq, e, err, id)
				}
			}
			e, err := l.Get(tc.size)
			if err != nil || e.Kind != KindAdmin || e.Method != "WalRecover" || !strings.Contains(e.Reason, fmt.Sprintf("offset %d", off)) {
				t.Fatalf("recovery entry = %+v, %v", e, err)
			}
		})
	}
}

// FuzzScanWAL: reading any bytes as a WAL file never panics, and what it
// reports stays inside the data.
func FuzzScanWAL(f *testing.F) {
	b := &batch{reqs: []*appendReq{{e: &Entry{Seq: 1}, rec: make([]byte, seqOffset+8+HashSize)}}}
	binary.BigEndian.PutUint64(b.reqs[0].rec[seqOffset:], 1)
	buf := append([]byte(walMagic), make([]byte, 16)...)
	binary.BigEndian.PutUint64(buf[4:], 1)
	buf = binary.BigEndian.AppendUint64(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.reqs[0].rec)))
	buf = append(buf, b.reqs[0].rec...)
	binary.BigEndian.PutUint32(buf[12:], uint32(len(buf)-walHeader))
	binary.BigEndian.PutUint32(buf[16:], frameCRC(buf))
	f.Add(buf)
	f.Add(append(bytes.Clone(buf), buf[:30]...))
	f.Add(append(make([]byte, 40), buf...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		frames := scanWALFile(data, 1)
		prev := int64(-1)
		for _, fr := range frames {
			if fr.off <= prev || fr.off >= int64(len(data)) || fr.end > int64(len(data)) {
				t.Fatalf("frame %+v out of order or outside %d bytes", fr, len(data))
			}
			if fr.ok && fr.end <= fr.off {
				t.Fatalf("valid frame %+v without an extent", fr)
			}
			prev = fr.off
		}
	})
}
