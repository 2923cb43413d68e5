package ledger

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeMetrics records what the ledger reports through Metrics and
// LatencyMetrics.
type fakeMetrics struct {
	mu        sync.Mutex
	committed int
	ckpts     []uint64
	appended  int
	appendErr int
	synced    int
	minSync   time.Duration
}

func (f *fakeMetrics) Committed(n int, d time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.committed += n
}

func (f *fakeMetrics) Checkpointed(size uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ckpts = append(f.ckpts, size)
}

func (f *fakeMetrics) Appended(d time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appended++
	if err != nil {
		f.appendErr++
	}
}

func (f *fakeMetrics) Synced(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.synced == 0 || d < f.minSync {
		f.minSync = d
	}
	f.synced++
}

// The counters and latencies behind the operator's ledger metrics move
// with appends, fsyncs and checkpoints.
func TestStatsAndLatencyMetrics(t *testing.T) {
	fm := &fakeMetrics{}
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.Metrics = fm
	o.CheckpointEvery = -1
	l := openTest(t, o)

	s0 := l.Stats()
	if s0.EntriesAppended != 0 || s0.BytesAppended != 0 || !s0.LastCheckpoint.IsZero() {
		t.Fatalf("fresh ledger stats = %+v", s0)
	}
	const n = 25
	appendN(t, l, 0, n)
	s1 := l.Stats()
	cases := []struct {
		name      string
		got, want uint64
	}{
		{"entries appended", s1.EntriesAppended, n},
		{"size", s1.Size, n},
		{"checkpoint size before a checkpoint", s1.CheckpointSize, 0},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s1.WALBytes < int64(s1.BytesAppended) {
		t.Errorf("WALBytes = %d, less than the %d bytes appended", s1.WALBytes, s1.BytesAppended)
	}
	// Each canonical record holds at least its two hashes.
	if s1.BytesAppended < n*2*HashSize {
		t.Errorf("BytesAppended = %d, want at least %d", s1.BytesAppended, n*2*HashSize)
	}
	fm.mu.Lock()
	appended, synced, committed := fm.appended, fm.synced, fm.committed
	fm.mu.Unlock()
	if appended != n || committed != n {
		t.Errorf("Appended calls = %d, committed entries = %d, want %d each", appended, committed, n)
	}
	if synced < 1 || synced > n {
		t.Errorf("Synced calls = %d, want 1..%d (one per group commit)", synced, n)
	}

	before := time.Now()
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s2 := l.Stats()
	if s2.CheckpointSize != cp.Size || cp.Size != n {
		t.Errorf("CheckpointSize = %d, checkpoint %d, want %d", s2.CheckpointSize, cp.Size, n)
	}
	if s2.LastCheckpoint.Before(before.Add(-time.Second)) {
		t.Errorf("LastCheckpoint = %v, want about %v", s2.LastCheckpoint, before)
	}
}

// A Metrics value without the latency methods still works (the interface
// is optional), and Append errors are reported as such.
func TestLatencyMetricsOptional(t *testing.T) {
	type onlyMetrics struct{ Metrics }
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.Metrics = onlyMetrics{&fakeMetrics{}}
	l := openTest(t, o)
	appendN(t, l, 0, 3)
	if s := l.Stats(); s.EntriesAppended != 3 {
		t.Fatalf("EntriesAppended = %d", s.EntriesAppended)
	}

	fm := &fakeMetrics{}
	o = testOptions(t, filepath.Join(t.TempDir(), "l2.db"))
	o.Metrics = fm
	l2 := openTest(t, o)
	l2.commitHook = func() error { return errTest }
	if _, err := l2.Append(context.Background(), sampleEntry(0)); err == nil {
		t.Fatal("Append with a failing commit succeeded")
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.appended != 1 || fm.appendErr != 1 {
		t.Fatalf("Appended %d, errors %d; want 1, 1", fm.appended, fm.appendErr)
	}
	if s := l2.Stats(); s.EntriesAppended != 0 {
		t.Fatalf("EntriesAppended = %d after a failed commit", s.EntriesAppended)
	}
}

var errTest = testError("injected")

type testError string

func (e testError) Error() string { return string(e) }
