// Command msrphubd is the Go side of the interop case msrp-hubd
// (tests/interop/msrp.sh): two SIP user agents and their MSRP endpoints
// around a real hubd. Alice registers at Kamailio A and INVITEs bob through
// it; Kamailio A sends the foreign domain to the hub, the hub (MSRP
// anchoring on, net-b's RFC 4976 relay set with hubctl) AUTHs to Kamailio's
// msrp relay, and the INVITE reaches bob, registered at Kamailio B. Then a
// 100 KB message crosses alice -> hub -> Kamailio relay -> bob, a reply goes
// back, and a 1 MB RFC 5547 file crosses in a second session. Both calls
// end with BYE through the same proxies. The SIP here is deliberately
// minimal (UDP, no authentication, one transaction at a time): the hub and
// the Kamailio members are what is under test, not these user agents.
package main

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

type opts struct {
	aliceSIP, bobSIP string // local SIP addresses of the two UAs
	kamA, kamB       string // the member proxies
	relayPrefix      string // Kamailio relay's URI prefix, first in the offer's a=path at bob
	hubMSRP          string // the hub's MSRP listener, in the answer's a=path at alice
	maxChunk         int64  // largest chunk body bob may see (the relay's limit)
}

func main() {
	var o opts
	flag.StringVar(&o.aliceSIP, "alice", "127.0.0.2:5082", "alice's SIP address (network A)")
	flag.StringVar(&o.bobSIP, "bob", "127.0.0.3:5083", "bob's SIP address (network B)")
	flag.StringVar(&o.kamA, "kam-a", "127.0.0.2:5060", "Kamailio A")
	flag.StringVar(&o.kamB, "kam-b", "127.0.0.3:5060", "Kamailio B")
	flag.StringVar(&o.relayPrefix, "relay", "msrp://127.0.0.5:2855/", "prefix of network B's relay URI in bob's offer")
	flag.StringVar(&o.hubMSRP, "hub-msrp", "127.0.0.1:2856", "the hub's MSRP listener")
	flag.Int64Var(&o.maxChunk, "max-chunk", 8192, "largest chunk body allowed at bob")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

// ua is one UDP SIP user agent: responses go to resp, requests are
// handled by onRequest (which returns the response to send, or nil).
type ua struct {
	user, domain string
	conn         *net.UDPConn
	resp         chan *sip.Response
	onRequest    func(*sip.Request) *sip.Response
}

func newUA(user, domain, addr string) (*ua, error) {
	la, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ua %s: %w", user, err)
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("ua %s listen: %w", user, err)
	}
	u := &ua{user: user, domain: domain, conn: c, resp: make(chan *sip.Response, 64)}
	go u.read()
	return u, nil
}

func (u *ua) addr() string { return u.conn.LocalAddr().String() }

func (u *ua) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: unparsable datagram from %s: %v\n", u.user, from, err)
			continue
		}
		switch m := m.(type) {
		case *sip.Response:
			select {
			case u.resp <- m:
			default: // retransmissions nobody waits for
			}
		case *sip.Request:
			if u.onRequest == nil || m.IsAck() {
				continue
			}
			if r := u.onRequest(m); r != nil {
				_, _ = u.conn.WriteToUDP([]byte(r.String()), from)
			}
		}
	}
}

func (u *ua) send(to, msg string) error {
	ra, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return fmt.Errorf("%s send to %s: %w", u.user, to, err)
	}
	_, err = u.conn.WriteToUDP([]byte(msg), ra)
	return err
}

// final waits for the final response of (callID, method).
func (u *ua) final(callID, method string, d time.Duration) (*sip.Response, error) {
	t := time.After(d)
	for {
		select {
		case r := <-u.resp:
			if r.CallID() == nil || r.CallID().Value() != callID || r.CSeq() == nil || string(r.CSeq().MethodName) != method {
				continue
			}
			if r.StatusCode >= 200 {
				return r, nil
			}
		case <-t:
			return nil, fmt.Errorf("%s: no final response to %s %s within %v", u.user, method, callID, d)
		}
	}
}

func rnd() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// register binds (expires > 0) or removes (0) the UA's contact at proxy.
func (u *ua) register(proxy string, expires int) error {
	cid := "reg-" + rnd() + "@" + u.user
	msg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: <sip:%s@%s>\r\nExpires: %d\r\nContent-Length: 0\r\n\r\n",
		u.domain, u.addr(), rnd(), u.user, u.domain, rnd(), u.user, u.domain, cid, u.user, u.addr(), expires)
	if err := u.send(proxy, msg); err != nil {
		return err
	}
	r, err := u.final(cid, "REGISTER", 5*time.Second)
	if err != nil {
		return err
	}
	if r.StatusCode != 200 {
		return fmt.Errorf("REGISTER %s@%s at %s: %d %s", u.user, u.domain, proxy, r.StatusCode, r.Reason)
	}
	return nil
}

// dialog is alice's side of one call: enough for ACK and BYE.
type dialog struct {
	callID, fromTag, toHdr, target string
	routes                         []string // route set, first hop first
}

var uriHostPort = regexp.MustCompile(`sips?:(?:[^@;>]*@)?([^;>]+)`)

// nextHop is where an in-dialog request goes: the first route's host and
// port (loose routing, RFC 3261 section 12.2.1.1), or the target.
func (d *dialog) nextHop() string {
	s := d.target
	if len(d.routes) > 0 {
		s = d.routes[0]
	}
	m := uriHostPort.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	if _, _, err := net.SplitHostPort(m[1]); err != nil {
		return m[1] + ":5060"
	}
	return m[1]
}

func (d *dialog) inDialog(u *ua, method string, cseq int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n", method, d.target, u.addr(), rnd())
	for _, r := range d.routes {
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
		u.user, u.domain, d.fromTag, d.toHdr, d.callID, cseq, method)
	return b.String()
}

// invite sends an INVITE with sdp through proxy and ACKs its 200.
func (u *ua) invite(proxy, peer, callID string, sdp []byte) (*dialog, []byte, error) {
	d := &dialog{callID: callID, fromTag: rnd()}
	msg := fmt.Sprintf("INVITE sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:%s@%s>\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		peer, u.addr(), rnd(), u.user, u.domain, d.fromTag, peer, callID, u.user, u.addr(), len(sdp), sdp)
	if err := u.send(proxy, msg); err != nil {
		return nil, nil, err
	}
	r, err := u.final(callID, "INVITE", 15*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if r.StatusCode != 200 {
		return nil, nil, fmt.Errorf("INVITE %s: %d %s", callID, r.StatusCode, r.Reason)
	}
	if r.Contact() == nil || r.To() == nil {
		return nil, nil, fmt.Errorf("INVITE %s: 200 without Contact or To", callID)
	}
	d.target = r.Contact().Address.String()
	d.toHdr = r.To().Value()
	var rr []string
	for _, h := range r.GetHeaders("Record-Route") {
		for _, v := range strings.Split(h.Value(), ",") {
			rr = append(rr, strings.TrimSpace(v))
		}
	}
	for i := len(rr) - 1; i >= 0; i-- { // the UAC's route set is the reverse (RFC 3261 12.1.2)
		d.routes = append(d.routes, rr[i])
	}
	fmt.Printf("%s: 200 OK, route set %v\n", callID, d.routes)
	if err := u.send(d.nextHop(), d.inDialog(u, "ACK", 1)); err != nil {
		return nil, nil, err
	}
	return d, r.Body(), nil
}

func (u *ua) bye(d *dialog) error {
	if err := u.send(d.nextHop(), d.inDialog(u, "BYE", 2)); err != nil {
		return err
	}
	r, err := u.final(d.callID, "BYE", 10*time.Second)
	if err != nil {
		return err
	}
	if r.StatusCode != 200 {
		return fmt.Errorf("BYE %s: %d %s", d.callID, r.StatusCode, r.Reason)
	}
	return nil
}

// callee is bob's UAS state: per Call-ID the endpoint that answers and
// the 200 already sent (for retransmitted INVITEs).
type callee struct {
	mu     sync.Mutex
	ends   map[string]*msrptest.Endpoint
	sent   map[string]*sip.Response
	offers map[string]chan []byte
	bobSIP string
}

func (c *callee) handle(req *sip.Request) *sip.Response {
	cid := ""
	if req.CallID() != nil {
		cid = req.CallID().Value()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Method {
	case sip.INVITE:
		if r := c.sent[cid]; r != nil {
			return r
		}
		e := c.ends[cid]
		if e == nil {
			return sip.NewResponseFromRequest(req, 480, "No endpoint for this call", nil)
		}
		r := sip.NewResponseFromRequest(req, 200, "OK", e.SDP())
		r.AppendHeader(sip.NewHeader("Contact", "<sip:bob@"+c.bobSIP+">"))
		r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		c.sent[cid] = r
		select {
		case c.offers[cid] <- req.Body():
		default:
		}
		return r
	default: // BYE and anything else in the dialog
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	}
}

type call struct {
	d         *dialog
	ea, eb    *msrptest.Endpoint
	toHub     []string // alice's To-Path: the hub's A-leg URI
	bobToPath []string // bob's To-Path: Kamailio's Use-Path, then the hub's B-leg URI
}

func run(o opts) error {
	alice, err := newUA("alice", "a.example", o.aliceSIP)
	if err != nil {
		return err
	}
	bob, err := newUA("bob", "b.example", o.bobSIP)
	if err != nil {
		return err
	}
	cal := &callee{ends: map[string]*msrptest.Endpoint{}, sent: map[string]*sip.Response{}, offers: map[string]chan []byte{}, bobSIP: o.bobSIP}
	bob.onRequest = cal.handle
	if err := alice.register(o.kamA, 120); err != nil {
		return err
	}
	// The suite's later cases reach alice and bob at SIPp's contacts: the
	// ones registered here go again when this run ends.
	defer func() { _ = alice.register(o.kamA, 0) }()
	if err := bob.register(o.kamB, 120); err != nil {
		return err
	}
	defer func() { _ = bob.register(o.kamB, 0) }()
	fmt.Println("registered alice@a.example at Kamailio A, bob@b.example at Kamailio B")
	aIP, _, _ := net.SplitHostPort(o.aliceSIP)
	bIP, _, _ := net.SplitHostPort(o.bobSIP)

	setup := func(cid string, extra ...string) (*call, error) {
		c := &call{ea: msrptest.New(aIP, nil)}
		if c.eb, err = msrptest.Listen(bIP, nil); err != nil {
			return nil, err
		}
		offerCh := make(chan []byte, 1)
		cal.mu.Lock()
		cal.ends[cid], cal.offers[cid] = c.eb, offerCh
		cal.mu.Unlock()
		offer := c.ea.SDP(extra...)
		var answer []byte
		if c.d, answer, err = alice.invite(o.kamA, "bob@b.example", cid, offer); err != nil {
			return nil, err
		}
		var atBob []byte
		select {
		case atBob = <-offerCh:
		default:
			return nil, errors.New("bob answered no INVITE of this call")
		}
		om := msrp.ParseSDP(atBob)
		if len(om) != 1 || len(om[0].Path) != 2 || !strings.HasPrefix(om[0].Path[0], o.relayPrefix) ||
			!strings.HasPrefix(om[0].Path[1], "msrp://"+o.hubMSRP+"/") {
			return nil, fmt.Errorf("offer at bob: want a=path <Kamailio Use-Path %s…> <hub %s>: %q", o.relayPrefix, o.hubMSRP, atBob)
		}
		for _, l := range extra {
			if !strings.Contains(string(atBob), l) {
				return nil, fmt.Errorf("offer at bob lost %q", l)
			}
		}
		fmt.Printf("%s: offer at bob a=path:%s\n", cid, strings.Join(om[0].Path, " "))
		am := msrp.ParseSDP(answer)
		if len(am) != 1 || len(am[0].Path) != 1 || !strings.HasPrefix(am[0].Path[0], "msrp://"+o.hubMSRP+"/") {
			return nil, fmt.Errorf("answer at alice does not name the hub's listener %s: %q", o.hubMSRP, answer)
		}
		fmt.Printf("%s: answer at alice a=path:%s\n", cid, am[0].Path[0])
		c.toHub, c.bobToPath = am[0].Path, om[0].Path
		if err := c.ea.Connect(c.toHub, nil); err != nil {
			return nil, fmt.Errorf("alice connects to the hub: %w", err)
		}
		if err := c.eb.WaitConnected(10 * time.Second); err != nil {
			return nil, fmt.Errorf("no connection from Kamailio's relay reached bob: %w", err)
		}
		return c, nil
	}
	largest := func(m *msrptest.Message) int64 {
		n := int64(0)
		for _, br := range m.Ranges {
			n = max(n, br.End-br.Start+1)
		}
		return n
	}

	chat, err := setup("msrp-hubd-chat-" + rnd())
	if err != nil {
		return err
	}
	defer chat.ea.Close()
	defer chat.eb.Close()
	body := make([]byte, 100_000)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	// Alice sends 64 KiB chunks: the hub must cut them for Kamailio.
	if code, err := chat.ea.Send(chat.toHub, "hubd-chat-100k", "text/plain", body, 64<<10, nil); err != nil || code != 200 {
		return fmt.Errorf("alice sends 100 KB: %d %w", code, err)
	}
	m, err := chat.eb.Wait("hubd-chat-100k", 15*time.Second)
	if err != nil || string(m.Body) != string(body) {
		return fmt.Errorf("bob did not get the 100 KB message through hubd and Kamailio's relay: %w", err)
	}
	if l := largest(m); l > o.maxChunk {
		return fmt.Errorf("a chunk of %d bytes reached bob through Kamailio (limit %d)", l, o.maxChunk)
	}
	fmt.Printf("100 KB message at bob: %d chunks, largest %d bytes, From-Path %s\n", m.Chunks, largest(m), strings.Join(m.FromPath, " "))
	if code, err := chat.eb.Send(chat.bobToPath, "hubd-reply-1", "text/plain", []byte("hi alice, via Kamailio and hubd"), 1000, nil); err != nil || code != 200 {
		return fmt.Errorf("bob replies through Kamailio: %d %w", code, err)
	}
	if m, err := chat.ea.Wait("hubd-reply-1", 10*time.Second); err != nil || string(m.Body) != "hi alice, via Kamailio and hubd" {
		return fmt.Errorf("alice did not get bob's reply: %w", err)
	}
	fmt.Println("reply bob -> Kamailio relay -> hubd -> alice: delivered")

	file := make([]byte, 1<<20)
	for i := range file {
		file[i] = byte(i * 7)
	}
	sum := sha1.Sum(file)
	var hx []string
	for _, x := range sum {
		hx = append(hx, fmt.Sprintf("%02X", x))
	}
	ft, err := setup("msrp-hubd-file-"+rnd(), "a=sendonly",
		fmt.Sprintf(`a=file-selector:name:"hubd-interop.bin" type:application/octet-stream size:%d hash:sha-1:%s`, len(file), strings.Join(hx, ":")),
		"a=file-transfer-id:hubd-ft-1")
	if err != nil {
		return err
	}
	defer ft.ea.Close()
	defer ft.eb.Close()
	if code, err := ft.ea.Send(ft.toHub, "hubd-file-1m", "application/octet-stream", file, 64<<10, nil); err != nil || code != 200 {
		return fmt.Errorf("alice sends the 1 MB file: %d %w", code, err)
	}
	fm, err := ft.eb.Wait("hubd-file-1m", 30*time.Second)
	if err != nil || sha1.Sum(fm.Body) != sum {
		return fmt.Errorf("bob did not get the 1 MB file intact: %w", err)
	}
	if l := largest(fm); l > o.maxChunk {
		return fmt.Errorf("a file chunk of %d bytes reached bob through Kamailio (limit %d)", l, o.maxChunk)
	}
	fmt.Printf("1 MB file at bob: %d chunks, largest %d bytes, sha1 matches\n", fm.Chunks, largest(fm))

	for _, c := range []*call{chat, ft} {
		if err := alice.bye(c.d); err != nil {
			return err
		}
	}
	fmt.Println("both calls ended with BYE through Kamailio A, hubd, Kamailio B")
	return nil
}
