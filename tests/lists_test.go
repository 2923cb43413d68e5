package tests

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sipEdge is a member network's SIP server as the hub sees it: a UDP socket
// and a TCP listener on the same address (RFC 3261 18: every element does
// both; the hub sends a NOTIFY too large for a datagram over TCP). Every
// message arrives on one channel with a way to answer on its transport.
type sipEdge struct {
	udp  *net.UDPConn
	ln   net.Listener
	msgs chan edgeMsg
	// bigUDP counts datagrams over 1300 bytes (RFC 3261 18.1.1: those
	// must come over TCP), tcpMsgs the messages that came over TCP.
	bigUDP, tcpMsgs atomic.Int64
}

type edgeMsg struct {
	m     *sipMsg
	from  string
	tcp   bool
	reply func(string)
}

func newSIPEdge(t *testing.T, ip string) *sipEdge {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", u.LocalAddr().String())
	if err != nil {
		u.Close()
		t.Fatal(err)
	}
	e := &sipEdge{udp: u, ln: ln, msgs: make(chan edgeMsg, 1000)}
	t.Cleanup(func() { u.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := u.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if strings.TrimSpace(string(buf[:n])) == "" {
				continue
			}
			if n > 1300 {
				e.bigUDP.Add(1)
			}
			m, err := parseSIP(string(buf[:n]))
			if err != nil {
				continue
			}
			e.msgs <- edgeMsg{m: m, from: from.String(), reply: func(s string) { u.WriteToUDP([]byte(s), from) }}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					m, err := readStreamSIP(r)
					if err != nil {
						return
					}
					e.tcpMsgs.Add(1)
					e.msgs <- edgeMsg{m: m, from: c.RemoteAddr().String(), tcp: true, reply: func(s string) { io.WriteString(c, s) }}
				}
			}()
		}
	}()
	return e
}

func (e *sipEdge) addr() string { return e.udp.LocalAddr().String() }

func (e *sipEdge) send(t *testing.T, to, msg string) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.udp.WriteToUDP([]byte(msg), ua); err != nil {
		t.Fatal(err)
	}
}

// next returns the next message for which want is true; NOTIFYs it skips
// are answered 200 (a watcher's UA does), other skipped messages dropped.
func (e *sipEdge) next(t *testing.T, within time.Duration, what string, want func(edgeMsg) bool) edgeMsg {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-e.msgs:
			if want(m) {
				return m
			}
			if strings.HasPrefix(m.m.start, "NOTIFY ") {
				m.reply(response(m.m, 200, "OK"))
			}
		case <-deadline:
			t.Fatalf("%s: no %s within %s", e.addr(), what, within)
		}
	}
}

// quiet reports whether nothing but (answered) NOTIFYs arrives for d.
func (e *sipEdge) quiet(d time.Duration, want func(edgeMsg) bool) (edgeMsg, bool) {
	deadline := time.After(d)
	for {
		select {
		case m := <-e.msgs:
			if want(m) {
				return m, false
			}
			if strings.HasPrefix(m.m.start, "NOTIFY ") {
				m.reply(response(m.m, 200, "OK"))
			}
		case <-deadline:
			return edgeMsg{}, true
		}
	}
}

func isStatus(cid string) func(edgeMsg) bool {
	return func(m edgeMsg) bool { return m.m.status() >= 200 && m.m.get("Call-ID") == cid }
}

func isRequest(method, cid string) func(edgeMsg) bool {
	return func(m edgeMsg) bool {
		return strings.HasPrefix(m.m.start, method+" ") && (cid == "" || m.m.get("Call-ID") == cid)
	}
}

// rlmi is the RFC 4662 root document of a list NOTIFY, read back with
// mime/multipart and encoding/xml (nothing shared with hub/lists).
type rlmi struct {
	Version   int    `xml:"version,attr"`
	FullState bool   `xml:"fullState,attr"`
	URI       string `xml:"uri,attr"`
	Resources []struct {
		URI       string `xml:"uri,attr"`
		Instances []struct {
			State  string `xml:"state,attr"`
			Reason string `xml:"reason,attr"`
			CID    string `xml:"cid,attr"`
		} `xml:"instance"`
	} `xml:"resource"`
}

func parseListNotify(t *testing.T, m *sipMsg) (*rlmi, map[string]string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/rlmi+xml" {
		t.Fatalf("list NOTIFY Content-Type %q: %v", m.get("Content-Type"), err)
	}
	if strings.Contains(m.get("Content-Type"), `boundary="`) {
		t.Fatalf("quoted boundary (belle-sip crashes on it): %s", m.get("Content-Type"))
	}
	r := multipart.NewReader(strings.NewReader(m.body), params["boundary"])
	var root *rlmi
	parts := map[string]string{}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		b, _ := io.ReadAll(p)
		cid := strings.Trim(p.Header.Get("Content-Id"), "<>")
		if root == nil {
			if "<"+cid+">" != params["start"] {
				t.Fatalf("first part %q is not the start %q", cid, params["start"])
			}
			root = &rlmi{}
			if err := xml.Unmarshal(b, root); err != nil {
				t.Fatalf("RLMI: %v\n%s", err, b)
			}
			continue
		}
		parts[cid] = string(b)
	}
	if root == nil {
		t.Fatal("no RLMI part")
	}
	return root, parts
}

func (r *rlmi) states() map[string]string {
	out := map[string]string{}
	for _, res := range r.Resources {
		for _, in := range res.Instances {
			out[res.URI] = in.State
		}
	}
	return out
}

var tagRE = regexp.MustCompile(`;tag=([^;>\s]+)`)

func tagIn(h string) string {
	if m := tagRE.FindStringSubmatch(h); m != nil {
		return m[1]
	}
	return ""
}

// presenceServer answers the hub's two back-end SUBSCRIBEs on b (a
// retransmission again) and sends each dialog's NOTIFY with the
// presentity's document to the Contact the hub gave, until both NOTIFYs
// are answered 200.
func presenceServer(t *testing.T, b *sipEdge, n *node, within time.Duration, note string) map[string]*sipMsg {
	t.Helper()
	subs := map[string]*sipMsg{}
	answered := map[string]bool{}
	deadline := time.After(within)
	for len(subs) < 2 || len(answered) < 2 {
		var m edgeMsg
		select {
		case m = <-b.msgs:
		case <-deadline:
			t.Fatalf("presence server: %d back-end SUBSCRIBEs, %d NOTIFYs answered within %s", len(subs), len(answered), within)
		}
		switch {
		case strings.HasPrefix(m.m.start, "SUBSCRIBE "):
			ruri := strings.Fields(m.m.start)[1]
			m.reply(strings.Replace(response(m.m, 200, "OK"), "Content-Length: 0\r\n",
				"Expires: 600\r\nContact: <sip:ps@"+b.addr()+">\r\nContent-Length: 0\r\n", 1))
			if subs[ruri] != nil {
				continue // a retransmission
			}
			subs[ruri] = m.m
			contact := strings.Trim(strings.Split(m.m.get("Contact"), ">")[0], "<")
			pidf := `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + ruri +
				`"><tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`
			b.send(t, n.sip, backendNotify(m.m, contact, b.addr(), pidf))
		case m.m.status() == 200 && strings.HasSuffix(m.m.get("CSeq"), "NOTIFY"):
			answered[m.m.get("Call-ID")] = true
		case m.m.status() >= 300:
			t.Fatalf("presence server: the hub answered %q to a back-end NOTIFY", m.m.start)
		}
	}
	return subs
}

// activeNotes follows a's NOTIFYs on dialog cid until every one of uris
// was shown active with a document carrying note.
func activeNotes(t *testing.T, a *sipEdge, cid, note string, uris ...string) {
	t.Helper()
	active := map[string]bool{}
	eventually(t, 15*time.Second, "presentities active with note "+note, func() error {
		m, quiet := a.quiet(2*time.Second, isRequest("NOTIFY", cid))
		if quiet {
			return fmt.Errorf("no NOTIFY; active %v", active)
		}
		m.reply(response(m.m, 200, "OK"))
		r, parts := parseListNotify(t, m.m)
		for _, res := range r.Resources {
			for _, in := range res.Instances {
				if in.State == "active" && strings.Contains(parts[in.CID], "<note>"+note+"</note>") {
					active[res.URI] = true
				}
			}
		}
		for _, u := range uris {
			if !active[u] {
				return fmt.Errorf("active %v", active)
			}
		}
		return nil
	})
}

// backendNotify is the presence server's NOTIFY on the dialog sub made.
func backendNotify(sub *sipMsg, contact, self, pidf string) string {
	to := strings.Split(strings.Split(sub.get("To"), ">")[0], "<")
	var b strings.Builder
	fmt.Fprintf(&b, "NOTIFY %s SIP/2.0\r\n", contact)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n", self, callID())
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=uas1\r\n", to[len(to)-1])
	fmt.Fprintf(&b, "To: %s\r\n", sub.get("From"))
	fmt.Fprintf(&b, "Call-ID: %s\r\n", sub.get("Call-ID"))
	fmt.Fprintf(&b, "CSeq: 1 NOTIFY\r\n")
	fmt.Fprintf(&b, "Contact: <sip:ps@%s>\r\n", self)
	fmt.Fprintf(&b, "Event: presence\r\nSubscription-State: active;expires=600\r\n")
	fmt.Fprintf(&b, "Content-Type: application/pidf+xml\r\nContent-Length: %d\r\n\r\n%s", len(pidf), pidf)
	return b.String()
}

// listSubscribe is alice's SUBSCRIBE to her list (in the dialog when
// toTag is set).
func listSubscribe(ruri, cid, fromTag, toTag, contact string, cseq int, expires int) string {
	to := "<sip:alice-buddies@lists.hub.example>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SUBSCRIBE %s SIP/2.0\r\n", ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n", contact, callID())
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:alice@a.example>;tag=%s\r\nTo: %s\r\n", fromTag, to)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d SUBSCRIBE\r\n", cid, cseq)
	fmt.Fprintf(&b, "Contact: <sip:alice@%s>\r\n", contact)
	fmt.Fprintf(&b, "Event: presence\r\nSupported: eventlist\r\nAccept: application/rlmi+xml, multipart/related, application/pidf+xml\r\n")
	fmt.Fprintf(&b, "Expires: %d\r\nContent-Length: 0\r\n\r\n", expires)
	return b.String()
}

// The node holding a list subscription dies (docs/lists.md "Failover").
// The watcher's refresh toward the dead node's address goes unanswered
// (its UA concludes 408); one that reaches another node — a cluster name
// or VIP in front of the nodes — gets 481, because subscriptions are soft
// state of the node that took them. A new SUBSCRIBE to any node is served
// from the replicated list definition: 200, a full-state NOTIFY from
// version 0, fresh back-end subscriptions in the watcher's name, and the
// presentities' documents. The dead node's back-end dialogs are ended by
// 481 when their NOTIFYs reach a live node. NOTIFYs over 1300 bytes reach
// the watcher's UDP-only network over TCP (RFC 3261 18.1.1).
func TestListSubscriptionNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cfg := filepath.Join(t.TempDir(), "hubd.yaml")
	if err := os.WriteFile(cfg, []byte("lists:\n  domain: lists.hub.example\n  throttle: 100ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	for _, n := range []*node{n1, n2, n3} {
		n.extra = []string{"--config", cfg}
	}
	n1.start(t)
	n1.waitReady(t, 30*time.Second)
	token := strings.TrimSpace(mustHubctl(t, n1, "cluster", "token"))
	for _, n := range []*node{n2, n3} {
		n.start(t, "--join", n1.admin, "--join-token", token)
	}
	for _, n := range []*node{n2, n3} {
		n.waitReady(t, 60*time.Second)
	}
	nodes := map[string]*node{"n1": n1, "n2": n2, "n3": n3}

	a, b := newSIPEdge(t, "127.0.0.2"), newSIPEdge(t, "127.0.0.3")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+a.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+b.addr(), "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "presence")
	mustHubctl(t, n1, "policy", "allow", "net-a", "--from", "net-b", "--services", "presence")
	mustHubctl(t, n1, "list", "create", "sip:alice-buddies@lists.hub.example", "--owner", "sip:alice@a.example",
		"--entry", "sip:bob@b.example=Bob", "--entry", "sip:carol@b.example=Carol")
	waitCaughtUp(t, n1, n2, n3)

	s, err := status(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	var victim, survivor *node
	for _, id := range []string{"n1", "n2", "n3"} {
		switch {
		case id == s.Leader:
		case victim == nil:
			victim = nodes[id]
		}
	}
	survivor = nodes[s.Leader]

	// Subscribe through the victim and see both presentities active.
	cid, ftag := "list-"+callID(), "w"+callID()[:6]
	a.send(t, victim.sip, listSubscribe("sip:alice-buddies@lists.hub.example", cid, ftag, "", a.addr(), 1, 600))
	ok := a.next(t, 10*time.Second, "200 to the SUBSCRIBE", isStatus(cid))
	if ok.m.status() != 200 || ok.m.get("Require") != "eventlist" {
		t.Fatalf("SUBSCRIBE through %s: %q Require %q", victim.id, ok.m.start, ok.m.get("Require"))
	}
	toTag := tagIn(ok.m.get("To"))
	hubContact := strings.Trim(strings.Split(ok.m.get("Contact"), ">")[0], "<")
	first := a.next(t, 10*time.Second, "first NOTIFY", isRequest("NOTIFY", cid))
	first.reply(response(first.m, 200, "OK"))
	if r, _ := parseListNotify(t, first.m); r.Version != 0 || !r.FullState || len(r.Resources) != 2 {
		t.Fatalf("first NOTIFY: version %d fullState %v, %d resources", r.Version, r.FullState, len(r.Resources))
	}
	deadSubs := presenceServer(t, b, victim, 10*time.Second, "before")
	for _, m := range deadSubs {
		if !strings.Contains(m.get("From"), "sip:alice@a.example") {
			t.Errorf("back-end SUBSCRIBE not in the watcher's name: From %s", m.get("From"))
		}
	}
	activeNotes(t, a, cid, "before", "sip:bob@b.example", "sip:carol@b.example")

	victim.kill(syscall.SIGKILL)

	// The refresh toward the dead node: no answer (the watcher's UA times
	// out: 408).
	a.send(t, victim.sip, listSubscribe(hubContact, cid, ftag, toTag, a.addr(), 2, 600))
	if m, quiet := a.quiet(2*time.Second, isStatus(cid)); !quiet {
		t.Fatalf("a dead node answered: %q", m.m.start)
	}
	// The same refresh reaching a live node, as through a shared name: the
	// Request-URI is the hub's Contact with that node's address.
	user := strings.SplitN(strings.TrimPrefix(hubContact, "sip:"), "@", 2)[0]
	shared := "sip:" + user + "@" + survivor.sip + ";transport=udp;chsvc=lists.hub.example"
	a.send(t, survivor.sip, listSubscribe(shared, cid, ftag, toTag, a.addr(), 3, 600))
	if m := a.next(t, 10*time.Second, "answer to the refresh", isStatus(cid)); m.m.status() != 481 {
		t.Fatalf("refresh at %s: %q, want 481", survivor.id, m.m.start)
	}
	// The dead node's back-end dialog, NOTIFYed at a live node: 481, so
	// the presentity's server ends it now instead of at its expiry.
	for ruri, sub := range deadSubs {
		contact := strings.Trim(strings.Split(sub.get("Contact"), ">")[0], "<")
		contact = regexp.MustCompile(`@[^;>]+`).ReplaceAllString(contact, "@"+survivor.sip)
		b.send(t, survivor.sip, backendNotify(sub, contact, b.addr(), "<presence/>"))
		if m := b.next(t, 10*time.Second, "answer to an orphan back-end NOTIFY", isStatus(sub.get("Call-ID"))); m.m.status() != 481 {
			t.Errorf("orphan back-end NOTIFY for %s: %q, want 481", ruri, m.m.start)
		}
		break
	}

	// A new subscription through the survivor: full state from version 0,
	// back ends made again by the survivor.
	cid2, ftag2 := "list-"+callID(), "w"+callID()[:6]
	a.send(t, survivor.sip, listSubscribe("sip:alice-buddies@lists.hub.example", cid2, ftag2, "", a.addr(), 1, 600))
	if m := a.next(t, 10*time.Second, "200 to the new SUBSCRIBE", isStatus(cid2)); m.m.status() != 200 {
		t.Fatalf("re-SUBSCRIBE through %s: %q", survivor.id, m.m.start)
	}
	n0 := a.next(t, 10*time.Second, "first NOTIFY of the new subscription", isRequest("NOTIFY", cid2))
	n0.reply(response(n0.m, 200, "OK"))
	if r, _ := parseListNotify(t, n0.m); r.Version != 0 || !r.FullState || len(r.Resources) != 2 {
		t.Fatalf("new subscription's first NOTIFY: version %d fullState %v, %d resources", r.Version, r.FullState, len(r.Resources))
	}
	presenceServer(t, b, survivor, 10*time.Second, "after")
	activeNotes(t, a, cid2, "after", "sip:bob@b.example", "sip:carol@b.example")

	// The NOTIFYs with documents are over 1300 bytes: they came over TCP
	// to a's UDP edge address, never as a datagram.
	if n := a.bigUDP.Load(); n > 0 {
		t.Errorf("%d datagrams over 1300 bytes reached the watcher's network", n)
	}
	if a.tcpMsgs.Load() == 0 {
		t.Error("no NOTIFY came over TCP")
	}
}
