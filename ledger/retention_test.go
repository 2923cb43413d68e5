package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sampleTime is the Time of sampleEntry(i).
func sampleTime(i int) time.Time { return time.Unix(0, 1_700_000_000_000_000_000+int64(i)*1000) }

func pruneOptions(t *testing.T, path string) Options {
	o := testOptions(t, path)
	o.SegmentSize = 16
	o.CheckpointEvery = 5
	return o
}

// prunedLedger appends 50 entries, signs a checkpoint, and cuts everything
// before sampleEntry(40): segments 1-16 and 17-32 (33-48 holds newer ones).
func prunedLedger(t *testing.T, path string) (*Ledger, *Checkpoint) {
	t.Helper()
	l := openTest(t, pruneOptions(t, path))
	appendN(t, l, 0, 50)
	cpOld, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Prune(context.Background(), sampleTime(40))
	if err != nil || n != 32 {
		t.Fatalf("Prune = %d, %v; want 32 entries cut", n, err)
	}
	return l, cpOld
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	l, cpOld := prunedLedger(t, path)

	if got := l.FirstSeq(); got != 33 {
		t.Fatalf("FirstSeq = %d, want 33", got)
	}
	a, err := l.LatestAnchor()
	if err != nil || a.FirstSeq != 33 || a.TreeSize != 50 || !bytes.Equal(a.Root, cpOld.Root) {
		t.Fatalf("anchor = %+v, %v", a, err)
	}
	if l.Size() != 51 {
		t.Fatalf("size %d, want 51 (50 + anchor entry)", l.Size())
	}
	ae, err := l.Get(51)
	if err != nil || ae.Kind != KindAnchor || !bytes.Equal(ae.Body, a.Note) {
		t.Fatalf("anchor entry = %+v, %v", ae, err)
	}
	e33, _ := l.Get(33)
	if !bytes.Equal(e33.PrevHash, a.PrevHash) {
		t.Fatal("anchor prev_hash differs from entry 33's")
	}
	// Nothing more to cut with the same cutoff.
	if n, err := l.Prune(ctx, sampleTime(40)); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v", n, err)
	}

	// Pruned entries and their proofs are gone, precisely.
	for _, seq := range []uint64{1, 16, 32} {
		if _, err := l.Get(seq); !errors.Is(err, ErrPruned) || !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%d) err = %v, want ErrPruned and ErrNotFound", seq, err)
		}
		if _, err := l.InclusionProof(seq, 50); !errors.Is(err, ErrPruned) {
			t.Fatalf("InclusionProof(%d) err = %v, want ErrPruned", seq, err)
		}
	}
	checkStorageCut(t, l, 33)

	// Old roots and checkpoints stay valid; retained proofs verify against
	// the old checkpoint and a new one.
	if root, err := l.RootAt(50); err != nil || !bytes.Equal(root, cpOld.Root) {
		t.Fatalf("RootAt(50) = %x, %v; want the old checkpoint's root", root, err)
	}
	for i := 50; i < 55; i++ { // more after the cut: seqs 52..56
		if _, err := l.Append(ctx, sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	cpNew, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(33); seq <= cpNew.Size; seq++ {
		e, err := l.Get(seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range []*Checkpoint{cpOld, cpNew} {
			if seq > cp.Size {
				continue
			}
			p, err := l.InclusionProof(seq, cp.Size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", seq, cp.Size, err)
			}
			if err := VerifyEntryInclusion(e, cp.Size, p, cp.Root); err != nil {
				t.Fatalf("seq %d in checkpoint %d: %v", seq, cp.Size, err)
			}
		}
	}
	cons, err := l.ConsistencyProof(cpOld.Size, cpNew.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(cpOld.Size, cpNew.Size, cpOld.Root, cpNew.Root, cons); err != nil {
		t.Fatal(err)
	}

	// Filters see only retained entries, and agree with Match.
	for _, f := range []Filter{{}, {Network: "neta"}, {User: "sip:u1@a.example"}, {Since: sampleTime(10), Until: sampleTime(45)}, {FromSeq: 3, ToSeq: 40}} {
		var got []uint64
		if err := l.Export(ctx, f, func(e *Entry) error { got = append(got, e.Seq); return nil }); err != nil {
			t.Fatalf("Export(%+v): %v", f, err)
		}
		var want []uint64
		for seq := uint64(33); seq <= l.Size(); seq++ {
			if e, _ := l.Get(seq); f.Match(e) {
				want = append(want, seq)
			}
		}
		if !slicesEqual(got, want) {
			t.Fatalf("Export(%+v) = %v, want %v", f, got, want)
		}
	}

	// The remaining log verifies: stored, exported, reopened.
	if err := l.Verify(ctx, 1); err != nil {
		t.Fatal(err)
	}
	out := exportJSONL(t, l, Filter{})
	rep, err := VerifyExport(bytes.NewReader(out), nil)
	if err != nil {
		t.Fatalf("VerifyExport: %v", err)
	}
	if rep.Entries != int(cpNew.Size-32) || rep.Unproven != 0 {
		t.Fatalf("report %+v", rep)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	o := pruneOptions(t, path)
	o.VerifyTail = -1
	l2 := openTest(t, o)
	if l2.FirstSeq() != 33 || l2.Size() != cpNew.Size {
		t.Fatalf("reopened: first %d size %d", l2.FirstSeq(), l2.Size())
	}
	if err := l2.Verify(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkStorageCut: no entry, index row or unneeded Merkle node below first.
func checkStorageCut(t *testing.T, l *Ledger, first uint64) {
	t.Helper()
	err := l.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bEntries).Cursor().First(); k == nil || binary.BigEndian.Uint64(k) != first {
			t.Errorf("first stored entry key %x, want %d", k, first)
		}
		for _, b := range [][]byte{bIdxNet, bIdxUser, bIdxNetE, bIdxUserE} {
			tx.Bucket(b).ForEach(func(k, v []byte) error {
				seqs, err := appendRowSeqs(nil, binary.BigEndian.Uint64(k[len(k)-8:]), v, 0, ^uint64(0))
				if err != nil || seqs[0] < first {
					t.Errorf("%s row %x: seqs %v, %v", b, k, seqs, err)
				}
				return nil
			})
		}
		tx.Bucket(bIdxTime).ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k[8:]) < first {
				t.Errorf("time row for seq %d survived", binary.BigEndian.Uint64(k[8:]))
			}
			return nil
		})
		p := first - 1
		tx.Bucket(bMerkle).ForEach(func(k, _ []byte) error {
			level, idx := uint(k[0]), binary.BigEndian.Uint64(k[1:])
			if ((idx>>1)+1)<<(level+1) <= p {
				t.Errorf("merkle node (%d,%d) under the cut survived", level, idx)
			}
			return nil
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPruneForgedAnchor: an anchor not signed by the node's key, or a cut
// without an anchor, is a broken chain; in an export it fails verification.
func TestPruneForgedAnchor(t *testing.T) {
	ctx := context.Background()
	forge := func(t *testing.T, note []byte) []byte {
		a, err := ParseAnchor(note)
		if err != nil {
			t.Fatal(err)
		}
		if err := SignAnchor(a, "clearhub/n1", testKey(2)); err != nil {
			t.Fatal(err)
		}
		return a.Note
	}
	t.Run("store", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			tamper func(t *testing.T, ab *bolt.Bucket)
		}{
			{"foreign key", func(t *testing.T, ab *bolt.Bucket) {
				if err := ab.Put(seqKey(33), forge(t, ab.Get(seqKey(33)))); err != nil {
					t.Fatal(err)
				}
			}},
			{"anchor removed", func(t *testing.T, ab *bolt.Bucket) {
				if err := ab.Delete(seqKey(33)); err != nil {
					t.Fatal(err)
				}
			}},
			{"anchor moved", func(t *testing.T, ab *bolt.Bucket) {
				note := bytes.Clone(ab.Get(seqKey(33)))
				ab.Delete(seqKey(33))
				if err := ab.Put(seqKey(17), note); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "l.db")
				l, _ := prunedLedger(t, path)
				l.Close()
				db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				db.Update(func(tx *bolt.Tx) error { c.tamper(t, tx.Bucket(bAnchors)); return nil })
				db.Close()
				_, err = Open(ctx, pruneOptions(t, path))
				if !errors.Is(err, ErrBrokenChain) {
					t.Fatalf("Open after %s: %v, want a broken chain", c.name, err)
				}
			})
		}
	})
	t.Run("export", func(t *testing.T) {
		l, _ := prunedLedger(t, filepath.Join(t.TempDir(), "l.db"))
		lines := splitLines(exportJSONL(t, l, Filter{}))
		ai := -1
		for i, ln := range lines {
			if bytes.Contains(ln, []byte(`"type":"anchor"`)) {
				ai = i
			}
		}
		if ai < 0 {
			t.Fatal("export has no anchor line")
		}
		var al jAnchor
		if err := json.Unmarshal(lines[ai], &al); err != nil {
			t.Fatal(err)
		}
		rewrite := func(f func(a *jAnchor)) []byte {
			c := al
			f(&c)
			b, _ := json.Marshal(c)
			out := append([][]byte(nil), lines...)
			out[ai] = b
			return append(bytes.Join(out, []byte("\n")), '\n')
		}
		withoutLine := func(i int) []byte {
			out := append(append([][]byte(nil), lines[:i]...), lines[i+1:]...)
			return append(bytes.Join(out, []byte("\n")), '\n')
		}
		for _, c := range []struct {
			name, want string
			export     []byte
		}{
			{"foreign key", "retention anchor", rewrite(func(a *jAnchor) { a.Note = string(forge(t, []byte(a.Note))) })},
			{"edited note", "retention anchor", rewrite(func(a *jAnchor) { a.Note = strings.Replace(a.Note, "\n33\n", "\n49\n", 1) })},
			{"bad consistency", "retention anchor tree", rewrite(func(a *jAnchor) { a.Path = a.Path[1:] })},
			{"anchor dropped", "missing from a complete export", withoutLine(ai)},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := VerifyExport(bytes.NewReader(c.export), nil)
				var ve *VerifyError
				if !errors.As(err, &ve) || !strings.Contains(ve.Reason, c.want) {
					t.Fatalf("VerifyExport = %v, want a VerifyError about %q", err, c.want)
				}
			})
		}
	})
}

// TestRetentionBackground: with Options.Retention the owned background pass
// cuts on its own, and Close stops it.
func TestRetentionBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	l := openTest(t, pruneOptions(t, path))
	appendN(t, l, 0, 40)
	l.Close()
	o := pruneOptions(t, path)
	o.Retention = time.Hour
	o.PruneInterval = 10 * time.Millisecond
	o.Now = func() time.Time { return sampleTime(33).Add(time.Hour) } // entries < 33 are older than an hour
	l2 := openTest(t, o)
	deadline := time.Now().Add(5 * time.Second)
	for l2.FirstSeq() == 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l2.FirstSeq(); got != 33 {
		t.Fatalf("FirstSeq = %d after the background pass, want 33", got)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l2.bgDone:
	default:
		t.Fatal("retention goroutine still running after Close")
	}
}

// TestAppendRejectsAnchorKind: only retention writes anchor entries.
func TestAppendRejectsAnchorKind(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	if _, err := l.Append(context.Background(), &Entry{Kind: KindAnchor}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
}

// TestPruneProofsProperty: for several log sizes and cut points, every
// inclusion proof of a retained entry in every tree size that holds it, and
// every consistency proof between tree sizes at or after the cut, is still
// served and verifies; so the Merkle nodes kept are enough.
func TestPruneProofsProperty(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ n, cutBefore int }{{40, 20}, {70, 48}, {64, 63}, {100, 80}, {97, 33}} {
		o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
		o.SegmentSize = 16
		o.CheckpointEvery = -1
		l := openTest(t, o)
		appendN(t, l, 0, c.n)
		roots := map[uint64][]byte{}
		for m := uint64(1); m <= uint64(c.n); m++ {
			roots[m], _ = l.RootAt(m)
		}
		if _, err := l.Prune(ctx, sampleTime(c.cutBefore)); err != nil {
			t.Fatal(err)
		}
		first := l.FirstSeq()
		if want := uint64(c.cutBefore/16*16 + 1); first != want {
			t.Fatalf("n=%d cut before %d: first %d, want %d", c.n, c.cutBefore, first, want)
		}
		size := l.Size()
		for m := uint64(1); m <= size; m++ {
			if m > uint64(c.n) {
				roots[m], _ = l.RootAt(m)
			}
		}
		for n := first - 1; n <= size; n++ {
			if n == 0 {
				continue
			}
			root, err := l.RootAt(n)
			if err != nil || !bytes.Equal(root, roots[n]) {
				t.Fatalf("n=%d: RootAt(%d) = %x, %v", c.n, n, root, err)
			}
			for seq := first; seq <= n; seq++ {
				e, _ := l.Get(seq)
				p, err := l.InclusionProof(seq, n)
				if err != nil {
					t.Fatalf("n=%d first=%d: InclusionProof(%d, %d): %v", c.n, first, seq, n, err)
				}
				if err := VerifyEntryInclusion(e, n, p, roots[n]); err != nil {
					t.Fatalf("n=%d: seq %d in %d: %v", c.n, seq, n, err)
				}
			}
			for m := max(first-1, 1); m <= n; m++ {
				p, err := l.ConsistencyProof(m, n)
				if err != nil {
					t.Fatalf("n=%d first=%d: ConsistencyProof(%d, %d): %v", c.n, first, m, n, err)
				}
				if err := VerifyConsistency(m, n, roots[m], roots[n], p); err != nil {
					t.Fatalf("n=%d: consistency %d..%d: %v", c.n, m, n, err)
				}
			}
		}
		checkStorageCut(t, l, first)
		if err := l.Verify(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPruneResumesDeletion: a crash after the anchor committed but before
// the deletions leaves a log that opens, verifies and hides the cut entries;
// the next pass finishes the deletions.
func TestPruneResumesDeletion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	l := openTest(t, pruneOptions(t, path))
	appendN(t, l, 0, 50)
	// The first half of Prune only: the writer appends the anchor.
	pr := &pruneReq{cut: 33, reply: make(chan pruneResult, 1)}
	l.pruneReq <- pr
	if res := <-pr.reply; res.err != nil {
		t.Fatal(res.err)
	}
	l.Close()

	o := pruneOptions(t, path)
	o.VerifyTail = -1
	l2 := openTest(t, o)
	if l2.FirstSeq() != 33 {
		t.Fatalf("FirstSeq = %d", l2.FirstSeq())
	}
	if _, err := l2.Get(3); !errors.Is(err, ErrPruned) {
		t.Fatalf("Get(3) = %v, want ErrPruned while its record is still stored", err)
	}
	if err := l2.Verify(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(bytes.NewReader(exportJSONL(t, l2, Filter{})), nil); err != nil {
		t.Fatal(err)
	}
	if n, err := l2.Prune(ctx, sampleTime(40)); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	checkStorageCut(t, l2, 33)
}

// TestPruneConcurrent: cutting while appends and exports run.
func TestPruneConcurrent(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.SegmentSize = 16
	l := openTest(t, o)
	appendN(t, l, 0, 100)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.Append(ctx, sampleEntry(1000+w*10000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := l.Export(ctx, Filter{Network: "neta"}, func(*Entry) error { return nil }); err != nil {
				t.Error(err)
				return
			}
		}
	})
	n, err := l.Prune(ctx, sampleTime(90))
	close(stop)
	wg.Wait()
	if err != nil || n != 80 {
		t.Fatalf("Prune = %d, %v; want 80", n, err)
	}
	if err := l.Verify(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(bytes.NewReader(exportJSONL(t, l, Filter{})), nil); err != nil {
		t.Fatal(err)
	}
}
