package tests

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An in-dialog request still routes after the hub node that record-routed
// the dialog restarts: the hub keeps no per-dialog state, its Record-Route
// carries the two networks under an HMAC every node can check.
func TestDialogSurvivesHubRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := newNode(t, "n1")
	n1.start(t)
	n1.waitReady(t, 30*time.Second)
	a, b := newUDPPeer(t, "127.0.0.2"), newUDPPeer(t, "127.0.0.3")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+a.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+b.addr(), "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "presence")

	// a subscribes to bob's presence; b accepts with a Contact.
	cid := callID()
	sub := strings.Replace(request("SUBSCRIBE", "sip:bob@b.example", "sip:alice@a.example", "sip:bob@b.example",
		"SIP/2.0/UDP "+a.addr()+";branch=z9hG4bK"+cid, cid, ""),
		"Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:alice@"+a.addr()+">\r\n", 1)
	a.send(t, n1.sip, sub)
	got, from := b.recv(t, 5*time.Second)
	rr := got.all("Record-Route")
	if len(rr) == 0 {
		t.Fatalf("SUBSCRIBE reached b without the hub's Record-Route: %v", got.headers)
	}
	ok := strings.Replace(response(got, 200, "OK"), "Content-Length: 0\r\n", "Contact: <sip:bob@"+b.addr()+">\r\nExpires: 600\r\nContent-Length: 0\r\n", 1)
	b.send(t, from, ok)
	if res := a.recvFinal(t, 5*time.Second); res.status() != 200 {
		t.Fatalf("a got %q", res.start)
	}
	toTag := "uas1" // response() adds it

	// Restart the hub node from its data directory.
	n1.kill(syscall.SIGTERM)
	n1.start(t)
	n1.waitReady(t, 30*time.Second)

	// b's NOTIFY follows the route set (the Record-Route as received) to
	// alice's Contact.
	ncid := "z9hG4bKn" + callID()
	var notify strings.Builder
	fmt.Fprintf(&notify, "NOTIFY sip:alice@%s SIP/2.0\r\n", a.addr())
	fmt.Fprintf(&notify, "Via: SIP/2.0/UDP %s;branch=%s\r\n", b.addr(), ncid)
	for _, r := range rr {
		fmt.Fprintf(&notify, "Route: %s\r\n", r)
	}
	fmt.Fprintf(&notify, "Max-Forwards: 70\r\nFrom: <sip:bob@b.example>;tag=%s\r\nTo: <sip:alice@a.example>;tag=%s\r\n", toTag, cid[:6])
	fmt.Fprintf(&notify, "Call-ID: %s\r\nCSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=600\r\n", cid)
	fmt.Fprintf(&notify, "Content-Type: application/pidf+xml\r\nContent-Length: 4\r\n\r\nopen")
	hop := strings.TrimPrefix(strings.Trim(strings.Split(rr[0], ";")[0], "<>"), "sip:")
	b.send(t, hop, notify.String())
	n, nfrom := a.recv(t, 5*time.Second)
	if !strings.HasPrefix(n.start, "NOTIFY ") || n.body != "open" || n.get("Call-ID") != cid {
		t.Fatalf("a received %q body %q after the hub restarted", n.start, n.body)
	}
	if len(n.all("Route")) != 0 {
		t.Fatalf("the hub left its own Route in: %v", n.all("Route"))
	}
	a.send(t, nfrom, response(n, 200, "OK"))
	if res := b.recvFinal(t, 5*time.Second); res.status() != 200 {
		t.Fatalf("b got %q for its NOTIFY", res.start)
	}
}
