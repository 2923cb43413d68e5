package main

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestStepAnswer: the accounting of one step. Only the first final
// answer to a request counts; 1xx, unknown and earlier-step sequence
// numbers count nothing; an answer after the timeout is a timeout.
func TestStepAnswer(t *testing.T) {
	const timeout = time.Second
	tests := []struct {
		name                                    string
		answers                                 []struct{ seq, status int }
		late                                    bool // answers arrive after the timeout
		ok, failed, shed, lateN, answered, hist int64
	}{
		{"200", []struct{ seq, status int }{{100, 200}}, false, 1, 0, 0, 0, 1, 1},
		{"202 is success", []struct{ seq, status int }{{100, 202}}, false, 1, 0, 0, 0, 1, 1},
		{"503 is shed", []struct{ seq, status int }{{100, 503}}, false, 0, 0, 1, 0, 1, 0},
		{"404 and 500 fail", []struct{ seq, status int }{{100, 404}, {101, 500}}, false, 0, 2, 0, 0, 2, 0},
		{"100 then 200", []struct{ seq, status int }{{100, 100}, {100, 200}}, false, 1, 0, 0, 0, 1, 1},
		{"retransmitted 200 counted once", []struct{ seq, status int }{{100, 200}, {100, 200}, {100, 503}}, false, 1, 0, 0, 0, 1, 1},
		{"earlier step ignored", []struct{ seq, status int }{{99, 200}, {5, 200}}, false, 0, 0, 0, 0, 0, 0},
		{"beyond the table ignored", []struct{ seq, status int }{{100 + 10, 200}}, false, 0, 0, 0, 0, 0, 0},
		{"late 200 is a timeout", []struct{ seq, status int }{{100, 200}}, true, 0, 0, 0, 1, 1, 0},
		{"not sent ignored", []struct{ seq, status int }{{105, 200}}, false, 0, 0, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStep(100, 10, timeout)
			sentAt := int64(1_000)
			for i := 0; i < 3; i++ { // seqs 100..102 were sent
				st.sent[i].Store(sentAt)
			}
			now := sentAt + int64(500*time.Microsecond)
			if tt.late {
				now = sentAt + int64(timeout) + 1
			}
			for _, a := range tt.answers {
				st.answer(uint64(a.seq), a.status, now)
			}
			got := []int64{st.ok.Load(), st.failed.Load(), st.shed.Load(), st.late.Load(), st.answered.Load(), int64(st.hist.Count())}
			want := []int64{tt.ok, tt.failed, tt.shed, tt.lateN, tt.answered, tt.hist}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("ok/failed/shed/late/answered/hist = %v, want %v", got, want)
				}
			}
			if tt.hist == 1 && st.hist.Quantile(0.5) != 500 {
				t.Errorf("round trip recorded as %d µs, want 500", st.hist.Quantile(0.5))
			}
		})
	}
}

func TestPace(t *testing.T) {
	start := time.Now().Add(-time.Second)
	tests := []struct {
		name     string
		sent     int64
		max      int64
		wantDue  func(int64) bool
		wantWait bool
	}{
		{"behind: capped at max", 0, 64, func(d int64) bool { return d == 64 }, false},
		{"behind a little", 995, 64, func(d int64) bool { return d >= 5 && d <= 64 }, false},
		{"ahead: wait", 2000, 64, func(d int64) bool { return d == 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			due, wait := pace(start, 1000, tt.sent, tt.max)
			if !tt.wantDue(due) {
				t.Errorf("due = %d", due)
			}
			if tt.wantWait != (wait > 0) || wait > 5*time.Millisecond {
				t.Errorf("wait = %v", wait)
			}
		})
	}
}

// TestDriverThroughUAS: UAC to the in-process UAS over each transport, a
// few hundred requests: every one offered is answered 200 and counted
// once. (A correctness check of the driver; speed is measured by make
// bench, never asserted.)
func TestDriverThroughUAS(t *testing.T) {
	for _, tr := range []string{"udp", "tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			addr := freeAddr(t, tr)
			u := &uas{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			var udpA, tcpA, tlsA string
			switch tr {
			case "udp":
				udpA = addr
			case "tcp":
				tcpA = addr
			case "tls":
				tlsA = addr
			}
			if err := u.start(udpA, tcpA, tlsA, "", "", 1); err != nil {
				t.Fatal(err)
			}
			defer u.stop()
			cfg := uacConfig{transport: tr, target: addr, local: "127.0.0.1", sockets: 2, conns: 2,
				rates: []int{400}, step: 500 * time.Millisecond, timeout: 2 * time.Second, minOffered: 0.5,
				fromUser: "load", fromDomain: "a.example", toUser: "bob", toDomain: "b.example", body: "x"}
			d, err := newDriver(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			r := d.runStep(400, "ramp")
			if r.offered < 100 {
				t.Fatalf("offered only %d", r.offered)
			}
			if r.ok != r.offered || r.failed+r.shed+r.tmo != 0 || r.foreign != 0 {
				t.Fatalf("offered %d: ok %d failed %d shed %d timeouts %d unparsed %d", r.offered, r.ok, r.failed, r.shed, r.tmo, r.foreign)
			}
			if !r.clean || r.p50 <= 0 {
				t.Errorf("clean %v p50 %d µs", r.clean, r.p50)
			}
			if got := u.answered.Load(); got != r.offered {
				t.Errorf("uas answered %d, driver offered %d", got, r.offered)
			}
		})
	}
}

func freeAddr(t *testing.T, tr string) string {
	t.Helper()
	if tr == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
