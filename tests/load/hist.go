package load

import "math/bits"

// Hist is a log-linear histogram of non-negative integers (microseconds
// here): exact below 128, and 64 buckets per power of two above, so any
// percentile it reports is within 1/64 (1.6%) of the true sample. Fixed
// size, no allocation per sample. Not safe for concurrent use.
type Hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = (64-histSubBits+1)*(histSub/2) + histSub
)

func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits
	return shift*(histSub/2) + int(uint64(v)>>uint(shift))
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i/(histSub/2) - 1
	top := int64(i - shift*(histSub/2))
	lo := top << uint(shift)
	return lo + (int64(1)<<uint(shift))/2
}

// Record adds one sample; negative samples count as 0.
func (h *Hist) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Count is the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest sample.
func (h *Hist) Max() int64 { return h.max }

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Reset empties h.
func (h *Hist) Reset() { *h = Hist{} }

// Quantile returns the sample at quantile q (0 < q <= 1) by the
// nearest-rank method: the smallest value with at least q*n samples at or
// below it. 0 when empty.
func (h *Hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}
