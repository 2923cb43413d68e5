package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"clearhub/ops/pki"
)

// audit checkpoints lists every stored checkpoint with the time of the
// last entry it covers, checks each signature, and says when the list or
// the times are incomplete.
func TestAuditCheckpointsList(t *testing.T) {
	e := newAuditEnv(t)
	for _, upTo := range []int{3, 7, 12} {
		e.appendN(t, int(e.l.Size())+1, upTo)
		if _, err := e.l.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.appendN(t, 13, 14) // not checkpointed
	at := func(seq int) *string { return rfc3339(auditT0 + int64(seq)*int64(time.Second)) }
	root := func(size uint64) string {
		cp, err := e.l.CheckpointAt(size)
		if err != nil {
			t.Fatal(err)
		}
		return b64(cp.Root)
	}
	readonly := filepath.Join(t.TempDir(), "rita")
	_, certPEM, keyPEM, err := e.ca.IssueOperatorKeyPair("rita", pki.AdminRoleReadonly, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, readonly+".crt", certPEM, 0o644)
	writeFile(t, readonly+".key", keyPEM, 0o600)

	for _, tc := range []struct {
		name    string
		args    []string
		want    checkpointsView
		errNote string
	}{
		{"all", nil, checkpointsView{Origin: "clearhub/n1", Complete: true, Checkpoints: []checkpointRow{
			{3, root(3), at(3)}, {7, root(7), at(7)}, {12, root(12), at(12)}}}, ""},
		{"limit", []string{"--limit", "2"}, checkpointsView{Origin: "clearhub/n1", Complete: false, Checkpoints: []checkpointRow{
			{7, root(7), at(7)}, {12, root(12), at(12)}}}, ""},
		{"readonly: no times", []string{"--cert", readonly + ".crt", "--key", readonly + ".key"}, checkpointsView{Origin: "clearhub/n1", Complete: true,
			Checkpoints: []checkpointRow{{3, root(3), nil}, {7, root(7), nil}, {12, root(12), nil}}}, "need a role that reads entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"audit", "checkpoints", "--node-key", e.keyFlag(), "-o", "json"}, tc.args...)
			out, errOut, code := e.hubctl(t, args...)
			var got checkpointsView
			if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
				t.Fatalf("exit %d %v\n%s%s", code, err, out, errOut)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if !strings.Contains(errOut, tc.errNote) || tc.errNote == "" && errOut != "" {
				t.Errorf("stderr %q, want %q", errOut, tc.errNote)
			}
		})
	}
	out, _, code := e.hubctl(t, "audit", "checkpoints", "--node-key", e.keyFlag())
	if code != 0 || !regexpRow(out, "TREE", "SIZE", "LAST", "ENTRY", "ROOT") || !regexpRow(out, "7", *at(7), root(7)) {
		t.Errorf("table: exit %d\n%s", code, out)
	}
	// A wrong pinned key fails the listing: the node cannot vouch for itself.
	other := openAuditLedger(t, 2)
	out, errOut, code := e.hubctl(t, "audit", "checkpoints", "--node-key", "n1="+b64(other.PublicKey()))
	if code != exitFailure || !strings.Contains(errOut, "verification FAILED") {
		t.Errorf("wrong key: exit %d\n%s%s", code, out, errOut)
	}
}
