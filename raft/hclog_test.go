package raft

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// attrRecorder is a slog handler that keeps every record with all its
// attributes (those of With included), for asserting on them.
type attrRecorder struct {
	mu    *sync.Mutex
	recs  *[]recorded
	attrs []slog.Attr
}

type recorded struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

func newAttrRecorder() (*slog.Logger, func() []recorded) {
	h := attrRecorder{mu: &sync.Mutex{}, recs: &[]recorded{}}
	return slog.New(h), func() []recorded {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]recorded(nil), *h.recs...)
	}
}

func (h attrRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h attrRecorder) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, recorded{r.Level, r.Message, attrs})
	h.mu.Unlock()
	return nil
}
func (h attrRecorder) WithAttrs(a []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), a...)
	return h
}
func (h attrRecorder) WithGroup(string) slog.Handler { return h }

// values returns every value logged under key, as strings.
func (r recorded) values(key string) []string {
	var out []string
	for _, a := range r.attrs {
		if a.Key == key {
			out = append(out, a.Value.String())
		}
	}
	return out
}

// The adapter formats hclog's value types, files a lone trailing value
// under hclog's MissingKey, never repeats a key (With and call arguments
// replace earlier values), and names sub-loggers once.
func TestHCLogAdapterFormatting(t *testing.T) {
	type server struct {
		ID   string
		Addr string
	}
	for _, tc := range []struct {
		name string
		log  func(hl hclog.Logger)
		key  string
		want []string // every value under key, in order
	}{
		{"Fmt %+v", func(hl hclog.Logger) {
			hl.Info("initial configuration", "servers", hclog.Fmt("%+v", []server{{"n1", "10.0.0.1:9444"}}))
		}, "servers", []string{"[{ID:n1 Addr:10.0.0.1:9444}]"}},
		{"Fmt percent", func(hl hclog.Logger) { hl.Info("progress", "percent-complete", hclog.Fmt("%0.2f%%", 42.0)) },
			"percent-complete", []string{"42.00%"}},
		{"Hex", func(hl hclog.Logger) { hl.Info("x", "v", hclog.Hex(255)) }, "v", []string{"0xff"}},
		{"Quote", func(hl hclog.Logger) { hl.Info("x", "v", hclog.Quote("a b")) }, "v", []string{`"a b"`}},
		{"odd argument", func(hl hclog.Logger) { hl.Info("x", "lonely") }, hclog.MissingKey, []string{"lonely"}},
		{"With twice", func(hl hclog.Logger) { hl.With("peer", "a").With("peer", "b").Info("x") }, "peer", []string{"b"}},
		{"With then call", func(hl hclog.Logger) { hl.With("peer", "a").Info("x", "peer", "c") }, "peer", []string{"c"}},
		{"call twice", func(hl hclog.Logger) { hl.Info("x", "k", 1, "k", 2) }, "k", []string{"2"}},
		{"root has no module", func(hl hclog.Logger) { hl.Info("x") }, "module", nil},
		{"no component of its own", func(hl hclog.Logger) { hl.Named("snapshot").Info("x") }, "component", []string{"raft"}},
		{"named", func(hl hclog.Logger) { hl.Named("snapshot").Named("x").Info("x") }, "module", []string{"raft.snapshot.x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, recs := newAttrRecorder()
			// hubd hands raft a logger that already carries its component.
			tc.log(newHCLogger(logger.With("component", "raft"), hclog.Info))
			rs := recs()
			if len(rs) != 1 {
				t.Fatalf("%d records, want 1", len(rs))
			}
			got := rs[0].values(tc.key)
			if len(got) != len(tc.want) {
				t.Fatalf("%s = %q, want %q (attrs %v)", tc.key, got, tc.want, rs[0].attrs)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s = %q, want %q", tc.key, got, tc.want)
				}
			}
		})
	}
}

// What raft logs at Warn in the normal course of a join or a first start
// comes out at Info; real trouble stays Warn.
func TestHCLogAdapterRoutineLevels(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		args []any
		want slog.Level
	}{
		{"no known peers, aborting election", nil, slog.LevelInfo},
		{"appendEntries rejected, sending older logs", []any{"peer", "n2", "next", uint64(1)}, slog.LevelInfo},
		{"failed to get previous log", []any{"previous-index", uint64(3), "last-index", uint64(0), "error", "log not found"}, slog.LevelInfo},
		{"failed to get previous log", []any{"previous-index", uint64(3), "last-index", uint64(7), "error", "log not found"}, slog.LevelWarn},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "", "last-leader-id", ""}, slog.LevelInfo},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "10.0.0.1:9444", "last-leader-id", "n1"}, slog.LevelWarn},
		{"failed to contact", []any{"server-id", "n2", "time", "1s"}, slog.LevelWarn},
		{"previous log term mis-match", []any{"ours", uint64(1), "remote", uint64(2)}, slog.LevelWarn},
	} {
		logger, recs := newAttrRecorder()
		newHCLogger(logger, hclog.Info).Warn(tc.msg, tc.args...)
		if rs := recs(); len(rs) != 1 || rs[0].level != tc.want {
			t.Errorf("%q %v: records %+v, want one at %s", tc.msg, tc.args, rs, tc.want)
		}
	}
}

// Issue 9: a normal join logged two WARN lines (the leader catching the
// new follower up, and the follower's side of it).
func TestJoinLogsNoWarnings(t *testing.T) {
	logger, recs := newAttrRecorder()
	newInmemCluster(t, 3, func(c *Config) { c.Logger = logger.With("node", c.ID) })
	for _, r := range recs() {
		if r.level >= slog.LevelWarn {
			t.Errorf("%s %q %v", r.level, r.msg, r.attrs)
		}
	}
}
