package raft

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output into a *slog.Logger.
// Raft logs chattily at Debug; the adapter starts at Info.
//
// hclog's conventions are kept: arguments are key/value pairs (an odd one
// out is filed under hclog.MissingKey), hclog.Fmt values are formatted
// (raft logs its configuration as hclog.Fmt("%+v", servers)), and a key
// given again, by With or in the call, replaces the earlier value instead
// of repeating it. The logger's name goes under "module" only for named
// sub-loggers ("raft.snapshot"): the caller's slog logger already says
// which component this is.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []slog.Attr   // With() arguments, keys unique
	level *atomic.Int32 // hclog.Level, shared by derived loggers
}

const hclogRoot = "raft"

func newHCLogger(l *slog.Logger, level hclog.Level) hclog.Logger {
	lv := &atomic.Int32{}
	lv.Store(int32(level))
	return &hclogAdapter{l: l, name: hclogRoot, level: lv}
}

func (h *hclogAdapter) enabled(level hclog.Level) bool {
	return level != hclog.Off && level >= hclog.Level(h.level.Load())
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if !h.enabled(level) {
		return
	}
	attrs := hclogAttrs(args)
	level = routineLevel(level, msg, attrs)
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
	all := make([]slog.Attr, 0, len(h.args)+len(attrs)+1)
	if h.name != hclogRoot {
		all = append(all, slog.String("module", h.name))
	}
	all = mergeAttrs(append(all, h.args...), attrs)
	h.l.LogAttrs(ctx, sl, msg, all...)
}

// hclogAttrs turns hclog arguments into attributes, formatting hclog's
// value types as hclog itself does.
func hclogAttrs(args []any) []slog.Attr {
	if len(args) == 0 {
		return nil
	}
	out := make([]slog.Attr, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = mergeAttrs(out, []slog.Attr{slog.Any(hclog.MissingKey, hclogValue(args[i]))})
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		out = mergeAttrs(out, []slog.Attr{slog.Any(key, hclogValue(args[i+1]))})
	}
	return out
}

func hclogValue(v any) any {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) > 0 {
			if f, ok := x[0].(string); ok {
				return fmt.Sprintf(f, x[1:]...)
			}
		}
		return fmt.Sprint(x...)
	case hclog.Hex:
		return "0x" + strconv.FormatInt(int64(x), 16)
	case hclog.Octal:
		return "0" + strconv.FormatInt(int64(x), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatInt(int64(x), 2)
	case hclog.Quote:
		return strconv.Quote(string(x))
	case hclog.CapturedStacktrace:
		return string(x)
	case error:
		return x.Error() // as hclog: the message, not the error value
	}
	return v
}

// mergeAttrs appends add to base; a key already present is replaced in
// place (hclog's With semantics), so no key is repeated. The lists are a
// handful of entries long.
func mergeAttrs(base, add []slog.Attr) []slog.Attr {
	for _, a := range add {
		replaced := false
		for i := range base {
			if base[i].Key == a.Key {
				base[i], replaced = a, true
				break
			}
		}
		if !replaced {
			base = append(base, a)
		}
	}
	return base
}

// routineLevel downgrades to Info what hashicorp/raft logs at Warn although
// it is the normal course of a join or a first start; real trouble
// ("failed to contact", a term mismatch, elections with a known leader)
// stays Warn.
func routineLevel(level hclog.Level, msg string, attrs []slog.Attr) hclog.Level {
	if level != hclog.Warn {
		return level
	}
	switch msg {
	case "no known peers, aborting election":
		// A joining node waits to be added as a voter.
		return hclog.Info
	case "appendEntries rejected, sending older logs":
		// The leader catching a new or lagging follower up.
		return hclog.Info
	case "failed to get previous log":
		// The follower side of the same: its log ends before the
		// leader's previous index.
		prev, ok1 := attrUint(attrs, "previous-index")
		last, ok2 := attrUint(attrs, "last-index")
		if ok1 && ok2 && last < prev {
			return hclog.Info
		}
	case "heartbeat timeout reached, starting election":
		// The first election after a start, with no leader heard of yet.
		if v, ok := attrString(attrs, "last-leader-id"); ok && v == "" {
			return hclog.Info
		}
	}
	return level
}

func attrUint(attrs []slog.Attr, key string) (uint64, bool) {
	for _, a := range attrs {
		if a.Key != key {
			continue
		}
		switch v := a.Value.Any().(type) {
		case uint64:
			return v, true
		case int64:
			return uint64(max(v, 0)), true
		}
		n, err := strconv.ParseUint(a.Value.String(), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func attrString(attrs []slog.Attr, key string) (string, bool) {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.String(), true
		}
	}
	return "", false
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
func (h *hclogAdapter) ImpliedArgs() []any {
	out := make([]any, 0, 2*len(h.args))
	for _, a := range h.args {
		out = append(out, a.Key, a.Value.Any())
	}
	return out
}
func (h *hclogAdapter) Name() string           { return h.name }
func (h *hclogAdapter) SetLevel(l hclog.Level) { h.level.Store(int32(l)) }
func (h *hclogAdapter) GetLevel() hclog.Level  { return hclog.Level(h.level.Load()) }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = mergeAttrs(append([]slog.Attr(nil), h.args...), hclogAttrs(args))
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
