package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The end-to-end SIP tests speak SIP as plain text over plain sockets, so
// nothing in them shares code or assumptions with the hub's SIP stack.

// sipMsg is a parsed SIP message: start line, headers in order, body.
type sipMsg struct {
	start   string
	headers [][2]string
	body    string
}

func parseSIP(raw string) (*sipMsg, error) {
	head, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		return nil, fmt.Errorf("no end of headers in %q", raw)
	}
	lines := strings.Split(head, "\r\n")
	m := &sipMsg{start: lines[0], body: body}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("bad header line %q", l)
		}
		m.headers = append(m.headers, [2]string{textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	return m, nil
}

// all returns every value of header name (compact forms mapped).
func (m *sipMsg) all(name string) []string {
	compact := map[string]string{"V": "Via", "F": "From", "T": "To", "I": "Call-Id", "L": "Content-Length", "C": "Content-Type", "M": "Contact"}
	want := textproto.CanonicalMIMEHeaderKey(name)
	var out []string
	for _, h := range m.headers {
		n := h[0]
		if c, ok := compact[n]; ok {
			n = c
		}
		if n == want {
			out = append(out, h[1])
		}
	}
	return out
}

func (m *sipMsg) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// status returns the response code, or 0 for a request.
func (m *sipMsg) status() int {
	if !strings.HasPrefix(m.start, "SIP/2.0 ") {
		return 0
	}
	code, _ := strconv.Atoi(strings.Fields(m.start)[1])
	return code
}

// request renders an out-of-dialog request.
func request(method, ruri, from, to, via, callID, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, ruri)
	fmt.Fprintf(&b, "Via: %s\r\n", via)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\n", from, callID[:6])
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: 1 %s\r\n", method)
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: text/plain\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// response answers req with code, echoing the headers RFC 3261 8.2.6.2 says
// a UAS copies.
func response(req *sipMsg, code int, reason string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range req.all("Via") {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	for _, v := range req.all("Record-Route") {
		fmt.Fprintf(&b, "Record-Route: %s\r\n", v)
	}
	fmt.Fprintf(&b, "From: %s\r\n", req.get("From"))
	to := req.get("To")
	if !strings.Contains(to, "tag=") {
		to += ";tag=uas1"
	}
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", req.get("Call-ID"))
	fmt.Fprintf(&b, "CSeq: %s\r\n", req.get("CSeq"))
	fmt.Fprintf(&b, "Content-Length: 0\r\n\r\n")
	return b.String()
}

// udpPeer is a member network's SIP server reduced to one UDP socket.
type udpPeer struct {
	conn *net.UDPConn
}

func newUDPPeer(t *testing.T, ip string) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{conn: c}
}

func (p *udpPeer) addr() string { return p.conn.LocalAddr().String() }

func (p *udpPeer) send(t *testing.T, to, msg string) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDP([]byte(msg), ua); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next SIP message (skipping keep-alives) and its source.
func (p *udpPeer) recv(t *testing.T, within time.Duration) (*sipMsg, string) {
	t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(within)
	for {
		p.conn.SetReadDeadline(deadline)
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s: nothing received within %s: %v", p.addr(), within, err)
		}
		if strings.TrimSpace(string(buf[:n])) == "" {
			continue
		}
		m, err := parseSIP(string(buf[:n]))
		if err != nil {
			t.Fatalf("%s: unparsable datagram from %s: %v", p.addr(), from, err)
		}
		return m, from.String()
	}
}

// recvFinal skips provisional responses.
func (p *udpPeer) recvFinal(t *testing.T, within time.Duration) *sipMsg {
	t.Helper()
	for {
		m, _ := p.recv(t, within)
		if m.status() >= 200 {
			return m
		}
	}
}

// tlsPeer is a member's SIP-over-TLS connection.
type tlsPeer struct {
	conn *tls.Conn
	r    *bufio.Reader
}

func newTLSPeer(c *tls.Conn) *tlsPeer { return &tlsPeer{conn: c, r: bufio.NewReader(c)} }

func (p *tlsPeer) send(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(p.conn, msg); err != nil {
		t.Fatal(err)
	}
}

// recv reads one message framed by Content-Length (RFC 3261 18.3).
func (p *tlsPeer) recv(t *testing.T, within time.Duration) *sipMsg {
	t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(within))
	var head strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			t.Fatalf("tls read: %v (so far %q)", err, head.String())
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue // keep-alive CRLF
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := parseSIP(head.String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(m.get("Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(p.r, body); err != nil {
		t.Fatalf("tls body: %v", err)
	}
	m.body = string(body)
	return m
}

func (p *tlsPeer) recvFinal(t *testing.T, within time.Duration) *sipMsg {
	t.Helper()
	for {
		if m := p.recv(t, within); m.status() >= 200 {
			return m
		}
	}
}

// readStreamSIP reads one message from a SIP stream (RFC 3261 18.3:
// headers to the blank line, then Content-Length bytes of body), skipping
// keep-alive CRLFs between messages.
func readStreamSIP(r *bufio.Reader) (*sipMsg, error) {
	var head strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := parseSIP(head.String())
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(m.get("Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	m.body = string(body)
	return m, nil
}
