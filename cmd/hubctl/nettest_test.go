package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ops/netcheck"
	"clearhub/ops/pki"
)

// fakeEdge answers OPTIONS like a member's edge proxy: UDP, TCP or TLS
// (mutual: it records whether the prober presented a certificate). A
// silent edge reads and never answers.
type fakeEdge struct {
	addr   string
	silent bool

	mu       sync.Mutex
	got      []string // methods received
	peerCert bool
}

func (e *fakeEdge) record(req *sip.Request) {
	e.mu.Lock()
	e.got = append(e.got, string(req.Method))
	e.mu.Unlock()
}

func (e *fakeEdge) methods() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func answer(req *sip.Request) []byte {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Server", "fake-edge"))
	return []byte(res.String())
}

func startUDPEdge(t *testing.T, silent bool) *fakeEdge {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEdge{addr: c.LocalAddr().String(), silent: silent}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := sip.NewParser()
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := p.ParseSIP(buf[:n])
			req, ok := m.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			e.record(req)
			if !silent {
				_, _ = c.WriteTo(answer(req), from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return e
}

func startStreamEdge(t *testing.T, cfg *tls.Config) *fakeEdge {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEdge{addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if cfg != nil {
					tc := tls.Server(c, cfg)
					if tc.Handshake() != nil {
						return
					}
					e.mu.Lock()
					e.peerCert = len(tc.ConnectionState().PeerCertificates) > 0
					e.mu.Unlock()
					c = tc
				}
				raw, err := netcheck.ReadStreamMessage(bufio.NewReader(c))
				if err != nil {
					return
				}
				m, err := sip.NewParser().ParseSIP(raw)
				req, ok := m.(*sip.Request)
				if err != nil || !ok {
					return
				}
				e.record(req)
				_, _ = c.Write(answer(req))
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return e
}

// memberTLS is a member network's CA and an edge server configuration
// with a certificate for names, requiring a client certificate.
func memberTLS(t *testing.T, names ...string) (caFile string, cfg *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, _, _, err := ca.IssueKeyPair(pki.RoleMember, names[0], names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ca.crt"), &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
}

func TestNetworkTest(t *testing.T) {
	h := newRealHub(t)
	udp := startUDPEdge(t, false)
	tcp := startStreamEdge(t, nil)
	caFile, good := memberTLS(t, "b.example") // a SAN that is one of b's domains
	tlsEdge := startStreamEdge(t, good)
	_, wrongName := memberTLS(t, "edge.other.example") // a CA b never registered, a name b does not own
	tlsWrong := startStreamEdge(t, wrongName)
	silent := startUDPEdge(t, true)

	h.must(t, "network", "add", "a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5070", "--cidr", "127.0.0.2/32")
	h.must(t, "network", "add", "b", "--domain", "b.example",
		"--edge", "sip:"+udp.addr, "--edge", "sip:"+tcp.addr+";transport=tcp", "--edge", "sips:127.0.0.1:"+portOf(tlsEdge.addr),
		"--cidr", "127.0.0.3/32", "--member-ca", caFile)
	h.must(t, "network", "add", "c", "--domain", "c.example",
		"--edge", "sips:"+tlsWrong.addr, "--edge", "sip:"+silent.addr, "--cidr", "127.0.0.4/32")
	h.must(t, "policy", "allow", "b", "--from", "a", "--services", "im")
	h.must(t, "policy", "allow", "a", "--from", "b", "--services", "im,presence")

	t.Run("ready", func(t *testing.T) {
		out, errOut, code := h.hubctl(t, "network", "test", "b", "-o", "json", "--timeout-edge", "2s")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var v netTestView
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if !v.Ready || len(v.Missing) != 0 || len(v.Edges) != 3 {
			t.Fatalf("not ready: %+v", v)
		}
		for i, want := range []string{"UDP", "TCP", "TLS"} {
			e := v.Edges[i]
			if e.Transport != want || !e.Reachable || e.Status != 200 || e.Server != "fake-edge" {
				t.Errorf("edge %d: %+v, want %s answered 200 by fake-edge", i+1, e, want)
			}
		}
		tc := v.Edges[2].TLS
		if tc == nil || !tc.Trusted || !tc.NameMatch || tc.Identifies != "b" || !strings.HasSuffix(tc.ClientCert, "operator.crt") {
			t.Errorf("TLS check %+v: want trusted, name match, attributed to b, the operator certificate presented", tc)
		}
		if !tlsEdge.peerCert {
			t.Error("the TLS edge saw no client certificate")
		}
		if len(v.Inbound) != 1 || v.Inbound[0].Network != "a" || strings.Join(v.Inbound[0].Services, ",") != "im" {
			t.Errorf("reached by %+v, want a: im", v.Inbound)
		}
		if len(v.Outbound) != 1 || v.Outbound[0].Network != "a" || strings.Join(v.Outbound[0].Services, ",") != "presence,im" {
			t.Errorf("reaches %+v, want a: presence,im", v.Outbound)
		}
		for _, e := range []*fakeEdge{udp, tcp, tlsEdge} {
			if m := e.methods(); len(m) != 1 || m[0] != "OPTIONS" {
				t.Errorf("edge %s received %v, want one OPTIONS", e.addr, m)
			}
		}
	})

	t.Run("missing", func(t *testing.T) {
		out, errOut, code := h.hubctl(t, "network", "test", "c", "--timeout-edge", "1s")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		for _, want := range []string{
			"MISSING     no network may reach it",
			"MISSING     it may reach no network",
			"its certificate is not c's for the hub (not issued by a registered member CA of the network and not pinned)",
			"does not answer OPTIONS: no answer before the deadline",
			"names edge.other.example",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("report lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "missing before traffic can flow") {
			t.Errorf("stderr %q", errOut)
		}
		if len(silent.methods()) < 2 {
			t.Errorf("the silent UDP edge got %v: want the OPTIONS retransmitted", silent.methods())
		}
	})

	t.Run("unknown network", func(t *testing.T) {
		if _, _, code := h.hubctl(t, "network", "test", "nope"); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
	})
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
