package ledger

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// tamperStore changes the closed ledger's bbolt file directly.
func tamperStore(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipStored(bucket, key []byte, at func(v []byte) int) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := bytes.Clone(b.Get(key))
		v[at(v)] ^= 1
		return b.Put(key, v)
	}
}

// TestScrub: changes to old entries and stored Merkle nodes that Open does
// not look at (it verifies only the tail) are found by Scrub, naming the
// first bad seq; a clean ledger scrubs ok with every entry and stored node
// counted.
func TestScrub(t *testing.T) {
	const n = 600
	cases := []struct {
		name    string
		tamper  func(tx *bolt.Tx) error
		wantSeq uint64
		want    string
	}{
		{"clean", nil, 0, ""},
		{"early entry's field", flipStored(bEntries, seqKey(206), func(v []byte) int { return len(v) / 2 }), 206, "hash does not match"},
		{"early entry's stored hash", flipStored(bEntries, seqKey(300), func(v []byte) int { return len(v) - 1 }), 300, "hash does not match"},
		{"early entry's prev hash", flipStored(bEntries, seqKey(301), func(v []byte) int { return len(v) - HashSize - 1 }), 301, "hash does not match"},
		// Leaves 0..15 are under node (4, 0); its last entry is seq 16.
		{"stored merkle node, level 4", flipStored(bMerkle, merkleKey(4, 0), func([]byte) int { return 3 }), 16, "merkle node (level 4, index 0)"},
		{"stored merkle node, level 8", flipStored(bMerkle, merkleKey(8, 1), func([]byte) int { return 0 }), 512, "merkle node (level 8, index 1)"},
		{"deleted entry", func(tx *bolt.Tx) error { return tx.Bucket(bEntries).Delete(seqKey(77)) }, 77, "missing entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.db")
			o := testOptions(t, path)
			o.CheckpointEvery = 100
			l := openTest(t, o)
			appendN(t, l, 0, n)
			l.Close()
			if tc.tamper != nil {
				tamperStore(t, path, tc.tamper)
			}
			var logs bytes.Buffer
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			o.VerifyTail = 16  // as in production: far less than the log
			l = openTest(t, o) // the tampering is too old for Open to see
			res, err := l.Scrub(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.EntriesChecked != n || res.From != 1 || res.To != n {
				t.Fatalf("checked %d entries (%d..%d), want %d", res.EntriesChecked, res.From, res.To, n)
			}
			// Stored nodes: levels 4..9 over 1000 leaves.
			var nodes uint64
			for level := uint(4); 1<<level <= n; level++ {
				nodes += n >> level
			}
			if res.TreeNodesChecked != nodes {
				t.Fatalf("checked %d tree nodes, want %d", res.TreeNodesChecked, nodes)
			}
			if tc.tamper == nil {
				if !res.OK || res.Breaks != 0 || res.FirstBadSeq != 0 {
					t.Fatalf("clean ledger: %+v", res)
				}
				return
			}
			if res.OK || res.FirstBadSeq != tc.wantSeq || !strings.Contains(res.Err, tc.want) {
				t.Fatalf("result %+v, want first bad seq %d (%q)", res, tc.wantSeq, tc.want)
			}
			if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "seq="+strconv.FormatUint(tc.wantSeq, 10)) {
				t.Fatalf("no ERROR naming seq %d:\n%s", tc.wantSeq, s)
			}
			st := l.ScrubStatus()
			if st.Passes != 1 || st.FailedPasses != 1 || st.Last == nil || st.Last.FirstBadSeq != tc.wantSeq || st.EntriesChecked != n {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestScrubAfterRetention: a cut log scrubs ok from its anchor.
func TestScrubAfterRetention(t *testing.T) {
	l, _ := prunedLedger(t, filepath.Join(t.TempDir(), "l.db"))
	res, err := l.Scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.From != l.FirstSeq() || res.From <= 1 || res.EntriesChecked != l.Size()-l.FirstSeq()+1 {
		t.Fatalf("scrub of a cut log: %+v (first %d, size %d)", res, l.FirstSeq(), l.Size())
	}
}

// TestScrubBackground: the background scrub, paced, covers the log while
// appends go on, finds a break, reports it in ScrubStatus, and stops with
// Close.
func TestScrubBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	l := openTest(t, o)
	appendN(t, l, 0, 600)
	l.Close()
	tamperStore(t, path, flipStored(bEntries, seqKey(40), func(v []byte) int { return len(v) / 2 }))
	o.VerifyTail = 16
	o.ScrubInterval = time.Hour
	o.ScrubRate = 1_000_000
	l = openTest(t, o)
	appendN(t, l, 600, 50) // the writer is not held up by the scrub
	deadline := time.Now().Add(10 * time.Second)
	for l.ScrubStatus().Last == nil {
		if time.Now().After(deadline) {
			t.Fatal("no background pass finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := l.ScrubStatus()
	if !st.Background || st.Last.OK || st.Last.FirstBadSeq != 40 || st.Last.EntriesChecked < 600 || st.FailedPasses != 1 {
		t.Fatalf("status %+v, last %+v", st, st.Last)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestScrubResumes: the background pass saves its position, and a reopened
// ledger goes on from there instead of starting over.
func TestScrubResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	l := openTest(t, o)
	appendN(t, l, 0, 600)
	l.Close()
	tamperStore(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bMeta).Put(kScrubNext, seqKey(513))
	})
	o.ScrubInterval = time.Hour
	l = openTest(t, o)
	deadline := time.Now().Add(10 * time.Second)
	for l.ScrubStatus().Last == nil {
		if time.Now().After(deadline) {
			t.Fatal("no background pass finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if last := l.ScrubStatus().Last; !last.OK || last.From != 513 || last.EntriesChecked != 88 {
		t.Fatalf("resumed pass %+v, want 513..600 ok", last)
	}
}
