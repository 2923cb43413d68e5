package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// refTree is a straightforward recursive implementation of the RFC 9162
// 2.1.1 MTH, 2.1.3.1 PATH and 2.1.4.1 PROOF definitions over a leaf list,
// independent of the incremental code (memoised only to keep tests fast).
type refTree struct {
	leaves [][]byte // leaf hashes
	memo   map[[2]int][]byte
}

func newRefTree(leafData [][]byte) *refTree {
	t := &refTree{memo: map[[2]int][]byte{}}
	for _, d := range leafData {
		h := sha256.Sum256(append([]byte{0}, d...))
		t.leaves = append(t.leaves, h[:])
	}
	return t
}

func refSplit(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func (t *refTree) mth(lo, hi int) []byte {
	if h, ok := t.memo[[2]int{lo, hi}]; ok {
		return h
	}
	var h []byte
	switch n := hi - lo; n {
	case 0:
		s := sha256.Sum256(nil)
		h = s[:]
	case 1:
		h = t.leaves[lo]
	default:
		k := refSplit(n)
		s := sha256.Sum256(append(append([]byte{1}, t.mth(lo, lo+k)...), t.mth(lo+k, hi)...))
		h = s[:]
	}
	t.memo[[2]int{lo, hi}] = h
	return h
}

func (t *refTree) path(m, lo, hi int) [][]byte {
	n := hi - lo
	if n == 1 {
		return nil
	}
	k := refSplit(n)
	if m-lo < k {
		return append(t.path(m, lo, lo+k), t.mth(lo+k, hi))
	}
	return append(t.path(m, lo+k, hi), t.mth(lo, lo+k))
}

func (t *refTree) subproof(m, lo, hi int, b bool) [][]byte {
	n := hi - lo
	if m == n {
		if b {
			return nil
		}
		return [][]byte{t.mth(lo, hi)}
	}
	k := refSplit(n)
	if m <= k {
		return append(t.subproof(m, lo, lo+k, b), t.mth(lo+k, hi))
	}
	return append(t.subproof(m-k, lo+k, hi, false), t.mth(lo, lo+k))
}

// memSubtrees builds a subtree source from the incremental frontier, the way
// the ledger fills bbolt.
func memSubtrees(leaves [][]byte) (subtreeFunc, []frontier) {
	nodes := map[[2]uint64][]byte{}
	var f frontier
	fronts := []frontier{f.clone()}
	for i, l := range leaves {
		nodes[[2]uint64{0, uint64(i)}] = l
		for _, n := range f.push(l, nil) {
			nodes[[2]uint64{uint64(n.level), n.index}] = n.hash
		}
		fronts = append(fronts, f.clone())
	}
	return func(level uint, idx uint64) ([]byte, error) {
		h, ok := nodes[[2]uint64{uint64(level), idx}]
		if !ok {
			return nil, fmt.Errorf("no node (%d,%d)", level, idx)
		}
		return h, nil
	}, fronts
}

func equalPaths(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestMerkleAgainstReference: roots, inclusion and consistency proofs of the
// incremental tree equal the RFC definitions for every size 1..2000 and verify.
func TestMerkleAgainstReference(t *testing.T) {
	const maxN = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([][]byte, maxN)
	for i := range data {
		data[i] = fmt.Appendf(nil, "leaf-%d", i)
	}
	ref := newRefTree(data)
	st, fronts := memSubtrees(ref.leaves)
	for n := 1; n <= maxN; n++ {
		root := ref.mth(0, n)
		if got := fronts[n].root(); !bytes.Equal(got, root) {
			t.Fatalf("size %d: frontier root %x, want %x", n, got, root)
		}
		if got, err := rangeHash(st, 0, uint64(n)); err != nil || !bytes.Equal(got, root) {
			t.Fatalf("size %d: rangeHash %x %v, want %x", n, got, err, root)
		}
		fr, err := frontierOf(st, uint64(n))
		if err != nil || !bytes.Equal(fr.root(), root) {
			t.Fatalf("size %d: frontierOf root mismatch (%v)", n, err)
		}
		ms := []int{0, n - 1, n / 2}
		if n <= 64 {
			ms = ms[:0]
			for m := 0; m < n; m++ {
				ms = append(ms, m)
			}
		} else {
			for range 4 {
				ms = append(ms, rng.IntN(n))
			}
		}
		for _, m := range ms {
			want := ref.path(m, 0, n)
			got, err := inclusionPath(st, uint64(m), 0, uint64(n))
			if err != nil || !equalPaths(got, want) {
				t.Fatalf("size %d leaf %d: inclusion path differs (%v)", n, m, err)
			}
			if err := VerifyInclusion(uint64(m), uint64(n), ref.leaves[m], got, root); err != nil {
				t.Fatalf("size %d leaf %d: %v", n, m, err)
			}
			// The proof must not verify a different leaf or position.
			other := ref.leaves[(m+1)%len(ref.leaves)]
			if err := VerifyInclusion(uint64(m), uint64(n), other, got, root); err == nil {
				t.Fatalf("size %d leaf %d: proof verified a wrong leaf", n, m)
			}
		}
		olds := []int{1, n, rng.IntN(n) + 1, rng.IntN(n) + 1}
		if n <= 40 {
			olds = olds[:0]
			for m := 1; m <= n; m++ {
				olds = append(olds, m)
			}
		}
		for _, m := range olds {
			want := ref.subproof(m, 0, n, true)
			got, err := consistencyPath(st, uint64(m), uint64(n))
			if err != nil || !equalPaths(got, want) {
				t.Fatalf("consistency %d->%d differs (%v)", m, n, err)
			}
			oldRoot := ref.mth(0, m)
			if err := VerifyConsistency(uint64(m), uint64(n), oldRoot, root, got); err != nil {
				t.Fatalf("consistency %d->%d: %v", m, n, err)
			}
			if m < n {
				bad := bytes.Clone(oldRoot)
				bad[0] ^= 1
				if err := VerifyConsistency(uint64(m), uint64(n), bad, root, got); !errors.Is(err, ErrProof) {
					t.Fatalf("consistency %d->%d verified a wrong old root", m, n)
				}
			}
		}
	}
}

// TestRFC6962Vectors checks the root of the RFC 6962 / CT reference test
// leaves, and that tampering with a leaf or a proof element breaks proofs.
func TestRFC6962Vectors(t *testing.T) {
	hexLeaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
		"606162636465666768696a6b6c6d6e6f"}
	var data [][]byte
	for _, h := range hexLeaves {
		b, _ := hex.DecodeString(h)
		data = append(data, b)
	}
	ref := newRefTree(data)
	var leaves [][]byte
	for _, d := range data {
		leaves = append(leaves, leafHashOf(d))
	}
	st, fronts := memSubtrees(leaves)
	want, _ := hex.DecodeString("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
	if got := fronts[8].root(); !bytes.Equal(got, want) {
		t.Fatalf("root of 8 = %x, want %x", got, want)
	}
	if !bytes.Equal(ref.mth(0, 8), want) {
		t.Fatal("reference disagrees with the RFC vector")
	}
	cases := []struct {
		name   string
		tamper func(leaf []byte, proof [][]byte) ([]byte, [][]byte)
	}{
		{"leaf", func(l []byte, p [][]byte) ([]byte, [][]byte) {
			l = bytes.Clone(l)
			l[31] ^= 0x80
			return l, p
		}},
		{"proof element", func(l []byte, p [][]byte) ([]byte, [][]byte) {
			p = append([][]byte(nil), p...)
			p[0] = bytes.Clone(p[0])
			p[0][0] ^= 1
			return l, p
		}},
		{"truncated", func(l []byte, p [][]byte) ([]byte, [][]byte) { return l, p[:len(p)-1] }},
		{"extended", func(l []byte, p [][]byte) ([]byte, [][]byte) { return l, append(p, p[0]) }},
	}
	for m := range 8 {
		p, err := inclusionPath(st, uint64(m), 0, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusion(uint64(m), 8, leaves[m], p, want); err != nil {
			t.Fatalf("leaf %d: %v", m, err)
		}
		for _, c := range cases {
			l, tp := c.tamper(leaves[m], p)
			if err := VerifyInclusion(uint64(m), 8, l, tp, want); !errors.Is(err, ErrProof) {
				t.Errorf("leaf %d, tampered %s: err = %v, want ErrProof", m, c.name, err)
			}
		}
	}
}
