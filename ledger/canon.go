package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// canonMagic opens every canonical encoding so a hash of an entry can never
// be confused with a hash of anything else, and so the format can evolve.
const canonMagic = "clearhub-ledger-entry/v1"

// HashSize is the size of every hash in the ledger (SHA-256).
const HashSize = sha256.Size

// maxField bounds any single variable-length field. It keeps a corrupt length
// prefix from asking for gigabytes and keeps bbolt values sane.
const maxField = 16 << 20

// zeroHash is the PrevHash of entry 1.
var zeroHash = make([]byte, HashSize)

// Canonical returns the canonical encoding of e: every field except Hash, in
// the fixed order documented in doc.go. Hash = SHA-256(Canonical(e)).
func Canonical(e *Entry) []byte {
	return appendCanonical(make([]byte, 0, canonSize(e)+HashSize), e)
}

// canonSize is len(Canonical(e)).
func canonSize(e *Entry) int {
	return 4 + len(canonMagic) + 8 + 8 + 8 + 1 + 17*4 +
		len(e.Node) + len(e.Kind) + len(e.Method) + len(e.CallID) + len(e.CSeq) +
		len(e.From) + len(e.To) + len(e.RURI) + len(e.Src) + len(e.Transport) +
		len(e.SrcNet) + len(e.DstNet) + len(e.Reason) + len(e.BodyType) +
		len(e.BodySHA256) + len(e.Body) + len(e.PrevHash)
}

func appendCanonical(b []byte, e *Entry) []byte {
	b = appendStr(b, canonMagic)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = appendStr(b, e.Node)
	b = appendStr(b, string(e.Kind))
	b = appendStr(b, e.Method)
	b = appendStr(b, e.CallID)
	b = appendStr(b, e.CSeq)
	b = appendStr(b, e.From)
	b = appendStr(b, e.To)
	b = appendStr(b, e.RURI)
	b = appendStr(b, e.Src)
	b = appendStr(b, e.Transport)
	b = appendStr(b, e.SrcNet)
	b = appendStr(b, e.DstNet)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(e.Status)))
	b = appendStr(b, e.Reason)
	b = appendStr(b, e.BodyType)
	b = appendBytes(b, e.BodySHA256)
	if e.BodyKept {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendBytes(b, e.Body)
	b = appendBytes(b, e.PrevHash)
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}

// ComputeHash returns SHA-256(Canonical(e)), what e.Hash must equal.
func ComputeHash(e *Entry) []byte {
	h := sha256.Sum256(Canonical(e))
	return h[:]
}

// LeafHash returns the Merkle leaf hash of e (RFC 9162 2.1.1):
// SHA-256(0x00 || Canonical(e) || e.Hash). It uses e.Hash as stored; a wrong
// Hash yields a leaf that no honest tree contains.
func LeafHash(e *Entry) []byte {
	c := Canonical(e)
	return leafHashOf(append(c, e.Hash...))
}

// record is what the entries bucket stores: Canonical(e) || e.Hash, which is
// also exactly the Merkle leaf data.
func encodeRecord(e *Entry) []byte {
	c := Canonical(e)
	return append(c, e.Hash...)
}

var errCorrupt = errors.New("corrupt record")

// decodeRecord parses Canonical(e) || Hash. It copies nothing it does not
// have to: strings are copied (Go strings), byte slices are copied too since
// bbolt memory is only valid inside the transaction.
func decodeRecord(v []byte) (*Entry, error) {
	if len(v) < HashSize {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, len(v))
	}
	d := decoder{b: v[:len(v)-HashSize]}
	if m := d.str(); m != canonMagic {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: bad magic %q", errCorrupt, m)
	}
	e := &Entry{}
	e.Seq = d.u64()
	e.Time = int64(d.u64())
	e.Node = d.str()
	e.Kind = Kind(d.str())
	e.Method = d.str()
	e.CallID = d.str()
	e.CSeq = d.str()
	e.From = d.str()
	e.To = d.str()
	e.RURI = d.str()
	e.Src = d.str()
	e.Transport = d.str()
	e.SrcNet = d.str()
	e.DstNet = d.str()
	e.Status = int(int64(d.u64()))
	e.Reason = d.str()
	e.BodyType = d.str()
	e.BodySHA256 = d.bytes()
	switch d.byte1() {
	case 0:
	case 1:
		e.BodyKept = true
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: bad body_kept flag", errCorrupt)
		}
	}
	e.Body = d.bytes()
	e.PrevHash = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	e.Hash = bytes.Clone(v[len(v)-HashSize:])
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: field of %d bytes overruns record", errCorrupt, n)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *decoder) byte1() byte {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) lenPrefixed() []byte {
	p := d.take(4)
	if p == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(p)
	if n > maxField {
		d.err = fmt.Errorf("%w: field length %d too large", errCorrupt, n)
		return nil
	}
	return d.take(int(n))
}

func (d *decoder) str() string { return string(d.lenPrefixed()) }

func (d *decoder) bytes() []byte {
	p := d.lenPrefixed()
	if len(p) == 0 {
		return nil
	}
	return bytes.Clone(p)
}
