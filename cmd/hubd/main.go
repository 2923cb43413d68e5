// Command hubd is a clearhub node: it reads its configuration, makes or
// joins the cluster, and serves SIP, the admin API and metrics until
// signalled. Wiring is top-down, one step at a time, shut down in reverse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		if errors.Is(err, errCheckFailed) {
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "hubd: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "wal-recover" {
		return walRecover(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "recover-cluster" { // maintenance.go
		return recoverCluster(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "ledger-backup" {
		return ledgerBackup(args[1:], stdout, stderr)
	}
	cfg, act, err := parseCommandLine(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case act.version:
		fmt.Fprintf(stdout, "hubd %s (%s)\n", buildVersion(), runtime.Version())
		return nil
	case act.checkConfig != "" && err != nil:
		// Like kamailio -c: the verdict on stdout, exit 1.
		fmt.Fprintf(stdout, "%s: invalid: %v\n", act.checkConfig, err)
		return errCheckFailed
	case err != nil:
		return err
	case act.checkConfig != "":
		for _, w := range cfg.warnings() {
			fmt.Fprintf(stdout, "%s: warning: %s\n", act.checkConfig, w)
		}
		fmt.Fprintf(stdout, "%s: configuration ok\n", act.checkConfig)
		return nil
	}
	log, level := newLogger(cfg, stderr)
	for _, w := range cfg.warnings() {
		log.Warn(w)
	}
	raiseFileLimit(log)
	ensureProcs(os.Getenv, log)             // procs.go
	_, memLimit := ensureGC(os.Getenv, log) // procs.go
	// sipgo has one process-wide logger; route it through ours so its
	// records share the level and format.
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if memLimit > 0 {
		go followMemoryLimit(ctx, 5*time.Second) // ends with ctx (procs.go)
	}
	n, err := start(ctx, cfg, log, level)
	if err != nil {
		if ctx.Err() != nil {
			// Signalled while starting (e.g. still restoring): a clean stop.
			log.Info("signal received while starting; stopped", "err", err)
			return nil
		}
		return err
	}
	n.printBanner(stdout)
	// systemd Type=notify: ready means state restored and listeners open.
	if err := sdNotify("READY=1\nSTATUS=serving"); err != nil {
		log.Warn("could not tell the service manager we are ready", "err", err)
	}
	removed := n.raft.RemovedChan()
	if n.removed {
		removed = nil
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received, shutting down")
			_ = sdNotify("STOPPING=1")
			return n.shutdown()
		case <-removed:
			removed = nil
			n.stopSIPRemoved()
			continue
		case err := <-n.sipDone:
			// A SIP listener died: a hub that cannot route must not pretend.
			n.sipDone <- err // shutdown reads it again
			log.Error("SIP plane stopped", "err", err)
			if serr := n.shutdown(); serr != nil {
				return errors.Join(err, serr)
			}
			return fmt.Errorf("SIP plane stopped: %w", err)
		}
	}
}

// errCheckFailed: --check-config already printed the verdict; exit 1.
var errCheckFailed = errors.New("configuration check failed")

// newLogger builds hubd's logger. Its level is a LevelVar that the admin
// API's SetLogLevel changes at runtime (hubctl log-level); every logger
// derived with With, sipgo's and raft's included, shares it.
func newLogger(cfg Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.Log.Level)) // validated by Config.Validate
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
