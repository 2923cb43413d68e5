package ledger

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// LatencyMetrics, when the Options.Metrics value also implements it,
// receives the two latencies an operator alerts on. Appended is called from
// the appending caller's goroutine (concurrently), Synced from the WAL
// stage; neither may block.
type LatencyMetrics interface {
	// Appended reports one Append call, from handing the entry to the
	// writer until it was acknowledged durable (or failed): the time a SIP
	// request waits for its audit entry.
	Appended(d time.Duration, err error)
	// Synced reports one fdatasync of the write-ahead log, the disk's share
	// of every group commit.
	Synced(d time.Duration)
}

// Stats is a point-in-time view of the ledger's counters, for the operator
// plane to read at scrape time.
type Stats struct {
	// EntriesAppended and BytesAppended count the entries (and the bytes of
	// their canonical records) made durable since Open.
	EntriesAppended uint64
	BytesAppended   uint64
	// Size is the number of durable entries; CheckpointSize the size the
	// latest signed checkpoint covers (Size - CheckpointSize entries are not
	// yet covered by any signature).
	Size           uint64
	CheckpointSize uint64
	// LastCheckpoint is when this process last signed a checkpoint (zero
	// before the first one since Open: the stored notes carry no time).
	LastCheckpoint time.Time
	// WALBytes is the size on disk of the write-ahead log files, the spare
	// included.
	WALBytes int64
}

// ledgerStats holds the counters behind Stats: written by the writer
// goroutine, read by anyone.
type ledgerStats struct {
	entries  atomic.Uint64
	bytes    atomic.Uint64
	lastCkpt atomic.Int64 // unix nanoseconds, 0: none since Open
}

// Stats returns the ledger's counters. WALBytes is read from the directory
// (a glob and a stat per file), so call it at scrape time, not per entry.
func (l *Ledger) Stats() Stats {
	s := Stats{
		EntriesAppended: l.stats.entries.Load(),
		BytesAppended:   l.stats.bytes.Load(),
		WALBytes:        walDiskBytes(l.opts.Path),
	}
	if ns := l.stats.lastCkpt.Load(); ns != 0 {
		s.LastCheckpoint = time.Unix(0, ns)
	}
	l.pubMu.Lock()
	s.Size = l.size
	if l.latest != nil {
		s.CheckpointSize = l.latest.Size
	}
	l.pubMu.Unlock()
	return s
}

// walDiskBytes sums the sizes of base's WAL files (numbered and spare).
func walDiskBytes(base string) int64 {
	names, err := filepath.Glob(base + "-wal-*")
	if err != nil {
		return 0
	}
	var n int64
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

func (l *Ledger) latency() LatencyMetrics {
	lm, _ := l.opts.Metrics.(LatencyMetrics)
	return lm
}

// observeAppend reports one Append call's latency, if anyone listens.
func (l *Ledger) observeAppend(start time.Time, err error) {
	if lm := l.latency(); lm != nil {
		lm.Appended(time.Since(start), err)
	}
}

// committedStats counts a batch made durable in the WAL.
func (l *Ledger) committedStats(b *batch) {
	var n uint64
	for _, r := range b.reqs {
		n += uint64(len(r.rec))
	}
	l.stats.entries.Add(uint64(len(b.reqs)))
	l.stats.bytes.Add(n)
}
