package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Index rows. Writing one index key per entry per index cost more than the
// entry itself, so each batch writes one row per distinct key:
//
//	idx_net_e, idx_user_e: epochKey(s, first seq) = u64 epoch || u16 len ||
//	    s || u64 first seq -> uvarint deltas of the further seqs of the
//	    batch that carry s (empty: just the first seq). epoch is
//	    (seq-1)/idxEpoch: keeping each epoch's rows together means a batch
//	    with hundreds of distinct users rewrites the few pages at the end of
//	    the bucket, not hundreds of pages all over it; a lookup costs one
//	    seek per epoch.
//	idx_time: timeKey(t0, first seq) -> "" (one entry, at time t0) or
//	    u64 last seq || u64 min time || u64 max time: the consecutive entries
//	    first..last, whose times all lie within timeRowWindow of t0 (the time
//	    of entry first)
//
// A row never spans an epoch or a segment boundary (Options.SegmentSize), so
// retention can find and delete whole rows from the entries it cuts. The
// buckets idx_net and idx_user (strKey(s, seq) -> "", one key per entry) of
// files written by earlier versions are still read, and no longer written.

// idxEpoch is the number of seqs per index epoch (a power of two).
const idxEpoch = 256

// timeRowWindow bounds how far an entry's time may lie from its time row's
// key, which is what lets a time scan seek to (since - window).
const timeRowWindow = int64(time.Second)

var errIndex = errors.New("ledger: corrupt index row")

// strKey is uint16 len || s || seq, so one string's keys sort by seq and no
// string is a prefix-collision of another.
func strKey(s string, seq uint64) []byte {
	k := make([]byte, 0, 2+len(s)+8)
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	k = append(k, s...)
	return binary.BigEndian.AppendUint64(k, seq)
}

type seqRow struct {
	first, prev uint64
	deltas      []byte
}

// epochKey is u64 (seq-1)/idxEpoch || strKey(s, seq).
func epochKey(s string, seq uint64) []byte {
	k := make([]byte, 0, 8+2+len(s)+8)
	k = binary.BigEndian.AppendUint64(k, (seq-1)/idxEpoch)
	k = binary.BigEndian.AppendUint16(k, uint16(len(s)))
	k = append(k, s...)
	return binary.BigEndian.AppendUint64(k, seq)
}

type rowBuilder struct {
	span uint64 // rows never cross a multiple of span
	rows map[string]*seqRow
	out  []kv
}

func (rb *rowBuilder) add(s string, seq uint64) {
	r := rb.rows[s]
	if r != nil && (seq-1)/rb.span == (r.first-1)/rb.span {
		r.deltas = binary.AppendUvarint(r.deltas, seq-r.prev)
		r.prev = seq
		return
	}
	if r != nil {
		rb.out = append(rb.out, kv{epochKey(s, r.first), r.deltas})
	}
	rb.rows[s] = &seqRow{first: seq, prev: seq}
}

func (rb *rowBuilder) kvs() []kv {
	for s, r := range rb.rows {
		rb.out = append(rb.out, kv{epochKey(s, r.first), r.deltas})
	}
	slices.SortFunc(rb.out, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	return rb.out
}

// buildRows groups a batch's index rows. reqs carry consecutive seqs.
func buildRows(reqs []*appendReq, seg uint64) []rowSet {
	span := min(seg, idxEpoch) // both powers of two: the smaller divides the larger
	nets := rowBuilder{span: span, rows: map[string]*seqRow{}}
	users := rowBuilder{span: span, rows: map[string]*seqRow{}}
	var times []kv
	var t0, minT, maxT int64
	var first, last uint64
	flush := func() {
		if first == 0 {
			return
		}
		var v []byte
		if last != first {
			v = binary.BigEndian.AppendUint64(make([]byte, 0, 24), last)
			v = binary.BigEndian.AppendUint64(v, uint64(minT))
			v = binary.BigEndian.AppendUint64(v, uint64(maxT))
		}
		times = append(times, kv{timeKey(t0, first), v})
	}
	for _, r := range reqs {
		e := r.e
		if first == 0 || e.Time-t0 > timeRowWindow || t0-e.Time > timeRowWindow || (e.Seq-1)/seg != (first-1)/seg {
			flush()
			t0, minT, maxT, first = e.Time, e.Time, e.Time, e.Seq
		}
		minT, maxT, last = min(minT, e.Time), max(maxT, e.Time), e.Seq
		if e.SrcNet != "" {
			nets.add(e.SrcNet, e.Seq)
		}
		if e.DstNet != "" && e.DstNet != e.SrcNet {
			nets.add(e.DstNet, e.Seq)
		}
		for _, u := range r.users {
			if u != "" {
				users.add(u, e.Seq)
			}
		}
	}
	flush()
	return []rowSet{
		{bIdxTime, 1.0, times},
		{bIdxNetE, 0.9, nets.kvs()},
		{bIdxUserE, 0.9, users.kvs()},
	}
}

// appendRowSeqs appends the seqs of the row (first, deltas) that lie in
// [from, hi].
func appendRowSeqs(buf []uint64, first uint64, deltas []byte, from, hi uint64) ([]uint64, error) {
	s := first
	for {
		if s > hi {
			return buf, nil
		}
		if s >= from {
			buf = append(buf, s)
		}
		if len(deltas) == 0 {
			return buf, nil
		}
		d, n := binary.Uvarint(deltas)
		if n <= 0 || d == 0 {
			return buf, fmt.Errorf("%w: bad seq delta after %d", errIndex, s)
		}
		s += d
		deltas = deltas[n:]
	}
}

// indexScan returns the seqs in [from, hi] of the rows for s: first from
// the legacy bucket (older entries), then from the epoch bucket.
func indexScan(legacy, epochs []byte, s string, hi uint64) func(*bolt.Tx, uint64, []uint64) ([]uint64, error) {
	old := legacyScan(legacy, s, hi)
	return func(tx *bolt.Tx, from uint64, buf []uint64) ([]uint64, error) {
		buf, err := old(tx, from, buf)
		if err != nil || len(buf) >= exportChunk {
			return buf, err
		}
		if len(buf) > 0 {
			from = buf[len(buf)-1] + 1
		}
		return epochScan(tx.Bucket(epochs), s, from, hi, buf)
	}
}

// scanRows appends the seqs in [from, hi] of the rows under prefix (keys
// prefix || u64 first seq), starting with the row that holds from.
func scanRows(c *bolt.Cursor, prefix []byte, from, hi uint64, buf []uint64) ([]uint64, error) {
	row := func(k []byte) (uint64, bool) {
		if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
			return 0, false
		}
		return binary.BigEndian.Uint64(k[len(prefix):]), true
	}
	start := binary.BigEndian.AppendUint64(bytes.Clone(prefix), from)
	var err error
	k, _ := c.Seek(start)
	if !bytes.Equal(k, start) {
		// The row holding from may start before it.
		var pk, pv []byte
		if k == nil {
			pk, pv = c.Last()
		} else {
			pk, pv = c.Prev()
		}
		if first, ok := row(pk); ok {
			if buf, err = appendRowSeqs(buf, first, pv, from, hi); err != nil {
				return buf, err
			}
		}
	}
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(buf) < exportChunk; k, v = c.Next() {
		first, ok := row(k)
		if !ok {
			continue
		}
		if first > hi {
			break
		}
		if buf, err = appendRowSeqs(buf, first, v, from, hi); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func legacyScan(bucket []byte, s string, hi uint64) func(*bolt.Tx, uint64, []uint64) ([]uint64, error) {
	prefix := strKey(s, 0)
	prefix = prefix[:len(prefix)-8]
	return func(tx *bolt.Tx, from uint64, buf []uint64) ([]uint64, error) {
		b := tx.Bucket(bucket)
		if b == nil {
			return buf, nil
		}
		return scanRows(b.Cursor(), prefix, from, hi, buf)
	}
}

// epochScan visits the epochs from from's to hi's: one seek each.
func epochScan(b *bolt.Bucket, s string, from, hi uint64, buf []uint64) ([]uint64, error) {
	if from > hi || from == 0 {
		return buf, nil
	}
	c := b.Cursor()
	prefix := epochKey(s, 1)
	prefix = prefix[:len(prefix)-8]
	var err error
	for ep := (from - 1) / idxEpoch; ep <= (hi-1)/idxEpoch && len(buf) < exportChunk; ep++ {
		binary.BigEndian.PutUint64(prefix, ep)
		lo := max(from, ep*idxEpoch+1)
		if buf, err = scanRows(c, prefix, lo, hi, buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// timeScan collects, sorted, the seqs of time rows that overlap the
// filter's time range. Times are usually but not necessarily in seq order
// (callers may supply Time), so the result is sorted.
func (l *Ledger) timeScan(f Filter, lo, hi uint64) ([]uint64, error) {
	var seqs []uint64
	var since, until uint64 = 0, ^uint64(0)
	if !f.Since.IsZero() {
		since = uint64(max(f.Since.UnixNano(), 0))
	}
	if !f.Until.IsZero() {
		until = uint64(max(f.Until.UnixNano(), 0))
	}
	w := uint64(timeRowWindow)
	seekFrom := uint64(0)
	if since > w {
		seekFrom = since - w
	}
	stopAt := ^uint64(0)
	if until < stopAt-w {
		stopAt = until + w
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bIdxTime).Cursor()
		for k, v := c.Seek(timeKey(int64(seekFrom), 0)); k != nil; k, v = c.Next() {
			if len(k) != 16 {
				continue
			}
			t0 := binary.BigEndian.Uint64(k)
			if t0 >= stopAt {
				break
			}
			first := binary.BigEndian.Uint64(k[8:])
			last, minT, maxT := first, t0, t0
			switch len(v) {
			case 0:
			case 24:
				last = binary.BigEndian.Uint64(v)
				minT, maxT = binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:])
			default:
				return fmt.Errorf("%w: time row at seq %d has %d bytes", errIndex, first, len(v))
			}
			if maxT < since || minT >= until {
				continue
			}
			for s := max(first, lo); s <= min(last, hi); s++ {
				seqs = append(seqs, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: export: %w", err)
	}
	slices.Sort(seqs)
	return seqs, nil
}
