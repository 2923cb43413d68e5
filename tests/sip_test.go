package tests

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func callID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startCluster starts three joined nodes and waits until all are ready.
func startCluster(t *testing.T) (n1, n2, n3 *node) {
	t.Helper()
	n1, n2, n3 = newNode(t, "n1"), newNode(t, "n2"), newNode(t, "n3")
	n1.start(t)
	n1.waitReady(t, 30*time.Second)
	token := strings.TrimSpace(mustHubctl(t, n1, "cluster", "token"))
	for _, n := range []*node{n2, n3} {
		n.start(t, "--join", n1.admin, "--join-token", token)
	}
	for _, n := range []*node{n2, n3} {
		n.waitReady(t, 60*time.Second)
	}
	return n1, n2, n3
}

// waitCaughtUp waits until every node has applied what leader had applied.
func waitCaughtUp(t *testing.T, leader *node, others ...*node) {
	t.Helper()
	s, err := status(t, leader)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Trim(string(s.AppliedIndex), `"`)
	for _, n := range others {
		eventually(t, 10*time.Second, n.id+" catches up to index "+want, func() error {
			s, err := status(t, n)
			if err != nil {
				return err
			}
			var have, need uint64
			fmt.Sscan(strings.Trim(string(s.AppliedIndex), `"`), &have)
			fmt.Sscan(want, &need)
			if have < need {
				return fmt.Errorf("applied %d", have)
			}
			return nil
		})
	}
}

// Members onboarded through one node route through the others: MESSAGE
// both ways, and the refusals a member can act on.
func TestSIPRoutesThroughAnyNode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1, n2, n3 := startCluster(t)
	a, b := newUDPPeer(t, "127.0.0.2"), newUDPPeer(t, "127.0.0.3")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+a.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+b.addr(), "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "im,presence,session")
	mustHubctl(t, n1, "policy", "allow", "net-a", "--from", "net-b", "--services", "im")
	waitCaughtUp(t, n1, n2, n3)

	t.Run("MESSAGE a to b through n3", func(t *testing.T) {
		cid := callID()
		a.send(t, n3.sip, request("MESSAGE", "sip:bob@b.example", "sip:alice@a.example", "sip:bob@b.example",
			"SIP/2.0/UDP "+a.addr()+";branch=z9hG4bK"+cid, cid, "hello bob"))
		got, from := b.recv(t, 5*time.Second)
		if got.start != "MESSAGE sip:bob@b.example SIP/2.0" || got.body != "hello bob" {
			t.Fatalf("b received %q body %q", got.start, got.body)
		}
		if h, _, _ := net.SplitHostPort(from); h != "127.0.0.1" {
			t.Fatalf("b received it from %s, want the hub node n3 on 127.0.0.1", from)
		}
		if vias := got.all("Via"); len(vias) != 2 || !strings.Contains(vias[1], a.addr()) {
			t.Fatalf("Via at b = %q, want the hub's on top of a's", vias)
		}
		if mf := got.get("Max-Forwards"); mf != "69" {
			t.Fatalf("Max-Forwards at b = %q, want 69", mf)
		}
		b.send(t, from, response(got, 200, "OK"))
		res := a.recvFinal(t, 5*time.Second)
		if res.status() != 200 || res.get("Call-ID") != cid {
			t.Fatalf("a got %q for call %s", res.start, res.get("Call-ID"))
		}
		if vias := res.all("Via"); len(vias) != 1 {
			t.Fatalf("response at a carries Via %q, want only a's own", vias)
		}
	})

	t.Run("MESSAGE b to a through n2", func(t *testing.T) {
		cid := callID()
		b.send(t, n2.sip, request("MESSAGE", "sip:alice@a.example", "sip:bob@b.example", "sip:alice@a.example",
			"SIP/2.0/UDP "+b.addr()+";branch=z9hG4bK"+cid, cid, "hi alice"))
		got, from := a.recv(t, 5*time.Second)
		if got.body != "hi alice" {
			t.Fatalf("a received %q body %q", got.start, got.body)
		}
		a.send(t, from, response(got, 200, "OK"))
		if res := b.recvFinal(t, 5*time.Second); res.status() != 200 {
			t.Fatalf("b got %q", res.start)
		}
	})

	refusals := []struct {
		name   string
		from   *udpPeer
		node   *node
		method string
		ruri   string
		fromU  string
		code   int
		reason string
	}{
		{"spoofed From", a, n2, "MESSAGE", "sip:bob@b.example", "sip:mallory@b.example", 403, "From domain"},
		{"unknown domain", a, n3, "MESSAGE", "sip:bob@nowhere.example", "sip:alice@a.example", 404, ""},
		{"policy deny", b, n1, "INVITE", "sip:alice@a.example", "sip:bob@b.example", 403, "olicy"},
		{"register", a, n1, "REGISTER", "sip:b.example", "sip:alice@a.example", 405, ""},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			cid := callID()
			tc.from.send(t, tc.node.sip, request(tc.method, tc.ruri, tc.fromU, tc.ruri,
				"SIP/2.0/UDP "+tc.from.addr()+";branch=z9hG4bK"+cid, cid, ""))
			res := tc.from.recvFinal(t, 5*time.Second)
			if res.status() != tc.code || !strings.Contains(res.start, tc.reason) {
				t.Fatalf("got %q, want %d mentioning %q", res.start, tc.code, tc.reason)
			}
		})
	}

	// A source address no network owns is refused.
	stranger := newUDPPeer(t, "127.0.0.9")
	cid := callID()
	stranger.send(t, n1.sip, request("MESSAGE", "sip:bob@b.example", "sip:eve@a.example", "sip:bob@b.example",
		"SIP/2.0/UDP "+stranger.addr()+";branch=z9hG4bK"+cid, cid, "x"))
	if res := stranger.recvFinal(t, 5*time.Second); res.status() != 403 {
		t.Fatalf("unattributable source got %q, want 403", res.start)
	}

	// Every node logged what it handled; a cluster-wide export from any
	// node holds all of it and verifies offline.
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	eventually(t, 10*time.Second, "cluster export", func() error {
		_, err := hubctl(t, n2, "audit", "export", "--cluster", file)
		return err
	})
	// Verify against the keys the cluster state publishes, not the ones the
	// export carries.
	st, err := status(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	verify := []string{"audit", "verify", file}
	for _, n := range st.Nodes {
		if n.PublicKey == "" {
			t.Fatalf("node %s publishes no audit key", n.ID)
		}
		verify = append(verify, "--key", n.ID+"="+n.PublicKey)
	}
	if out, err := hubctl(t, n2, verify...); err != nil {
		t.Fatalf("verify cluster export: %v\n%s", err, out)
	}
	entries := readEntries(t, file)
	for _, want := range []struct {
		node, method, kind string
		status             int
	}{
		{"n3", "MESSAGE", "request", 0},
		{"n3", "MESSAGE", "response", 200},
		{"n2", "MESSAGE", "response", 403}, // spoofed From
		{"n3", "MESSAGE", "response", 404},
		{"n1", "INVITE", "response", 403},
		{"n1", "REGISTER", "response", 405},
		{"n1", "MESSAGE", "response", 403}, // unattributable
		{"n1", "AddNetwork", "admin", 0},
	} {
		found := false
		for _, e := range entries {
			if e.Node == want.node && e.Method == want.method && e.Kind == want.kind && e.Status == want.status {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("cluster export lacks %+v", want)
		}
	}
}

type auditEntry struct {
	Type   string `json:"type"`
	Node   string `json:"node"`
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Method string `json:"method"`
	Status int    `json:"status"`
	SrcNet string `json:"src_net"`
	DstNet string `json:"dst_net"`
	CallID string `json:"call_id"`
}

func readEntries(t *testing.T, file string) []auditEntry {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditEntry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e auditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if e.Type == "entry" {
			out = append(out, e)
		}
	}
	return out
}

// Over mutual TLS with lab certificates minted by hubctl: a member with its
// certificate reaches the other; the hub verifies the destination's server
// certificate too.
func TestSIPOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n1 := newNode(t, "n1")
	n1.start(t)
	n1.waitReady(t, 30*time.Second)
	certs := t.TempDir()
	mustHubctl(t, n1, "certs", "member", "a.example", "--host", "a.example", "--host", "127.0.0.2", "--out", certs)
	mustHubctl(t, n1, "certs", "member", "b.example", "--host", "b.example", "--host", "127.0.0.3", "--out", certs)
	load := func(name string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(certs, name+".crt"), filepath.Join(certs, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caPEM, err := os.ReadFile(filepath.Join(n1.dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	// b's edge: a TLS listener presenting b's certificate.
	bl, err := tls.Listen("tcp", "127.0.0.3:0", &tls.Config{
		Certificates: []tls.Certificate{load("b.example")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	accepted := make(chan *tls.Conn, 4)
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*tls.Conn)
		}
	}()

	caFile := filepath.Join(n1.dir, "pki", "ca.crt")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sips:127.0.0.2:5061", "--member-ca", caFile)
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sips:"+bl.Addr().String()+";transport=tls", "--member-ca", caFile)
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "im")

	dial := func(certs []tls.Certificate) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", n1.sipTLS, &tls.Config{
			Certificates: certs, RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
		})
	}
	ac, err := dial([]tls.Certificate{load("a.example")})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	a := newTLSPeer(ac)
	cid := callID()
	a.send(t, request("MESSAGE", "sip:bob@b.example", "sip:alice@a.example", "sip:bob@b.example",
		"SIP/2.0/TLS 127.0.0.2:5061;branch=z9hG4bK"+cid, cid, "over tls"))
	var bc *tls.Conn
	select {
	case bc = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("hub never connected to b's TLS edge")
	}
	defer bc.Close()
	b := newTLSPeer(bc)
	got := b.recv(t, 5*time.Second)
	if got.body != "over tls" {
		t.Fatalf("b received %q body %q", got.start, got.body)
	}
	if st := bc.ConnectionState(); len(st.PeerCertificates) == 0 || !strings.Contains(strings.Join(st.PeerCertificates[0].Subject.OrganizationalUnit, ","), "node") {
		t.Fatalf("hub presented %v, want its node certificate", st.PeerCertificates)
	}
	b.send(t, response(got, 200, "OK"))
	if res := a.recvFinal(t, 5*time.Second); res.status() != 200 {
		t.Fatalf("a got %q", res.start)
	}

	// No client certificate: refused at the handshake (the error may only
	// surface on first read with TLS 1.3).
	if c, err := dial(nil); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, rerr := c.Write([]byte(request("OPTIONS", "sip:127.0.0.1", "sip:x@a.example", "sip:127.0.0.1", "SIP/2.0/TLS 127.0.0.2:1;branch=z9hG4bKx", callID(), "")))
		if rerr == nil {
			_, rerr = c.Read(make([]byte, 1))
		}
		c.Close()
		if rerr == nil {
			t.Fatal("a connection without a client certificate was served")
		}
	}
}
