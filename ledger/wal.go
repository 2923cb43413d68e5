package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The write-ahead log makes an Append durable with one sequential write and
// one fdatasync, instead of a bbolt commit's two fsyncs over ~50 scattered
// pages. The writer appends each sealed batch to the WAL as one frame,
// syncs it, acknowledges the callers, and hands the batch to the applier,
// which writes it to bbolt (entries, Merkle nodes, index rows, checkpoint)
// in an ordinary synced transaction off the acknowledgement path. bbolt is
// therefore always a consistent, fsync'd prefix of the log, and the WAL
// holds at most the batches beyond it.
//
// Files are <Path>-wal-<16 hex digits>, numbered upwards. A frame is
//
//	"CLW2" | u64 file number | u32 payload length | u32 CRC-32C | payload
//	payload = u64 first seq | u32 count | count x (u32 length | record)
//
// where the CRC covers file number, length and payload, and a record is
// exactly the "entries" bucket value (Canonical(e) || Hash). The frame is
// the commit unit: a batch is acknowledged only after its whole frame is
// synced, so a frame that is short or fails its CRC is a write torn by a
// crash, was never acknowledged, and ends the log. One CRC over the frame
// detects a torn or corrupt record as well as a per-record CRC would, and
// rejects the batch as the unit it was written in.
//
// Preallocation: fdatasync of a file that grew must commit the file
// system's journal, which (ext4, data=ordered) also flushes every other
// file's newly allocated blocks, bbolt's included; overwriting blocks that
// already exist needs no journal commit. So once a WAL file has taken
// preallocAfter bytes (there is real traffic), a background goroutine
// zero-fills a spare file of fileSize bytes, and the WAL switches to it;
// full files are sealed and, once bbolt has durably absorbed them, recycled
// as the next spare instead of deleted. A recycled file still holds old
// frames: they carry an older file number and end the log like zeros do.
// Spares never outlive the process (Open deletes them), so a file number is
// never reused within a spare's contents.
//
// The applier releases a sealed file once a synced bbolt commit covers its
// last record. Open replays the records beyond bbolt's last seq (checking
// CRCs, seq continuity, node, hashes and the chain), commits them to bbolt
// with fsync, then deletes every WAL file and starts a fresh one.

const (
	walMagic  = "CLW2"
	walHeader = 20
	// Defaults of wal.fileSize and wal.preallocAfter.
	walFileSize      = 16 << 20
	walPreallocAfter = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type walFile struct {
	name     string
	lastSeq  uint64 // newest record in the file (0: none)
	prealloc bool   // at least fileSize bytes of written blocks: recyclable
}

// wal is owned by the WAL stage goroutine; mu guards what the applier
// (release) and the spare preparer share with it.
type wal struct {
	base   string // Path; files are base-wal-<n>
	dir    string
	noSync atomic.Bool // benchmarks' bulk loads only
	// fileSize is a preallocated file's size and the point where a file is
	// sealed; preallocAfter the bytes a growing file takes before a spare
	// is prepared. Tests shrink them before the first Append.
	fileSize, preallocAfter int64

	f        *os.File
	name     string
	num      uint64
	off      int64
	lastSeq  uint64
	prealloc bool
	buf      []byte
	broken   error // sticky: the file could not be restored after a failed write
	// onSync, when set, is told how long each fdatasync took (metrics).
	onSync func(time.Duration)

	mu        sync.Mutex
	sealed    []walFile
	spare     bool // spareName holds a zero-filled or recycled file
	preparing bool
	noSpare   bool // preparing one failed; stay with growing files
	prep      sync.WaitGroup
	closing   atomic.Bool // stops the preparer
	recycled  int         // sealed files turned into spares (for tests)
}

func walName(base string, n uint64) string {
	return fmt.Sprintf("%s-wal-%016x", base, n)
}

func (w *wal) spareName() string { return w.base + "-wal-spare" }

// walFiles lists the WAL files of base, oldest first.
func walFiles(base string) ([]string, []uint64, error) {
	m, err := filepath.Glob(base + "-wal-*")
	if err != nil {
		return nil, nil, err
	}
	type f struct {
		name string
		n    uint64
	}
	var fs []f
	for _, name := range m {
		hex := strings.TrimPrefix(name, base+"-wal-")
		n, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || len(hex) != 16 {
			continue // a spare, or not ours
		}
		fs = append(fs, f{name, n})
	}
	slices.SortFunc(fs, func(a, b f) int { return cmpU64(a.n, b.n) })
	names, nums := make([]string, len(fs)), make([]uint64, len(fs))
	for i, x := range fs {
		names[i], nums[i] = x.name, x.n
	}
	return names, nums, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// openWAL starts a fresh WAL file numbered num, deleting any spare left by
// an earlier process.
func openWAL(base string, num uint64) (*wal, error) {
	w := &wal{base: base, dir: filepath.Dir(base), num: num, fileSize: walFileSize, preallocAfter: walPreallocAfter}
	for _, name := range []string{w.spareName(), w.spareName() + ".tmp"} {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ledger: wal: %w", err)
		}
	}
	f, err := os.OpenFile(walName(base, num), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: create wal: %w", err)
	}
	if err := w.start(f, walName(base, num), false); err != nil {
		f.Close()
		os.Remove(walName(base, num))
		return nil, err
	}
	return w, nil
}

// start makes f (already named name) the current file.
func (w *wal) start(f *os.File, name string, prealloc bool) error {
	// The name must survive a crash before any record in it counts.
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("ledger: wal: %w", err)
	}
	w.f, w.name, w.off, w.lastSeq, w.prealloc = f, name, 0, 0, prealloc
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// append writes b's records as one frame and syncs it. On failure the file
// is cut back to its last good frame so the next frame follows it directly
// (a preallocated file is zeroed there instead); if that fails too the WAL
// stays broken (every later append fails) until the ledger is reopened.
func (w *wal) append(b *batch) error {
	if w.broken != nil {
		return w.broken
	}
	if len(b.reqs) == 0 {
		return nil
	}
	buf := append(w.buf[:0], walMagic...)
	buf = binary.BigEndian.AppendUint64(buf, w.num)
	buf = append(buf, make([]byte, 8)...)
	buf = binary.BigEndian.AppendUint64(buf, b.reqs[0].e.Seq)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.reqs)))
	for _, r := range b.reqs {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.rec)))
		buf = append(buf, r.rec...)
	}
	binary.BigEndian.PutUint32(buf[12:], uint32(len(buf)-walHeader))
	binary.BigEndian.PutUint32(buf[16:], frameCRC(buf))
	w.buf = buf
	_, err := w.f.WriteAt(buf, w.off)
	if err == nil && !w.noSync.Load() {
		start := time.Now()
		err = fdatasync(w.f)
		if w.onSync != nil && err == nil {
			w.onSync(time.Since(start))
		}
	}
	if err != nil {
		// After a failed write or fsync the file's tail is unknown: erase
		// it, so no half-acknowledged frame can precede the re-stamped one.
		var rerr error
		if w.prealloc {
			_, rerr = w.f.WriteAt(make([]byte, walHeader), w.off)
		} else {
			rerr = w.f.Truncate(w.off)
		}
		if rerr == nil {
			rerr = w.f.Sync()
		}
		if rerr != nil {
			w.broken = fmt.Errorf("ledger: wal unusable after failed write (%v): %w", err, rerr)
		}
		return fmt.Errorf("ledger: wal write: %w", err)
	}
	w.off += int64(len(buf))
	w.lastSeq = b.reqs[len(b.reqs)-1].e.Seq
	if len(buf) > 1<<20 {
		w.buf = nil // do not pin a bulk load's buffer
	}
	w.maybeRotate()
	return nil
}

func frameCRC(frame []byte) uint32 {
	return crc32.Update(crc32.Checksum(frame[4:16], crcTable), crcTable, frame[walHeader:])
}

// maybeRotate seals the current file when it is full, or when a growing
// file can give way to a preallocated spare, and starts a spare when one
// will be wanted.
func (w *wal) maybeRotate() {
	w.mu.Lock()
	spare := w.spare
	if !spare && !w.preparing && !w.noSpare &&
		((w.prealloc && w.off >= w.fileSize/2) || (!w.prealloc && w.off >= w.preallocAfter)) {
		w.preparing = true
		w.prep.Add(1)
		go w.prepareSpare()
	}
	w.mu.Unlock()
	if w.off < w.fileSize && (w.prealloc || !spare) {
		return
	}
	next := walName(w.base, w.num+1)
	var f *os.File
	var err error
	prealloc := false
	if spare {
		if err = os.Rename(w.spareName(), next); err == nil {
			w.mu.Lock()
			w.spare = false
			w.mu.Unlock()
			prealloc = true
			f, err = os.OpenFile(next, os.O_WRONLY, 0)
		}
	} else {
		f, err = os.OpenFile(next, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err == nil {
		old := walFile{w.name, w.lastSeq, w.prealloc || w.off >= w.fileSize}
		cur := w.f
		if err = w.start(f, next, prealloc); err == nil {
			w.num++
			cur.Close()
			w.mu.Lock()
			w.sealed = append(w.sealed, old)
			w.mu.Unlock()
			return
		}
		f.Close()
	}
	// Keep writing to the current file; the next batch tries again. A
	// half-done rotation leaves a file that Open ignores (a spare) or
	// reads as empty (its frames would carry its number).
	os.Remove(next)
}

// prepareSpare zero-fills the spare in the background, a chunk at a time
// so the device keeps serving the WAL's syncs in between.
func (w *wal) prepareSpare() {
	defer w.prep.Done()
	tmp := w.spareName() + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		zero := make([]byte, 1<<20)
		for off := int64(0); off < w.fileSize; off += int64(len(zero)) {
			if w.closing.Load() {
				return errors.New("closing")
			}
			n := min(int64(len(zero)), w.fileSize-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				return err
			}
			if err := fdatasync(f); err != nil {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
		return os.Rename(tmp, w.spareName())
	}()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.preparing = false
	if err != nil {
		os.Remove(tmp)
		w.noSpare = true
		return
	}
	w.spare = true
}

// release deletes, or recycles as the next spare, the sealed files whose
// records bbolt has durably absorbed (seq <= applied). The applier calls
// it after a synced commit.
func (w *wal) release(applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := 0
	for ; i < len(w.sealed) && w.sealed[i].lastSeq <= applied; i++ {
		s := w.sealed[i]
		if s.prealloc && !w.spare && !w.preparing && os.Rename(s.name, w.spareName()) == nil {
			w.spare = true
			w.recycled++
			continue
		}
		os.Remove(s.name)
	}
	w.sealed = w.sealed[i:]
}

// close closes the current file; with drop (bbolt holds everything) it
// deletes every WAL file. Spares go either way.
func (w *wal) close(drop bool) error {
	w.closing.Store(true)
	w.prep.Wait()
	err := w.f.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	os.Remove(w.spareName())
	if drop {
		for _, s := range w.sealed {
			os.Remove(s.name)
		}
		w.sealed = nil
		if rerr := os.Remove(w.name); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// Reading the log back. Where a file's log stops decides what may be
// dropped, so a stop is one of three things, never guessed:
//
//   - the end: zeros (preallocation), nothing, or bytes that are not a frame
//     of this file (a recycled file's older frames carry an older number);
//   - a torn tail: a partial LAST frame, cut short by a crash while it was
//     being written, whose Append never returned;
//   - corruption: a bad frame that was acknowledged. A frame is written only
//     after the one before it was synced, and a file only after the one
//     before it was sealed, so a bad frame followed by any valid frame, or
//     by any frame of a later file, was acknowledged; so was one whose
//     entries bbolt holds (bbolt takes only WAL-durable batches), and one
//     whose payload is complete and verifies (a torn write damages the
//     payload; a flipped bit can hit just the header).
//
// Open replays through the end, drops a torn tail with a warning, and on
// corruption refuses to open (WALError) with every file kept untouched, for
// the offline recovery (InspectWAL, RecoverWAL) to report on and act on.

// walFrame is one frame of a WAL file as read back, or one unreadable
// stretch before a valid frame.
type walFrame struct {
	off, end int64  // end -1: extent unknown
	first    uint64 // first seq the header claims (0: unreadable)
	count    uint32 // entries the header claims
	recs     [][]byte
	ok       bool // CRC and structure check out
	ourHdr   bool // starts with the magic and this file's number
	why      string
}

// walFileScan is one WAL file read back.
type walFileScan struct {
	name   string
	num    uint64
	size   int64
	frames []walFrame
}

// readWAL reads every WAL file of base and returns them oldest first, and
// the number the next fresh file takes.
func readWAL(base string) ([]walFileScan, uint64, error) {
	names, nums, err := walFiles(base)
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: wal: %w", err)
	}
	next := uint64(1)
	files := make([]walFileScan, len(names))
	for i, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger: wal: %w", err)
		}
		files[i] = walFileScan{name: name, num: nums[i], size: int64(len(data)), frames: scanWALFile(data, nums[i])}
		next = nums[i] + 1
	}
	return files, next, nil
}

// scanWALFile splits one file's data into frames (see above). It never
// fails: whatever it cannot read becomes a frame that is not ok.
func scanWALFile(data []byte, num uint64) []walFrame {
	var frames []walFrame
	off := 0
	for off+walHeader <= len(data) {
		hdr := data[off:]
		ours := string(hdr[:4]) == walMagic && binary.BigEndian.Uint64(hdr[4:]) == num
		n := int(binary.BigEndian.Uint32(hdr[12:]))
		fits := n >= 12 && n <= len(hdr)-walHeader
		if ours && fits && frameCRC(hdr[:walHeader+n]) == binary.BigEndian.Uint32(hdr[16:]) {
			f := walFrame{off: int64(off), end: int64(off + walHeader + n), ourHdr: true}
			first, recs, err := parsePayload(hdr[walHeader : walHeader+n])
			f.first = first
			if err != nil {
				f.why = "the frame passes its CRC but " + err.Error()
			} else {
				f.ok, f.recs = true, recs
			}
			frames = append(frames, f)
			off += walHeader + n
			continue
		}
		in, intact := intactFrame(hdr, num)
		if !ours && !intact {
			// The end of this file's log, unless a frame of it follows.
			next := findFrame(data, num, off+1)
			if next < 0 {
				break
			}
			frames = append(frames, walFrame{off: int64(off), end: int64(next),
				why: fmt.Sprintf("%d unreadable bytes where a frame should start", next-off)})
			off = next
			continue
		}
		f := walFrame{off: int64(off), end: -1, ourHdr: ours}
		if len(hdr) >= walHeader+12 {
			f.first, f.count = binary.BigEndian.Uint64(hdr[walHeader:]), binary.BigEndian.Uint32(hdr[walHeader+8:])
		}
		switch {
		case intact && !ours:
			f.why = "frame header damaged (magic or file number)"
		case intact:
			f.why = fmt.Sprintf("frame length field damaged (%d, the payload has %d)", n, in)
		case n < 12:
			f.why = fmt.Sprintf("frame length %d is too short", n)
		case !fits:
			f.why = fmt.Sprintf("frame of %d bytes extends past the end of the file (%d bytes left)", walHeader+n, len(hdr))
		default:
			f.why = "CRC mismatch"
		}
		if intact {
			n, fits = in, true
		}
		if fits {
			f.end = int64(off + walHeader + n)
			// The records of a bad frame, if its payload still parses, may
			// prove it was written whole.
			if _, recs, err := parsePayload(hdr[walHeader : walHeader+n]); err == nil {
				f.recs = recs
			}
		}
		frames = append(frames, f)
		if fits {
			off += walHeader + n
			continue
		}
		next := findFrame(data, num, off+1)
		if next < 0 {
			break
		}
		off = next
	}
	return frames
}

// parsePayload splits a frame payload into its records, checking their
// lengths and that their seqs run on from the frame's first seq.
func parsePayload(payload []byte) (first uint64, recs [][]byte, err error) {
	if len(payload) < 12 {
		return 0, nil, fmt.Errorf("payload of %d bytes", len(payload))
	}
	first, count := binary.BigEndian.Uint64(payload), binary.BigEndian.Uint32(payload[8:])
	p := payload[12:]
	if uint64(count) > uint64(len(p))/4 {
		return first, nil, fmt.Errorf("frame at seq %d: %d records cannot fit in %d bytes", first, count, len(p))
	}
	recs = make([][]byte, 0, count)
	for i := range count {
		if len(p) < 4 || uint64(binary.BigEndian.Uint32(p)) > uint64(len(p)-4) {
			return first, nil, fmt.Errorf("frame at seq %d: record %d overruns the frame", first, i)
		}
		rn := int(binary.BigEndian.Uint32(p))
		rec := p[4 : 4+rn]
		if len(rec) < seqOffset+8+HashSize || binary.BigEndian.Uint64(rec[seqOffset:]) != first+uint64(i) {
			return first, nil, fmt.Errorf("frame at seq %d: record %d out of sequence", first, i)
		}
		recs = append(recs, rec)
		p = p[4+rn:]
	}
	if len(p) != 0 {
		return first, nil, fmt.Errorf("frame at seq %d: %d trailing bytes", first, len(p))
	}
	return first, recs, nil
}

// payloadLen is the length a payload's own structure gives it (first seq,
// count, length-prefixed records), if it has one within p.
func payloadLen(p []byte) (int, bool) {
	if len(p) < 12 {
		return 0, false
	}
	count := binary.BigEndian.Uint32(p[8:])
	n := 12
	for range count {
		if len(p)-n < 4 {
			return 0, false
		}
		rn := uint64(binary.BigEndian.Uint32(p[n:]))
		if rn > uint64(len(p)-n-4) {
			return 0, false
		}
		n += 4 + int(rn)
	}
	return n, true
}

// intactFrame reports whether hdr starts a complete frame of file num whose
// only damage is in its magic, file number or length field: the stored CRC,
// computed with this file's number and the payload's own length, matches.
// Such a frame was written whole; only a flipped bit explains it. n is the
// payload length.
func intactFrame(hdr []byte, num uint64) (n int, ok bool) {
	if len(hdr) < walHeader {
		return 0, false
	}
	stored := binary.BigEndian.Uint32(hdr[16:])
	try := func(n int) bool {
		if n < 12 || n > len(hdr)-walHeader {
			return false
		}
		var h [12]byte
		binary.BigEndian.PutUint64(h[:], num)
		binary.BigEndian.PutUint32(h[8:], uint32(n))
		return crc32.Update(crc32.Checksum(h[:], crcTable), crcTable, hdr[walHeader:walHeader+n]) == stored
	}
	if n := int(binary.BigEndian.Uint32(hdr[12:])); try(n) {
		return n, true
	}
	if n, ok := payloadLen(hdr[walHeader:]); ok && try(n) {
		return n, true
	}
	return 0, false
}

// findFrame returns the offset of the first valid frame of file num at or
// after from, or -1.
func findFrame(data []byte, num uint64, from int) int {
	pat := binary.BigEndian.AppendUint64([]byte(walMagic), num)
	for from < len(data) {
		i := bytes.Index(data[from:], pat)
		if i < 0 {
			return -1
		}
		off := from + i
		hdr := data[off:]
		if len(hdr) >= walHeader {
			n := int(binary.BigEndian.Uint32(hdr[12:]))
			if n >= 12 && n <= len(hdr)-walHeader && frameCRC(hdr[:walHeader+n]) == binary.BigEndian.Uint32(hdr[16:]) {
				if _, _, err := parsePayload(hdr[walHeader : walHeader+n]); err == nil {
					return off
				}
			}
		}
		from = off + 1
	}
	return -1
}

// replayWAL commits to bbolt every WAL record beyond the stored log, after
// checking each links onto l.w (seq, prev_hash, hash, node), then deletes
// the WAL files and starts a fresh one. Open calls it after load. On
// corruption it changes nothing and returns a *WALError; in recovery
// (l.recovery set) it replays what still chains on, moves every file
// holding a damaged frame or an entry it could not replay aside, and
// reports in l.recovery.
func (l *Ledger) replayWAL() error {
	base := l.opts.Path
	files, next, err := readWAL(base)
	if err != nil {
		return err
	}
	rec := l.recovery
	p, err := l.planWAL(files, rec != nil)
	if err != nil {
		return err
	}
	if rec == nil {
		if len(p.problems) > 0 {
			return &WALError{Path: base, Problems: p.problems}
		}
		if p.chainErr != nil {
			return p.chainErr
		}
	}
	st := l.w.clone()
	var b *batch
	replayed := 0
	flush := func() error {
		if b == nil {
			return nil
		}
		b.after = st.clone()
		b.rows = buildRows(b.reqs, l.opts.SegmentSize)
		if err := l.db.Update(b.write); err != nil {
			return fmt.Errorf("ledger: wal replay: %w", err)
		}
		l.w = b.after
		replayed += len(b.reqs)
		b = nil
		return nil
	}
	for _, wr := range p.recs {
		if b == nil {
			b = &batch{}
		}
		r := &appendReq{e: wr.e, rec: wr.rec}
		r.users[0] = NormalizeUser(wr.e.From)
		if u := NormalizeUser(wr.e.To); u != r.users[0] {
			r.users[1] = u
		}
		b.reqs = append(b.reqs, r)
		st.lastHash = wr.e.Hash
		b.nodes = st.tree.push(leafHashOf(wr.rec), b.nodes)
		if len(b.reqs) >= l.opts.MaxBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	l.replayed = replayed
	if replayed > 0 {
		l.log.Info("ledger wal replayed", "entries", replayed, "size", l.w.tree.size)
	}
	for _, t := range p.torn {
		l.log.Warn("ledger wal: dropped a torn tail (a partial last frame: a write cut short by a crash, never acknowledged)",
			"file", t.File, "offset", t.Offset, "reason", t.Reason, "size", l.w.tree.size)
	}
	// Every record that can be replayed is now in bbolt, synced. A file
	// holding anything else (a damaged frame, an entry past a gap) is only
	// ever moved aside, by the recovery.
	keep := map[string]bool{}
	if rec != nil {
		keep = p.keep(files, l.w.tree.size)
	}
	stamp := l.opts.Now().UTC().Format("20060102T150405Z")
	for _, f := range files {
		if keep[f.name] {
			aside := f.name + ".corrupt-" + stamp
			if err := os.Rename(f.name, aside); err != nil {
				return fmt.Errorf("ledger: wal recovery: %w", err)
			}
			rec.MovedAside = append(rec.MovedAside, aside)
			l.log.Warn("ledger wal recovery: moved a damaged wal file aside", "file", f.name, "to", aside)
			continue
		}
		if err := os.Remove(f.name); err != nil {
			return fmt.Errorf("ledger: wal: %w", err)
		}
	}
	if rec != nil {
		p.fill(rec, l, files, true)
		if len(rec.MovedAside) > 0 {
			if err := syncDir(filepath.Dir(base)); err != nil {
				return fmt.Errorf("ledger: wal recovery: %w", err)
			}
		}
	}
	w, err := openWAL(base, next)
	if err != nil {
		return err
	}
	if lm := l.latency(); lm != nil {
		w.onSync = lm.Synced
	}
	l.wal = w
	return nil
}

var errApplyFailed = errors.New("ledger: bbolt apply failed; reopen the ledger to replay the wal")
