package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"clearhub/ledger"
)

// ledgerOptions are the audit ledger's options, the same for the node and
// for wal-recover.
func ledgerOptions(cfg Config, id string, signer ed25519.PrivateKey, log *slog.Logger) ledger.Options {
	return ledger.Options{
		Path:               filepath.Join(cfg.DataDir, "ledger.db"),
		NodeID:             id,
		Signer:             signer,
		CheckpointEvery:    cfg.Ledger.CheckpointEvery,
		CheckpointInterval: cfg.Ledger.CheckpointInterval,
		AllowBrokenChain:   cfg.Ledger.AllowBrokenChain,
		Retention:          cfg.Ledger.Retention,
		SegmentSize:        cfg.Ledger.SegmentSize,
		ScrubInterval:      cfg.Ledger.ScrubInterval,
		ScrubRate:          cfg.Ledger.ScrubRate,
		Logger:             log,
	}
}

// walHint adds to a refused ledger Open what the operator can do about it.
func walHint(err error, dataDir string) error {
	var we *ledger.WALError
	if !errors.As(err, &we) {
		return err
	}
	return fmt.Errorf("%w\nthe node does not start rather than drop acknowledged audit entries. With hubd stopped, see what a recovery would replay, drop and lose:\n  hubd wal-recover --data %s\nthen do it (damaged wal files are moved aside, never deleted):\n  hubd wal-recover --data %s --yes", err, dataDir, dataDir)
}

// walRecover is `hubd wal-recover`: the offline recovery of a ledger whose
// write-ahead log Open refused. It reports first (a dry run changes
// nothing); --yes does it.
func walRecover(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hubd wal-recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var dataDir string
	fs.StringVar(&dataDir, "data", "", "data directory of the stopped node (default: data_dir of --config, else hub-data)")
	fs.StringVar(&dataDir, "data-dir", "", "same as --data")
	configFile := fs.String("config", "", "the node's YAML configuration (data_dir and ledger settings)")
	yes := fs.Bool("yes", false, "recover: replay what still chains on, move damaged wal files aside, record the recovery in the ledger")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hubd wal-recover [--data DIR | --config FILE] [--yes]\n\n"+
			"Reports, for a stopped node, every damaged frame of the audit ledger's write-ahead log:\n"+
			"file, offset, seqs, whether bbolt already holds them, and what recovery would replay\n"+
			"and lose. Changes nothing unless --yes is given.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hubd wal-recover: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg := DefaultConfig()
	if *configFile != "" {
		if err := loadFile(*configFile, &cfg); err != nil {
			return err
		}
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	// Read what the node keeps; never create any of it here.
	idb, err := os.ReadFile(filepath.Join(cfg.DataDir, "node-id"))
	if err != nil {
		return fmt.Errorf("wal-recover: %s is not a hub data directory: %w", cfg.DataDir, err)
	}
	keyPath := filepath.Join(cfg.DataDir, "pki", "audit-ed25519.key")
	if _, err := os.Stat(keyPath); err != nil {
		return fmt.Errorf("wal-recover: audit signing key: %w", err)
	}
	signer, err := loadOrCreateSigner(keyPath)
	if err != nil {
		return fmt.Errorf("wal-recover: audit signing key: %w", err)
	}
	o := ledgerOptions(cfg, strings.TrimSpace(string(idb)), signer,
		slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	o.ScrubInterval = 0
	if _, err := os.Stat(o.Path); err != nil {
		return fmt.Errorf("wal-recover: %w", err)
	}
	ctx := context.Background()
	if !*yes {
		rep, err := ledger.InspectWAL(ctx, o)
		if err != nil {
			return fmt.Errorf("wal-recover (is hubd still running on %s?): %w", cfg.DataDir, err)
		}
		rep.WriteText(stdout)
		if !rep.Clean() || len(rep.Torn) > 0 {
			fmt.Fprintf(stdout, "to do it: hubd wal-recover --data %s --yes\n", cfg.DataDir)
		}
		return nil
	}
	rep, err := ledger.RecoverWAL(ctx, o)
	if rep != nil {
		rep.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("wal-recover: %w", err)
	}
	fmt.Fprintln(stdout, "recovered: the ledger opens; start hubd")
	return nil
}
