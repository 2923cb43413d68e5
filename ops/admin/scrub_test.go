package admin

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// TestScrubAudit: the RPC runs the node's scrub and reports it; a ledger
// whose early entry was changed in the file answers ok false naming it.
func TestScrubAudit(t *testing.T) {
	cases := []struct {
		name    string
		tamper  bool
		wantOK  bool
		wantBad uint64
	}{
		{"clean", false, true, 0},
		{"tampered early entry", true, false, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			o := ledger.Options{Path: path, NodeID: "node-a", CheckpointEvery: -1, CheckpointInterval: -1,
				Signer: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))}
			l, err := ledger.Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			appendEntries(t, l, 1, 40)
			l.Close()
			if tc.tamper {
				db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				err = db.Update(func(tx *bolt.Tx) error {
					b := tx.Bucket([]byte("entries"))
					k := []byte{0, 0, 0, 0, 0, 0, 0, 3}
					v := bytes.Clone(b.Get(k))
					v[len(v)/2] ^= 1
					return b.Put(k, v)
				})
				db.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			o.VerifyTail = 8 // the change is older than Open looks
			l, err = ledger.Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			n := startAuditNode(t, sharedCA(t), newFakeCluster(), "node-a", l)
			res, err := operatorConn(t, sharedCA(t), n).ScrubAudit(ctxT(t), &hubv1.ScrubAuditRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetNode() != "node-a" || res.GetEntriesChecked() != 40 || res.GetTreeNodesChecked() != 3 ||
				res.GetOk() != tc.wantOK || res.GetFirstBadSeq() != tc.wantBad || (res.GetError() == "") == !tc.wantOK ||
				res.GetFinishedUnixNano() < res.GetStartedUnixNano() || res.GetStartedUnixNano() == 0 {
				t.Fatalf("ScrubAudit = %v", res)
			}
		})
	}
}

// TestScrubAuditNoLedger: a node without a ledger says so.
func TestScrubAuditNoLedger(t *testing.T) {
	n := startAuditNode(t, sharedCA(t), newFakeCluster(), "node-a", nil)
	_, err := operatorConn(t, sharedCA(t), n).ScrubAudit(ctxT(t), &hubv1.ScrubAuditRequest{})
	wantStatus(t, err, codes.FailedPrecondition, "no audit ledger")
}
