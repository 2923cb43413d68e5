package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clearhub/ledger"
)

// TestWALRecoverCommand: a node whose ledger WAL has a damaged, applied
// frame does not start, and its error names `hubd wal-recover`; the dry run
// lists the damage and changes nothing; --yes recovers, keeping the file
// aside, and the ledger opens with every entry plus the recovery's own.
func TestWALRecoverCommand(t *testing.T) {
	live, dir := t.TempDir(), t.TempDir()
	signer, err := loadOrCreateSigner(filepath.Join(dir, "pki", "audit-ed25519.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = live
	quiet := slog.New(slog.DiscardHandler)
	l, err := ledger.Open(context.Background(), ledgerOptions(cfg, "n1", signer, quiet))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := l.Append(context.Background(), &ledger.Entry{Kind: ledger.KindRequest, Method: "MESSAGE", CallID: "c" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Get(20); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 leaves: the bbolt file and the WAL, still holding
	// every frame; then one bit flips in the first frame.
	wals, _ := filepath.Glob(filepath.Join(live, "ledger.db-wal-*"))
	for _, name := range append(wals, filepath.Join(live, "ledger.db")) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(name, "-wal-") {
			data[20+30] ^= 1
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(name)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	cfg.DataDir = dir
	walFile := filepath.Join(dir, filepath.Base(wals[0]))

	_, err = ledger.Open(context.Background(), ledgerOptions(cfg, "n1", signer, quiet))
	if msg := walHint(err, dir).Error(); !strings.Contains(msg, walFile) || !strings.Contains(msg, "offset 0") ||
		!strings.Contains(msg, "hubd wal-recover --data "+dir) {
		t.Fatalf("start-up error does not name the file, offset and recovery command:\n%s", msg)
	}

	var out bytes.Buffer
	if err := run([]string{"wal-recover", "--data", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{walFile, "offset 0", "CORRUPT", "would lose nothing", "dry run: nothing changed", "--yes"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(walFile); err != nil {
		t.Fatalf("the dry run touched the wal: %v", err)
	}

	out.Reset()
	if err := run([]string{"wal-recover", "--data-dir", dir, "--yes"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "moved aside") || !strings.Contains(out.String(), "recovered") {
		t.Fatalf("recovery output:\n%s", out.String())
	}
	if aside, _ := filepath.Glob(walFile + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("damaged wal not kept aside: %v", aside)
	}
	l, err = ledger.Open(context.Background(), ledgerOptions(cfg, "n1", signer, quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != 21 {
		t.Fatalf("size %d after recovery, want 20 entries and the recovery's own", l.Size())
	}
	if err := l.Verify(context.Background(), 1); err != nil {
		t.Fatal(err)
	}

	if err := run([]string{"wal-recover", "--bogus"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("bad flag: %v", err)
	}
}
