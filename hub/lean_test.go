package hub

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

func rawMessage(via, callID string, body string) []byte {
	return []byte("MESSAGE sip:bob@b.example SIP/2.0\r\n" +
		"Via: " + via + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@a.example>;tag=a1\r\n" +
		"To: <sip:bob@b.example>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body)
}

func readUDP(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	return buf[:n]
}

// RFC 3261 17.2.2: a retransmitted non-INVITE request is absorbed by the
// hub (dropped while nothing was answered, answered with the last response
// once one was sent) and never forwarded twice.
func TestLeanRetransmissionAbsorbed(t *testing.T) {
	l := newLab(t, "udp")
	release := make(chan struct{})
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		<-release
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hub := mustUDPAddr(t, l.udp)
	msg := rawMessage("SIP/2.0/UDP "+c.LocalAddr().String()+";branch=z9hG4bKretrans1", "retrans-1", "hi")
	for i := 0; i < 3; i++ { // original and two retransmissions before any answer
		if _, err := c.WriteToUDP(msg, hub); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	first := readUDP(t, c)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 200")) {
		t.Fatalf("got %q", first)
	}
	if _, err := c.WriteToUDP(msg, hub); err != nil {
		t.Fatal(err)
	}
	if again := readUDP(t, c); !bytes.Equal(again, first) {
		t.Errorf("retransmission answered with\n%q\nwant the stored\n%q", again, first)
	}
	l.b.expect(sip.MESSAGE)
	select {
	case r := <-l.b.reqs:
		t.Fatalf("retransmission forwarded: %s", r.Short())
	case <-time.After(200 * time.Millisecond):
	}
	if es := l.audit.find(ledger.KindRequest, "MESSAGE", -1, "retrans-1"); len(es) != 1 {
		t.Errorf("%d request entries, want 1", len(es))
	}
}

// RFC 3261 18.1.1: a request too big for a UDP datagram path goes to a
// stream edge when the destination has one; without one it is sent as a
// large datagram rather than failing the edge.
func TestLargeRequestOverUDP(t *testing.T) {
	body := strings.Repeat("x", 3000)
	t.Run("udp only", func(t *testing.T) {
		l := newLab(t, "udp")
		req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
		req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		req.SetBody([]byte(body))
		// The member's own sipgo refuses to send >1300 bytes over UDP, so
		// send it raw.
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDP(rawMessage("SIP/2.0/UDP "+c.LocalAddr().String()+";branch=z9hG4bKbig1", "big-1", body), mustUDPAddr(t, l.udp)); err != nil {
			t.Fatal(err)
		}
		if res := readUDP(t, c); !bytes.HasPrefix(res, []byte("SIP/2.0 200")) {
			t.Fatalf("got %q", res)
		}
		if got := l.b.expect(sip.MESSAGE); string(got.Body()) != body {
			t.Errorf("body of %d bytes arrived as %d", len(body), len(got.Body()))
		}
	})
	t.Run("prefers tcp edge", func(t *testing.T) {
		l := newLab(t, "udp")
		bt := newMember(t, "b-tcp", "b.example", "127.0.0.3", memberOpts{network: "tcp"})
		cs := labState(l.a, l.b)
		cs.Networks[1].Edges = []string{l.b.edge(), bt.edge()} // UDP first
		l.state.set(cs)
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDP(rawMessage("SIP/2.0/UDP "+c.LocalAddr().String()+";branch=z9hG4bKbig2", "big-2", body), mustUDPAddr(t, l.udp)); err != nil {
			t.Fatal(err)
		}
		if res := readUDP(t, c); !bytes.HasPrefix(res, []byte("SIP/2.0 200")) {
			t.Fatalf("got %q", res)
		}
		if got := bt.expect(sip.MESSAGE); len(got.Body()) != len(body) || got.Transport() != "TCP" {
			t.Errorf("TCP edge got %d bytes over %s", len(got.Body()), got.Transport())
		}
	})
}

// On a stream, a message that frames (Content-Length known) but does not
// parse gets a 400 and the connection carries on (RFC 3261 16.3 step 1,
// 18.3); a message without Content-Length is refused the same way.
func TestStreamMalformedGets400(t *testing.T) {
	l := newLab(t, "tcp")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", l.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	via := "SIP/2.0/TCP " + c.LocalAddr().String() + ";branch=z9hG4bK"
	bad := strings.Replace(string(rawMessage(via+"bad1", "stream-bad-1", "")), "CSeq: 1 MESSAGE", "CSeq: x MESSAGE", 1)
	noLen := strings.Replace(string(rawMessage(via+"bad2", "stream-bad-2", "")), "Content-Length: 0\r\n", "", 1)
	good := string(rawMessage(via+"good1", "stream-good-1", "hi"))
	if _, err := c.Write([]byte("\r\n\r\n" + bad + noLen + good)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got []string
	readFramed(c, func(m []byte) {
		got = append(got, string(m))
		if len(got) == 3 {
			c.SetReadDeadline(time.Now()) // stop
		}
	})
	want := []struct{ status, callID string }{{"400", "stream-bad-1"}, {"400", "stream-bad-2"}, {"200", "stream-good-1"}}
	if len(got) != len(want) {
		t.Fatalf("got %d responses: %q", len(got), got)
	}
	// The 400s are sent by helpers and may overtake each other; match by Call-ID.
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.Contains(g, "Call-ID: "+w.callID) {
				found = strings.HasPrefix(strings.TrimLeft(g, "\r\n"), "SIP/2.0 "+w.status) // after the keep-alive pong
			}
		}
		if !found {
			t.Errorf("no %s for %s in %q", w.status, w.callID, got)
		}
	}
	l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 400, "stream-bad-1")
}

// UDP in, TCP out (and back): the hub record-routes twice (RFC 5658), one
// entry per interface, and in-dialog requests from either side come back
// through it and leave on the other transport.
func TestMixedTransportsDoubleRecordRoute(t *testing.T) {
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "udp"})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "tcp"})
	l.state.set(labState(l.a, l.b))
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RouteSecret: []byte("test-secret")}, l.state, l.audit)
	addrs := l.hub.Addrs()
	l.udp, l.tcp = addrs[0].String(), addrs[1].String()

	gotSub := make(chan *sip.Request, 1)
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if req.Method == sip.SUBSCRIBE && req.To().Params.GetOr("tag", "") == "" {
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: hostOf(l.b.addr), Port: portOf(l.b.addr), UriParams: transportParam("tcp")}})
			res.AppendHeader(sip.NewHeader("Expires", "600"))
			select {
			case gotSub <- req:
			default:
			}
		}
		_ = tx.Respond(res)
	})
	l.a.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})

	sub := l.a.newRequest(sip.SUBSCRIBE, "sip:bob@b.example", l.udp)
	sub.AppendHeader(sip.NewHeader("Event", "presence"))
	res := l.a.do(sub)
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
	}
	got := <-gotSub
	rrs := recordRoutes(got)
	if len(rrs) != 2 {
		t.Fatalf("b saw Record-Route %v, want two (RFC 5658)", rrs)
	}
	if tp := rrs[0].UriParams.GetOr("transport", ""); tp != "tcp" || rrs[0].Port != portOf(l.tcp) {
		t.Errorf("top Record-Route %v should face b (tcp, port %d)", rrs[0].String(), portOf(l.tcp))
	}
	if tp := rrs[1].UriParams.GetOr("transport", ""); tp != "udp" || rrs[1].Port != portOf(l.udp) {
		t.Errorf("second Record-Route %v should face a (udp, port %d)", rrs[1].String(), portOf(l.udp))
	}
	if n := len(recordRoutes(res)); n != 2 {
		t.Errorf("a's 200 has %d Record-Route entries, want 2", n)
	}

	// b -> a NOTIFY over TCP with b's route set (RFC 3261 12.1.1: the
	// Record-Route order as received).
	fromB := &sip.FromHeader{Address: got.To().Address, Params: sip.NewParams()}
	fromB.Params.Add("tag", res.To().Params.GetOr("tag", ""))
	toA := &sip.ToHeader{Address: got.From().Address, Params: got.From().Params.Clone()}
	notify := l.b.inDialog(sip.NOTIFY, got.Contact().Address, rrs, fromB, toA, sub.CallID().Value(), 1)
	notify.AppendHeader(sip.NewHeader("Event", "presence"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	if r := l.b.do(notify); r.StatusCode != 200 {
		t.Fatalf("NOTIFY b->a: %d %s", r.StatusCode, r.Reason)
	}
	n := l.a.expect(sip.NOTIFY)
	if n.Transport() != "UDP" || len(n.GetHeaders("Route")) != 0 {
		t.Errorf("NOTIFY reached a over %s with Route %v", n.Transport(), n.GetHeaders("Route"))
	}

	// a -> b in-dialog SUBSCRIBE refresh over UDP (route set reversed).
	fromA := &sip.FromHeader{Address: sub.From().Address, Params: sub.From().Params.Clone()}
	toB := &sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}
	refresh := l.a.inDialog(sip.SUBSCRIBE, res.Contact().Address, reversed(recordRoutes(res)), fromA, toB, sub.CallID().Value(), 2)
	refresh.AppendHeader(sip.NewHeader("Event", "presence"))
	refresh.AppendHeader(sip.NewHeader("Expires", "0"))
	if r := l.a.do(refresh); r.StatusCode != 200 {
		t.Fatalf("refresh a->b: %d %s", r.StatusCode, r.Reason)
	}
	l.b.expect(sip.SUBSCRIBE)
	if g := l.b.expect(sip.SUBSCRIBE); g.Transport() != "TCP" || len(g.GetHeaders("Route")) != 0 {
		t.Errorf("refresh reached b over %s with Route %v", g.Transport(), g.GetHeaders("Route"))
	}
	for _, m := range []string{"NOTIFY", "SUBSCRIBE"} {
		for _, e := range l.audit.find(ledger.KindRequest, m, 0, sub.CallID().Value()) {
			if (e.SrcNet != "neta" || e.DstNet != "netb") && (e.SrcNet != "netb" || e.DstNet != "neta") {
				t.Errorf("%s entry networks %q -> %q", m, e.SrcNet, e.DstNet)
			}
		}
	}
}

// unspecifiedUDPSockets lists this process' UDP sockets bound to the
// wildcard address (0.0.0.0 or ::), from /proc.
func unspecifiedUDPSockets(t *testing.T) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"/proc/self/net/udp", "/proc/self/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			ip, _, _ := strings.Cut(f[1], ":")
			if strings.Trim(ip, "0") == "" {
				out = append(out, table+" "+f[1])
			}
		}
	}
	return out
}

// Forwarded UDP requests leave from the hub's listening socket, the address
// its Via names (RFC 3581 symmetric signalling), on the lean path (MESSAGE)
// and on sipgo's (INVITE and its ACK): the member sees them come from the hub's UDP listen address, and the process
// holds no UDP socket bound to the wildcard address.
func TestUDPForwardsFromListenSocket(t *testing.T) {
	l := newLab(t, "udp")
	acks := make(chan string, 1)
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		switch req.Method {
		case sip.INVITE:
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
			// The ACK for the 486 (RFC 3261 17.1.1.3) comes from the
			// hub's client transaction; waiting for it also keeps it from
			// reaching b while b is being torn down.
			select {
			case ack := <-tx.Acks():
				acks <- ack.Source()
			case <-tx.Done():
				acks <- "no ACK"
			}
		case sip.ACK:
		default:
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		}
	})
	if res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)); res.StatusCode != 200 {
		t.Fatalf("MESSAGE: %d", res.StatusCode)
	}
	if got := l.b.expect(sip.MESSAGE); got.Source() != l.udp {
		t.Errorf("MESSAGE reached b from %s, want the hub's listen address %s", got.Source(), l.udp)
	}
	if res := l.a.do(l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)); res.StatusCode != 486 {
		t.Fatalf("INVITE: %d", res.StatusCode)
	}
	got := l.b.expect(sip.INVITE)
	if got.Source() != l.udp {
		t.Errorf("INVITE reached b from %s, want the hub's listen address %s", got.Source(), l.udp)
	}
	if v := got.Via(); v == nil || net.JoinHostPort(v.Host, strconv.Itoa(v.Port)) != l.udp {
		t.Errorf("top Via %v does not name the socket the INVITE came from", v)
	}
	select {
	case src := <-acks:
		if src != l.udp {
			t.Errorf("ACK for the 486 reached b from %s, want %s", src, l.udp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b's INVITE handler did not finish")
	}
	if s := unspecifiedUDPSockets(t); len(s) > 0 {
		t.Errorf("UDP sockets bound to the wildcard address: %v", s)
	}
}
