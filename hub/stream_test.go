package hub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ops/pki"
)

// dialFrom opens a TCP connection to addr from ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the peer closes c within d (reading and
// discarding whatever it sends, pongs included).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// Connections that send nothing useful are closed (issue 8 item 5: 500
// slowloris connections at 1 byte/s stayed open for a whole 30 s test): a
// message must arrive whole within HeaderTimeout of its first byte; a
// connection without a member's message closes after IdleTimeout; pings
// keep only a member's connection open.
func TestStreamTimeouts(t *testing.T) {
	const header, idle = 300 * time.Millisecond, 700 * time.Millisecond
	l, reg := guardLab(t, Config{HeaderTimeout: header, IdleTimeout: idle})
	msg := string(rawMessage("SIP/2.0/TCP 127.0.0.2:5999;branch=z9hG4bKslow", "slow-1", ""))
	cases := []struct {
		name   string
		ip     string
		drip   func(i int) string // what to send every 50 ms ("" nothing)
		closed bool               // within 2*idle
		reason string             // clearhub_sip_connections_closed_total
	}{
		{"member slowloris", "127.0.0.2", func(i int) string { return msg[i%len(msg) : i%len(msg)+1] }, true, "header_timeout"},
		{"stranger slowloris", "127.0.0.9", func(i int) string { return msg[i%len(msg) : i%len(msg)+1] }, true, "header_timeout"},
		{"silent", "127.0.0.2", func(int) string { return "" }, true, "idle"},
		{"stranger pinging", "127.0.0.9", func(int) string { return "\r\n\r\n" }, true, "idle"},
		{"stranger sending CRLF", "127.0.0.9", func(int) string { return "\r\n" }, true, "idle"},
		{"member pinging", "127.0.0.2", func(int) string { return "\r\n\r\n" }, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := counterValue(t, reg, "clearhub_sip_connections_closed_total", "reason", tc.reason)
			c := dialFrom(t, tc.ip, l.tcp)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				for i := 0; ctx.Err() == nil; i++ {
					if s := tc.drip(i); s != "" {
						if _, err := c.Write([]byte(s)); err != nil {
							return
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			start := time.Now()
			got := closedWithin(c, 2*idle)
			if got != tc.closed {
				t.Fatalf("closed = %v after %s, want %v", got, time.Since(start).Round(time.Millisecond), tc.closed)
			}
			if tc.reason == "header_timeout" && time.Since(start) > idle {
				t.Errorf("closed after %s, want about the header timeout %s", time.Since(start), header)
			}
			if tc.reason != "" {
				if after := counterValue(t, reg, "clearhub_sip_connections_closed_total", "reason", tc.reason); after != before+1 {
					t.Errorf("connections closed for %s: %v -> %v", tc.reason, before, after)
				}
			}
		})
	}
}

// A TLS connection that never finishes its handshake is closed after
// HandshakeTimeout (it was bounded only by the 3-minute idle timeout).
func TestTLSHandshakeTimeout(t *testing.T) {
	ca, err := pki.NewCA("members", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubCert := issue(t, ca, pki.RoleNode, "hub", "127.0.0.1")
	reg := prometheus.NewRegistry()
	st := &fakeState{}
	st.set(labState(&member{ip: "127.0.0.2", addr: "127.0.0.2:5999", network: "tcp"}, &member{ip: "127.0.0.3", addr: "127.0.0.3:5999", network: "tcp"}))
	h := startHub(t, Config{NodeID: "n1", TLSAddr: "127.0.0.1:0", Hostname: "127.0.0.1", ServerTLS: &tls.Config{Certificates: []tls.Certificate{hubCert}},
		ClientCertificate: hubCert, RouteSecret: []byte("s"), Registerer: reg, HandshakeTimeout: 200 * time.Millisecond}, st, &memAudit{})
	c := dialFrom(t, "127.0.0.9", h.Addrs()[0].String())
	if _, err := c.Write([]byte{0x16, 0x03, 0x01}); err != nil { // the start of a ClientHello, then nothing
		t.Fatal(err)
	}
	start := time.Now()
	if !closedWithin(c, 3*time.Second) {
		t.Fatal("stalled handshake still open after 3s")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %s, want about 200ms", d)
	}
	if v := counterValue(t, reg, "clearhub_sip_connections_closed_total", "reason", "handshake_timeout"); v != 1 {
		t.Errorf("handshake timeouts counted: %v", v)
	}
}

// Connections beyond a cap are closed at once, counted, and audited in one
// aggregate entry per source; the others stay open (issue 8 item 5).
func TestConnectionCaps(t *testing.T) {
	l, reg := guardLab(t, Config{MaxConnections: 10, MaxConnectionsPerSource: 2, MaxConnectionsPerNetwork: 3, AggregateInterval: time.Hour})
	cases := []struct {
		name    string
		ip      string
		n, open int
		cap     string
	}{
		{"per unattributed source", "127.0.0.9", 4, 2, "per_source"},
		{"per member network", "127.0.0.2", 5, 3, "per_network"},
		// 127.0.0.10 is a second stranger: 2 more, and then the
		// unattributed half of MaxConnections (5) is full.
		{"unattributed share", "127.0.0.10", 2, 2, ""},
		{"unattributed share full", "127.0.0.11", 2, 1, "unattributed"},
		// Members still get in: 3 (a) + 5 unattributed + 2 (b) = 10.
		{"member past the unattributed share", "127.0.0.3", 3, 2, "total"},
	}
	parent := t // connections stay open across the cases
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var conns []net.Conn
			for range tc.n {
				conns = append(conns, dialFrom(parent, tc.ip, l.tcp))
			}
			open := 0
			for _, c := range conns {
				if !closedWithin(c, 300*time.Millisecond) {
					open++
				}
			}
			if open != tc.open {
				t.Errorf("%d of %d connections open, want %d", open, tc.n, tc.open)
			}
			if tc.cap != "" {
				if v := counterValue(t, reg, "clearhub_sip_connections_refused_total", "cap", tc.cap); v != float64(tc.n-tc.open) {
					t.Errorf("refused by %s: %v, want %d", tc.cap, v, tc.n-tc.open)
				}
			}
		})
	}
	l.hub.flushAggregate(context.Background(), time.Now())
	agg := aggregates(l.audit.all(), "127.0.0.9:")
	if len(agg) != 1 || !strings.HasPrefix(agg[0].Reason, "aggregate: 2 connections from 127.0.0.9 over tcp") ||
		!strings.Contains(agg[0].Reason, "2 per unattributed source") {
		t.Errorf("aggregate entries for 127.0.0.9: %+v", agg)
	}
}

// fakeListener fails Accept with errs, in order, then accepts conn.
type fakeListener struct {
	net.Listener
	errs  []error
	conn  net.Conn
	calls atomic.Int32
}

func (f *fakeListener) Accept() (net.Conn, error) {
	i := int(f.calls.Add(1)) - 1
	if i < len(f.errs) {
		return nil, f.errs[i]
	}
	if f.conn == nil {
		return nil, net.ErrClosed
	}
	c := f.conn
	f.conn = nil
	return c, nil
}

// Out of file descriptors, Accept backs off and keeps serving (issue 8
// item 5: "SIP plane stopped … accept4: too many open files").
func TestAcceptBacksOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := &fakeState{}
	st.set(labState(&member{ip: "127.0.0.2", addr: "127.0.0.2:5999", network: "tcp"}, &member{ip: "127.0.0.3", addr: "127.0.0.3:5999", network: "tcp"}))
	h, err := New(Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Logger: quietLogger(), Registerer: reg}, st, &memAudit{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}
	cases := []struct {
		name     string
		errs     []error
		conn     bool
		wantErr  error
		minDelay time.Duration
	}{
		{"EMFILE three times", []error{emfile, emfile, syscall.ENFILE}, true, nil, 35 * time.Millisecond},
		{"closed", nil, false, net.ErrClosed, 0},
		{"permanent", []error{syscall.EINVAL}, true, syscall.EINVAL, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeListener{errs: tc.errs}
			if tc.conn {
				a, b := net.Pipe()
				defer a.Close()
				defer b.Close()
				fl.conn = a
			}
			sl := &streamListener{Listener: fl, h: h}
			start := time.Now()
			c, err := sl.Accept()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Accept: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil {
				if _, ok := c.(*memberConn); !ok {
					t.Fatalf("Accept returned %T", c)
				}
				c.Close()
			}
			if d := time.Since(start); d < tc.minDelay {
				t.Errorf("returned after %s, want a backoff of at least %s", d, tc.minDelay)
			}
		})
	}
	if v := gaugeOrCounter(t, reg, "clearhub_sip_accept_errors_total"); v != 3 {
		t.Errorf("accept errors counted: %v, want 3", v)
	}
}

func gaugeOrCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if m.Counter != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
