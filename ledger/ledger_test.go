package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func testOptions(t testing.TB, path string) Options {
	return Options{Path: path, NodeID: "n1", Signer: testKey(1), CheckpointEvery: 50, CheckpointInterval: -1}
}

func openTest(t testing.TB, o Options) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var nets = []string{"neta", "netb", "netc"}

// sampleEntry makes varied entries so filters and indexes have work to do.
func sampleEntry(i int) *Entry {
	e := &Entry{
		Kind:      []Kind{KindRequest, KindResponse, KindChat, KindAdmin}[i%4],
		Method:    "MESSAGE",
		CallID:    fmt.Sprintf("call-%d@x", i),
		CSeq:      fmt.Sprintf("%d MESSAGE", i),
		From:      fmt.Sprintf(`"User %d" <sip:u%d@a.example>;tag=t%d`, i%5, i%5, i),
		To:        fmt.Sprintf("<sip:u%d@B.example:5061>", i%7),
		RURI:      fmt.Sprintf("sip:u%d@b.example", i%7),
		Src:       "127.0.0.1:5060",
		Transport: "udp",
		SrcNet:    nets[i%3],
		DstNet:    nets[(i/3)%3],
		Status:    200,
		Reason:    "OK",
		BodyType:  "text/plain",
		Body:      fmt.Appendf(nil, "hello %d\n\"quoted\"\x01", i),
		BodyKept:  i%2 == 0,
		Time:      int64(1_700_000_000_000_000_000 + i*1000),
	}
	return e
}

func appendN(t testing.TB, l *Ledger, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		seq, err := l.Append(context.Background(), sampleEntry(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("Append %d: seq %d", i, seq)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no path", Options{NodeID: "n", Signer: testKey(1)}, "Path"},
		{"no node", Options{Path: "x", Signer: testKey(1)}, "NodeID"},
		{"no key", Options{Path: "x", NodeID: "n"}, "Signer"},
		{"bad batch", Options{Path: "x", NodeID: "n", Signer: testKey(1), MaxBatch: -1}, "MaxBatch"},
		{"bad key name", Options{Path: "x", NodeID: "n", Signer: testKey(1), KeyName: "a b"}, "key name"},
		{"segment not a power of two", Options{Path: "x", NodeID: "n", Signer: testKey(1), SegmentSize: 48}, "SegmentSize"},
		{"segment too small", Options{Path: "x", NodeID: "n", Signer: testKey(1), SegmentSize: 8}, "SegmentSize"},
		{"negative retention", Options{Path: "x", NodeID: "n", Signer: testKey(1), Retention: -time.Hour}, "Retention"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(context.Background(), c.o)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

// TestAppendAssignsAndPersists: Append fills the entry, data survive reopen,
// the stored checkpoint verifies and proofs from the ledger verify.
func TestAppendAssignsAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	o := testOptions(t, path)
	l := openTest(t, o)
	e := sampleEntry(0)
	e.Time = 0
	e.BodyKept = false
	seq, err := l.Append(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 1 || e.Seq != 1 || e.Node != "n1" || e.Time == 0 || !bytes.Equal(e.PrevHash, zeroHash) ||
		!bytes.Equal(e.Hash, ComputeHash(e)) || e.Body != nil || len(e.BodySHA256) != HashSize {
		t.Fatalf("entry not filled in: %+v", e)
	}
	appendN(t, l, 1, 120)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openTest(t, o)
	if l2.Size() != 121 {
		t.Fatalf("size after reopen %d", l2.Size())
	}
	cp, err := l2.LatestCheckpoint()
	if err != nil || cp.Size != 121 {
		t.Fatalf("latest checkpoint %+v %v (Close must sign one)", cp, err)
	}
	if _, err := VerifyCheckpoint(cp.Note, l2.KeyName(), l2.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.CheckpointAt(50); err != nil {
		t.Fatalf("checkpoint every 50: %v", err)
	}
	for _, s := range []uint64{1, 2, 50, 64, 121} {
		got, err := l2.Get(s)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l2.InclusionProof(s, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyEntryInclusion(got, cp.Size, p, cp.Root); err != nil {
			t.Fatalf("seq %d: %v", s, err)
		}
	}
	old, _ := l2.CheckpointAt(50)
	cproof, err := l2.ConsistencyProof(50, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(50, cp.Size, old.Root, cp.Root, cproof); err != nil {
		t.Fatal(err)
	}
	seq, err = l2.Append(context.Background(), sampleEntry(121))
	if err != nil || seq != 122 {
		t.Fatalf("append after reopen: %d %v", seq, err)
	}
	if err := l2.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// Another node's id must not open this file.
	o.NodeID = "n2"
	if _, err := Open(context.Background(), o); err == nil {
		t.Fatal("opened another node's ledger")
	}
}

func TestAppendRejects(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	cases := []struct {
		name string
		e    *Entry
	}{
		{"nil", nil},
		{"no kind", &Entry{}},
		{"bad kind", &Entry{Kind: "x"}},
		{"negative time", &Entry{Kind: KindChat, Time: -1}},
		{"short digest", &Entry{Kind: KindChat, BodySHA256: []byte{1}}},
		{"digest mismatch", &Entry{Kind: KindChat, Body: []byte("a"), BodyKept: true, BodySHA256: make([]byte, 32)}},
	}
	for _, c := range cases {
		if _, err := l.Append(context.Background(), c.e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
		}
	}
	l.Close()
	if _, err := l.Append(context.Background(), sampleEntry(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
}

// TestConcurrentAppend: many goroutines append at once; seqs are gap-free
// and each caller's seq is the one holding its entry.
func TestConcurrentAppend(t *testing.T) {
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	o.MaxBatch = 64
	l := openTest(t, o)
	const workers, per = 32, 40
	seqs := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				e := &Entry{Kind: KindChat, CallID: fmt.Sprintf("w%d-%d", w, i)}
				s, err := l.Append(context.Background(), e)
				if err != nil {
					t.Error(err)
					return
				}
				if e.Seq != s {
					t.Errorf("entry seq %d, returned %d", e.Seq, s)
				}
				seqs[w] = append(seqs[w], s)
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for w, ss := range seqs {
		for i, s := range ss {
			if seen[s] {
				t.Fatalf("seq %d handed out twice", s)
			}
			seen[s] = true
			got, err := l.Get(s)
			if err != nil || got.CallID != fmt.Sprintf("w%d-%d", w, i) {
				t.Fatalf("seq %d holds %v (%v), want w%d-%d", s, got, err, w, i)
			}
		}
	}
	for s := uint64(1); s <= workers*per; s++ {
		if !seen[s] {
			t.Fatalf("gap at seq %d", s)
		}
	}
	if err := l.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
}

// TestExportFilters: every filter returns exactly what a full scan plus
// Filter.Match returns, in seq order.
func TestExportFilters(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	// Some entries with out-of-order caller times to exercise the time index.
	appendN(t, l, 0, 300)
	ctx := context.Background()
	var all []*Entry
	if err := l.Export(ctx, Filter{}, func(e *Entry) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 300 {
		t.Fatalf("full export %d entries", len(all))
	}
	base := time.Unix(0, 1_700_000_000_000_000_000)
	filters := []Filter{
		{},
		{FromSeq: 10, ToSeq: 20},
		{FromSeq: 299},
		{ToSeq: 5},
		{Since: base.Add(50 * time.Microsecond)},
		{Until: base.Add(30 * time.Microsecond)},
		{Since: base.Add(100 * time.Microsecond), Until: base.Add(130 * time.Microsecond)},
		{Network: "netb"},
		{Network: "netc", Kind: KindChat},
		{Network: "nope"},
		{User: "u3@a.example"},
		{User: `"X" <sip:u2@b.example>;tag=1`},
		{User: "u2@b.example", FromSeq: 100, ToSeq: 200},
		{User: "u1@a.example", Network: "neta", Since: base.Add(40 * time.Microsecond)},
		{Kind: KindAdmin},
		{Kind: KindAdmin, Since: base, FromSeq: 3},
	}
	for i, f := range filters {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var want, got []uint64
			for _, e := range all {
				if f.Match(e) {
					want = append(want, e.Seq)
				}
			}
			err := l.Export(ctx, f, func(e *Entry) error { got = append(got, e.Seq); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("filter %+v:\n got %v\nwant %v", f, got, want)
			}
			if i > 0 && i != 9 && len(want) == 0 {
				t.Fatalf("filter %+v matches nothing; test data too thin", f)
			}
		})
	}
}

func exportJSONL(t *testing.T, l *Ledger, f Filter) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.WriteJSONL(context.Background(), &buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExportVerify: exports verify, with trusted or self-asserted keys;
// filtered exports verify through their proofs.
func TestExportVerify(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	appendN(t, l, 0, 200)
	trusted := map[string]ed25519.PublicKey{"n1": l.PublicKey()}
	for _, f := range []Filter{{}, {Network: "neta"}, {User: "u1@a.example"}, {FromSeq: 20, ToSeq: 40}, {Kind: KindChat}} {
		out := exportJSONL(t, l, f)
		rep, err := VerifyExport(bytes.NewReader(out), trusted)
		if err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		if rep.Entries == 0 || rep.Proven != rep.Entries || rep.Nodes["n1"] != "trusted" {
			t.Fatalf("filter %+v: report %+v", f, rep)
		}
		if _, err := VerifyExport(bytes.NewReader(out), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyExport(bytes.NewReader(out), map[string]ed25519.PublicKey{"n1": testKey(9).Public().(ed25519.PublicKey)}); !errors.Is(err, ErrVerify) {
			t.Fatalf("verified with the wrong trusted key: %v", err)
		}
	}
	var csvBuf bytes.Buffer
	if err := l.WriteCSV(context.Background(), &csvBuf, Filter{ToSeq: 3}); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(csvBuf.String(), "\n"); rows != 4 || !strings.HasPrefix(csvBuf.String(), "seq,time,node") {
		t.Fatalf("csv: %q", csvBuf.String())
	}
}

type lineObj = map[string]any

func splitLines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// entryLineIndex returns the line index of entry seq.
func entryLineIndex(t *testing.T, lines [][]byte, seq uint64) int {
	for i, ln := range lines {
		var o struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		json.Unmarshal(ln, &o)
		if o.Type == "entry" && o.Seq == seq {
			return i
		}
	}
	t.Fatalf("no entry %d in export", seq)
	return -1
}

// TestExportTamper: changing any field of an entry, deleting an entry or
// reordering two makes VerifyExport fail naming the entry.
func TestExportTamper(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	appendN(t, l, 0, 40)
	full := exportJSONL(t, l, Filter{})
	filtered := exportJSONL(t, l, Filter{Network: "netb"})
	fields := []string{"seq", "time", "node", "kind", "method", "call_id", "cseq", "from", "to", "ruri", "src",
		"transport", "src_net", "dst_net", "status", "reason", "body_type", "body_sha256", "body_kept", "body",
		"prev_hash", "hash"}
	for _, ex := range []struct {
		name string
		data []byte
	}{{"full", full}, {"filtered", filtered}} {
		lines := splitLines(ex.data)
		var seqs []uint64
		for _, ln := range lines {
			var o lineObj
			json.Unmarshal(ln, &o)
			if o["type"] == "entry" {
				seqs = append(seqs, uint64(o["seq"].(float64)))
			}
		}
		seq := seqs[len(seqs)/2]
		for _, field := range fields {
			t.Run(ex.name+"/"+field, func(t *testing.T) {
				ls := append([][]byte(nil), lines...)
				i := entryLineIndex(t, ls, seq)
				var o lineObj
				dec := json.NewDecoder(bytes.NewReader(ls[i]))
				dec.UseNumber()
				if err := dec.Decode(&o); err != nil {
					t.Fatal(err)
				}
				switch v := o[field].(type) {
				case json.Number:
					n, _ := v.Int64()
					o[field] = n + 1
				case bool:
					o[field] = !v
				case string:
					if b := []byte(v); len(b) > 0 && (strings.HasSuffix(field, "hash") || strings.HasPrefix(field, "body_sha") || field == "body") {
						// base64: flip a bit of the decoded bytes.
						var raw []byte
						json.Unmarshal([]byte(`"`+v+`"`), &raw)
						raw[0] ^= 1
						enc, _ := json.Marshal(raw)
						o[field] = strings.Trim(string(enc), `"`)
					} else {
						o[field] = v + "x"
					}
				case nil: // absent field added
					switch field {
					case "body_kept":
						o[field] = true
					case "body", "body_sha256":
						o[field] = "eA=="
					default:
						o[field] = "x"
					}
				}
				ls[i], _ = json.Marshal(o)
				_, err := VerifyExport(bytes.NewReader(bytes.Join(ls, []byte("\n"))), nil)
				var ve *VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("tampered %s verified: %v", field, err)
				}
				wantSeq := seq
				if field == "seq" {
					wantSeq = seq + 1
				}
				if ve.Seq != wantSeq && ve.Seq != seq {
					t.Fatalf("error names seq %d, want %d: %v", ve.Seq, seq, err)
				}
			})
		}
		t.Run(ex.name+"/delete", func(t *testing.T) {
			ls := append([][]byte(nil), lines...)
			i := entryLineIndex(t, ls, seq)
			ls = append(ls[:i:i], ls[i+1:]...)
			_, err := VerifyExport(bytes.NewReader(bytes.Join(ls, []byte("\n"))), nil)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("deletion verified: %v", err)
			}
			// A complete export names the missing seq; a filtered one the
			// entry before the hole, whose run lost its proof.
			if ve.Seq != seq && (ex.name == "full" || ve.Seq >= seq) {
				t.Fatalf("deletion of %d reported as %v", seq, err)
			}
		})
		t.Run(ex.name+"/reorder", func(t *testing.T) {
			ls := append([][]byte(nil), lines...)
			i := entryLineIndex(t, ls, seq)
			j := entryLineIndex(t, ls, seqs[len(seqs)/2+1])
			ls[i], ls[j] = ls[j], ls[i]
			_, err := VerifyExport(bytes.NewReader(bytes.Join(ls, []byte("\n"))), nil)
			var ve *VerifyError
			if !errors.As(err, &ve) || (ve.Seq != seq && ve.Seq != seqs[len(seqs)/2+1]) {
				t.Fatalf("reorder reported as %v", err)
			}
		})
	}
	t.Run("raw byte flip", func(t *testing.T) {
		for _, off := range []int{len(full) / 3, len(full) / 2, len(full) - 50} {
			b := bytes.Clone(full)
			b[off] ^= 0x01
			if _, err := VerifyExport(bytes.NewReader(b), nil); err == nil {
				t.Fatalf("flip at %d verified", off)
			}
		}
	})
	t.Run("checkpoint signature", func(t *testing.T) {
		b := bytes.Replace(full, []byte(`"note":"clearhub/n1\n`), []byte(`"note":"clearhub/n2\n`), 1)
		if bytes.Equal(b, full) {
			t.Fatal("no checkpoint line found")
		}
		if _, err := VerifyExport(bytes.NewReader(b), nil); !errors.Is(err, ErrVerify) {
			t.Fatalf("forged checkpoint verified: %v", err)
		}
	})
}

// TestStoreTamper: changing a byte of a stored entry, deleting one or
// swapping two in the bbolt file makes Open refuse, naming the seq; with
// AllowBrokenChain it opens and Verify still names it.
func TestStoreTamper(t *testing.T) {
	const n = 60
	cases := []struct {
		name    string
		seq     uint64
		tamper  func(b *bolt.Bucket) error
		wantSeq uint64
	}{
		{"flip byte in field", 30, func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seqKey(30)))
			v[len(v)/2] ^= 1
			return b.Put(seqKey(30), v)
		}, 30},
		{"flip byte in hash", 31, func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seqKey(31)))
			v[len(v)-1] ^= 1
			return b.Put(seqKey(31), v)
		}, 31},
		{"flip byte in prev hash", 32, func(b *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seqKey(32)))
			v[len(v)-HashSize-1] ^= 1
			return b.Put(seqKey(32), v)
		}, 32},
		{"delete", 20, func(b *bolt.Bucket) error { return b.Delete(seqKey(20)) }, 20},
		{"delete last", n, func(b *bolt.Bucket) error { return b.Delete(seqKey(n)) }, n},
		{"swap", 40, func(b *bolt.Bucket) error {
			a, c := bytes.Clone(b.Get(seqKey(40))), bytes.Clone(b.Get(seqKey(41)))
			if err := b.Put(seqKey(40), c); err != nil {
				return err
			}
			return b.Put(seqKey(41), a)
		}, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.db")
			o := testOptions(t, path)
			l := openTest(t, o)
			appendN(t, l, 0, n)
			l.Close()
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return c.tamper(tx.Bucket(bEntries)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			_, err = Open(context.Background(), o)
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Seq != c.wantSeq {
				t.Fatalf("Open err = %v, want ChainError at seq %d", err, c.wantSeq)
			}
			o.AllowBrokenChain = true
			l2 := openTest(t, o)
			err = l2.Verify(context.Background(), 1)
			if !errors.As(err, &ce) || ce.Seq != c.wantSeq {
				t.Fatalf("Verify err = %v, want ChainError at seq %d", err, c.wantSeq)
			}
		})
	}
}

// TestTail: Tail replays from a seq, then follows live appends, and ends
// with ErrClosed when the ledger closes.
func TestTail(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	appendN(t, l, 0, 5)
	got := make(chan uint64, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- l.Tail(context.Background(), 3, func(e *Entry) error { got <- e.Seq; return nil })
	}()
	appendN(t, l, 5, 5)
	for want := uint64(3); want <= 10; want++ {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("tail got %d, want %d", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("tail stalled before %d", want)
		}
	}
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("tail ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tail did not end on Close")
	}
}

func TestNormalizeUser(t *testing.T) {
	cases := []struct{ in, want string }{
		{`"Bob" <sip:bob@b.example>;tag=x`, "bob@b.example"},
		{`<sips:Alice@A.Example:5061;transport=tls?subject=x>`, "Alice@a.example"},
		{`sip:carol:secret@c.example;tag=1`, "carol@c.example"},
		{`"a<b>" <sip:d@d.example>`, "d@d.example"},
		{`tel:+15551234`, "+15551234"},
		{`sip:[::1]:5060`, "[::1]"},
		{`bob@b.example`, "bob@b.example"},
		{`sip:alice@a.example:5060;transport=udp`, "alice@a.example"},
		{`<sip:alice@a.example>;tag=1`, "alice@a.example"},
		{`<sip:alice@[2001:db8::1]:5060>`, "alice@[2001:db8::1]"},
		{`<sip:alice:pw@A.example:5060>`, "alice@a.example"},
		{`<sip:b.example>`, "b.example"},
		{`"unterminated <sip:x@y>`, ""},
		{`<sip:x@y`, ""},
		{``, ""},
	}
	for _, c := range cases {
		if got := NormalizeUser(c.in); got != c.want {
			t.Errorf("NormalizeUser(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The common From/To form costs no allocation (it runs twice per entry).
func TestNormalizeUserAllocs(t *testing.T) {
	in := `"Alice" <sip:alice@a.example>;tag=1928301774`
	if n := testing.AllocsPerRun(100, func() { _ = NormalizeUser(in) }); n != 0 {
		t.Fatalf("NormalizeUser allocates %v times for %s", n, in)
	}
}

func TestCheckpointNote(t *testing.T) {
	key := testKey(3)
	pub := key.Public().(ed25519.PublicKey)
	root := bytes.Repeat([]byte{7}, 32)
	note, err := SignCheckpoint("clearhub/n1", 42, root, "clearhub/n1", key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(note), "clearhub/n1\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u2014 clearhub/n1 ") {
		t.Fatalf("note format: %q", note)
	}
	cp, err := VerifyCheckpoint(note, "clearhub/n1", pub)
	if err != nil || cp.Size != 42 || !bytes.Equal(cp.Root, root) {
		t.Fatalf("verify: %+v %v", cp, err)
	}
	name, pub2, err := ParseVerifierKey(VerifierKey("clearhub/n1", pub))
	if err != nil || name != "clearhub/n1" || !pub2.Equal(pub) {
		t.Fatalf("verifier key round trip: %v", err)
	}
	bad := []struct {
		name string
		note []byte
		key  ed25519.PublicKey
		kn   string
	}{
		{"other key", note, testKey(4).Public().(ed25519.PublicKey), "clearhub/n1"},
		{"other name", note, pub, "clearhub/n2"},
		{"size changed", bytes.Replace(note, []byte("\n42\n"), []byte("\n43\n"), 1), pub, "clearhub/n1"},
		{"no signature", note[:bytes.Index(note, []byte("\n\n"))+2], pub, "clearhub/n1"},
	}
	for _, b := range bad {
		if _, err := VerifyCheckpoint(b.note, b.kn, b.key); err == nil {
			t.Errorf("%s: verified", b.name)
		}
	}
}
