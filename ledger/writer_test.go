package ledger

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCommitFailureRollsBack: when a batch's transaction fails, its callers
// get the error, the batch gathered behind it is re-stamped from the last
// durable state, and the chain has no gap or dangling prev_hash.
func TestCommitFailureRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	o.MaxBatch = 8
	l := openTest(t, o)
	var commits atomic.Int64
	errBoom := errors.New("boom")
	l.commitHook = func() error {
		if commits.Add(1)%3 == 0 {
			return errBoom
		}
		return nil
	}
	var mu sync.Mutex
	ok := map[uint64]string{}
	failed := 0
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 40 {
				e := sampleEntry(i)
				e.CallID = fmt.Sprintf("w%d-%d", w, i)
				seq, err := l.Append(context.Background(), e)
				mu.Lock()
				switch {
				case err == nil:
					if _, dup := ok[seq]; dup {
						t.Errorf("seq %d acknowledged twice", seq)
					}
					ok[seq] = e.CallID
				case errors.Is(err, errBoom):
					failed++
				default:
					t.Errorf("Append: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed == 0 {
		t.Fatal("the hook failed no batch")
	}
	if got := l.Size(); got != uint64(len(ok)) {
		t.Fatalf("size %d, %d acknowledged (%d failed)", got, len(ok), failed)
	}
	seqs := make([]uint64, 0, len(ok))
	for seq, id := range ok {
		seqs = append(seqs, seq)
		if e, err := l.Get(seq); err != nil || e.CallID != id {
			t.Fatalf("seq %d = %v, %v; want call %s", seq, e, err, id)
		}
	}
	slices.Sort(seqs)
	if seqs[0] != 1 || seqs[len(seqs)-1] != uint64(len(seqs)) {
		t.Fatalf("acknowledged seqs are not 1..%d", len(seqs))
	}
	if err := l.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	l.commitHook = nil
	l.Close()
	o.VerifyTail = -1
	l2 := openTest(t, o)
	if err := l2.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
}

// TestIndexRowsConcurrent: batches of many entries write one index row per
// key; filtered exports over them agree with Filter.Match, including from
// the middle of a row.
func TestIndexRowsConcurrent(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.SegmentSize = 16 // rows must split at segment boundaries too
	l := openTest(t, o)
	const n = 400
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				if _, err := l.Append(ctx, sampleEntry(int(i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Acknowledged means in the WAL; bbolt is applied behind it (every
	// 25 ms). Export waits for the apply, so read the rows after it.
	all := make([]*Entry, 0, n)
	l.Export(ctx, Filter{}, func(e *Entry) error { all = append(all, e); return nil })
	var multi int
	l.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bIdxNetE, bIdxUserE, bIdxTime} {
			tx.Bucket(b).ForEach(func(k, v []byte) error {
				if len(v) > 0 {
					multi++
				}
				return nil
			})
		}
		return nil
	})
	if multi == 0 {
		t.Fatal("no multi-entry index rows were written; the test proves nothing")
	}
	mid := sampleTime(0).Add(150 * 1000) // 150 entries in
	filters := []Filter{
		{Network: "neta"}, {Network: "netc", FromSeq: 100, ToSeq: 301},
		{User: "u3@a.example"}, {User: "<sip:u4@b.example>", FromSeq: 57},
		{Since: mid}, {Since: mid, Until: mid.Add(100 * 1000)}, {Until: mid},
		{Network: "netb", Kind: KindChat},
	}
	for _, f := range filters {
		var got, want []uint64
		if err := l.Export(ctx, f, func(e *Entry) error { got = append(got, e.Seq); return nil }); err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if f.Match(e) {
				want = append(want, e.Seq)
			}
		}
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("Export(%+v): got %d entries, want %d (%v vs %v)", f, len(got), len(want), got, want)
		}
	}
}

// TestIndexLegacyRows: a file whose older entries are indexed the way
// earlier versions did (idx_net/idx_user, one key per entry) and whose newer
// ones have epoch rows answers filtered exports across both, and retention
// removes the legacy rows too.
func TestIndexLegacyRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	o.SegmentSize = 16
	l := openTest(t, o)
	appendN(t, l, 0, 300)
	l.Close()
	// Re-index seqs 1..150 the old way.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for seq := uint64(1); seq <= 150; seq++ {
			e, err := decodeRecord(tx.Bucket(bEntries).Get(seqKey(seq)))
			if err != nil {
				return err
			}
			for _, p := range []struct {
				legacy, epochs []byte
				s              string
			}{{bIdxNet, bIdxNetE, e.SrcNet}, {bIdxNet, bIdxNetE, e.DstNet},
				{bIdxUser, bIdxUserE, NormalizeUser(e.From)}, {bIdxUser, bIdxUserE, NormalizeUser(e.To)}} {
				tx.Bucket(p.epochs).Delete(epochKey(p.s, seq))
				if err := tx.Bucket(p.legacy).Put(strKey(p.s, seq), empty); err != nil {
					return err
				}
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	l = openTest(t, o)
	check := func() {
		t.Helper()
		var all []*Entry
		l.Export(ctx, Filter{}, func(e *Entry) error { all = append(all, e); return nil })
		for _, f := range []Filter{{Network: "netb"}, {User: "u2@a.example"}, {User: "u5@b.example", FromSeq: 140}} {
			var got, want []uint64
			if err := l.Export(ctx, f, func(e *Entry) error { got = append(got, e.Seq); return nil }); err != nil {
				t.Fatal(err)
			}
			for _, e := range all {
				if f.Match(e) {
					want = append(want, e.Seq)
				}
			}
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("Export(%+v) = %v, want %v", f, got, want)
			}
		}
	}
	check()
	if n, err := l.Prune(ctx, sampleTime(100)); err != nil || n != 96 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	checkStorageCut(t, l, 97)
	check()
}
