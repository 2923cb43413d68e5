package chatroom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clearhub/hub/msrp"
)

// fakeListener hands out its steps (an error or a connection) in order,
// then blocks until closed.
type fakeListener struct {
	mu     sync.Mutex
	steps  []acceptStep
	closed chan struct{}
	once   sync.Once
}

type acceptStep struct {
	conn net.Conn
	err  error
}

func newFakeListener(steps ...acceptStep) *fakeListener {
	return &fakeListener{steps: steps, closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.steps) > 0 {
		s := l.steps[0]
		l.steps = l.steps[1:]
		l.mu.Unlock()
		return s.conn, s.err
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2857} }

func (l *fakeListener) left() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.steps)
}

// pipeConn is one end of a net.Pipe that says it came from a TCP peer.
type pipeConn struct {
	net.Conn
	remote net.Addr
}

func (c pipeConn) RemoteAddr() net.Addr { return c.remote }

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// logRecords keeps the records logged through it.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

// retries are the retry_in values of the accept-failure lines, in order.
func (h *logRecords) retries() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	for _, r := range h.recs {
		if r.Message != "room MSRP accept failed; retrying" {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "retry_in" {
				out = append(out, a.Value.Duration())
			}
			return true
		})
	}
	return out
}

// probeUnknownSession sends a SEND naming no session on c and wants the
// focus's 481: the connection was accepted and served.
func probeUnknownSession(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	f := &msrp.Frame{TID: randomHex(6), Method: "SEND", ToPath: []string{"msrp://127.0.0.1:2857/nosuchsession;tcp"},
		FromPath: []string{"msrp://127.0.0.9:9/probe;tcp"}, MessageID: "m", Flag: msrp.FlagEnd}
	if _, err := c.Write(f.Append(nil)); err != nil {
		t.Fatalf("write to the focus: %v", err)
	}
	res, err := msrp.NewReader(c, msrp.Limits{}).ReadFrame()
	if err != nil || res.Code != 481 {
		t.Fatalf("answer to a SEND for no session: %+v %v, want 481", res, err)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestNextAcceptDelay(t *testing.T) {
	for _, tc := range []struct{ prev, want time.Duration }{
		{0, 5 * time.Millisecond},
		{5 * time.Millisecond, 10 * time.Millisecond},
		{320 * time.Millisecond, 640 * time.Millisecond},
		{640 * time.Millisecond, time.Second},
		{time.Second, time.Second},
	} {
		if got := msrp.NextAcceptDelay(tc.prev); got != tc.want {
			t.Errorf("NextAcceptDelay(%v) = %v, want %v", tc.prev, got, tc.want)
		}
	}
}

// The focus's accept loop outlives Accept errors (before: the first one
// ended session mode on the node for good): each is counted, logged with
// its backoff (5 ms doubling, reset by a connection), and connections
// after it are served. Only a closed listener ends the loop.
func TestSessionAcceptSurvivesErrors(t *testing.T) {
	const conn = "conn" // a step that hands out a connection
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		steps   []any // error or conn
		retries []time.Duration
		exits   bool // the loop returns at the last step
	}{
		{"out of descriptors", []any{syscall.EMFILE, syscall.EMFILE, syscall.EMFILE, conn}, []time.Duration{5 * ms, 10 * ms, 20 * ms}, false},
		{"backoff reset by a connection", []any{syscall.ECONNABORTED, syscall.ECONNABORTED, conn, syscall.ECONNABORTED, conn},
			[]time.Duration{5 * ms, 10 * ms, 5 * ms}, false},
		{"wrapped errno", []any{fmt.Errorf("accept tcp: %w", syscall.ENFILE), conn}, []time.Duration{5 * ms}, false},
		{"timeout", []any{timeoutErr{}, conn}, []time.Duration{5 * ms}, false},
		{"unknown error", []any{errors.New("accept4: something odd"), conn}, []time.Duration{5 * ms}, false},
		{"closed listener ends the loop", []any{net.ErrClosed, conn}, nil, true},
		{"wrapped closed ends the loop", []any{syscall.EMFILE, fmt.Errorf("accept tcp: %w", net.ErrClosed), conn}, []time.Duration{5 * ms}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecords{}
			e := newEnv(t, func(c *Config) { c.SessionAddr, c.Logger = "127.0.0.1:0", slog.New(logs) })
			var steps []acceptStep
			var clients []net.Conn
			errs := 0
			for _, s := range tc.steps {
				if err, ok := s.(error); ok {
					steps = append(steps, acceptStep{err: err})
					errs++
					continue
				}
				srv, cl := net.Pipe()
				t.Cleanup(func() { cl.Close(); srv.Close() })
				steps = append(steps, acceptStep{conn: pipeConn{srv, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 5000}}})
				clients = append(clients, cl)
			}
			ln := newFakeListener(steps...)
			done := make(chan struct{})
			go func() { e.svc.focus.acceptLoop(ln, false); close(done) }()
			t.Cleanup(func() { ln.Close(); <-done })
			if tc.exits {
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the loop did not end at a closed listener")
				}
				if ln.left() != 1 {
					t.Fatalf("%d steps left after the loop ended, want 1 (the connection after the close)", ln.left())
				}
				errs-- // the closing error is not a retried one
			} else {
				for _, c := range clients {
					probeUnknownSession(t, c)
				}
				select {
				case <-done:
					t.Fatal("the loop ended without its listener closed")
				default:
				}
			}
			if got := counterValue(t, e.svc.m.acceptErrs); got != float64(errs) {
				t.Errorf("accept errors counted %v, want %d", got, errs)
			}
			if got := logs.retries(); !slices.Equal(got, tc.retries) {
				t.Errorf("logged retries %v, want %v", got, tc.retries)
			}
			if !tc.exits {
				ln.Close()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the loop did not end when its listener closed")
				}
			}
		})
	}
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed wants the focus to close c (EOF or reset), not leave it open.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the focus kept the connection open (%v)", what, err)
	}
}

// expectOpen wants c still open: a short read times out.
func expectOpen(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: connection closed (%v), want it open", what, err)
	}
}

func openConns(f *focus, ip string) (total, fromIP, pending int) { return f.gate.Open(ip) }

// Each connection cap of the focus closes the connection over it at once
// and counts it under its own label; other sources are not affected.
// Loopback sources 127.0.0.1-3 stand for three peers.
func TestSessionConnectionCaps(t *testing.T) {
	type dial struct {
		src     string
		refused string // cap label; "": admitted
	}
	for _, tc := range []struct {
		name               string
		total, perIP, pend int
		dials              []dial
	}{
		{"pending per source", 10, 10, 2, []dial{{"127.0.0.1", ""}, {"127.0.0.1", ""}, {"127.0.0.1", "pending_per_source"},
			{"127.0.0.2", ""}, {"127.0.0.1", "pending_per_source"}}},
		{"per source", 10, 2, 5, []dial{{"127.0.0.1", ""}, {"127.0.0.1", ""}, {"127.0.0.1", "per_source"}, {"127.0.0.2", ""}}},
		{"total", 2, 5, 5, []dial{{"127.0.0.1", ""}, {"127.0.0.2", ""}, {"127.0.0.3", "total"}, {"127.0.0.1", "total"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.SessionAddr = "127.0.0.1:0"
				c.SessionMaxConns, c.SessionMaxConnsPerIP, c.SessionMaxPendingPerIP = tc.total, tc.perIP, tc.pend
			})
			addr := e.svc.SessionAddr().String()
			admitted, want := 0, map[string]float64{}
			var open []net.Conn
			for i, d := range tc.dials {
				c := dialFrom(t, d.src, addr)
				what := fmt.Sprintf("dial %d from %s", i, d.src)
				if d.refused == "" {
					admitted++
					open = append(open, c)
					waitFor(t, what+" admitted", func() bool { n, _, _ := openConns(e.svc.focus, ""); return n == admitted })
					continue
				}
				want[d.refused]++
				expectClosed(t, c, what)
			}
			for _, label := range []string{"total", "per_source", "pending_per_source"} {
				if got := counterValue(t, e.svc.m.connRefused.WithLabelValues(label)); got != want[label] {
					t.Errorf("refused{cap=%s} = %v, want %v", label, got, want[label])
				}
			}
			for i, c := range open {
				expectOpen(t, c, fmt.Sprintf("admitted connection %d", i))
			}
			if n, _, _ := openConns(e.svc.focus, ""); n != admitted {
				t.Errorf("%d connections hold a slot, want %d", n, admitted)
			}
		})
	}
}

// A connection counts as pending until it binds a participant's session;
// binding, closing, a refused first frame and the first-frame deadline
// each give the pending slot back (per source cap 1 here).
func TestSessionPendingSlotReleased(t *testing.T) {
	bindFrame := func() *msrp.Frame {
		return &msrp.Frame{Method: "SEND", MessageID: "bind", ByteRange: msrp.ByteRange{Start: 1, Total: 0}, HasByteRange: true}
	}
	for _, tc := range []struct {
		name       string
		firstFrame time.Duration
		stillOpen  int // connections from 127.0.0.1 left after the release
		// open takes the one pending slot; free (called after the cap
		// was seen full) gives it back.
		open func(t *testing.T, e *env) (free func())
	}{
		{"bound to its session", 0, 1, func(t *testing.T, e *env) func() {
			ep := newRawMSRP(t)
			path := answerPath(t, e.serve(invite(dave, "call-pending", ep.sdp()), "a"))
			ep.connect(path)
			return func() {
				if r := ep.request(path, bindFrame()); r.Code != 200 {
					t.Fatalf("bind: %d %s", r.Code, r.Phrase)
				}
			}
		}},
		{"closed by the peer", 0, 0, func(t *testing.T, e *env) func() {
			c := dialFrom(t, "127.0.0.1", e.svc.SessionAddr().String())
			return func() { c.Close() }
		}},
		{"first frame names no session", 0, 0, func(t *testing.T, e *env) func() {
			c := dialFrom(t, "127.0.0.1", e.svc.SessionAddr().String())
			return func() { probeUnknownSession(t, c); expectClosed(t, c, "after the 481") }
		}},
		{"first-frame deadline", time.Second, 0, func(t *testing.T, e *env) func() {
			c := dialFrom(t, "127.0.0.1", e.svc.SessionAddr().String())
			return func() { expectClosed(t, c, "silent connection past the first-frame deadline") }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.SessionAddr, c.SessionMaxPendingPerIP, c.SessionFirstFrameTimeout = "127.0.0.1:0", 1, tc.firstFrame
			})
			f, addr := e.svc.focus, e.svc.SessionAddr().String()
			free := tc.open(t, e)
			waitFor(t, "the slot taken", func() bool { _, _, p := openConns(f, "127.0.0.1"); return p == 1 })
			expectClosed(t, dialFrom(t, "127.0.0.1", addr), "a second pending connection over the cap")
			free()
			waitFor(t, "the pending slot given back", func() bool {
				_, from, p := openConns(f, "127.0.0.1")
				return p == 0 && from == tc.stillOpen
			})
			c := dialFrom(t, "127.0.0.1", addr)
			waitFor(t, "a new connection admitted", func() bool { _, _, p := openConns(f, "127.0.0.1"); return p == 1 })
			expectOpen(t, c, "the connection after the release")
			if got := counterValue(t, e.svc.m.connRefused.WithLabelValues("pending_per_source")); got != 1 {
				t.Errorf("refused{cap=pending_per_source} = %v, want 1", got)
			}
		})
	}
}
