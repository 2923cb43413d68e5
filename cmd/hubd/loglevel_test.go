package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The logger's level is the LevelVar the admin API changes: a change
// reaches loggers derived before it (the components' With loggers).
func TestNewLoggerLevelVar(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Log.Level, cfg.Log.Format = "warn", format
			var buf bytes.Buffer
			log, level := newLogger(cfg, &buf)
			sub := log.With("component", "sip")
			if level.Level() != slog.LevelWarn {
				t.Fatalf("initial level %v, want warn", level.Level())
			}
			sub.Info("hidden")
			level.Set(slog.LevelDebug)
			sub.Debug("shown")
			out := buf.String()
			if strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
				t.Fatalf("output after the change:\n%s", out)
			}
		})
	}
}
