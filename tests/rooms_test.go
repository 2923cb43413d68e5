package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowEdge is a member network's TCP edge that takes `delay` per MESSAGE
// (one connection is served in order), so a room's fan-out through it
// lasts long enough to kill the node doing it. It plays the participants'
// UAs as RFC 3261 8.2.2.2 has them: a request whose From tag, Call-ID and
// CSeq match one already taken is a merged copy, answered 482 and not
// handed to the user.
type slowEdge struct {
	ln       net.Listener
	delay    time.Duration
	mu       sync.Mutex
	msgs     []*sipMsg // every MESSAGE on the wire
	accepted []*sipMsg // the ones a user saw (first of each key)
	seen     map[string]bool
}

func startSlowEdge(t *testing.T, ip string, delay time.Duration) *slowEdge {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	e := &slowEdge{ln: ln, delay: delay}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serve(c)
		}
	}()
	return e
}

func (e *slowEdge) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		m, err := readStreamSIP(r)
		if err != nil {
			return
		}
		code, reason := 200, "OK"
		if strings.HasPrefix(m.start, "MESSAGE ") {
			time.Sleep(e.delay)
			key := m.get("Call-ID") + " " + fromTag(m.get("From")) + " " + m.get("CSeq")
			e.mu.Lock()
			e.msgs = append(e.msgs, m)
			if e.seen == nil {
				e.seen = map[string]bool{}
			}
			if e.seen[key] {
				code, reason = 482, "Loop Detected"
			} else {
				e.seen[key] = true
				e.accepted = append(e.accepted, m)
			}
			e.mu.Unlock()
		}
		if _, err := io.WriteString(c, response(m, code, reason)); err != nil {
			return
		}
	}
}

func (e *slowEdge) received() []*sipMsg {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*sipMsg(nil), e.msgs...)
}

func (e *slowEdge) seenByUsers() []*sipMsg {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*sipMsg(nil), e.accepted...)
}

func fromTag(from string) string {
	_, t, _ := strings.Cut(from, ";tag=")
	t, _, _ = strings.Cut(t, ";")
	return t
}

// A room on three real nodes: alice sends one message through each node;
// the node fanning out the second is killed -9 mid-way. Every participant
// gets every message; only copies in flight at the kill may go out twice,
// and then as the identical request (same Call-ID, From tag, CSeq), which
// a UA recognises (482): every user sees every message exactly once; the
// leader finishes the dead node's fan-out; the history is the same on the
// survivors.
func TestRoomFanoutSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cfg := filepath.Join(t.TempDir(), "hubd.yaml")
	if err := os.WriteFile(cfg, []byte("rooms:\n  takeover_after: 3s\n  fanout_batch: 16\n"), 0o600); err != nil {
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

	alice := newUDPPeer(t, "127.0.0.2")
	edge := startSlowEdge(t, "127.0.0.3", 15*time.Millisecond)
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+alice.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+edge.ln.Addr().String()+";transport=tcp", "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "chat")
	mustHubctl(t, n1, "room", "create", "team", "--owner", "alice@a.example", "--max-members", "100")
	const participants = 60
	for i := range participants {
		mustHubctl(t, nodes[fmt.Sprintf("n%d", i%3+1)], "room", "add", "team", fmt.Sprintf("u%02d@b.example", i))
	}
	waitCaughtUp(t, n1, n2, n3)

	s, err := status(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	// The victim is a follower: the leader must take its fan-out over.
	var victim *node
	var via []*node
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != s.Leader && victim == nil {
			victim = nodes[id]
		}
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if nodes[id] != victim {
			via = append(via, nodes[id])
		}
	}
	via = []*node{via[0], victim, via[1]} // message 2 goes through the victim
	for i, n := range via {
		cid := fmt.Sprintf("room-%d-%s", i+1, callID())
		alice.send(t, n.sip, request("MESSAGE", "sip:team@rooms.localhost", "sip:alice@a.example", "sip:team@rooms.localhost",
			"SIP/2.0/UDP "+alice.addr()+";branch=z9hG4bK"+cid, cid, fmt.Sprintf("message %d", i+1)))
		if res := alice.recvFinal(t, 10*time.Second); res.status() != 200 {
			t.Fatalf("message %d through %s: %q", i+1, n.id, res.start)
		}
		if n == victim {
			time.Sleep(150 * time.Millisecond) // part of its first batch is out
			victim.kill(syscall.SIGKILL)
		}
	}

	type copyKey struct{ user, body string }
	eventually(t, 60*time.Second, "every participant has every message", func() error {
		seen := map[copyKey]bool{}
		for _, m := range edge.received() {
			seen[copyKey{m.start, m.body}] = true
		}
		if len(seen) < 3*participants {
			return fmt.Errorf("%d of %d copies", len(seen), 3*participants)
		}
		return nil
	})
	counts := map[copyKey]int{}
	callIDs := map[copyKey]map[string]bool{}
	for _, m := range edge.received() {
		k := copyKey{m.start, m.body}
		counts[k]++
		if callIDs[k] == nil {
			callIDs[k] = map[string]bool{}
		}
		callIDs[k][m.get("Call-ID")] = true
		if !strings.Contains(m.get("From"), "sip:team@rooms.localhost") || !strings.HasPrefix(m.body, "alice (alice@a.example): message ") {
			t.Fatalf("copy %q From %q body %q", m.start, m.get("From"), m.body)
		}
	}
	dups := 0
	for k, c := range counts {
		if c > 1 {
			dups += c - 1
			if !strings.HasSuffix(k.body, "message 2") {
				t.Errorf("%s got %q %d times, but its fan-out node did not die", k.user, k.body, c)
			}
		}
		if len(callIDs[k]) != 1 {
			t.Errorf("%s got %q with %d Call-IDs: a re-sent copy must be the identical request", k.user, k.body, len(callIDs[k]))
		}
	}
	t.Logf("%d copies on the wire, %d re-sent after the takeover (%s killed)", len(edge.received()), dups, victim.id)
	if dups > 16 {
		t.Errorf("%d duplicates: more than the fan-out window (16)", dups)
	}
	// What the users saw: every message exactly once (the re-sent copies
	// were recognised by their key and answered 482).
	shown := map[copyKey]int{}
	for _, m := range edge.seenByUsers() {
		shown[copyKey{m.start, m.body}]++
	}
	for k, c := range shown {
		if c != 1 {
			t.Errorf("%s was shown %q %d times", k.user, k.body, c)
		}
	}
	if len(shown) != 3*participants {
		t.Errorf("users saw %d distinct copies, want %d", len(shown), 3*participants)
	}
	var survivors []*node
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	for _, n := range survivors {
		eventually(t, 20*time.Second, n.id+" has no pending fan-out", func() error {
			out, err := hubctl(t, n, "room", "get", "team", "-o", "json")
			if err != nil {
				return err
			}
			var r struct {
				LastSeq json.Number       `json:"last_seq"`
				Fanouts []json.RawMessage `json:"fanouts"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				return err
			}
			if len(r.Fanouts) != 0 || r.LastSeq.String() != "3" {
				return fmt.Errorf("last_seq %s, %d fan-outs pending", r.LastSeq, len(r.Fanouts))
			}
			return nil
		})
	}
	h1 := mustHubctl(t, survivors[0], "room", "history", "team", "-o", "json")
	h2 := mustHubctl(t, survivors[1], "room", "history", "team", "-o", "json")
	if h1 != h2 || !strings.Contains(h1, `"seq": 3`) { // bodies are base64 in JSON
		t.Fatalf("histories differ:\n%s\n%s", h1, h2)
	}
}
