package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// sdpInvite is an INVITE carrying an MSRP offer (request() writes
// text/plain bodies).
func sdpInvite(ruri, from, via, callID, contact string, sdp []byte) string {
	m := request("INVITE", ruri, from, ruri, via, callID, string(sdp))
	m = strings.Replace(m, "Content-Type: text/plain\r\n", "Content-Type: application/sdp\r\nContact: <"+contact+">\r\n", 1)
	return m
}

func roomCPIM(from, to, text string) []byte {
	return []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nDateTime: 2026-12-02T00:00:00Z\r\n\r\nContent-Type: text/plain\r\n\r\n" + text)
}

// RFC 7701 with a real hubd: two session participants of network A (Go
// MSRP endpoints) and a pager participant of network B in one room; SIP
// through the hub's core (attribution, From check, hosted service), MSRP
// straight to the focus's listener.
func TestRoomSessionModeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	focus := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "hubd.yaml")
	if err := os.WriteFile(cfg, []byte("rooms:\n  session_listen: "+focus+"\n  session_host: 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := newNode(t, "n1")
	n1.extra = []string{"--config", cfg}
	n1.start(t)
	n1.waitReady(t, 30*time.Second)

	a := newUDPPeer(t, "127.0.0.2")
	bEdge := startSlowEdge(t, "127.0.0.3", 0)
	b := newUDPPeer(t, "127.0.0.3")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+a.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+bEdge.ln.Addr().String()+";transport=tcp", "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "chat")
	mustHubctl(t, n1, "policy", "allow", "net-a", "--from", "net-b", "--services", "chat")
	mustHubctl(t, n1, "room", "create", "team", "--owner", "bob@b.example")
	const room = "sip:team@rooms.localhost"

	type party struct {
		user string
		ep   *msrptest.Endpoint
		path string
		res  *sipMsg
	}
	join := func(user string) *party {
		ep := msrptest.New("127.0.0.1", nil)
		t.Cleanup(ep.Close)
		cid := "sess-" + strings.SplitN(user, "@", 2)[0] + "-" + callID()
		a.send(t, n1.sip, sdpInvite(room, "sip:"+user, "SIP/2.0/UDP "+a.addr()+";branch=z9hG4bK"+cid, cid, "sip:"+strings.SplitN(user, "@", 2)[0]+"@"+a.addr(),
			ep.SDP("a=setup:active", "a=chatroom:nickname private-messages")))
		res := a.recvFinal(t, 10*time.Second)
		if res.status() != 200 || !strings.Contains(res.body, "a=chatroom:nickname private-messages") {
			t.Fatalf("INVITE %s: %s\n%s", user, res.start, res.body)
		}
		ms := msrp.ParseSDP([]byte(res.body))
		if len(ms) != 1 {
			t.Fatalf("answer: %s", res.body)
		}
		if err := ep.Connect(ms[0].Path, nil); err != nil {
			t.Fatalf("%s connecting to the focus: %v", user, err)
		}
		return &party{user: user, ep: ep, path: ms[0].Path[0], res: res}
	}
	dave, erin := join("dave@a.example"), join("erin@a.example")

	// dave speaks; erin gets it over MSRP, bob as a pager MESSAGE.
	if code, err := dave.ep.Send([]string{dave.path}, "d1", "message/cpim", roomCPIM("sip:dave@a.example", room, "hello from a session"), 1000, nil); err != nil || code != 200 {
		t.Fatalf("dave's SEND: %d %v", code, err)
	}
	waitSend := func(p *party, want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case f := <-p.ep.Sends:
				if strings.Contains(string(f.Body), want) {
					return
				}
			case <-deadline:
				t.Fatalf("%s never got %q", p.user, want)
			}
		}
	}
	waitSend(erin, "hello from a session")
	eventually(t, 10*time.Second, "bob's pager copy", func() error {
		for _, m := range bEdge.received() {
			if strings.HasPrefix(m.start, "MESSAGE sip:bob@b.example") && m.body == "dave (dave@a.example): hello from a session" &&
				strings.Contains(m.get("From"), room) {
				return nil
			}
		}
		return fmt.Errorf("%d MESSAGEs at B's edge", len(bEdge.received()))
	})

	// bob (pager) speaks; both sessions get it, CPIM From bob.
	cid := "bob-" + callID()
	b.send(t, n1.sip, request("MESSAGE", room, "sip:bob@b.example", room, "SIP/2.0/UDP "+b.addr()+";branch=z9hG4bK"+cid, cid, "hi sessions"))
	if res := b.recvFinal(t, 10*time.Second); res.status() != 200 {
		t.Fatalf("bob's MESSAGE: %s", res.start)
	}
	waitSend(dave, "From: bob <sip:bob@b.example>")
	waitSend(erin, "hi sessions")

	// A spoofed CPIM From is refused.
	if code, _ := erin.ep.Send([]string{erin.path}, "e1", "message/cpim", roomCPIM("sip:dave@a.example", room, "not me"), 1000, nil); code != 403 {
		t.Fatalf("spoofed CPIM From answered %d", code)
	}

	// dave hangs up: out of the room (the INVITE made him a participant).
	contact := dave.res.get("Contact")
	contact = contact[strings.Index(contact, "<")+1 : strings.Index(contact, ">")]
	bye := request("BYE", contact, "sip:dave@a.example", room, "SIP/2.0/UDP "+a.addr()+";branch=z9hG4bKbye"+callID(), dave.res.get("Call-ID"), "")
	bye = strings.Replace(bye, "To: <"+room+">", "To: "+dave.res.get("To"), 1)
	bye = strings.Replace(bye, "From: <sip:dave@a.example>;tag="+dave.res.get("Call-ID")[:6], "From: "+dave.res.get("From"), 1)
	bye = strings.Replace(bye, "CSeq: 1 BYE", "CSeq: 2 BYE", 1)
	a.send(t, n1.sip, bye)
	if res := a.recvFinal(t, 10*time.Second); res.status() != 200 {
		t.Fatalf("BYE: %s", res.start)
	}
	eventually(t, 10*time.Second, "dave out of the room", func() error {
		out, err := hubctl(t, n1, "room", "get", "team", "-o", "json")
		if err != nil {
			return err
		}
		var r struct {
			Members []struct {
				User        string `json:"user"`
				SessionNode string `json:"session_node"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return err
		}
		for _, m := range r.Members {
			if m.User == "sip:dave@a.example" {
				return fmt.Errorf("dave still a participant")
			}
			if m.User == "sip:erin@a.example" && m.SessionNode != "n1" {
				return fmt.Errorf("erin's record %+v", m)
			}
		}
		return nil
	})
}
