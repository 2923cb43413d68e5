package hub

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/proto/hubv1"
)

// contentLength is the hand-written part of stream framing: it must never
// panic, and whatever it accepts must be a non-negative number that the
// header block really carries.
func FuzzContentLength(f *testing.F) {
	for _, s := range []string{
		"INVITE sip:a@b SIP/2.0\r\nContent-Length: 12",
		"MESSAGE sip:a@b SIP/2.0\r\nl:0",
		"X\r\nContent-Length: -1",
		"X\r\nContent-Length: 99999999999999999999999",
		"X\r\ncontent-length:\t7 \r\nContent-Length: 3",
		"X\r\nNo-Colon-Here\r\n:\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		n, has, ok := contentLength(head)
		if ok && n < 0 {
			t.Fatalf("accepted negative length %d", n)
		}
		if has && ok && !strings.Contains(strings.ToLower(string(head)), fmt.Sprint(n)) {
			t.Fatalf("length %d not in %q", n, head)
		}
		if !has && (n != 0 || !ok) {
			t.Fatalf("no header but n=%d ok=%v", n, ok)
		}
	})
}

// Whatever a member sends over UDP or TCP, the node keeps serving: after
// each input an OPTIONS to the hub itself still gets 200.
func FuzzMemberInput(f *testing.F) {
	valid := "MESSAGE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5999;branch=z9hG4bK1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\n" +
		"Call-ID: fuzz-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi"
	for _, s := range []string{
		valid,
		valid[:60],
		strings.Replace(valid, "Content-Length: 2", "Content-Length: 99999", 1),
		strings.Replace(valid, "Content-Length: 2", "Content-Length: -4", 1),
		strings.Replace(valid, "CSeq: 1 MESSAGE", "CSeq: x", 1),
		strings.Replace(valid, "Via: SIP/2.0/UDP 127.0.0.2:5999;branch=z9hG4bK1", "Via: SIP/2.0/UDP [::1", 1),
		strings.Replace(valid, "From: <sip:alice@a.example>;tag=1", "From: <sip:alice@a.example\r\n Injected: yes>", 1),
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-ch1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
		"\r\n\r\n",
		"\x00\xff\xfe garbage",
		"INVITE sip:bob@b.example SIP/2.0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	st := &fakeState{}
	st.set(&hubv1.ClusterState{
		Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sip:127.0.0.2:5999"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.2/32"}}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sip:127.0.0.3:5999"}, Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
		},
		Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}}}},
	})
	h, err := New(Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RouteSecret: []byte("s"),
		Logger: quietLogger(), TransactionTimeout: 100 * time.Millisecond}, st, &memAudit{})
	if err != nil {
		f.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background()) }()
	f.Cleanup(func() {
		h.Close()
		<-done
	})
	udpAddr, tcpAddr := h.Addrs()[0].String(), h.Addrs()[1].String()
	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { src.Close() })
	hub, _ := net.ResolveUDPAddr("udp", udpAddr)

	f.Fuzz(func(t *testing.T, data []byte, stream bool) {
		if stream {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
			c, err := d.Dial("tcp", tcpAddr)
			if err != nil {
				t.Fatalf("hub stopped accepting TCP: %v", err)
			}
			c.Write(data)
			c.Close()
		} else if _, err := src.WriteToUDP(data, hub); err != nil {
			t.Fatal(err)
		}
		// Liveness: OPTIONS addressed to the hub itself (RFC 3261 11).
		cid := fmt.Sprintf("alive-%d", time.Now().UnixNano())
		ping := "OPTIONS sip:" + udpAddr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + src.LocalAddr().String() + ";branch=z9hG4bK" + cid +
			"\r\nMax-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:" + udpAddr + ">\r\nCall-ID: " + cid +
			"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		if _, err := src.WriteToUDP([]byte(ping), hub); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		deadline := time.Now().Add(3 * time.Second)
		for {
			src.SetReadDeadline(deadline)
			n, _, err := src.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("hub did not answer OPTIONS after input %q: %v", data, err)
			}
			if got := string(buf[:n]); strings.Contains(got, "Call-ID: "+cid) && strings.HasPrefix(got, "SIP/2.0 200") {
				return
			}
		}
	})
}

// writeURI (audit.go) writes what sipgo's Uri.String writes, for any URI
// sipgo parses.
func FuzzWriteURI(f *testing.F) {
	for _, s := range []string{"sip:alice@a.example", "sips:bob:pw@[2001:db8::1]:5061;transport=tls?subject=x&priority=urgent",
		"sip:127.0.0.1:5060;lr", "tel:+15551234;phone-context=x", "sip:b.example", "sip:u@2001:db8::2", "SIP:U@H;A=B", "sip:u@[::ffff:1.2.3.4]", "sip:u@::ffff:1.2.3.4:5060"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			return
		}
		var b strings.Builder
		writeURI(&b, &u)
		if want := u.String(); b.String() != want {
			t.Fatalf("writeURI(%q) = %q, sipgo writes %q", s, b.String(), want)
		}
	})
}
