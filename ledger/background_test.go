package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Entries nobody waits for ride along with the next entry somebody waits
// for: one WAL commit (one fdatasync) for all of them.
func TestAppendBackgroundSharesCommit(t *testing.T) {
	fm := &fakeMetrics{}
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.Metrics = fm
	o.linger = time.Minute // nothing but the urgent entry may seal them
	l := openTest(t, o)
	done := make(chan error, 3)
	for i := range 3 {
		if err := l.AppendBackground(context.Background(), sampleEntry(i), func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("a background entry committed on its own (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	seq, err := l.Append(context.Background(), sampleEntry(3))
	if err != nil {
		t.Fatal(err)
	}
	if seq != 4 {
		t.Fatalf("urgent entry got seq %d, want 4 (after the three background ones)", seq)
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatalf("background entry: %v", err)
		}
	}
	fm.mu.Lock()
	synced, committed := fm.synced, fm.committed
	fm.mu.Unlock()
	if committed != 4 || synced != 1 {
		t.Fatalf("%d entries in %d WAL syncs, want 4 in 1", committed, synced)
	}
	for s := uint64(1); s <= 4; s++ {
		if _, err := l.Get(s); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get %d: %v", s, err)
		}
	}
	if err := l.Verify(context.Background(), 1); err != nil {
		t.Fatalf("chain after background entries: %v", err)
	}
}

// Alone, a background entry is committed after the linger; at Close it is
// committed before Close returns.
func TestAppendBackgroundAlone(t *testing.T) {
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.linger = 30 * time.Millisecond
	l := openTest(t, o)
	done := make(chan error, 1)
	start := time.Now()
	if err := l.AppendBackground(context.Background(), sampleEntry(0), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < o.linger {
		t.Fatalf("committed after %s, before the %s linger", d, o.linger)
	}

	o2 := testOptions(t, filepath.Join(t.TempDir(), "l2.db"))
	o2.linger = time.Hour
	l2, err := Open(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	if err := l2.AppendBackground(context.Background(), sampleEntry(0), func(err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("at Close: %v", err)
		}
	default:
		t.Fatal("Close returned before the background entry was committed")
	}
	l3 := openTest(t, o2)
	if l3.Size() != 1 {
		t.Fatalf("reopened ledger holds %d entries, want 1", l3.Size())
	}
	if err := l3.AppendBackground(context.Background(), &Entry{Kind: "bogus"}, func(error) {}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid entry: %v", err)
	}
	l3.Close()
	if err := l3.AppendBackground(context.Background(), sampleEntry(1), func(error) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed ledger: %v", err)
	}
}
