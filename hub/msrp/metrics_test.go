package msrp_test

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// promRelay is newRelay with the relay's series on a registry of its own.
func promRelay(t *testing.T, mod func(*msrp.Config)) (*relayLab, *prometheus.Registry) {
	t.Helper()
	l := newRelay(t, mod)
	reg := prometheus.NewPedanticRegistry()
	if err := l.r.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := l.r.RegisterMetrics(reg); err == nil {
		t.Fatal("registering twice on one registry: no error")
	}
	return l, reg
}

// value sums the series of family name whose labels include want
// (name=value pairs).
func value(t *testing.T, reg prometheus.Gatherer, name string, want ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(want); i += 2 {
				if have[want[i]] != want[i+1] {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// waitValue polls until the series reach want (some are counted on the
// relay's goroutines after the endpoint already saw the effect).
func waitValue(t *testing.T, reg prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got = value(t, reg, name, labels...); got == want || time.Now().After(deadline) {
			break
		}
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// Relayed messages and bytes are counted by sending and receiving network,
// connections by leg and transport, and the session gauge follows the
// session.
func TestRelayMetricsMessagesAndBytes(t *testing.T) {
	l, reg := promRelay(t, nil)
	c := l.call(t, "m-1", nil, nil, nil)
	waitValue(t, reg, 1, "clearhub_msrp_sessions")
	c.connect(t)
	if code, err := c.a.Send(c.toHubA, "m-ab", "text/plain", payload(20000), 4096, nil); err != nil || code != 200 {
		t.Fatalf("send a->b: %d %v", code, err)
	}
	if _, err := c.b.Wait("m-ab", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := c.b.Send([]string{c.hubB}, "m-ba", "text/plain", payload(300), 4096, nil); err != nil || code != 200 {
		t.Fatalf("send b->a: %d %v", code, err)
	}
	if _, err := c.a.Wait("m-ba", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"clearhub_msrp_messages_total", []string{"src_network", "neta", "dst_network", "netb"}, 1},
		{"clearhub_msrp_messages_total", []string{"src_network", "netb", "dst_network", "neta"}, 1},
		{"clearhub_msrp_bytes_total", []string{"src_network", "neta", "dst_network", "netb"}, 20000},
		{"clearhub_msrp_bytes_total", []string{"src_network", "netb", "dst_network", "neta"}, 300},
		// a connected to the hub; the hub connected to b (b listens).
		{"clearhub_msrp_connections_total", []string{"leg", msrp.LegInbound, "transport", "tcp"}, 1},
		{"clearhub_msrp_connections_total", []string{"leg", msrp.LegOutbound, "transport", "tcp"}, 1},
		{"clearhub_msrp_refusals_total", nil, 0},
	} {
		waitValue(t, reg, tc.want, tc.name, tc.labels...)
	}
	l.r.End("m-1")
	waitValue(t, reg, 0, "clearhub_msrp_sessions")
}

// Each refusal is counted once, under its own cause.
func TestRelayMetricsRefusals(t *testing.T) {
	aCert := selfSigned(t, "a.example")
	for _, tc := range []struct {
		name   string
		mod    func(*msrp.Config)
		run    func(t *testing.T, l *relayLab)
		cause  string
		series string // counter other than refusals_total, if not ""
	}{
		{"unknown session", nil, func(t *testing.T, l *relayLab) {
			tcp, _ := l.r.Addrs()
			x := msrptest.New("127.0.0.2", nil)
			if err := x.Connect([]string{fmt.Sprintf("msrp://%s/nosuchsession;tcp", tcp)}, nil); err == nil || !strings.Contains(err.Error(), "481") {
				t.Fatalf("unknown session: %v", err)
			}
		}, msrp.CauseUnknownSession, ""},
		{"From-Path not the SDP's", nil, func(t *testing.T, l *relayLab) {
			c := l.call(t, "r-path", nil, nil, nil)
			y := msrptest.New("127.0.0.2", nil)
			if err := y.Connect(c.toHubA, nil); err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("foreign From-Path: %v", err)
			}
		}, msrp.CauseFromPathMismatch, ""},
		{"second connection for a bound leg", nil, func(t *testing.T, l *relayLab) {
			c := l.call(t, "r-506", nil, nil, nil)
			c.connect(t)
			z := msrptest.New("127.0.0.2", nil)
			z.URI = c.a.URI
			if err := z.Connect(c.toHubA, nil); err == nil || !strings.Contains(err.Error(), "506") {
				t.Fatalf("second connection: %v", err)
			}
		}, msrp.CauseAlreadyBound, ""},
		{"certificate not the a=fingerprint", nil, func(t *testing.T, l *relayLab) {
			conf := &tls.Config{Certificates: []tls.Certificate{aCert}}
			fp := []string{"a=fingerprint:" + fingerprintOf(aCert.Certificate[0])} // a and b share the certificate
			c := l.call(t, "r-fp", fp, fp, conf)
			other := msrptest.New("127.0.0.2", &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "x.example")}})
			other.URI = c.a.URI
			if err := other.Connect(c.toHubA, nil); err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("other certificate: %v", err)
			}
		}, msrp.CauseFingerprintMismatch, ""},
		{"no first frame in time", func(c *msrp.Config) { c.FirstFrameTimeout = 200 * time.Millisecond }, func(t *testing.T, l *relayLab) {
			tcp, _ := l.r.Addrs()
			conn, err := net.Dial("tcp", tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("silent connection: read %v, want EOF", err)
			}
		}, msrp.CauseFirstFrameTimeout, ""},
		{"per-source cap of connections without a session", func(c *msrp.Config) { c.MaxPendingPerIP = 1 }, func(t *testing.T, l *relayLab) {
			tcp, _ := l.r.Addrs()
			first, err := net.Dial("tcp", tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			time.Sleep(100 * time.Millisecond) // accepted and counted
			over, err := net.Dial("tcp", tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer over.Close()
			_ = over.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := over.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("connection over the cap: read %v, want EOF", err)
			}
		}, msrp.CausePendingCap, ""},
		{"member relay refuses the hub's credentials", nil, func(t *testing.T, l *relayLab) {
			// Config.Network is set below, once the relay listens.
			a := msrptest.New("127.0.0.2", nil)
			d := msrp.Dialog{CallID: "r-auth", OffererNet: "neta", AnswererNet: "netb"}
			if _, err := l.r.Offer(d, a.SDP()); err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("offer with a wrong relay password: %v", err)
			}
		}, msrp.CauseRelayAuth, ""},
		{"message over the size limit", func(c *msrp.Config) { c.MaxMessageSize = 1000 }, func(t *testing.T, l *relayLab) {
			c := l.call(t, "r-413", nil, nil, nil)
			c.connect(t)
			if code, err := c.a.Send(c.toHubA, "big", "text/plain", payload(2000), 500, nil); err != nil || code != 413 {
				t.Fatalf("oversized: %d %v", code, err)
			}
		}, "", "clearhub_msrp_size_refusals_total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := tc.mod
			if tc.cause == msrp.CauseRelayAuth {
				rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
				if err != nil {
					t.Fatal(err)
				}
				defer rel.Close()
				ns := &netSettings{m: map[string]msrp.NetworkSettings{
					"netb": {Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "wrong"}}}}
				mod = func(c *msrp.Config) { c.Network = ns.get }
			}
			l, reg := promRelay(t, mod)
			tc.run(t, l)
			if tc.series != "" {
				waitValue(t, reg, 1, tc.series, "network", "neta")
				waitValue(t, reg, 0, "clearhub_msrp_refusals_total")
				return
			}
			waitValue(t, reg, 1, "clearhub_msrp_refusals_total", "cause", tc.cause)
			waitValue(t, reg, 1, "clearhub_msrp_refusals_total") // and under no other cause
		})
	}
}

// A failure REPORT the hub generates is counted by its code.
func TestRelayMetricsFailureReport(t *testing.T) {
	l, reg := promRelay(t, nil)
	c := l.call(t, "fr-1", nil, nil, nil)
	c.connect(t)
	c.dropMidMessage(t, "fr-drop")
	select {
	case rep := <-c.a.Reports:
		if !strings.HasPrefix(rep.Status, "000 408") {
			t.Fatalf("REPORT %q", rep.Status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure REPORT at a")
	}
	waitValue(t, reg, 1, "clearhub_msrp_failure_reports_total", "code", "408")
	waitValue(t, reg, 1, "clearhub_msrp_failure_reports_total")
	if n := value(t, reg, "clearhub_msrp_messages_total"); n != 0 {
		t.Fatalf("a failed message counted as relayed (%v)", n)
	}
}

// File transfers are counted by the hub's SHA-1 verdict.
func TestRelayMetricsFileTransfers(t *testing.T) {
	file := payload(5000)
	sum := sha1.Sum(file)
	var hx []string
	for _, b := range sum {
		hx = append(hx, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	good := strings.Join(hx, ":")
	for _, tc := range []struct{ name, hash, result string }{
		{"verified", " hash:sha-1:" + good, "verified"},
		{"mismatch", " hash:sha-1:00" + good[2:], "mismatch"},
		{"no hash", "", "no-hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, reg := promRelay(t, nil)
			sel := `a=file-selector:name:"f.bin" type:application/octet-stream size:5000` + tc.hash
			c := l.call(t, "ft-m", []string{"a=sendonly", sel, "a=file-transfer-id:ft1"}, []string{"a=recvonly"}, nil)
			c.connect(t)
			if code, err := c.a.Send(c.toHubA, "file-m", "application/octet-stream", file, 2048, nil); err != nil || code != 200 {
				t.Fatalf("send: %d %v", code, err)
			}
			waitValue(t, reg, 1, "clearhub_msrp_file_transfers_total", "result", tc.result)
			waitValue(t, reg, 1, "clearhub_msrp_file_transfers_total")
		})
	}
}
