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
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
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
	// Proven counts entries committed to a signed checkpoint: an inclusion
	// proof, checked against the root of a checkpoint whose signature
	// verifies, covers the entry's leaf or that of a later entry of its run
	// (whose hash chain reaches back to it). Unproven counts every other
	// entry; they fail verification unless VerifyOptions.AllowUnproven.
	Proven   int
	Unproven int
	// UnprovenRuns describes the first maxUnprovenRuns ranges of unproven
	// entries, in the order they were found.
	UnprovenRuns []UnprovenRun
	// Nodes lists each node seen with whether its key came from trustedKeys
	// ("trusted") or only from the export's own header ("self-asserted").
	Nodes map[string]string
}

// UnprovenRun is a range of consecutive entries of one node that no proof
// to a signed checkpoint covers.
type UnprovenRun struct {
	Node     string
	From, To uint64
	Line     int // line of entry From
	Reason   string
}

const maxUnprovenRuns = 100

// TrustedKey is a node's pinned checkpoint key.
type TrustedKey struct {
	// Name is the signed-note key name; "" takes the name the header gives
	// (the key hash in each signature binds name and key, so a pinned Pub
	// alone already rules out forged signatures).
	Name string
	Pub  ed25519.PublicKey
}

// TrustedKeys pins each node's public key, without key names.
func TrustedKeys(m map[string]ed25519.PublicKey) map[string]TrustedKey {
	if m == nil {
		return nil
	}
	out := make(map[string]TrustedKey, len(m))
	for node, pub := range m {
		out[node] = TrustedKey{Pub: pub}
	}
	return out
}

// VerifyOptions are VerifyExportWith's settings.
type VerifyOptions struct {
	// Keys pins every node's checkpoint key (node id -> key); a node
	// without one fails. With nil Keys the keys in the export headers are
	// used and reported as self-asserted: integrity, not origin.
	Keys map[string]TrustedKey
	// AllowUnproven accepts entries that no proof to a signed checkpoint
	// covers, counting them in Report.Unproven, instead of failing at the
	// first one. Everything else (hashes, links, signatures, proofs that are
	// present, header claims) must still check out.
	AllowUnproven bool
}

type nodeVerify struct {
	keyName, origin string
	key             ed25519.PublicKey
	verifier        note.Verifier
	headerLine      int
	// treeSize and complete are the header's claims: checked against the
	// signed checkpoints, never trusted over them.
	treeSize uint64
	complete bool
	roots    map[uint64][]byte // verified checkpoints: size -> root
	// maxSigned is the largest verified checkpoint size (valid when
	// len(roots) > 0).
	maxSigned uint64
	last      *Entry
	lastLeaf  []byte
	runStart  uint64
	// pendFrom is the first entry of the current run that no verified
	// proof covers yet (0: none), pendLine its line.
	pendFrom  uint64
	pendLine  int
	neighbour *jNeighbour
	anchor    *Anchor
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

// proofReason words a transparency-dev/merkle proof failure for one line
// of output (its RootMismatchError prints both roots as byte lists).
func proofReason(err error) string {
	var rm proof.RootMismatchError
	if errors.As(err, &rm) {
		return fmt.Sprintf("the path does not reconstruct the signed root (computed %s)", base64.StdEncoding.EncodeToString(rm.CalculatedRoot))
	}
	return err.Error()
}

var (
	entryPrefix = []byte(`{"type":"entry",`)
	csvPrefix   = []byte(CSVHeader[0] + "," + CSVHeader[1] + "," + CSVHeader[2] + ",")
)

// VerifyExport is VerifyExportWith with the given node keys pinned (nil:
// self-asserted header keys) and no unproven entry allowed.
func VerifyExport(r io.Reader, trustedKeys map[string]ed25519.PublicKey) (Report, error) {
	return VerifyExportWith(r, VerifyOptions{Keys: TrustedKeys(trustedKeys)})
}

// VerifyExportWith re-checks a JSON Lines export: every entry's hash and
// body digest, chain links between consecutive seqs of each node, checkpoint
// signatures (golang.org/x/mod/sumdb/note) and inclusion and consistency
// proofs (github.com/transparency-dev/merkle, RFC 9162). Only what a signed
// checkpoint commits counts as proven: an entry is proven when a verified
// inclusion proof to a signed root covers it or a later entry of its run;
// header claims (tree size, completeness) must agree with the signed
// checkpoints and never prove anything. The first problem is returned as a
// *VerifyError naming its line.
func VerifyExportWith(r io.Reader, o VerifyOptions) (Report, error) {
	rep := Report{Nodes: map[string]string{}}
	nodes := map[string]*nodeVerify{}
	sc := bufio.NewScanner(r)
	// Start small (most files are small) and grow to the largest line.
	sc.Buffer(make([]byte, 0, 64<<10), 4*maxField)
	line := 0
	fail := func(node string, seq uint64, format string, args ...any) error {
		return &VerifyError{Line: line, Node: node, Seq: seq, Reason: fmt.Sprintf(format, args...)}
	}
	// endRun settles the run that ends at n.last before a new run or EOF:
	// what no proof covered is unproven.
	endRun := func(node string, n *nodeVerify) error {
		if n.last == nil || n.pendFrom == 0 {
			return nil
		}
		u := UnprovenRun{Node: node, From: n.pendFrom, To: n.last.Seq, Line: n.pendLine}
		switch {
		case len(n.roots) == 0:
			u.Reason = "the export carries no signed checkpoint of this node"
		case u.From > n.maxSigned:
			u.Reason = fmt.Sprintf("beyond the newest signed checkpoint (tree size %d)", n.maxSigned)
		default:
			u.Reason = "no inclusion proof to a signed checkpoint follows it or a later entry of its run"
		}
		n.pendFrom = 0
		if !o.AllowUnproven {
			return &VerifyError{Line: u.Line, Node: node, Seq: u.From,
				Reason: fmt.Sprintf("unproven: entries %d..%d: %s", u.From, u.To, u.Reason)}
		}
		rep.Unproven += int(u.To - u.From + 1)
		if len(rep.UnprovenRuns) < maxUnprovenRuns {
			rep.UnprovenRuns = append(rep.UnprovenRuns, u)
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
		if line == 1 && bytes.HasPrefix(raw, csvPrefix) {
			return rep, fail("", 0, "this is a CSV export: CSV carries no checkpoints or proofs and cannot be verified (export as JSON Lines)")
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
			n = &nodeVerify{keyName: ln.KeyName, origin: ln.Origin, headerLine: line, treeSize: ln.TreeSize,
				complete: ln.Complete, roots: map[uint64][]byte{}}
			if o.Keys != nil {
				k, ok := o.Keys[node]
				if !ok {
					return rep, fail(node, 0, "no trusted key for node")
				}
				if len(ln.PublicKey) != 0 && !bytes.Equal(ln.PublicKey, k.Pub) {
					return rep, fail(node, 0, "header key differs from the trusted key")
				}
				n.key = k.Pub
				if k.Name != "" {
					n.keyName = k.Name
				}
				rep.Nodes[node] = "trusted"
			} else {
				if len(ln.PublicKey) != ed25519.PublicKeySize {
					return rep, fail(node, 0, "header has no Ed25519 public key")
				}
				n.key = ed25519.PublicKey(bytes.Clone(ln.PublicKey))
				rep.Nodes[node] = "self-asserted"
			}
			if n.verifier, err = NoteVerifier(n.keyName, n.key); err != nil {
				return rep, fail(node, 0, "checkpoint key: %v", err)
			}
			nodes[node] = n
		case LineCheckpoint:
			cp, err := OpenCheckpoint([]byte(ln.Note), n.verifier)
			if err != nil {
				return rep, fail(node, 0, "checkpoint: %v", err)
			}
			if cp.Origin != n.origin {
				return rep, fail(node, 0, "checkpoint origin %q, header says %q", cp.Origin, n.origin)
			}
			if old, ok := n.roots[cp.Size]; ok && !bytes.Equal(old, cp.Root) {
				// Two signed roots for one size: the key signed a fork.
				return rep, fail(node, 0, "two signed checkpoints of tree size %d with different roots", cp.Size)
			}
			n.roots[cp.Size] = cp.Root
			n.maxSigned = max(n.maxSigned, cp.Size)
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
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.TreeSize, ln.TreeSize, ln.Path, a.Root, root); err != nil {
				return rep, fail(node, 0, "retention anchor tree %d is not consistent with the signed checkpoint of size %d: %v", a.TreeSize, ln.TreeSize, proofReason(err))
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
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, ln.Seq-1, ln.TreeSize, n.lastLeaf, ln.Path, root); err != nil {
				return rep, fail(node, ln.Seq, "inclusion proof in the signed tree of size %d: %v", ln.TreeSize, proofReason(err))
			}
			if n.pendFrom != 0 {
				// The proof commits this entry's leaf, whose hash chain
				// commits every entry back to pendFrom.
				rep.Proven += int(ln.Seq - n.pendFrom + 1)
				n.pendFrom = 0
			}
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
			}
			if n.pendFrom == 0 {
				n.pendFrom, n.pendLine = e.Seq, line
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
	for _, node := range slices.Sorted(maps.Keys(nodes)) {
		n := nodes[node]
		if err := endRun(node, n); err != nil {
			return rep, err
		}
		if len(n.roots) > 0 && n.treeSize != n.maxSigned {
			// The header is unsigned: it may only repeat what the newest
			// signed checkpoint says.
			return rep, &VerifyError{Line: n.headerLine, Node: node, Reason: fmt.Sprintf(
				"header tree_size %d disagrees with the newest signed checkpoint (tree size %d)", n.treeSize, n.maxSigned)}
		}
		if n.complete {
			got := uint64(0)
			if n.last != nil {
				got = n.last.Seq
			}
			if got < n.treeSize {
				return rep, fail(node, got+1, "missing from a complete export of %d entries", n.treeSize)
			}
		}
	}
	return rep, nil
}
