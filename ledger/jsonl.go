package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// ExportFormat names the JSON Lines export format; see doc.go.
const ExportFormat = "clearhub-ledger-export/v1"

// Line types of the JSON Lines export.
const (
	LineHeader     = "header"
	LineCheckpoint = "checkpoint"
	LineNeighbour  = "neighbour"
	LineEntry      = "entry"
	LineProof      = "proof"
	LineAnchor     = "anchor"
)

// WriteJSONL writes a verifiable JSON Lines export of the entries matching f:
// a header, a freshly signed checkpoint covering them, the entries in seq
// order, a "neighbour" line (predecessor seq and hash) before every run that
// does not start at seq 1, and after every run of consecutive entries a
// "proof" line: the inclusion proof of the run's last entry in the
// checkpoint's tree. Because each entry's hash covers its predecessor's hash,
// that one proof commits the whole run.
func (l *Ledger) WriteJSONL(ctx context.Context, w io.Writer, f Filter) error {
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("ledger: export checkpoint: %w", err)
	}
	if f.ToSeq == 0 || f.ToSeq > cp.Size {
		f.ToSeq = cp.Size
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	hdr := struct {
		Type      string  `json:"type"`
		Format    string  `json:"format"`
		Node      string  `json:"node"`
		Origin    string  `json:"origin"`
		KeyName   string  `json:"key_name"`
		PublicKey []byte  `json:"public_key"`
		TreeSize  uint64  `json:"tree_size"`
		Complete  bool    `json:"complete"`
		Filter    jFilter `json:"filter"`
		Created   string  `json:"created"`
	}{LineHeader, ExportFormat, l.opts.NodeID, l.opts.Origin, l.opts.KeyName, l.pub, cp.Size,
		f.empty() || (f == Filter{ToSeq: cp.Size}) || (f == Filter{FromSeq: 1, ToSeq: cp.Size}),
		toJFilter(f), l.opts.Now().UTC().Format(time.RFC3339Nano)}
	if err := writeJSONLine(bw, hdr); err != nil {
		return err
	}
	if err := writeJSONLine(bw, jCheckpoint{LineCheckpoint, l.opts.NodeID, string(cp.Note)}); err != nil {
		return err
	}
	if a, err := l.LatestAnchor(); err == nil && a.TreeSize <= cp.Size {
		// The retention anchor, and its tree's consistency with the
		// checkpoint: the chain of a cut log starts at a.FirstSeq.
		path, err := l.ConsistencyProof(a.TreeSize, cp.Size)
		if err != nil {
			return fmt.Errorf("ledger: export anchor consistency: %w", err)
		}
		if err := writeJSONLine(bw, jAnchor{LineAnchor, l.opts.NodeID, string(a.Note), cp.Size, path}); err != nil {
			return err
		}
	}
	var last *Entry
	closeRun := func() error {
		if last == nil {
			return nil
		}
		path, err := l.InclusionProof(last.Seq, cp.Size)
		if err != nil {
			return fmt.Errorf("ledger: export proof for seq %d: %w", last.Seq, err)
		}
		return writeJSONLine(bw, jProof{LineProof, l.opts.NodeID, last.Seq, cp.Size, path})
	}
	buf := make([]byte, 0, 4096)
	err = l.Export(ctx, f, func(e *Entry) error {
		if last == nil || e.Seq != last.Seq+1 {
			if err := closeRun(); err != nil {
				return err
			}
			if e.Seq > 1 {
				if err := writeJSONLine(bw, jNeighbour{LineNeighbour, e.Node, e.Seq - 1, e.PrevHash}); err != nil {
					return err
				}
			}
		}
		buf = AppendEntryJSON(buf[:0], e)
		buf = append(buf, '\n')
		last = e
		_, err := bw.Write(buf)
		return err
	})
	if err != nil {
		return err
	}
	if err := closeRun(); err != nil {
		return err
	}
	return bw.Flush()
}

type jFilter struct {
	Since   string `json:"since,omitempty"`
	Until   string `json:"until,omitempty"`
	FromSeq uint64 `json:"from_seq,omitempty"`
	ToSeq   uint64 `json:"to_seq,omitempty"`
	Network string `json:"network,omitempty"`
	User    string `json:"user,omitempty"`
	Kind    Kind   `json:"kind,omitempty"`
}

func toJFilter(f Filter) jFilter {
	j := jFilter{FromSeq: f.FromSeq, ToSeq: f.ToSeq, Network: f.Network, User: f.User, Kind: f.Kind}
	if !f.Since.IsZero() {
		j.Since = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		j.Until = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return j
}

type jCheckpoint struct {
	Type string `json:"type"`
	Node string `json:"node"`
	Note string `json:"note"`
}

type jNeighbour struct {
	Type string `json:"type"`
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	Hash []byte `json:"hash"`
}

type jAnchor struct {
	Type     string   `json:"type"`
	Node     string   `json:"node"`
	Note     string   `json:"note"`
	TreeSize uint64   `json:"tree_size"`
	Path     [][]byte `json:"path"`
}

type jProof struct {
	Type     string   `json:"type"`
	Node     string   `json:"node"`
	Seq      uint64   `json:"seq"`
	TreeSize uint64   `json:"tree_size"`
	Path     [][]byte `json:"path"`
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// AppendEntryJSON appends e as one JSON object with "type":"entry" and the
// Entry's json field names; encoding/json decodes it into an Entry. It is a
// hand-written encoder because exports are big.
func AppendEntryJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"type":"entry","seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, e.Time, 10)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, e.Node)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(e.Kind))
	for _, f := range [...]struct {
		name string
		v    string
	}{{"method", e.Method}, {"call_id", e.CallID}, {"cseq", e.CSeq}, {"from", e.From}, {"to", e.To},
		{"ruri", e.RURI}, {"src", e.Src}, {"transport", e.Transport}, {"src_net", e.SrcNet}, {"dst_net", e.DstNet}} {
		if f.v != "" {
			b = append(b, `,"`...)
			b = append(b, f.name...)
			b = append(b, `":`...)
			b = appendJSONString(b, f.v)
		}
	}
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, e.Reason)
	}
	if e.BodyType != "" {
		b = append(b, `,"body_type":`...)
		b = appendJSONString(b, e.BodyType)
	}
	if len(e.BodySHA256) > 0 {
		b = append(b, `,"body_sha256":`...)
		b = appendJSONBytes(b, e.BodySHA256)
	}
	if e.BodyKept {
		b = append(b, `,"body_kept":true`...)
	}
	if len(e.Body) > 0 {
		b = append(b, `,"body":`...)
		b = appendJSONBytes(b, e.Body)
	}
	b = append(b, `,"prev_hash":`...)
	b = appendJSONBytes(b, e.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONBytes(b, e.Hash)
	return append(b, '}')
}

func appendJSONBytes(b []byte, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json would for valid UTF-8; invalid
// bytes become U+FFFD, as encoding/json does (so such a field cannot round
// trip and its entry's hash will not verify — the SIP plane should not log
// non-UTF-8 header text, or should escape it first).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// WriteCSV writes the entries matching f as CSV with a header row. Byte
// fields are hex (body: base64); time is RFC 3339 UTC with nanoseconds. CSV
// carries no proofs; use JSON Lines for anything that must verify.
func (l *Ledger) WriteCSV(ctx context.Context, w io.Writer, f Filter) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	rec := make([]string, len(CSVHeader))
	err := l.Export(ctx, f, func(e *Entry) error {
		rec = rec[:0]
		rec = append(rec, strconv.FormatUint(e.Seq, 10), time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano),
			e.Node, string(e.Kind), e.Method, e.CallID, e.CSeq, e.From, e.To, e.RURI, e.Src, e.Transport,
			e.SrcNet, e.DstNet, strconv.Itoa(e.Status), e.Reason, e.BodyType, hex.EncodeToString(e.BodySHA256),
			strconv.FormatBool(e.BodyKept), base64.StdEncoding.EncodeToString(e.Body),
			hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash))
		return cw.Write(rec)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"seq", "time", "node", "kind", "method", "call_id", "cseq", "from", "to", "ruri",
	"src", "transport", "src_net", "dst_net", "status", "reason", "body_type", "body_sha256", "body_kept",
	"body", "prev_hash", "hash"}

// ErrVerify is wrapped by every export verification failure.
var ErrVerify = errors.New("ledger: export does not verify")

// VerifyError names the first problem VerifyExport found.
type VerifyError struct {
	Line   int // 1-based line of the export
	Node   string
	Seq    uint64 // 0 when the problem is not about one entry
	Reason string
}

func (e *VerifyError) Error() string {
	if e.Seq != 0 {
		return fmt.Sprintf("ledger: export line %d: node %s seq %d: %s", e.Line, e.Node, e.Seq, e.Reason)
	}
	return fmt.Sprintf("ledger: export line %d: node %s: %s", e.Line, e.Node, e.Reason)
}

func (e *VerifyError) Unwrap() error { return ErrVerify }

// Report summarises a verified export.
type Report struct {
	Lines       int
	Entries     int
	Checkpoints int
	Proofs      int
	// Proven counts entries committed to a signed checkpoint by a proof of
	// their run; Unproven those in exports that carry no checkpoint.
	Proven   int
	Unproven int
	// Nodes lists each node seen with whether its key came from trustedKeys
	// ("trusted") or only from the export's own header ("self-asserted").
	Nodes map[string]string
}

type nodeVerify struct {
	keyName, origin string
	key             ed25519.PublicKey
	treeSize        uint64
	complete        bool
	roots           map[uint64][]byte
	last            *Entry
	lastLeaf        []byte
	runStart        uint64
	runProven       bool
	neighbour       *jNeighbour
	anchor          *Anchor
}

type exportLine struct {
	Type string `json:"type"`
	Entry
	Format    string   `json:"format"`
	Origin    string   `json:"origin"`
	KeyName   string   `json:"key_name"`
	PublicKey []byte   `json:"public_key"`
	TreeSize  uint64   `json:"tree_size"`
	Complete  bool     `json:"complete"`
	Note      string   `json:"note"`
	Path      [][]byte `json:"path"`
}

var entryPrefix = []byte(`{"type":"entry",`)

// VerifyExport re-checks a JSON Lines export: every entry's hash and body
// digest, chain links between consecutive seqs of each node, checkpoint
// signatures, and the inclusion proof closing each run of entries. With
// trustedKeys (node id -> key) every node's key must be there; with nil the
// keys in the export headers are used and reported as self-asserted. The
// first problem is returned as a *VerifyError.
func VerifyExport(r io.Reader, trustedKeys map[string]ed25519.PublicKey) (Report, error) {
	rep := Report{Nodes: map[string]string{}}
	nodes := map[string]*nodeVerify{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 4*maxField)
	line := 0
	fail := func(node string, seq uint64, format string, args ...any) error {
		return &VerifyError{Line: line, Node: node, Seq: seq, Reason: fmt.Sprintf(format, args...)}
	}
	// endRun checks the run that ends at n.last before a new run or EOF.
	endRun := func(node string, n *nodeVerify) error {
		if n.last == nil {
			return nil
		}
		runLen := int(n.last.Seq - n.runStart + 1)
		switch {
		case n.runProven:
			rep.Proven += runLen
		case len(n.roots) == 0:
			rep.Unproven += runLen
		default:
			return fail(node, n.last.Seq, "run of entries %d..%d is not closed by an inclusion proof (entry missing or moved?)", n.runStart, n.last.Seq)
		}
		return nil
	}
	var ln exportLine
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var err error
		if bytes.HasPrefix(raw, entryPrefix) {
			// Fast path for the bulk of the file: the hand-written strict
			// decoder, reusing the Entry (and its node string).
			ln.Type = LineEntry
			ln.Format, ln.Origin, ln.KeyName, ln.PublicKey, ln.TreeSize, ln.Complete, ln.Note, ln.Path = "", "", "", nil, 0, false, "", nil
			if err = DecodeEntryJSON(raw, &ln.Entry); err != nil {
				return rep, fail(ln.Node, ln.Seq, "malformed line: %v", err)
			}
		} else {
			ln = exportLine{}
			if err = json.Unmarshal(raw, &ln); err == nil && ln.Type == LineEntry {
				// Entry lines are decoded strictly whatever their layout.
				err = DecodeEntryJSON(raw, &ln.Entry)
			}
		}
		if err != nil {
			// Name the entry if at least its identity still parses.
			var id struct {
				Node string `json:"node"`
				Seq  uint64 `json:"seq"`
			}
			json.Unmarshal(raw, &id)
			return rep, fail(id.Node, id.Seq, "malformed line: %v", err)
		}
		node := ln.Node
		n := nodes[node]
		if ln.Type != LineHeader && n == nil {
			return rep, fail(node, ln.Seq, "%q line before the node's header", ln.Type)
		}
		switch ln.Type {
		case LineHeader:
			if n != nil {
				return rep, fail(node, 0, "second header for node")
			}
			if ln.Format != ExportFormat {
				return rep, fail(node, 0, "unknown format %q", ln.Format)
			}
			n = &nodeVerify{keyName: ln.KeyName, origin: ln.Origin, treeSize: ln.TreeSize, complete: ln.Complete, roots: map[uint64][]byte{}}
			if trustedKeys != nil {
				k, ok := trustedKeys[node]
				if !ok {
					return rep, fail(node, 0, "no trusted key for node")
				}
				if len(ln.PublicKey) != 0 && !bytes.Equal(ln.PublicKey, k) {
					return rep, fail(node, 0, "header key differs from the trusted key")
				}
				n.key = k
				rep.Nodes[node] = "trusted"
			} else {
				if len(ln.PublicKey) != ed25519.PublicKeySize {
					return rep, fail(node, 0, "header has no Ed25519 public key")
				}
				n.key = ed25519.PublicKey(bytes.Clone(ln.PublicKey))
				rep.Nodes[node] = "self-asserted"
			}
			nodes[node] = n
		case LineCheckpoint:
			cp, err := VerifyCheckpoint([]byte(ln.Note), n.keyName, n.key)
			if err != nil {
				return rep, fail(node, 0, "checkpoint: %v", err)
			}
			if cp.Origin != n.origin {
				return rep, fail(node, 0, "checkpoint origin %q, header says %q", cp.Origin, n.origin)
			}
			n.roots[cp.Size] = cp.Root
			rep.Checkpoints++
		case LineAnchor:
			if n.anchor != nil || n.last != nil {
				return rep, fail(node, 0, "anchor line must come once, before the node's entries")
			}
			a, err := VerifyAnchor([]byte(ln.Note), n.keyName, n.key)
			if err != nil {
				return rep, fail(node, 0, "retention anchor: %v", err)
			}
			if a.Origin != n.origin {
				return rep, fail(node, 0, "anchor origin %q, header says %q", a.Origin, n.origin)
			}
			root, ok := n.roots[ln.TreeSize]
			if !ok {
				return rep, fail(node, 0, "anchor proven against tree size %d with no signed checkpoint", ln.TreeSize)
			}
			if err := VerifyConsistency(a.TreeSize, ln.TreeSize, a.Root, root, ln.Path); err != nil {
				return rep, fail(node, 0, "retention anchor tree: %v", err)
			}
			n.anchor = a
		case LineNeighbour:
			nb := jNeighbour{Seq: ln.Seq, Hash: bytes.Clone(ln.Hash)}
			n.neighbour = &nb
		case LineProof:
			if n.last == nil || ln.Seq != n.last.Seq {
				return rep, fail(node, ln.Seq, "proof does not follow its entry")
			}
			root, ok := n.roots[ln.TreeSize]
			if !ok {
				return rep, fail(node, ln.Seq, "proof against tree size %d with no signed checkpoint", ln.TreeSize)
			}
			if err := VerifyInclusion(ln.Seq-1, ln.TreeSize, n.lastLeaf, ln.Path, root); err != nil {
				return rep, fail(node, ln.Seq, "inclusion proof: %v", err)
			}
			n.runProven = true
			rep.Proofs++
		case LineEntry:
			e := &ln.Entry
			if e.Seq == 0 {
				return rep, fail(node, 0, "entry without seq")
			}
			canon := Canonical(e)
			if got := sha256.Sum256(canon); !bytes.Equal(got[:], e.Hash) {
				return rep, fail(node, e.Seq, "hash does not match contents")
			}
			if e.Kind == KindAnchor {
				a, err := VerifyAnchor(e.Body, n.keyName, n.key)
				if err != nil {
					return rep, fail(node, e.Seq, "anchor entry: %v", err)
				}
				if a.TreeSize+1 != e.Seq {
					return rep, fail(node, e.Seq, "anchor entry for a cut at tree size %d", a.TreeSize)
				}
			}
			if e.BodyKept {
				if s := sha256.Sum256(e.Body); !bytes.Equal(s[:], e.BodySHA256) {
					return rep, fail(node, e.Seq, "body does not match body_sha256")
				}
			} else if len(e.Body) > 0 {
				return rep, fail(node, e.Seq, "body present but body_kept false")
			}
			if n.treeSize != 0 && e.Seq > n.treeSize {
				return rep, fail(node, e.Seq, "entry beyond the export's tree size %d", n.treeSize)
			}
			if n.last != nil && e.Seq <= n.last.Seq {
				return rep, fail(node, e.Seq, "out of order: after seq %d", n.last.Seq)
			}
			if n.last != nil && e.Seq == n.last.Seq+1 {
				if !bytes.Equal(e.PrevHash, n.last.Hash) {
					return rep, fail(node, e.Seq, "prev_hash does not link to seq %d", n.last.Seq)
				}
				if n.neighbour != nil {
					return rep, fail(node, e.Seq, "neighbour line inside a run")
				}
			} else {
				// A new run.
				want := uint64(1)
				if n.anchor != nil {
					want = n.anchor.FirstSeq
				}
				if n.last != nil {
					want = n.last.Seq + 1
				}
				if n.complete && e.Seq != want {
					return rep, fail(node, want, "missing from a complete export (found seq %d next)", e.Seq)
				}
				if err := endRun(node, n); err != nil {
					return rep, err
				}
				if e.Seq == 1 && !bytes.Equal(e.PrevHash, zeroHash) {
					return rep, fail(node, e.Seq, "first entry's prev_hash is not zero")
				}
				if a := n.anchor; a != nil && e.Seq == a.FirstSeq && !bytes.Equal(e.PrevHash, a.PrevHash) {
					return rep, fail(node, e.Seq, "prev_hash disagrees with the retention anchor")
				}
				if nb := n.neighbour; nb != nil {
					if nb.Seq+1 != e.Seq {
						return rep, fail(node, nb.Seq+1, "missing: the neighbour line announces it but seq %d follows", e.Seq)
					}
					if !bytes.Equal(nb.Hash, e.PrevHash) {
						return rep, fail(node, e.Seq, "prev_hash disagrees with the neighbour line (seq %d)", nb.Seq)
					}
				}
				n.runStart = e.Seq
				n.runProven = false
			}
			n.neighbour = nil
			cp := *e
			n.last = &cp
			n.lastLeaf = leafHashOf(append(canon, e.Hash...))
			rep.Entries++
		default:
			return rep, fail(node, 0, "unknown line type %q", ln.Type)
		}
	}
	rep.Lines = line
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("ledger: read export: %w", err)
	}
	for node, n := range nodes {
		if err := endRun(node, n); err != nil {
			return rep, err
		}
		if n.complete {
			got := uint64(0)
			if n.last != nil {
				got = n.last.Seq
			}
			if got != n.treeSize {
				return rep, fail(node, got+1, "missing from a complete export of %d entries", n.treeSize)
			}
		}
	}
	return rep, nil
}
