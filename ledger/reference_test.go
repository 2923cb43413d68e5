package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// Cross-tests against the reference implementations auditors use: our
// trees, proofs and signed notes must be what github.com/transparency-dev/merkle
// and golang.org/x/mod/sumdb/note produce and accept, in both directions.

// TestReferenceMerkle: roots, inclusion and consistency proofs of the stored
// tree equal those of transparency-dev's reference tree over the same leaf
// data (Canonical(e) || Hash, RFC 9162 2.1.1), and verify with its verifier.
func TestReferenceMerkle(t *testing.T) {
	const n = 70
	o := testOptions(t, filepath.Join(t.TempDir(), "l.db"))
	l := openTest(t, o)
	appendN(t, l, 0, n)
	ref := testonly.New(rfc6962.DefaultHasher)
	for seq := uint64(1); seq <= n; seq++ {
		ref.AppendData(encodeRecord(mustGet(t, l, seq)))
	}
	h := rfc6962.DefaultHasher
	for size := uint64(1); size <= n; size++ {
		root, err := l.RootAt(size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(root, ref.HashAt(size)) {
			t.Fatalf("root at %d differs from the reference", size)
		}
		for _, seq := range []uint64{1, size / 2, size - size/3, size} {
			if seq == 0 {
				continue
			}
			got, err := l.InclusionProof(seq, size)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.InclusionProof(seq-1, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := LeafHash(mustGet(t, l, seq))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("inclusion %d in %d differs from the reference", seq, size)
			}
			if err := proof.VerifyInclusion(h, seq-1, size, leaf, got, root); err != nil {
				t.Fatalf("reference rejects our inclusion proof %d in %d: %v", seq, size, err)
			}
			if err := VerifyInclusion(seq-1, size, leaf, want, root); err != nil {
				t.Fatalf("we reject the reference inclusion proof %d in %d: %v", seq, size, err)
			}
		}
		for _, old := range []uint64{1, size / 2, size - 1, size} {
			if old == 0 {
				continue
			}
			oldRoot := ref.HashAt(old)
			got, err := l.ConsistencyProof(old, size)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.ConsistencyProof(old, size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("consistency %d->%d differs from the reference", old, size)
			}
			if err := proof.VerifyConsistency(h, old, size, got, oldRoot, root); err != nil {
				t.Fatalf("reference rejects our consistency proof %d->%d: %v", old, size, err)
			}
			if err := VerifyConsistency(old, size, oldRoot, root, want); err != nil {
				t.Fatalf("we reject the reference consistency proof %d->%d: %v", old, size, err)
			}
		}
	}
}

// TestReferenceNotes: our checkpoints are byte for byte what note.Sign
// makes with the same key, open with note.Open, and notes note.Sign makes
// (also with a second signature by another key) verify with ours.
func TestReferenceNotes(t *testing.T) {
	key := testKey(3)
	pub := key.Public().(ed25519.PublicKey)
	const name = "clearhub/n1"
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	if vkey != VerifierKey(name, pub) {
		t.Fatalf("verifier key %q, reference %q", VerifierKey(name, pub), vkey)
	}
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, KeyHash(name, pub),
		base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, key.Seed()...)))
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	root := bytes.Repeat([]byte{7}, HashSize)
	ours, err := SignCheckpoint(name, 42, root, name, key)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := note.Sign(&note.Note{Text: string(checkpointBody(name, 42, root))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Fatalf("our note\n%s\nreference note\n%s", ours, theirs)
	}
	if n, err := note.Open(ours, note.VerifierList(verifier)); err != nil || n.Text != string(checkpointBody(name, 42, root)) {
		t.Fatalf("note.Open of our checkpoint: %v", err)
	}
	otherSkey, _, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{9}, 64)), "witness.example")
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.NewSigner(otherSkey)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(&note.Note{Text: string(checkpointBody(name, 42, root))}, other, signer)
	if err != nil {
		t.Fatal(err)
	}
	n2, pub2, err := ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := VerifyCheckpoint(cosigned, n2, pub2)
	if err != nil || cp.Size != 42 || !bytes.Equal(cp.Root, root) {
		t.Fatalf("cosigned reference note: %+v, %v", cp, err)
	}
	if _, err := VerifyCheckpoint(cosigned, n2, testKey(4).Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("verified with a key that did not sign")
	}
}

// FuzzVerifyExport: whatever the file, VerifyExport never panics, and an
// export it accepts with the node's key pinned holds only genuine entries,
// every one proven.
func FuzzVerifyExport(f *testing.F) {
	l := openTest(f, testOptions(f, filepath.Join(f.TempDir(), "l.db")))
	appendN(f, l, 0, 12)
	genuine := map[uint64][]byte{}
	for seq := uint64(1); seq <= 12; seq++ {
		e, err := l.Get(seq)
		if err != nil {
			f.Fatal(err)
		}
		genuine[seq] = e.Hash
	}
	for _, flt := range []Filter{{}, {Network: "neta"}, {FromSeq: 3, ToSeq: 7}} {
		var buf bytes.Buffer
		if err := l.WriteJSONL(context.Background(), &buf, flt); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	keys := map[string]ed25519.PublicKey{"n1": l.PublicKey()}
	// The ledger's goroutines are not needed while fuzzing.
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := VerifyExport(bytes.NewReader(b), keys)
		if err != nil {
			return
		}
		if rep.Proven != rep.Entries || rep.Unproven != 0 {
			t.Fatalf("accepted with unproven entries: %+v", rep)
		}
		for _, raw := range bytes.Split(b, []byte("\n")) {
			var e struct {
				Type string `json:"type"`
				Seq  uint64 `json:"seq"`
				Hash []byte `json:"hash"`
			}
			if json.Unmarshal(raw, &e) == nil && e.Type == LineEntry && !bytes.Equal(e.Hash, genuine[e.Seq]) {
				t.Fatalf("accepted a forged entry %d", e.Seq)
			}
		}
	})
}
