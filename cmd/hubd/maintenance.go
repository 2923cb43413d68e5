package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"clearhub/raft"
)

// Offline maintenance subcommands of a stopped node: recover-cluster (a
// cluster that lost its quorum for good) and ledger-backup (a consistent
// copy of the audit ledger).

// dataDirFlags parses the --data/--config pair the offline subcommands
// share and returns the data directory.
func dataDirFlags(fs *flag.FlagSet) func() (string, error) {
	var dataDir string
	fs.StringVar(&dataDir, "data", "", "data directory of the stopped node (default: data_dir of --config, else hub-data)")
	fs.StringVar(&dataDir, "data-dir", "", "same as --data")
	configFile := fs.String("config", "", "the node's YAML configuration (for data_dir)")
	return func() (string, error) {
		cfg := DefaultConfig()
		if *configFile != "" {
			if err := loadFile(*configFile, &cfg); err != nil {
				return "", err
			}
		}
		if dataDir != "" {
			cfg.DataDir = dataDir
		}
		return cfg.DataDir, nil
	}
}

func parseSub(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// recoverCluster is `hubd recover-cluster`: with the node stopped, rewrite
// its raft state so that it starts as the only member (or one of the
// --peers) of a new cluster, keeping the state it had.
func recoverCluster(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hubd recover-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := dataDirFlags(fs)
	peersFlag := fs.String("peers", "", "the new cluster: id=raft_addr,... (usually this node alone); without it, show the last known configuration and change nothing")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hubd recover-cluster [--data DIR | --config FILE] --peers ID=RAFT_ADDR[,...]\n\n"+
			"For a cluster that lost its quorum for good (a majority of its voters is gone): with\n"+
			"hubd stopped on this survivor, rewrite its raft state so that it starts as a member of\n"+
			"a new cluster made of --peers, with the networks, policy and nodes it had. Every entry\n"+
			"in its log is kept, committed or not. Never run it while the lost nodes could come\n"+
			"back: they would form a second cluster with another history. See docs/operations.md,\n"+
			"\"Losing quorum\".\n\n")
		fs.PrintDefaults()
	}
	if err := parseSub(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hubd recover-cluster: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	dataDir, err := dir()
	if err != nil {
		return err
	}
	idb, err := os.ReadFile(filepath.Join(dataDir, "node-id"))
	if err != nil {
		return fmt.Errorf("recover-cluster: %s is not a hub data directory: %w", dataDir, err)
	}
	id := strings.TrimSpace(string(idb))
	raftDir := filepath.Join(dataDir, "raft")
	last, err := raft.LastConfiguration(raftDir)
	if err != nil {
		return fmt.Errorf("recover-cluster: %w", err)
	}
	if *peersFlag == "" {
		fmt.Fprintf(stdout, "node %s (data in %s); last known raft configuration:\n", id, dataDir)
		self := ""
		for _, s := range last {
			fmt.Fprintf(stdout, "  %s=%s (%s)\n", s.ID, s.Address, s.Suffrage)
			if s.ID == id {
				self = s.Address
			}
		}
		if self != "" {
			fmt.Fprintf(stdout, "to restart this node alone as a new cluster:\n  hubd recover-cluster --data %s --peers %s=%s\n", dataDir, id, self)
		}
		fmt.Fprintln(stderr, "hubd recover-cluster: --peers is required to change anything")
		return errUsage
	}
	peers, err := parsePeers(*peersFlag)
	if err != nil {
		fmt.Fprintf(stderr, "hubd recover-cluster: --peers: %v\n", err)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := raft.RecoverCluster(raft.RecoverConfig{ID: id, Dir: raftDir, Servers: peers, Logger: log})
	if err != nil {
		return fmt.Errorf("recover-cluster: %w", err)
	}
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.ID + "=" + p.Address
	}
	fmt.Fprintf(stdout, "recovered: node %s now starts as a cluster of %s, with %d networks, %d policies and %d node records (state index %d)\n",
		id, strings.Join(names, ", "), len(st.Networks()), len(st.Policies()), len(st.Nodes()), st.Index)
	fmt.Fprintln(stdout, "start hubd; then remove the lost nodes' records (hubctl cluster remove ID) and join new nodes")
	return nil
}

// parsePeers reads "id=host:port,id=host:port".
func parsePeers(s string) ([]raft.Server, error) {
	var out []raft.Server
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%q: want ID=RAFT_ADDR", p)
		}
		out = append(out, raft.Server{ID: id, Address: addr, Suffrage: "voter"})
	}
	if len(out) == 0 {
		return nil, errors.New("no peer given")
	}
	return out, nil
}

// ledgerBackup is `hubd ledger-backup`: a consistent copy of a stopped
// node's ledger.db, made inside one bbolt read transaction of a read-only
// open (bbolt's Tx.WriteTo). A running node holds the file's lock; its
// ledger is backed up online with hubctl audit export instead.
func ledgerBackup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hubd ledger-backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := dataDirFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hubd ledger-backup [--data DIR | --config FILE] FILE\n\n"+
			"Writes a consistent copy of the stopped node's audit ledger (ledger.db) to FILE.\n"+
			"Restore it by putting it back as DATA/ledger.db with the node stopped. While the\n"+
			"node runs, back its ledger up with hubctl audit export.\n\n")
		fs.PrintDefaults()
	}
	if err := parseSub(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "hubd ledger-backup: give exactly one FILE to write")
		return errUsage
	}
	dst := fs.Arg(0)
	dataDir, err := dir()
	if err != nil {
		return err
	}
	src := filepath.Join(dataDir, "ledger.db")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("ledger-backup: %w", err)
	}
	db, err := bolt.Open(src, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("ledger-backup: %s is locked: hubd is running (stop it, or use hubctl audit export): %w", src, err)
		}
		return fmt.Errorf("ledger-backup: open %s: %w", src, err)
	}
	defer db.Close()
	// Acknowledged entries may still be only in the write-ahead log after
	// a crash; Open replays them into bbolt. A copy of bbolt alone would
	// miss them.
	if wal, _ := filepath.Glob(src + "-wal-[0-9a-f]*"); len(wal) > 0 {
		return fmt.Errorf("ledger-backup: %s has write-ahead log files beside it (%s): the node did not stop cleanly; start hubd once and stop it (it replays them), then back up", src, filepath.Base(wal[0]))
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("ledger-backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		var werr error
		n, werr = tx.WriteTo(tmp)
		return werr
	})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("ledger-backup: write %s: %w", dst, err)
	}
	fmt.Fprintf(stdout, "ledger backed up: %d bytes to %s\n", n, dst)
	return nil
}
