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
	"syscall"

	"github.com/emiago/sipgo/sip"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "hubd: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := newLogger(cfg, stderr)
	// sipgo has one process-wide logger; route it through ours so its
	// records share the level and format.
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	n.printBanner(stdout)
	select {
	case <-ctx.Done():
		log.Info("signal received, shutting down")
	case err := <-n.sipDone:
		// A SIP listener died: a hub that cannot route must not pretend.
		n.sipDone <- err // shutdown reads it again
		log.Error("SIP plane stopped", "err", err)
		if serr := n.shutdown(); serr != nil {
			return errors.Join(err, serr)
		}
		return fmt.Errorf("SIP plane stopped: %w", err)
	}
	return n.shutdown()
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
