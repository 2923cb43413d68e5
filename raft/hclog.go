package raft

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output into a *slog.Logger.
// Raft logs chattily at Debug; the adapter starts at Info.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level *atomic.Int32 // hclog.Level, shared by derived loggers
}

func newHCLogger(l *slog.Logger, level hclog.Level) hclog.Logger {
	lv := &atomic.Int32{}
	lv.Store(int32(level))
	return &hclogAdapter{l: l, name: "raft", level: lv}
}

func (h *hclogAdapter) enabled(level hclog.Level) bool {
	return level != hclog.Off && level >= hclog.Level(h.level.Load())
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if !h.enabled(level) {
		return
	}
	var sl slog.Level
	switch {
	case level <= hclog.Debug:
		sl = slog.LevelDebug
	case level == hclog.Info:
		sl = slog.LevelInfo
	case level == hclog.Warn:
		sl = slog.LevelWarn
	default:
		sl = slog.LevelError
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, sl) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	all = append(all, "component", h.name)
	all = append(all, h.args...)
	all = append(all, args...)
	h.l.Log(ctx, sl, msg, all...)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) IsTrace() bool                 { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool                 { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool                  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool                  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool                 { return h.enabled(hclog.Error) }
func (h *hclogAdapter) ImpliedArgs() []any            { return h.args }
func (h *hclogAdapter) Name() string                  { return h.name }
func (h *hclogAdapter) SetLevel(l hclog.Level)        { h.level.Store(int32(l)) }
func (h *hclogAdapter) GetLevel() hclog.Level         { return hclog.Level(h.level.Load()) }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "."
	}
	c.name += name
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{h}
}

// stdWriter serves libraries that log through the standard library logger;
// lines such as "[WARN] raft: ..." keep their level.
type stdWriter struct{ h *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := hclog.Info
	for _, lv := range []struct {
		tag string
		l   hclog.Level
	}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
		if strings.HasPrefix(msg, lv.tag) {
			level, msg = lv.l, strings.TrimSpace(msg[len(lv.tag):])
			break
		}
	}
	w.h.Log(level, msg)
	return len(p), nil
}

var _ hclog.Logger = (*hclogAdapter)(nil)
