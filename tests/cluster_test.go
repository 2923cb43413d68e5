package tests

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A three-process cluster joined with hubctl keeps its networks and elects a
// new leader when the leader is killed -9; the killed node catches up.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1, n2, n3 := newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	nodes := map[string]*node{"n1": n1, "n2": n2, "n3": n3}
	n1.start(t)
	n1.waitReady(t, 30*time.Second)

	// A wrong token is refused with a message that says so.
	bad := newNode(t, "bad")
	bad.start(t, "--join", n1.admin, "--join-token", "chj1.bogus")
	select {
	case <-bad.exited:
		if out := bad.logs.String(); !strings.Contains(strings.ToLower(out), "token") {
			t.Fatalf("bad token refused without naming the token:\n%s", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node with a bogus join token did not exit")
	}

	token := strings.TrimSpace(mustHubctl(t, n1, "cluster", "token"))
	for _, n := range []*node{n2, n3} {
		n.start(t, "--join", n1.admin, "--join-token", token)
	}
	for _, n := range []*node{n2, n3} {
		n.waitReady(t, 60*time.Second)
	}
	eventually(t, 30*time.Second, "three voters", func() error {
		s, err := status(t, n1)
		if err != nil {
			return err
		}
		var voters []string
		for _, n := range s.Nodes {
			if n.Suffrage == "voter" {
				voters = append(voters, n.ID)
			}
		}
		sort.Strings(voters)
		if strings.Join(voters, ",") != "n1,n2,n3" {
			return fmt.Errorf("voters %v", voters)
		}
		return nil
	})

	// Onboard through a follower: writes are forwarded to the leader.
	mustHubctl(t, n2, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:127.0.0.1:5070", "--cidr", "127.0.0.2/32")
	mustHubctl(t, n3, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:127.0.0.1:5080", "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "presence,im")
	if _, err := hubctl(t, n1, "network", "add", "net-c", "--domain", "a.example", "--edge", "sip:127.0.0.1:5090"); err == nil ||
		!strings.Contains(err.Error(), "a.example") {
		t.Fatalf("duplicate domain: err = %v, want a refusal naming a.example", err)
	}

	s, err := status(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	leader := nodes[s.Leader]
	if leader == nil {
		t.Fatalf("leader %q is not one of ours", s.Leader)
	}
	killedAt := time.Now()
	leader.kill(syscall.SIGKILL)
	var survivor *node
	for id, n := range nodes {
		if id != s.Leader {
			survivor = n
			break
		}
	}
	eventually(t, 30*time.Second, "new leader", func() error {
		s2, err := status(t, survivor)
		if err != nil {
			return err
		}
		if s2.Leader == "" || s2.Leader == s.Leader {
			return fmt.Errorf("leader is %q", s2.Leader)
		}
		return nil
	})
	t.Logf("new leader elected %s after kill -9 of %s (measured through hubctl polling every 200ms)", time.Since(killedAt).Round(10*time.Millisecond), s.Leader)
	assertNetworks(t, survivor, "net-a", "net-b")
	// The cluster still takes writes with one node down.
	mustHubctl(t, survivor, "network", "add", "net-d", "--domain", "d.example", "--edge", "sip:127.0.0.1:5100", "--cidr", "127.0.0.4/32")

	// The killed node restarts from its data directory and catches up.
	leader.start(t)
	leader.waitReady(t, 60*time.Second)
	eventually(t, 30*time.Second, "restarted node catches up", func() error {
		return checkNetworks(t, leader, "net-a", "net-b", "net-d")
	})
}

func assertNetworks(t *testing.T, n *node, want ...string) {
	t.Helper()
	if err := checkNetworks(t, n, want...); err != nil {
		t.Fatal(err)
	}
}

func checkNetworks(t *testing.T, n *node, want ...string) error {
	out, err := hubctl(t, n, "network", "list", "-o", "json")
	if err != nil {
		return err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return fmt.Errorf("network list json: %v: %s", err, out)
	}
	var got []string
	for _, n := range list {
		got = append(got, n.ID)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		return fmt.Errorf("networks on %s = %v, want %v", n.id, got, want)
	}
	return nil
}
