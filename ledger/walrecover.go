package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrWALCorrupt is wrapped by a *WALError.
var ErrWALCorrupt = errors.New("ledger: wal corrupt")

// WALProblem is one damaged spot of a WAL file.
type WALProblem struct {
	File   string
	Offset int64
	// FirstSeq..LastSeq are the entries the spot held as far as known
	// (0: unknown; a damaged header's claim is not trusted for LastSeq).
	FirstSeq, LastSeq uint64
	// InBbolt: every entry of the spot is already in bbolt, so dropping it
	// loses nothing.
	InBbolt bool
	// Torn: a partial last frame that was never acknowledged.
	Torn   bool
	Reason string
}

func (p WALProblem) String() string {
	return fmt.Sprintf("%s at offset %d%s: %s", p.File, p.Offset, seqSpan(p.FirstSeq, p.LastSeq), p.Reason)
}

func seqSpan(first, last uint64) string {
	switch {
	case first == 0:
		return ""
	case last == 0:
		return fmt.Sprintf(" (from seq %d)", first)
	case last == first:
		return fmt.Sprintf(" (seq %d)", first)
	}
	return fmt.Sprintf(" (seq %d..%d)", first, last)
}

// WALError is Open's refusal of a WAL with a damaged frame that was, or may
// have been, acknowledged. Open changed nothing: no entry was replayed and
// every WAL file is where it was. InspectWAL says what a recovery would
// drop; RecoverWAL does it.
type WALError struct {
	Path     string // the ledger's bbolt file
	Problems []WALProblem
}

func (e *WALError) Error() string {
	s := fmt.Sprintf("ledger: wal corrupt: %s", e.Problems[0])
	if n := len(e.Problems) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more damaged spots)", n)
	}
	return s + "; nothing was replayed and the wal files are kept untouched: acknowledged entries may be in them, so the ledger does not open until an offline recovery decides"
}

func (e *WALError) Unwrap() error { return ErrWALCorrupt }

// walRec is one record to replay, checked.
type walRec struct {
	rec []byte
	e   *Entry
}

// walPlan is what reading the WAL back found: the records that chain onto
// bbolt, the damaged spots, and for the report every frame's fate.
type walPlan struct {
	size     uint64 // bbolt's entries before the replay
	recs     []walRec
	problems []WALProblem
	torn     []WALProblem
	chainErr error // a valid frame's record that does not chain (tampering)
	stop     string
	maxSeq   uint64 // highest seq a readable frame holds
	unknown  bool   // a damaged frame beyond bbolt held an unknown number of entries
	frames   [][]WALFrameReport
}

// checkRec checks one record as the next entry after prev.
func (l *Ledger) checkRec(rec, prev []byte) (*Entry, string) {
	e, err := decodeRecord(rec)
	if err != nil {
		return nil, "wal record: " + err.Error()
	}
	h := sha256.Sum256(rec[:len(rec)-HashSize])
	switch {
	case e.Node != l.opts.NodeID:
		return nil, fmt.Sprintf("wal record carries node %q", e.Node)
	case !bytes.Equal(h[:], e.Hash):
		return nil, "wal record: hash does not match contents"
	case !bytes.Equal(e.PrevHash, prev):
		return nil, "wal record: prev_hash does not link to the previous entry"
	}
	return e, ""
}

func recSeq(rec []byte) uint64 { return binary.BigEndian.Uint64(rec[seqOffset:]) }

// planWAL decides, reading bbolt but writing nothing, what of files can be
// replayed and what is damaged (see the comment above walFrame). With
// recovering, the chain goes on past a damaged frame whose entries bbolt
// holds or whose payload verifies, and stops at the first gap; otherwise a
// record that does not chain is p.chainErr.
func (l *Ledger) planWAL(files []walFileScan, recovering bool) (*walPlan, error) {
	size := l.w.tree.size
	p := &walPlan{size: size, frames: make([][]WALFrameReport, len(files))}
	type at struct{ fi, i int }
	var order []at
	for fi := range files {
		for i := range files[fi].frames {
			order = append(order, at{fi, i})
		}
	}
	frame := func(a at) *walFrame { return &files[a.fi].frames[a.i] }
	loc := func(a at) string { return fmt.Sprintf("%s offset %d", files[a.fi].name, frame(a).off) }
	// Evidence that a frame was complete: a valid frame after it, or any
	// frame of a later file (written only after this file was sealed).
	okAfter, laterHdr := make([]int, len(order)), make([]int, len(order))
	nextOK, nextHdr, fileHdr := -1, -1, -1
	for k := len(order) - 1; k >= 0; k-- {
		if k == len(order)-1 || order[k+1].fi != order[k].fi {
			if fileHdr >= 0 {
				nextHdr = fileHdr
			}
			fileHdr = -1
		}
		okAfter[k], laterHdr[k] = nextOK, nextHdr
		if f := frame(order[k]); f.ok {
			nextOK = k
		}
		if frame(order[k]).ourHdr {
			fileHdr = k
		}
	}
	next, prev := size+1, l.w.lastHash
	var prevLast uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		eb := tx.Bucket(bEntries)
		// fits reports whether recs are the entries bbolt holds or the next
		// ones of the chain.
		fits := func(recs [][]byte) bool {
			n, h := next, prev
			for _, rec := range recs {
				seq := recSeq(rec)
				switch {
				case seq <= size:
					if v := eb.Get(seqKey(seq)); v == nil || !bytes.Equal(v, rec) {
						return false
					}
				case seq == n:
					e, why := l.checkRec(rec, h)
					if why != "" {
						return false
					}
					n, h = n+1, e.Hash
				default:
					return false
				}
			}
			return true
		}
		// afterAnchors skips retention anchors, which bbolt takes directly.
		afterAnchors := func(seq uint64) uint64 {
			for ; seq <= size; seq++ {
				e, err := decodeRecord(eb.Get(seqKey(seq)))
				if err != nil || e.Kind != KindAnchor {
					break
				}
			}
			return seq
		}
		for k, a := range order {
			fs, f := &files[a.fi], frame(a)
			fr := WALFrameReport{Offset: f.off, End: f.end, Status: "ok"}
			take := f.ok
			if len(f.recs) > 0 {
				fr.FirstSeq, fr.LastSeq = recSeq(f.recs[0]), recSeq(f.recs[len(f.recs)-1])
			}
			if !f.ok {
				intact := len(f.recs) > 0 && fits(f.recs)
				// Its seqs as far as known: from the frame before it, to the
				// valid frame right after it; the header's own claim only
				// where it agrees.
				first, last := f.first, uint64(0)
				if prevLast > 0 {
					first = afterAnchors(prevLast + 1)
				}
				if f.first == first && first != 0 && f.count > 0 {
					last = first + uint64(f.count) - 1
				}
				if k+1 < len(order) && okAfter[k] == k+1 && len(frame(order[k+1]).recs) > 0 {
					if n := recSeq(frame(order[k+1]).recs[0]); first != 0 && n > first {
						last = n - 1
					}
				}
				if intact {
					first, last = fr.FirstSeq, fr.LastSeq
				}
				fr.FirstSeq, fr.LastSeq = first, last
				reason := ""
				switch {
				case intact:
					reason = f.why + ", yet its payload is complete and chains on: a damaged frame, not a torn write"
				case okAfter[k] >= 0:
					reason = f.why + "; a valid frame follows (" + loc(order[okAfter[k]]) + "), so this one was acknowledged"
				case laterHdr[k] >= 0:
					reason = f.why + "; a later wal file (" + loc(order[laterHdr[k]]) + ") was written after it, so this one was acknowledged"
				case first != 0 && first <= size:
					reason = f.why + fmt.Sprintf("; bbolt already holds seq %d, so this frame was acknowledged", first)
				}
				prob := WALProblem{File: fs.name, Offset: f.off, FirstSeq: first, LastSeq: last, Reason: reason}
				if reason == "" {
					prob.Torn, prob.Reason = true, f.why
					p.torn = append(p.torn, prob)
					fr.Status, fr.Detail = "torn", f.why+" (a partial last frame, never acknowledged)"
					p.frames[a.fi] = append(p.frames[a.fi], fr)
					continue
				}
				prob.InBbolt = last != 0 && last <= size
				p.problems = append(p.problems, prob)
				fr.Status, fr.Detail = "CORRUPT", reason
				switch {
				case prob.InBbolt:
					fr.InBbolt = "in bbolt"
				case first > size:
					fr.InBbolt = "not in bbolt"
				}
				if !intact && (first == 0 || first >= next) {
					if last == 0 {
						p.unknown = true
					}
					p.maxSeq = max(p.maxSeq, last)
				}
				take = intact && recovering
			}
			for _, rec := range f.recs {
				seq := recSeq(rec)
				if f.ok || take {
					p.maxSeq = max(p.maxSeq, seq)
				}
				if !take {
					continue
				}
				if seq < next {
					if v := eb.Get(seqKey(seq)); seq <= size && v != nil && !bytes.Equal(v, rec) {
						p.problems = append(p.problems, WALProblem{File: fs.name, Offset: f.off, FirstSeq: seq, LastSeq: seq, InBbolt: true,
							Reason: fmt.Sprintf("the wal record of seq %d differs from the entry bbolt holds", seq)})
						fr.Status, fr.Detail = "CORRUPT", "differs from bbolt at seq "+fmt.Sprint(seq)
					}
					continue
				}
				if p.stop != "" || p.chainErr != nil {
					continue
				}
				why := ""
				if seq != next {
					why = fmt.Sprintf("missing entry: the wal continues at seq %d", seq)
				}
				var e *Entry
				if why == "" {
					e, why = l.checkRec(rec, prev)
				}
				if why != "" {
					ce := &ChainError{Seq: next, Reason: why}
					if seq == next {
						ce.Seq = seq
					}
					if recovering {
						p.stop = fmt.Sprintf("%s (%s)", ce.Error(), loc(a))
					} else {
						p.chainErr = fmt.Errorf("ledger: wal %s offset %d: %w", fs.name, f.off, ce)
					}
					continue
				}
				p.recs = append(p.recs, walRec{rec, e})
				next, prev = next+1, e.Hash
			}
			if len(f.recs) > 0 && (f.ok || take) {
				prevLast = recSeq(f.recs[len(f.recs)-1])
			}
			switch {
			case fr.Status != "ok" || fr.FirstSeq == 0:
			case fr.LastSeq <= size:
				fr.InBbolt = "in bbolt"
			case fr.FirstSeq > size:
				fr.InBbolt = "not in bbolt"
			default:
				fr.InBbolt = fmt.Sprintf("in bbolt up to %d", size)
			}
			p.frames[a.fi] = append(p.frames[a.fi], fr)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: wal: read bbolt: %w", err)
	}
	return p, nil
}

// keep names the files a recovery must move aside rather than delete:
// those with a damaged frame, or with an entry beyond what bbolt holds
// after the replay (applied).
func (p *walPlan) keep(files []walFileScan, applied uint64) map[string]bool {
	keep := map[string]bool{}
	for _, prob := range p.problems {
		keep[prob.File] = true
	}
	for _, f := range files {
		for _, fr := range f.frames {
			for _, rec := range fr.recs {
				if recSeq(rec) > applied {
					keep[f.name] = true
				}
			}
		}
	}
	return keep
}

// fill writes the plan into r.
func (p *walPlan) fill(r *WALReport, l *Ledger, files []walFileScan, done bool) {
	r.Path, r.Applied, r.Done = l.opts.Path, p.size, done
	r.Problems, r.Torn, r.Stop = p.problems, p.torn, p.stop
	r.Files = r.Files[:0]
	for i, f := range files {
		r.Files = append(r.Files, WALFileReport{Name: f.name, Size: f.size, Frames: p.frames[i]})
	}
	if len(p.recs) > 0 {
		r.ReplayFrom, r.ReplayTo = recSeq(p.recs[0].rec), recSeq(p.recs[len(p.recs)-1].rec)
	}
	end := p.size
	if r.ReplayTo > end {
		end = r.ReplayTo
	}
	if p.maxSeq > end {
		r.LostFrom, r.LostTo = end+1, p.maxSeq
	}
	r.LostUnknown = p.unknown
	if !done {
		keep := p.keep(files, end)
		for _, f := range files {
			if keep[f.name] {
				r.MovedAside = append(r.MovedAside, f.name+".corrupt-<time>")
			}
		}
	}
}

// WALReport is what InspectWAL found, and RecoverWAL did.
type WALReport struct {
	Path    string // the ledger's bbolt file
	Applied uint64 // entries bbolt held before the recovery
	Done    bool   // false: a dry run, nothing changed
	Files   []WALFileReport
	// Problems are the damaged spots that were, or may have been,
	// acknowledged; Torn the partial last frames, never acknowledged.
	Problems, Torn []WALProblem
	// ReplayFrom..ReplayTo are replayed into bbolt (none when 0).
	ReplayFrom, ReplayTo uint64
	// LostFrom..LostTo are entries readable in the WAL that cannot be
	// replayed because the chain stops before them (none when 0); they were
	// acknowledged. LostUnknown: a damaged frame beyond bbolt held an
	// unknown number of entries too.
	LostFrom, LostTo uint64
	LostUnknown      bool
	Stop             string   // why the chain stopped, if it did
	MovedAside       []string // the files moved aside (kept, never deleted)
	RecordSeq        uint64   // the admin entry recording the recovery
}

// WALFileReport is one WAL file.
type WALFileReport struct {
	Name   string
	Size   int64
	Frames []WALFrameReport
}

// WALFrameReport is one frame: ok, torn or CORRUPT.
type WALFrameReport struct {
	Offset, End       int64 // End -1: unknown
	FirstSeq, LastSeq uint64
	Status, InBbolt   string
	Detail            string
}

// Clean reports that the WAL holds nothing damaged.
func (r *WALReport) Clean() bool { return len(r.Problems) == 0 && r.Stop == "" }

// Summary is one line for the ledger entry and logs.
func (r *WALReport) Summary() string {
	s := fmt.Sprintf("wal recovery: %d damaged spots", len(r.Problems))
	if len(r.Problems) > 0 {
		s += " (first: " + r.Problems[0].String() + ")"
	}
	if r.ReplayTo > 0 {
		s += fmt.Sprintf("; replayed seq %d..%d", r.ReplayFrom, r.ReplayTo)
	}
	switch {
	case r.LostTo > 0:
		s += fmt.Sprintf("; LOST acknowledged seq %d..%d", r.LostFrom, r.LostTo)
	case r.LostUnknown:
		s += "; LOST the entries of a damaged frame (count unknown)"
	default:
		s += "; nothing lost"
	}
	if len(r.MovedAside) > 0 {
		s += "; kept aside: " + strings.Join(r.MovedAside, ", ")
	}
	return s
}

// WriteText prints the report for an operator.
func (r *WALReport) WriteText(w io.Writer) {
	verb := func(dry, done string) string {
		if r.Done {
			return done
		}
		return dry
	}
	fmt.Fprintf(w, "ledger %s: bbolt holds %d entries\n", r.Path, r.Applied)
	if len(r.Files) == 0 {
		fmt.Fprintln(w, "no wal files: nothing to recover")
	}
	for _, f := range r.Files {
		fmt.Fprintf(w, "wal %s (%d bytes, %d frames)\n", f.Name, f.Size, len(f.Frames))
		for _, fr := range f.Frames {
			seqs := "seq ?"
			switch {
			case fr.FirstSeq != 0 && fr.LastSeq != 0:
				seqs = fmt.Sprintf("seq %d..%d", fr.FirstSeq, fr.LastSeq)
			case fr.FirstSeq != 0:
				seqs = fmt.Sprintf("seq %d..?", fr.FirstSeq)
			}
			fmt.Fprintf(w, "  offset %-10d %-22s %-8s %s", fr.Offset, seqs, fr.Status, fr.InBbolt)
			if fr.Detail != "" {
				fmt.Fprintf(w, "  %s", fr.Detail)
			}
			fmt.Fprintln(w)
		}
	}
	for _, t := range r.Torn {
		fmt.Fprintf(w, "torn tail (never acknowledged), %s: %s\n", verb("will be dropped", "dropped"), t)
	}
	for _, p := range r.Problems {
		what := "entries NOT in bbolt"
		if p.InBbolt {
			what = "entries already in bbolt: nothing lost by dropping it"
		}
		fmt.Fprintf(w, "CORRUPT, %s: %s\n", what, p)
	}
	if r.ReplayTo > 0 {
		fmt.Fprintf(w, "%s seq %d..%d (%d entries) from the wal into bbolt\n", verb("would replay", "replayed"), r.ReplayFrom, r.ReplayTo, r.ReplayTo-r.ReplayFrom+1)
	}
	if r.Stop != "" {
		fmt.Fprintf(w, "the chain stops: %s\n", r.Stop)
	}
	switch {
	case r.LostTo > 0:
		fmt.Fprintf(w, "%s seq %d..%d (%d entries acknowledged to their callers)\n", verb("WOULD LOSE", "LOST"), r.LostFrom, r.LostTo, r.LostTo-r.LostFrom+1)
	case !r.LostUnknown:
		fmt.Fprintf(w, "%s nothing: every entry the wal shows is in bbolt or replayed\n", verb("would lose", "lost"))
	}
	if r.LostUnknown {
		fmt.Fprintf(w, "%s the entries of a damaged frame beyond bbolt (how many is unreadable)\n", verb("WOULD LOSE", "LOST"))
	}
	for _, m := range r.MovedAside {
		fmt.Fprintf(w, "%s %s (kept, not deleted)\n", verb("would move aside:", "moved aside:"), m)
	}
	if r.Done {
		if r.RecordSeq > 0 {
			fmt.Fprintf(w, "recorded the recovery as ledger entry %d\n", r.RecordSeq)
		}
	} else if !r.Clean() || len(r.Torn) > 0 {
		fmt.Fprintln(w, "would record the recovery as an admin entry in the ledger")
		fmt.Fprintln(w, "dry run: nothing changed")
	}
}

// InspectWAL reads the ledger at o.Path and its WAL without changing
// anything (bbolt opened read-only) and reports what RecoverWAL would do.
// It fails if the ledger is open elsewhere (the file lock) or its stored
// chain does not verify.
func InspectWAL(ctx context.Context, o Options) (*WALReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s read-only: %w", o.Path, err)
	}
	defer db.Close()
	l := &Ledger{opts: o, db: db, log: o.Logger, pub: o.Signer.Public().(ed25519.PublicKey)}
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	files, _, err := readWAL(o.Path)
	if err != nil {
		return nil, err
	}
	p, err := l.planWAL(files, true)
	if err != nil {
		return nil, err
	}
	r := &WALReport{}
	p.fill(r, l, files, false)
	return r, nil
}

// RecoverWAL opens the ledger replaying what of its WAL still chains on
// (past damaged frames whose entries bbolt holds or whose payload
// verifies, up to the first gap), moves every WAL file holding a damaged
// frame or an entry it could not replay aside (renamed *.corrupt-<time>,
// never deleted), records the recovery as an admin entry when anything was
// damaged, and closes the ledger. Run InspectWAL first: it says the same
// without doing it.
func RecoverWAL(ctx context.Context, o Options) (*WALReport, error) {
	r := &WALReport{}
	l, err := open(ctx, o, r)
	if err != nil {
		return nil, err
	}
	if !r.Clean() {
		e := &Entry{Kind: KindAdmin, Method: "WalRecover", From: "wal-recover", Reason: r.Summary()}
		seq, err := l.Append(ctx, e)
		if err != nil {
			l.Close()
			return r, fmt.Errorf("ledger: record the wal recovery: %w", err)
		}
		r.RecordSeq = seq
	}
	if err := l.Close(); err != nil {
		return r, err
	}
	l.log.Warn("ledger wal recovered", "summary", r.Summary(), "dir", filepath.Dir(o.Path))
	return r, nil
}
