package hub

import (
	"testing"
	"time"
)

// The retransmission cache is bounded: past its budget the oldest completed
// entries leave before their Timer J (counted); newer ones stay and still
// answer retransmissions; Timer J expiry releases what they held.
func TestRetransmissionCacheBounded(t *testing.T) {
	resp := make([]byte, 340) // a typical 200 OK to a MESSAGE
	per := int64(len(resp)) + entryOverhead
	cases := []struct {
		name        string
		budget      int64
		n           int
		wantKept    int
		wantEvicted uint64
	}{
		{"under budget", 100 * per, 50, 50, 0},
		{"at budget", 50 * per, 50, 50, 0},
		{"over budget", 10 * per, 50, 10, 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lt := newLeanTable(tc.budget)
			now := time.Now()
			keys := make([]txKey, tc.n)
			for i := range tc.n {
				keys[i] = txKey{uint64(i), 7}
				if _, fresh := lt.begin(keys[i], upPath{}); !fresh {
					t.Fatalf("entry %d not fresh", i)
				}
				lt.record(keys[i], resp, true, 32*time.Second, now)
			}
			srv, _ := lt.size()
			if srv != tc.wantKept || lt.evictedCount() != tc.wantEvicted {
				t.Fatalf("kept %d evicted %d, want %d and %d", srv, lt.evictedCount(), tc.wantKept, tc.wantEvicted)
			}
			if lt.heldBytes() > tc.budget {
				t.Fatalf("holds %d bytes over the %d budget", lt.heldBytes(), tc.budget)
			}
			// The newest still answer a retransmission; the evicted are
			// new transactions again.
			if b, fresh := lt.begin(keys[tc.n-1], upPath{}); fresh || len(b) != len(resp) {
				t.Fatalf("newest entry: fresh %v, %d bytes", fresh, len(b))
			}
			if tc.wantEvicted > 0 {
				if _, fresh := lt.begin(keys[0], upPath{}); !fresh {
					t.Fatal("an evicted entry still answered")
				}
				lt.abandon(keys[0])
			}
			lt.expire(now.Add(33 * time.Second))
			if srv, _ := lt.size(); srv != 0 || lt.heldBytes() != 0 {
				t.Fatalf("after Timer J: %d entries, %d bytes held", srv, lt.heldBytes())
			}
		})
	}
}

func BenchmarkRetransmissionCacheRecord(b *testing.B) {
	lt := newLeanTable(64 << 20)
	resp := make([]byte, 340)
	now := time.Now()
	for i := range b.N {
		k := txKey{uint64(i), 1}
		lt.begin(k, upPath{})
		lt.record(k, resp, true, 32*time.Second, now)
	}
	b.ReportMetric(float64(lt.evictedCount()), "evicted")
}
