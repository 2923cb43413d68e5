package msrp_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// netSettings is a mutable Config.Network for tests (the cluster state).
type netSettings struct {
	mu sync.Mutex
	m  map[string]msrp.NetworkSettings
}

func (n *netSettings) get(id string) msrp.NetworkSettings {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[id]
}

func (n *netSettings) set(id string, s msrp.NetworkSettings) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[id] = s
}

// The per-network size limit refuses with 413 toward the sender and is
// audited; it is the sending network's, and a change applies at once.
func TestRelayPerNetworkMaxFileSize(t *testing.T) {
	ns := &netSettings{m: map[string]msrp.NetworkSettings{"neta": {MaxMessageSize: 5000}}}
	l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get; c.MaxMessageSize = 1 << 20 })
	c := l.call(t, "netlimit", nil, nil, nil)
	c.connect(t)
	for _, tc := range []struct {
		name  string
		limit int64
		size  int
		want  int
	}{
		{"under the network's limit", 5000, 4000, 200},
		{"over the network's limit", 5000, 6000, 413},
		{"limit raised in the state", 10000, 6000, 200},
		{"no network limit: the node's", 0, 6000, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns.set("neta", msrp.NetworkSettings{MaxMessageSize: tc.limit})
			id := strings.ReplaceAll(tc.name, " ", "-")
			id = strings.ReplaceAll(strings.ReplaceAll(id, "'", ""), ":", "")
			code, err := c.a.Send(c.toHubA, id, "application/octet-stream", payload(tc.size), 2048, nil)
			if err != nil || code != tc.want {
				t.Fatalf("send %d bytes: %d %v, want %d", tc.size, code, err, tc.want)
			}
			e := l.audit.wait(t, msrp.MethodMessage, "message-id="+id+" ")
			if e.Status != tc.want {
				t.Fatalf("audited status %d, want %d (%s)", e.Status, tc.want, e.Reason)
			}
			if tc.want == 413 && !strings.Contains(e.Reason, fmt.Sprintf("limit of %d", tc.limit)) {
				t.Fatalf("refusal reason %q", e.Reason)
			}
		})
	}
}

// The per-network byte rate paces only that network's legs, and the wait
// is in the audit entry.
func TestRelayPerNetworkByteRate(t *testing.T) {
	ns := &netSettings{m: map[string]msrp.NetworkSettings{"neta": {BytesPerSecond: 64 << 10}}}
	l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get; c.Burst = 16 << 10 })
	c := l.call(t, "netrate", nil, nil, nil)
	c.connect(t)
	start := time.Now()
	if code, err := c.a.Send(c.toHubA, "paced", "text/plain", payload(64<<10), 8<<10, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Fatalf("64 KiB from neta took %v at 64 KiB/s", el)
	}
	if e := l.audit.wait(t, msrp.MethodMessage, "message-id=paced "); !strings.Contains(e.Reason, "rate-paced=") {
		t.Fatalf("no pacing in the audit: %s", e.Reason)
	}
	// netb has no limit: its 64 KiB back to a is not paced.
	start = time.Now()
	if code, err := c.b.Send([]string{c.hubB}, "free", "text/plain", payload(64<<10), 8<<10, nil); err != nil || code != 200 {
		t.Fatalf("send back: %d %v", code, err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("64 KiB from unlimited netb took %v", el)
	}
}

// Connection caps: connections that never name a session are capped per
// source and time out; over the cap a connection is closed at once.
func TestRelayConnectionCaps(t *testing.T) {
	l := newRelay(t, func(c *msrp.Config) { c.MaxPendingPerIP = 3; c.FirstFrameTimeout = 400 * time.Millisecond })
	tcp, _ := l.r.Addrs()
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", tcp.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // accepted and counted
	over, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection over the per-source cap: read %v, want EOF at once", err)
	}
	if n := l.r.Stats().ConnsRefused; n != 1 {
		t.Fatalf("ConnsRefused %d, want 1", n)
	}
	// The silent ones are closed after FirstFrameTimeout...
	for i, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle connection %d: read %v, want EOF after the first-frame timeout", i, err)
		}
	}
	// ...and their slots are free again: a real session connects.
	time.Sleep(50 * time.Millisecond)
	c := l.call(t, "caps", nil, nil, nil)
	c.connect(t)
	if code, err := c.a.Send(c.toHubA, "after", "text/plain", []byte("hello"), 100, nil); err != nil || code != 200 {
		t.Fatalf("send after the caps freed: %d %v", code, err)
	}
}

// relayCall sets up a session whose answerer's network (netb) runs its own
// RFC 4976 relay.
func relayCall(t *testing.T, l *relayLab, rel *msrptest.Relay, callID string) (a, b *msrptest.Endpoint, toHubA, bPath []string) {
	t.Helper()
	a = msrptest.New("127.0.0.2", nil)
	b, err := msrptest.Listen("127.0.0.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	d := msrp.Dialog{CallID: callID, OffererNet: "neta", AnswererNet: "netb", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"}
	offer, err := l.r.Offer(d, a.SDP())
	if err != nil {
		t.Fatal(err)
	}
	om := msrp.ParseSDP(offer)
	// RFC 4976 section 6: the relay's Use-Path first, then the hub's URI.
	if len(om) != 1 || len(om[0].Path) != 2 || !strings.HasPrefix(om[0].Path[0], fmt.Sprintf("msrp://%s:%d/s.", rel.URI.Host, rel.URI.Port)) {
		t.Fatalf("offer toward the relay's network: %q", offer)
	}
	if !bytes.Contains(offer, []byte(fmt.Sprintf("m=message %d TCP/MSRP", rel.URI.Port))) {
		t.Fatalf("m= does not name the relay: %q", offer)
	}
	answer, err := l.r.Answer(d, b.SDP())
	if err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(answer)
	if len(am) != 1 || len(am[0].Path) != 1 {
		t.Fatalf("answer toward a: %q", answer)
	}
	return a, b, am[0].Path, om[0].Path
}

// A member with its own relay: the hub AUTHs (401, Digest, 200 with
// Use-Path), routes both directions through it, re-chunks within that
// network's limit, and keeps the audit.
func TestRelayThroughMemberRelay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxChunk int
		want     int
	}{{"default 8 KiB chunks", 0, 8192}, {"network's 4 KiB chunks", 4096, 4096}} {
		t.Run(tc.name, func(t *testing.T) {
			rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			defer rel.Close()
			ns := &netSettings{m: map[string]msrp.NetworkSettings{
				"netb": {MaxChunk: tc.maxChunk, Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "s3cret"}}}}
			l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get })
			a, b, toHubA, bPath := relayCall(t, l, rel, "via-relay")
			if err := a.Connect(toHubA, nil); err != nil {
				t.Fatal(err)
			}
			body := payload(100 << 10)
			if code, err := a.Send(toHubA, "big", "text/plain", body, 64<<10, nil); err != nil || code != 200 {
				t.Fatalf("send: %d %v", code, err)
			}
			m, err := b.Wait("big", 5*time.Second)
			if err != nil || !bytes.Equal(m.Body, body) {
				t.Fatalf("received %v (%d bytes)", err, len(m.Body))
			}
			auths, sizes, refused := rel.Stats()
			if auths != 1 || refused != 0 {
				t.Fatalf("relay: %d AUTHs, %d refused", auths, refused)
			}
			for _, n := range sizes {
				if n > tc.want {
					t.Fatalf("a %d-byte chunk reached the relay, limit %d", n, tc.want)
				}
			}
			if e := l.audit.wait(t, msrp.MethodMessage, "message-id=big "); e.Status != 200 || e.DstNet != "netb" {
				t.Fatalf("audit %d %s", e.Status, e.Reason)
			}
			// b answers through its relay: To-Path is the hub's SDP path.
			if code, err := b.Send(bPath, "back", "text/plain", []byte("hi alice"), 100, nil); err != nil || code != 200 {
				t.Fatalf("send back: %d %v", code, err)
			}
			if m, err := a.Wait("back", 5*time.Second); err != nil || string(m.Body) != "hi alice" {
				t.Fatalf("a received %v", err)
			}
		})
	}
}

// Wrong credentials: the offer is not anchored (the INVITE gets 488).
func TestRelayMemberRelayAuthFails(t *testing.T) {
	rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	ns := &netSettings{m: map[string]msrp.NetworkSettings{
		"netb": {Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "wrong"}}}}
	l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get })
	a := msrptest.New("127.0.0.2", nil)
	d := msrp.Dialog{CallID: "bad-auth", OffererNet: "neta", AnswererNet: "netb"}
	if _, err := l.r.Offer(d, a.SDP()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("offer with wrong relay password: %v", err)
	}
	if n := l.r.Sessions(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

// The hub AUTHs again before the relay's Expires runs out.
func TestRelayMemberRelayReAuth(t *testing.T) {
	rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	rel.Expires = 1
	ns := &netSettings{m: map[string]msrp.NetworkSettings{
		"netb": {Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "s3cret"}}}}
	l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get })
	a, b, toHubA, _ := relayCall(t, l, rel, "reauth")
	if err := a.Connect(toHubA, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if auths, _, _ := rel.Stats(); auths >= 3 {
			break
		}
		if time.Now().After(deadline) {
			auths, _, _ := rel.Stats()
			t.Fatalf("%d AUTHs in 5 s with Expires 1", auths)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The session still works after the refreshes.
	if code, err := a.Send(toHubA, "after-reauth", "text/plain", []byte("still here"), 100, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if _, err := b.Wait("after-reauth", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// The caller's network runs the relay: the hub AUTHs while it rewrites the
// answer, and the caller reaches the hub through its relay.
func TestRelayMemberRelayOfferer(t *testing.T) {
	rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	defer rel.Close()
	ns := &netSettings{m: map[string]msrp.NetworkSettings{
		"neta": {Relay: &msrp.RelayAccount{URI: rel.Addr(), Username: "hub", Password: "s3cret"}}}}
	l := newRelay(t, func(c *msrp.Config) { c.Network = ns.get })
	a := msrptest.New("127.0.0.2", nil)
	b, err := msrptest.Listen("127.0.0.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	d := msrp.Dialog{CallID: "relay-offerer", OffererNet: "neta", AnswererNet: "netb", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"}
	offer, err := l.r.Offer(d, a.SDP())
	if err != nil {
		t.Fatal(err)
	}
	if om := msrp.ParseSDP(offer); len(om) != 1 || len(om[0].Path) != 1 {
		t.Fatalf("offer toward netb (no relay): %q", offer)
	}
	if auths, _, _ := rel.Stats(); auths != 0 {
		t.Fatal("AUTH before the answer: the offerer's leg needs none yet")
	}
	answer, err := l.r.Answer(d, b.SDP())
	if err != nil {
		t.Fatal(err)
	}
	am := msrp.ParseSDP(answer)
	if len(am) != 1 || len(am[0].Path) != 2 || !strings.Contains(am[0].Path[0], "/s.") {
		t.Fatalf("answer toward neta lacks the relay's Use-Path: %q", answer)
	}
	if err := a.Connect(am[0].Path, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := a.Send(am[0].Path, "from-relayed", "text/plain", payload(20000), 4096, nil); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	if m, err := b.Wait("from-relayed", 5*time.Second); err != nil || len(m.Body) != 20000 {
		t.Fatalf("b received %v", err)
	}
	if e := l.audit.wait(t, msrp.MethodMessage, "message-id=from-relayed "); e.Status != 200 || e.SrcNet != "neta" {
		t.Fatalf("audit %d %s", e.Status, e.Reason)
	}
}
