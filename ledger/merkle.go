package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// The Merkle tree follows RFC 9162 2.1: leaf = SHA-256(0x00 || data),
// node = SHA-256(0x01 || left || right), and a tree of n leaves splits at the
// largest power of two smaller than n. Leaf i (0-based) is entry seq i+1.

// ErrProof is wrapped by every proof verification failure.
var ErrProof = errors.New("ledger: proof does not verify")

func leafHashOf(data []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(make([]byte, 0, HashSize))
}

// NodeHash returns SHA-256(0x01 || l || r), an interior Merkle node.
func NodeHash(l, r []byte) []byte {
	var buf [1 + 2*HashSize]byte
	buf[0] = 1
	copy(buf[1:], l)
	copy(buf[1+HashSize:], r)
	s := sha256.Sum256(buf[:])
	return s[:]
}

// emptyRoot is MTH({}) = SHA-256() (RFC 9162 2.1.1).
func emptyRoot() []byte {
	s := sha256.Sum256(nil)
	return s[:]
}

// subtreeFunc returns the hash of the complete, aligned subtree of 2^level
// leaves starting at leaf index<<level.
type subtreeFunc func(level uint, index uint64) ([]byte, error)

// largestPow2Below returns the largest power of two strictly smaller than n (n >= 2).
func largestPow2Below(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// rangeHash is MTH(D[lo:hi]) for the ranges RFC 9162 proofs visit: lo is
// always aligned to a power of two at least as large as the range's largest
// complete left part, so every left part is a stored complete subtree.
func rangeHash(st subtreeFunc, lo, hi uint64) ([]byte, error) {
	n := hi - lo
	if n == 0 {
		return emptyRoot(), nil
	}
	if n&(n-1) == 0 && lo%n == 0 {
		level := uint(bits.TrailingZeros64(n))
		return st(level, lo>>level)
	}
	k := largestPow2Below(n)
	l, err := rangeHash(st, lo, lo+k)
	if err != nil {
		return nil, err
	}
	r, err := rangeHash(st, lo+k, hi)
	if err != nil {
		return nil, err
	}
	return NodeHash(l, r), nil
}

// inclusionPath is PATH(m, D[lo:hi]) of RFC 9162 2.1.3.1.
func inclusionPath(st subtreeFunc, m, lo, hi uint64) ([][]byte, error) {
	var path [][]byte
	for hi-lo > 1 {
		k := largestPow2Below(hi - lo)
		var sib []byte
		var err error
		if m < lo+k {
			sib, err = rangeHash(st, lo+k, hi)
			hi = lo + k
		} else {
			sib, err = rangeHash(st, lo, lo+k)
			lo += k
		}
		if err != nil {
			return nil, err
		}
		path = append(path, sib)
	}
	// Built top-down; the proof is bottom-up.
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, nil
}

// consistencyPath is PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true) of
// RFC 9162 2.1.4.1.
func consistencyPath(st subtreeFunc, m, n uint64) ([][]byte, error) {
	var path [][]byte // top-down, reversed at the end
	lo, hi := uint64(0), n
	b := true
	for {
		if m == hi-lo {
			if !b {
				h, err := rangeHash(st, lo, hi)
				if err != nil {
					return nil, err
				}
				path = append(path, h)
			}
			break
		}
		k := largestPow2Below(hi - lo)
		var h []byte
		var err error
		if m <= k {
			h, err = rangeHash(st, lo+k, hi)
			hi = lo + k
		} else {
			h, err = rangeHash(st, lo, lo+k)
			lo += k
			m -= k
			b = false
		}
		if err != nil {
			return nil, err
		}
		path = append(path, h)
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, nil
}

// VerifyInclusion checks an RFC 9162 2.1.3.2 inclusion proof that leafHash
// is leaf number leafIndex (0-based; entry seq s is leaf s-1) of the tree of
// treeSize leaves whose root is root.
func VerifyInclusion(leafIndex, treeSize uint64, leafHash []byte, proof [][]byte, root []byte) error {
	if leafIndex >= treeSize {
		return fmt.Errorf("%w: leaf index %d outside tree of size %d", ErrProof, leafIndex, treeSize)
	}
	fn, sn := leafIndex, treeSize-1
	r := leafHash
	for _, p := range proof {
		if len(p) != HashSize {
			return fmt.Errorf("%w: proof element of %d bytes", ErrProof, len(p))
		}
		if sn == 0 {
			return fmt.Errorf("%w: inclusion proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: inclusion proof too short", ErrProof)
	}
	if !bytes.Equal(r, root) {
		return fmt.Errorf("%w: inclusion proof leads to a different root", ErrProof)
	}
	return nil
}

// VerifyConsistency checks an RFC 9162 2.1.4.2 consistency proof that the
// tree of size1 leaves with root1 is a prefix of the tree of size2 leaves
// with root2.
func VerifyConsistency(size1, size2 uint64, root1, root2 []byte, proof [][]byte) error {
	switch {
	case size1 > size2:
		return fmt.Errorf("%w: old size %d larger than new size %d", ErrProof, size1, size2)
	case size1 == size2:
		if len(proof) != 0 {
			return fmt.Errorf("%w: proof between equal sizes must be empty", ErrProof)
		}
		if !bytes.Equal(root1, root2) {
			return fmt.Errorf("%w: equal sizes with different roots", ErrProof)
		}
		return nil
	case size1 == 0:
		// Every tree is consistent with the empty tree.
		if len(proof) != 0 {
			return fmt.Errorf("%w: proof from the empty tree must be empty", ErrProof)
		}
		return nil
	}
	if len(proof) == 0 {
		return fmt.Errorf("%w: empty consistency proof", ErrProof)
	}
	for _, p := range proof {
		if len(p) != HashSize {
			return fmt.Errorf("%w: proof element of %d bytes", ErrProof, len(p))
		}
	}
	if size1&(size1-1) == 0 {
		proof = append([][]byte{root1}, proof...)
	}
	fn, sn := size1-1, size2-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := proof[0], proof[0]
	for _, c := range proof[1:] {
		if sn == 0 {
			return fmt.Errorf("%w: consistency proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("%w: consistency proof too short", ErrProof)
	}
	if !bytes.Equal(fr, root1) {
		return fmt.Errorf("%w: consistency proof does not lead to the old root", ErrProof)
	}
	if !bytes.Equal(sr, root2) {
		return fmt.Errorf("%w: consistency proof does not lead to the new root", ErrProof)
	}
	return nil
}

// frontier is the compact range [0, size): the roots of the complete
// subtrees of the binary decomposition of size, largest (leftmost) first.
type frontier struct {
	size  uint64
	nodes [][]byte
}

func (f frontier) clone() frontier {
	return frontier{size: f.size, nodes: append([][]byte(nil), f.nodes...)}
}

// mnode is a complete subtree hash completed by a push.
type mnode struct {
	level uint
	index uint64
	hash  []byte
}

// push appends a leaf and returns the interior nodes (level >= 1) it completes.
func (f *frontier) push(leaf []byte, out []mnode) []mnode {
	h := leaf
	idx := f.size
	level := uint(0)
	for idx&1 == 1 {
		top := f.nodes[len(f.nodes)-1]
		f.nodes = f.nodes[:len(f.nodes)-1]
		h = NodeHash(top, h)
		idx >>= 1
		level++
		out = append(out, mnode{level: level, index: idx, hash: h})
	}
	f.nodes = append(f.nodes, h)
	f.size++
	return out
}

// root is MTH of the whole range (RFC 9162 2.1.1).
func (f frontier) root() []byte {
	if len(f.nodes) == 0 {
		return emptyRoot()
	}
	r := f.nodes[len(f.nodes)-1]
	for i := len(f.nodes) - 2; i >= 0; i-- {
		r = NodeHash(f.nodes[i], r)
	}
	return r
}

// frontierOf rebuilds the compact range of size from stored subtrees.
func frontierOf(st subtreeFunc, size uint64) (frontier, error) {
	f := frontier{size: size}
	var start uint64
	for level := 63; level >= 0; level-- {
		if size&(1<<level) == 0 {
			continue
		}
		h, err := st(uint(level), start>>level)
		if err != nil {
			return frontier{}, err
		}
		f.nodes = append(f.nodes, h)
		start += 1 << level
	}
	return f, nil
}
