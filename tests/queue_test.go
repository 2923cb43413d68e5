package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpEdge is a member network's edge on TCP: it records every MESSAGE and
// answers everything 200 on the connection it came over.
type tcpEdge struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []*sipMsg
}

// reservablePort returns ip:port for an edge that starts later: a port
// free now, below the kernel's ephemeral range, so that no socket bound to
// port 0 meanwhile (other test packages run in parallel) can take it before
// the edge listens on it.
func reservablePort(t *testing.T, ip string) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort(ip, strconv.Itoa(20000+mrand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

func startTCPEdge(t *testing.T, addr string) *tcpEdge {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &tcpEdge{ln: ln}
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

func (e *tcpEdge) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		m, err := readStreamSIP(r)
		if err != nil {
			return
		}
		if strings.HasPrefix(m.start, "MESSAGE ") {
			e.mu.Lock()
			e.msgs = append(e.msgs, m)
			e.mu.Unlock()
		}
		if _, err := io.WriteString(c, response(m, 200, "OK")); err != nil {
			return
		}
	}
}

func (e *tcpEdge) received() []*sipMsg {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*sipMsg(nil), e.msgs...)
}

type queueSummary struct {
	Network  string `json:"network"`
	Messages int    `json:"messages"`
}

func queueDepth(t *testing.T, n *node, network string) (int, error) {
	out, err := hubctl(t, n, "queue", "list", "--network", network, "-o", "json")
	if err != nil {
		return 0, err
	}
	var qs []queueSummary
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		return 0, fmt.Errorf("queue list json: %v: %s", err, out)
	}
	if len(qs) == 0 {
		return 0, nil
	}
	return qs[0].Messages, nil
}

// Store and forward across real processes: with net-a's edge down, N
// MESSAGEs sent through all three nodes get 202; the leader (or a
// follower that took messages) is killed -9;
// net-a's edge comes up; every MESSAGE arrives, in the order sent, with its
// original Call-ID, From tag, CSeq and byte-identical body. Duplicates
// (the at-least-once window) are counted, not failed.
//
// N is 1,000, as the issue asks (CLEARHUB_SAF_N overrides it, e.g. 200
// for a quicker run): about a minute to store and 50 s to deliver at the
// default 20 messages/s per destination, for each of the two kills.
func TestStoreAndForwardSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CLEARHUB_SAF_N")); err == nil && v > 0 {
		n = v
	}
	// The leader delivers, so killing it tests takeover; a follower took a
	// third of the messages, so killing one tests that what it took is
	// the cluster's, not its own.
	for _, victim := range []string{"leader", "follower"} {
		t.Run("kill -9 the "+victim, func(t *testing.T) { storeAndForwardKill(t, n, victim == "leader") })
	}
}

func storeAndForwardKill(t *testing.T, n int, killLeader bool) {
	n1, n2, n3 := startCluster(t)
	nodes := map[string]*node{"n1": n1, "n2": n2, "n3": n3}
	b := newUDPPeer(t, "127.0.0.3")
	edgeAddr := reservablePort(t, "127.0.0.2")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+edgeAddr+";transport=tcp", "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+b.addr(), "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-a", "--from", "net-b", "--services", "im")
	waitCaughtUp(t, n1, n2, n3)

	type sent struct{ callID, tag, body string }
	var all []sent
	via := []*node{n1, n2, n3}
	start := time.Now()
	for i := 0; i < n; i++ {
		cid := fmt.Sprintf("saf-%04d-%s", i, callID())
		body := fmt.Sprintf("message %d to alice — ünïcode, CRLF\r\nsecond line", i)
		b.send(t, via[i%3].sip, request("MESSAGE", "sip:alice@a.example", "sip:bob@b.example", "sip:alice@a.example",
			"SIP/2.0/UDP "+b.addr()+";branch=z9hG4bK"+cid, cid, body))
		res := b.recvFinal(t, 10*time.Second)
		if res.status() != 202 || res.get("Call-ID") != cid {
			t.Fatalf("message %d through %s: %q for %s, want 202", i, via[i%3].id, res.start, res.get("Call-ID"))
		}
		all = append(all, sent{cid, cid[:6], body})
	}
	t.Logf("%d MESSAGEs stored (202) through three nodes in %s", n, time.Since(start).Round(time.Millisecond))
	for _, nd := range via {
		eventually(t, 10*time.Second, nd.id+" holds the queue", func() error {
			d, err := queueDepth(t, nd, "net-a")
			if err == nil && d != n {
				err = fmt.Errorf("depth %d, want %d", d, n)
			}
			return err
		})
	}

	s, err := status(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	if nodes[s.Leader] == nil {
		t.Fatalf("leader %q unknown", s.Leader)
	}
	victim := s.Leader
	if !killLeader {
		for id := range nodes {
			if id != s.Leader {
				victim = id
				break
			}
		}
	}
	nodes[victim].kill(syscall.SIGKILL)
	var survivors []*node
	for id, nd := range nodes {
		if id != victim {
			survivors = append(survivors, nd)
		}
	}
	var newLeader *node
	eventually(t, 30*time.Second, "a leader among the survivors", func() error {
		s2, err := status(t, survivors[0])
		if err != nil {
			return err
		}
		if s2.Leader == "" || s2.Leader == victim {
			return fmt.Errorf("leader %q", s2.Leader)
		}
		newLeader = nodes[s2.Leader]
		return nil
	})

	edge := startTCPEdge(t, edgeAddr)
	delivered := time.Now()
	// Skip the new leader's backoff (it may have tried before the edge
	// was up); the periodic retry would get there too, later.
	if _, err := hubctl(t, newLeader, "queue", "retry", "net-a"); err != nil {
		t.Logf("queue retry: %v", err)
	}
	eventually(t, time.Duration(n/10+60)*time.Second, "every message delivered", func() error {
		seen := map[string]bool{}
		for _, m := range edge.received() {
			seen[m.get("Call-ID")] = true
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d delivered", len(seen), n)
		}
		return nil
	})
	t.Logf("%d MESSAGEs delivered %s after the edge came up (%s killed, leader %s)", n, time.Since(delivered).Round(time.Millisecond), victim, newLeader.id)

	got := edge.received()
	first := map[string]bool{}
	var order []*sipMsg
	dups := 0
	for _, m := range got {
		if first[m.get("Call-ID")] {
			dups++
			continue
		}
		first[m.get("Call-ID")] = true
		order = append(order, m)
	}
	t.Logf("duplicates delivered: %d", dups)
	if dups > 1 {
		t.Errorf("%d duplicates: the at-least-once window is one message per leader change", dups)
	}
	for i, m := range order {
		w := all[i]
		if m.get("Call-ID") != w.callID {
			t.Fatalf("delivery %d is %s, want %s (order lost)", i, m.get("Call-ID"), w.callID)
		}
		if m.body != w.body {
			t.Fatalf("delivery %d body %q, want %q", i, m.body, w.body)
		}
		if !strings.Contains(m.get("From"), "tag="+w.tag) || m.get("CSeq") != "1 MESSAGE" || !strings.HasPrefix(m.start, "MESSAGE sip:alice@a.example ") {
			t.Fatalf("delivery %d: %q From %q CSeq %q", i, m.start, m.get("From"), m.get("CSeq"))
		}
		if vias := m.all("Via"); len(vias) != 1 {
			t.Fatalf("delivery %d carries Via %q, want only the hub's", i, vias)
		}
	}
	for _, nd := range survivors {
		eventually(t, 10*time.Second, nd.id+" queue empty", func() error {
			d, err := queueDepth(t, nd, "net-a")
			if err == nil && d != 0 {
				err = fmt.Errorf("depth %d", d)
			}
			return err
		})
	}
}
