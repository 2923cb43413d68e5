package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The forgery corpus: exports of a real ledger, each altered the way an
// attacker who can edit the file (but not sign) would, that VerifyExport must
// refuse; and the honest exports it must accept, every entry proven.

// forgeEnv is one node's ledger (n1, key 1, checkpoints every 50 entries) of
// 200 entries, a rogue ledger claiming to be n1 under another key, and a
// second node n2.
type forgeEnv struct {
	l, rogue, n2 *Ledger
	full, net    []byte // complete export; --network neta export
	keys         map[string]ed25519.PublicKey
}

const forgeN = 200

func newForgeEnv(t *testing.T) *forgeEnv {
	t.Helper()
	dir := t.TempDir()
	l := openTest(t, testOptions(t, filepath.Join(dir, "l.db")))
	appendN(t, l, 0, forgeN)
	ro := testOptions(t, filepath.Join(dir, "rogue.db"))
	ro.Signer = testKey(7)
	rogue := openTest(t, ro)
	appendN(t, rogue, 0, forgeN)
	o2 := testOptions(t, filepath.Join(dir, "n2.db"))
	o2.NodeID, o2.Signer = "n2", testKey(2)
	n2 := openTest(t, o2)
	appendN(t, n2, 0, 30)
	return &forgeEnv{l: l, rogue: rogue, n2: n2,
		full: exportJSONL(t, l, Filter{}), net: exportJSONL(t, l, Filter{Network: "neta"}),
		keys: map[string]ed25519.PublicKey{"n1": l.PublicKey(), "n2": n2.PublicKey()}}
}

// xline is one export line with its type and seq decoded.
type xline struct {
	raw  []byte
	typ  string
	seq  uint64
	size uint64
}

func xlines(t *testing.T, b []byte) []xline {
	t.Helper()
	var out []xline
	for _, raw := range splitLines(b) {
		var o struct {
			Type     string `json:"type"`
			Seq      uint64 `json:"seq"`
			TreeSize uint64 `json:"tree_size"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("export line %q: %v", raw, err)
		}
		out = append(out, xline{bytes.Clone(raw), o.Type, o.Seq, o.TreeSize})
	}
	return out
}

func joinX(ls []xline) []byte {
	var b bytes.Buffer
	for _, l := range ls {
		b.Write(l.raw)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// find returns the index of the first line of type typ (and seq, if non-zero).
func find(t *testing.T, ls []xline, typ string, seq uint64) int {
	t.Helper()
	for i, l := range ls {
		if l.typ == typ && (seq == 0 || l.seq == seq) {
			return i
		}
	}
	t.Fatalf("no %s line (seq %d)", typ, seq)
	return -1
}

func insertX(ls []xline, i int, l xline) []xline {
	return append(ls[:i:i], append([]xline{l}, ls[i:]...)...)
}

// editJSON rewrites one line's JSON object.
func editJSON(t *testing.T, l *xline, fn func(o map[string]any)) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(l.raw))
	dec.UseNumber()
	var o map[string]any
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	fn(o)
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	l.raw = b
}

// forgeAfter makes the entry an attacker would append after prev: correct
// seq, prev_hash and hash, contents of their choosing.
func forgeAfter(prev *Entry, network string) xline {
	e := &Entry{Seq: prev.Seq + 1, Time: prev.Time + 1, Node: prev.Node, Kind: KindRequest, Method: "MESSAGE",
		CallID: "forged@x", From: "<sip:mallory@a.example>", To: "<sip:bob@b.example>", SrcNet: network,
		DstNet: "netb", Status: 200, Reason: "OK", PrevHash: prev.Hash}
	e.Hash = ComputeHash(e)
	return xline{raw: AppendEntryJSON(nil, e), typ: LineEntry, seq: e.Seq}
}

func mustGet(t *testing.T, l *Ledger, seq uint64) *Entry {
	t.Helper()
	e, err := l.Get(seq)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// runEnd returns a seq that closes a run of the filtered export, followed by
// a gap of at least two entries (so seq+1 can be forged into the gap).
func runEnd(t *testing.T, ls []xline) uint64 {
	t.Helper()
	var ents []uint64
	for _, l := range ls {
		if l.typ == LineEntry {
			ents = append(ents, l.seq)
		}
	}
	for i := len(ents) / 2; i+1 < len(ents); i++ {
		if ents[i+1] > ents[i]+2 {
			return ents[i]
		}
	}
	t.Fatal("filtered export has no gap of two")
	return 0
}

func exportLines(t *testing.T, l *Ledger, f Filter) []xline { return xlines(t, exportJSONL(t, l, f)) }

func TestForgedExports(t *testing.T) {
	env := newForgeEnv(t)
	last := mustGet(t, env.l, forgeN)
	cases := []struct {
		name    string
		forge   func(t *testing.T) []byte
		keys    map[string]ed25519.PublicKey // nil: env.keys (pinned)
		wantSeq uint64                       // the seq the error must name; 0: any
	}{
		{"repro: appended after the last proof, tree_size raised, key pinned", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN + 1 })
			return joinX(append(ls, forgeAfter(last, "neta")))
		}, nil, forgeN + 1},
		{"appended after the last proof, header unchanged", func(t *testing.T) []byte {
			return joinX(append(xlines(t, env.full), forgeAfter(last, "neta")))
		}, nil, forgeN + 1},
		{"appended after the last proof, unpinned", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN + 1 })
			return joinX(append(ls, forgeAfter(last, "neta")))
		}, map[string]ed25519.PublicKey{}, forgeN + 1},
		{"repro: --network export, entry inserted after a run's proof", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			s := runEnd(t, ls)
			i := find(t, ls, LineProof, s)
			return joinX(insertX(ls, i+1, forgeAfter(mustGet(t, env.l, s), "neta")))
		}, nil, 0},
		{"--network export, entry appended after the last proof", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			s := ls[len(ls)-1].seq
			return joinX(append(ls, forgeAfter(mustGet(t, env.l, s), "neta")))
		}, nil, 0},
		{"proof moved behind an appended entry", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			p := ls[len(ls)-1]
			ls = append(ls[:len(ls)-1], forgeAfter(last, "neta"), p)
			return joinX(ls)
		}, nil, 0},
		{"tree_size lies up", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN + 5 })
			return joinX(ls)
		}, nil, 0},
		{"tree_size lies down", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN - 1 })
			return joinX(ls)
		}, nil, 0},
		{"tree_size lies up in a filtered export", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN + 1 })
			return joinX(ls)
		}, nil, 0},
		{"tree_size lies down in a filtered export", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN / 2 })
			return joinX(ls)
		}, nil, 0},
		{"truncated: last entry and its proof gone, tree_size lowered", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN - 1 })
			return joinX(ls[:len(ls)-2])
		}, nil, 0},
		{"proof for another tree size, labelled with the checkpoint's", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			s := runEnd(t, ls)
			path, err := env.l.InclusionProof(s, forgeN-1)
			if err != nil {
				t.Fatal(err)
			}
			i := find(t, ls, LineProof, s)
			editJSON(t, &ls[i], func(o map[string]any) { o["path"] = path })
			return joinX(ls)
		}, nil, 0},
		{"proof for a tree size with no checkpoint in the export", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			s := runEnd(t, ls)
			path, err := env.l.InclusionProof(s, 150)
			if err != nil {
				t.Fatal(err)
			}
			i := find(t, ls, LineProof, s)
			editJSON(t, &ls[i], func(o map[string]any) { o["path"], o["tree_size"] = path, 150 })
			return joinX(ls)
		}, nil, 0},
		{"proof of another entry", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[len(ls)-1], func(o map[string]any) { o["seq"] = forgeN - 1 })
			return joinX(ls)
		}, nil, 0},
		{"checkpoint of a rogue node's key claiming n1", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			ls[find(t, ls, LineCheckpoint, 0)] = xlines(t, exportJSONL(t, env.rogue, Filter{}))[1]
			return joinX(ls)
		}, nil, 0},
		{"whole export by a rogue key claiming n1, key pinned", func(t *testing.T) []byte {
			return exportJSONL(t, env.rogue, Filter{})
		}, nil, 0},
		{"checkpoint of node n2 relabelled n1", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			cp := xlines(t, exportJSONL(t, env.n2, Filter{}))[1]
			editJSON(t, &cp, func(o map[string]any) { o["node"] = "n1" })
			ls[find(t, ls, LineCheckpoint, 0)] = cp
			return joinX(ls)
		}, nil, 0},
		{"checkpoint signature altered", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i := find(t, ls, LineCheckpoint, 0)
			editJSON(t, &ls[i], func(o map[string]any) {
				note := o["note"].(string)
				j := strings.LastIndex(note, " ") + 1
				sig, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(note[j:], "\n"))
				sig[10] ^= 1
				o["note"] = note[:j] + base64.StdEncoding.EncodeToString(sig) + "\n"
			})
			return joinX(ls)
		}, nil, 0},
		{"checkpoint root altered", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i := find(t, ls, LineCheckpoint, 0)
			root, err := env.l.RootAt(forgeN - 1)
			if err != nil {
				t.Fatal(err)
			}
			editJSON(t, &ls[i], func(o map[string]any) {
				lines := strings.SplitN(o["note"].(string), "\n", 4)
				lines[2] = base64.StdEncoding.EncodeToString(root)
				o["note"] = strings.Join(lines, "\n")
			})
			return joinX(ls)
		}, nil, 0},
		{"checkpoint size altered", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i := find(t, ls, LineCheckpoint, 0)
			editJSON(t, &ls[i], func(o map[string]any) {
				o["note"] = strings.Replace(o["note"].(string), fmt.Sprintf("\n%d\n", forgeN), fmt.Sprintf("\n%d\n", forgeN+1), 1)
			})
			return joinX(ls)
		}, nil, 0},
		{"checkpoint and proofs stripped", func(t *testing.T) []byte {
			var ls []xline
			for _, l := range xlines(t, env.full) {
				if l.typ != LineCheckpoint && l.typ != LineProof {
					ls = append(ls, l)
				}
			}
			return joinX(ls)
		}, nil, 1},
		{"filtered export, checkpoint and proofs stripped", func(t *testing.T) []byte {
			var ls []xline
			for _, l := range xlines(t, env.net) {
				if l.typ != LineCheckpoint && l.typ != LineProof {
					ls = append(ls, l)
				}
			}
			return joinX(ls)
		}, nil, 1},
		{"entries reordered", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i, j := find(t, ls, LineEntry, 100), find(t, ls, LineEntry, 101)
			ls[i], ls[j] = ls[j], ls[i]
			return joinX(ls)
		}, nil, 0},
		{"entry duplicated", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i := find(t, ls, LineEntry, 100)
			return joinX(insertX(ls, i+1, ls[i]))
		}, nil, 100},
		{"last entry duplicated after its proof", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			return joinX(append(ls, ls[find(t, ls, LineEntry, forgeN)]))
		}, nil, forgeN},
		{"filtered entry duplicated after its run's proof", func(t *testing.T) []byte {
			ls := xlines(t, env.net)
			s := runEnd(t, ls)
			i := find(t, ls, LineProof, s)
			return joinX(insertX(ls, i+1, ls[find(t, ls, LineEntry, s)]))
		}, nil, 0},
		{"complete export with an entry dropped and its neighbour forged", func(t *testing.T) []byte {
			ls := xlines(t, env.full)
			i := find(t, ls, LineEntry, 100)
			nb := xline{typ: LineNeighbour}
			nb.raw, _ = json.Marshal(jNeighbour{LineNeighbour, "n1", 99, mustGet(t, env.l, 99).Hash})
			ls[i] = nb
			return joinX(ls)
		}, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys := c.keys
			if keys == nil {
				keys = env.keys
			} else if len(keys) == 0 {
				keys = nil
			}
			b := c.forge(t)
			rep, err := VerifyExport(bytes.NewReader(b), keys)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("forged export verified: %+v (err %v)", rep, err)
			}
			t.Logf("refused: %v", err)
			if c.wantSeq != 0 && ve.Seq != c.wantSeq {
				t.Fatalf("error names seq %d, want %d: %v", ve.Seq, c.wantSeq, err)
			}
			if ve.Line < 1 || ve.Line > bytes.Count(b, []byte("\n"))+1 {
				t.Fatalf("error names line %d of %d: %v", ve.Line, bytes.Count(b, []byte("\n")), err)
			}
		})
	}
}

// TestHonestExportsProven: every honest export, full, filtered and of two
// nodes, verifies with every entry proven by a signed checkpoint.
func TestHonestExportsProven(t *testing.T) {
	env := newForgeEnv(t)
	older := func(t *testing.T) []byte {
		// A proof against an older genuine checkpoint (size 150, stored
		// when the ledger passed it) is as good as one against the newest.
		ls := exportLines(t, env.l, Filter{FromSeq: 101, ToSeq: 140})
		cp, err := env.l.CheckpointAt(150)
		if err != nil {
			t.Fatal(err)
		}
		cl := xline{typ: LineCheckpoint}
		cl.raw, _ = json.Marshal(jCheckpoint{LineCheckpoint, "n1", string(cp.Note)})
		ls = insertX(ls, 2, cl)
		path, err := env.l.InclusionProof(140, 150)
		if err != nil {
			t.Fatal(err)
		}
		i := find(t, ls, LineProof, 140)
		editJSON(t, &ls[i], func(o map[string]any) { o["path"], o["tree_size"] = path, 150 })
		return joinX(ls)
	}
	cases := []struct {
		name    string
		export  func(t *testing.T) []byte
		entries int
	}{
		{"full", func(*testing.T) []byte { return env.full }, forgeN},
		{"network", func(*testing.T) []byte { return env.net }, -1},
		{"user", func(t *testing.T) []byte { return exportJSONL(t, env.l, Filter{User: "u1@a.example"}) }, -1},
		{"seq range", func(t *testing.T) []byte { return exportJSONL(t, env.l, Filter{FromSeq: 20, ToSeq: 40}) }, 21},
		{"kind", func(t *testing.T) []byte { return exportJSONL(t, env.l, Filter{Kind: KindChat}) }, forgeN / 4},
		{"nothing matches", func(t *testing.T) []byte { return exportJSONL(t, env.l, Filter{Network: "nope"}) }, 0},
		{"two nodes", func(t *testing.T) []byte {
			return append(bytes.Clone(env.full), exportJSONL(t, env.n2, Filter{})...)
		}, forgeN + 30},
		{"proof to an older checkpoint", older, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.export(t)
			for _, keys := range []map[string]ed25519.PublicKey{env.keys, nil} {
				rep, err := VerifyExport(bytes.NewReader(b), keys)
				if err != nil {
					t.Fatalf("honest export: %v", err)
				}
				if (c.entries >= 0 && rep.Entries != c.entries) || (c.entries < 0 && rep.Entries == 0) ||
					rep.Proven != rep.Entries || rep.Unproven != 0 {
					t.Fatalf("report %+v, want %d entries all proven", rep, c.entries)
				}
			}
		})
	}
}

// TestVerifyAllowUnproven: with AllowUnproven, entries no proof covers pass
// but are counted exactly; forgeries of signed or header facts still fail.
func TestVerifyAllowUnproven(t *testing.T) {
	env := newForgeEnv(t)
	last := mustGet(t, env.l, forgeN)
	stripped := func(b []byte) []byte {
		var ls []xline
		for _, l := range xlines(t, b) {
			if l.typ != LineCheckpoint && l.typ != LineProof {
				ls = append(ls, l)
			}
		}
		return joinX(ls)
	}
	netEntries := bytes.Count(env.net, []byte(`{"type":"entry"`))
	cases := []struct {
		name             string
		export           []byte
		proven, unproven int
		wantErr          string // "" : must pass
	}{
		{"appended entry", joinX(append(xlines(t, env.full), forgeAfter(last, "neta"))), forgeN, 1, ""},
		{"appended entry, tree_size raised", func() []byte {
			ls := xlines(t, env.full)
			editJSON(t, &ls[0], func(o map[string]any) { o["tree_size"] = forgeN + 1 })
			return joinX(append(ls, forgeAfter(last, "neta")))
		}(), 0, 0, "tree_size"},
		{"stripped", stripped(env.full), 0, forgeN, ""},
		{"filtered stripped", stripped(env.net), 0, netEntries, ""},
		{"honest", env.full, forgeN, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep, err := VerifyExportWith(bytes.NewReader(c.export), VerifyOptions{Keys: TrustedKeys(env.keys), AllowUnproven: true})
			if c.wantErr != "" {
				if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want one about %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Proven != c.proven || rep.Unproven != c.unproven || rep.Entries != c.proven+c.unproven {
				t.Fatalf("report %+v, want %d proven %d unproven", rep, c.proven, c.unproven)
			}
			if c.unproven > 0 && (len(rep.UnprovenRuns) == 0 || rep.UnprovenRuns[0].Reason == "") {
				t.Fatalf("no unproven run described: %+v", rep)
			}
			// Without the option the same export fails, naming the first
			// unproven seq.
			_, err = VerifyExport(bytes.NewReader(c.export), env.keys)
			var ve *VerifyError
			if c.unproven == 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.As(err, &ve) || ve.Seq != rep.UnprovenRuns[0].From || !strings.Contains(ve.Reason, "unproven") {
				t.Fatalf("strict verify: %v, want unproven seq %d", err, rep.UnprovenRuns[0].From)
			}
		})
	}
}

// TestVerifyCSV: a CSV export is named as such, not as a malformed line.
func TestVerifyCSV(t *testing.T) {
	l := openTest(t, testOptions(t, filepath.Join(t.TempDir(), "l.db")))
	appendN(t, l, 0, 5)
	var buf bytes.Buffer
	if err := l.WriteCSV(context.Background(), &buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyExport(&buf, nil)
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "CSV") {
		t.Fatalf("CSV export: %v", err)
	}
}
