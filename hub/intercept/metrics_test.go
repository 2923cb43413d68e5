package intercept

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// counterValue reads a counter (prometheus/testutil would add a module).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// deadAddr is a TCP address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// idleSender is a Sender whose delivery goroutine never runs: the test
// drives Enqueue and deliver itself.
func idleSender(m *Metrics, queue int) *Sender {
	return &Sender{cfg: SenderConfig{Addr: "127.0.0.1:9", Transport: "tcp", WriteTimeout: time.Second, Metrics: m, Logger: slog.New(slog.DiscardHandler)},
		q: make(chan item, queue), ctx: context.Background()}
}

// Each way a frame can be lost moves its own reason, and a delivered
// frame moves "sent" only in the capture flavour.
func TestSenderMetricsByOutcome(t *testing.T) {
	for _, tc := range []struct {
		name    string
		newM    func() *Metrics
		run     func(t *testing.T, s *Sender)
		outcome string
		want    float64
	}{
		{"queue full", NewInterceptMetrics, func(t *testing.T, s *Sender) {
			if !s.Enqueue([]byte("a"), "w") || s.Enqueue([]byte("b"), "w") {
				t.Fatal("want the first frame queued and the second refused")
			}
		}, OutcomeQueueFull, 1},
		{"unreachable: dial fails, then the backoff", NewInterceptMetrics, func(t *testing.T, s *Sender) {
			s.cfg.Addr = deadAddr(t)
			s.deliver(item{b: []byte("a")})
			s.deliver(item{b: []byte("b")}) // within the backoff: not even dialled
		}, OutcomeUnreachable, 2},
		{"write error", NewInterceptMetrics, func(t *testing.T, s *Sender) {
			a, b := net.Pipe()
			b.Close()
			s.conn = a
			s.deliver(item{b: []byte("a")})
			if s.conn != nil {
				t.Fatal("connection kept after a failed write")
			}
		}, OutcomeWriteError, 1},
		{"delivered interception copies are not counted", NewInterceptMetrics, func(t *testing.T, s *Sender) { deliverOne(t, s) }, OutcomeSent, 0},
		{"delivered capture frames are", NewCaptureMetrics, func(t *testing.T, s *Sender) { deliverOne(t, s) }, OutcomeSent, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.newM()
			s := idleSender(m, 1)
			tc.run(t, s)
			if got := counterValue(m.frames.WithLabelValues(tc.outcome)); got != tc.want {
				t.Fatalf("%s = %v, want %v", tc.outcome, got, tc.want)
			}
			var lost float64
			for _, o := range failures {
				lost += counterValue(m.frames.WithLabelValues(o))
			}
			if _, dropped := s.Stats(); float64(dropped) != lost {
				t.Fatalf("Stats dropped %d, metrics count %v lost", dropped, lost)
			}
		})
	}
}

func deliverOne(t *testing.T, s *Sender) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	got := make(chan int, 1)
	go func() { buf := make([]byte, 16); n, _ := b.Read(buf); got <- n }()
	s.conn = a
	s.deliver(item{b: []byte("frame")})
	if n := <-got; n != len("frame") {
		t.Fatalf("collector read %d bytes", n)
	}
	s.conn = nil
}

// An interception copy the hub cannot deliver moves the dropped counter,
// and nothing in the node's metrics names the warrant or its target.
func TestInterceptorCountsDroppedCopies(t *testing.T) {
	w := warrant("w-secret", hubv1.WarrantTargetKind_WARRANT_TARGET_USER, "sip:alice@a.example")
	w.StartUnixNano, w.EndUnixNano = time.Now().Add(-time.Minute).UnixNano(), time.Now().Add(time.Hour).UnixNano()
	st := stateWith([]*hubv1.Warrant{w}, nil)
	ev := Event{State: st, Time: time.Now(), Wire: []byte("MESSAGE sip:bob@b.example SIP/2.0\r\n\r\n"), Src: "192.0.2.1:5060", Dst: "192.0.2.9:5060",
		Transport: "udp", SrcNet: "neta", DstNet: "netb", CallID: "c1", From: uri("sip:alice@a.example"), To: uri("sip:bob@b.example")}

	for _, tc := range []struct {
		name    string
		sender  bool
		outcome string
	}{
		{"mediation endpoint down", true, OutcomeUnreachable},
		{"no intercept.address", false, OutcomeNoCollector},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewInterceptMetrics()
			reg := prometheus.NewPedanticRegistry()
			if err := m.Register(reg); err != nil {
				t.Fatal(err)
			}
			cfg := Config{Ledger: &memLedger{}, State: func() *raft.State { return st }, Metrics: m}
			if tc.sender {
				s, err := NewSender(SenderConfig{Addr: deadAddr(t), Transport: "tcp", WriteTimeout: 200 * time.Millisecond, Metrics: m})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				cfg.Sender = s
			}
			li, err := NewInterceptor(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer li.Close()
			li.Tap(ev)
			c := m.frames.WithLabelValues(tc.outcome)
			for deadline := time.Now().Add(5 * time.Second); counterValue(c) == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := counterValue(c); got != 1 {
				t.Fatalf("copies_dropped_total{reason=%q} = %v, want 1", tc.outcome, got)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				text := mf.String()
				for _, secret := range []string{"w-secret", "alice", "a.example", "neta"} {
					if strings.Contains(text, secret) {
						t.Fatalf("metric %s mentions %q: %s", mf.GetName(), secret, text)
					}
				}
				for _, mt := range mf.GetMetric() {
					for _, lp := range mt.GetLabel() {
						if lp.GetName() != "reason" {
							t.Fatalf("metric %s has label %s", mf.GetName(), lp.GetName())
						}
					}
				}
			}
		})
	}
}
