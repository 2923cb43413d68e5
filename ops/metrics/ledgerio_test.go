package metrics

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
)

// Every ledger metric exists and moves with appends and checkpoints.
func TestLedgerMetrics(t *testing.T) {
	lm := NewLedgerMetrics()
	l, err := ledger.Open(context.Background(), ledger.Options{
		Path: filepath.Join(t.TempDir(), "ledger.db"), NodeID: "n1",
		Signer:          ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)),
		CheckpointEvery: -1, CheckpointInterval: -1, Metrics: lm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reg := prometheus.NewRegistry()
	if err := lm.Register(reg, l); err != nil {
		t.Fatal(err)
	}
	names := []string{
		"clearhub_ledger_append_duration_seconds", "clearhub_ledger_wal_fsync_duration_seconds",
		"clearhub_ledger_group_commit_duration_seconds", "clearhub_ledger_entries_appended_total",
		"clearhub_ledger_bytes_appended_total", "clearhub_ledger_entries", "clearhub_ledger_unsigned_entries",
		"clearhub_ledger_wal_bytes", "clearhub_ledger_checkpoints_total", "clearhub_ledger_last_checkpoint_timestamp_seconds",
	}
	before := map[string]float64{}
	for _, n := range names {
		s := scrape(t, reg, n, nil)
		if !s.found {
			t.Errorf("%s not exported", n)
		}
		before[n] = s.value
	}
	const n = 10
	for i := range n {
		if _, err := l.Append(context.Background(), &ledger.Entry{Kind: ledger.KindRequest, Method: "MESSAGE", CallID: "c" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if got := scrape(t, reg, "clearhub_ledger_unsigned_entries", nil).value; got != n {
		t.Errorf("unsigned entries = %v before a checkpoint, want %d", got, n)
	}
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	cases := []struct {
		name     string
		atLeast  float64 // growth at least
		exactly  float64 // value after, when > 0 (or for unsigned: 0)
		absolute bool
	}{
		{name: "clearhub_ledger_append_duration_seconds", atLeast: n},
		{name: "clearhub_ledger_wal_fsync_duration_seconds", atLeast: 1},
		{name: "clearhub_ledger_group_commit_duration_seconds", atLeast: 1},
		{name: "clearhub_ledger_entries_appended_total", atLeast: n},
		{name: "clearhub_ledger_bytes_appended_total", atLeast: n * 64},
		{name: "clearhub_ledger_wal_bytes", atLeast: n * 64},
		{name: "clearhub_ledger_checkpoints_total", atLeast: 1},
		{name: "clearhub_ledger_entries", exactly: n, absolute: true},
		{name: "clearhub_ledger_unsigned_entries", exactly: 0, absolute: true},
	}
	for _, c := range cases {
		got := scrape(t, reg, c.name, nil).value
		if c.absolute {
			if got != c.exactly {
				t.Errorf("%s = %v, want %v", c.name, got, c.exactly)
			}
			continue
		}
		if got-before[c.name] < c.atLeast {
			t.Errorf("%s moved %v -> %v, want at least +%v", c.name, before[c.name], got, c.atLeast)
		}
	}
	if ts := scrape(t, reg, "clearhub_ledger_last_checkpoint_timestamp_seconds", nil).value; ts < now-60 || ts > now+60 {
		t.Errorf("last checkpoint timestamp %v, want about %v", ts, now)
	}
}
