package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// probeTLS dials the hub from 127.0.0.2 with cert (nil: none), sends an
// OPTIONS addressed to the hub and returns the first line read back, or
// the error that ended the connection.
func probeTLS(t *testing.T, hubAddr string, roots *x509.CertPool, cert *tls.Certificate) (string, error) {
	t.Helper()
	d := &tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second},
		Config:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	if cert != nil {
		d.Config.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", hubAddr)
	if err != nil {
		return "", err // TLS 1.2 would fail here; TLS 1.3 fails on the read
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.2:5999;branch=z9hG4bK-probe%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@a.example>;tag=p1\r\nTo: <sip:%s>\r\nCall-ID: probe-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		hubAddr, time.Now().UnixNano(), hubAddr, time.Now().UnixNano())
	if _, err := c.Write([]byte(req)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if n > 0 {
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		return line, nil
	}
	return "", err
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A client certificate from a CA no network registered, and no
// certificate at all, end at the TLS handshake: no SIP is answered, the
// refusal is logged with the remote address and subject, counted and
// audited. A registered CA and a pinned certificate pass; registering the
// other CA lets it in at once (the trust index follows the state).
func TestTLSHandshakeRefusesUnknownCertificates(t *testing.T) {
	ca := newCA(t, "members")
	otherCA := newCA(t, "other")
	pinCA := newCA(t, "pinned-issuer")
	hubCert := issue(t, ca, pki.RoleNode, "hub", "127.0.0.1")
	memberCert := issue(t, ca, pki.RoleMember, "a.example", "a.example")
	otherCert := issue(t, otherCA, pki.RoleMember, "a.example", "a.example")
	pinnedCert := issue(t, pinCA, pki.RoleMember, "b.example", "b.example")
	pinnedLeaf, err := x509.ParseCertificate(pinnedCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}

	state := func(extraCA ...string) *hubv1.ClusterState {
		return &hubv1.ClusterState{Networks: []*hubv1.Network{
			{Id: "neta", Domains: []string{"a.example"}, Edges: []string{"sips:127.0.0.2:5061"}, Identity: &hubv1.Identity{CaPem: append([]string{string(ca.CertPEM)}, extraCA...)}},
			{Id: "netb", Domains: []string{"b.example"}, Edges: []string{"sips:127.0.0.3:5061"}, Identity: &hubv1.Identity{Pins: []string{pki.Fingerprint(pinnedLeaf)}}},
		}}
	}
	st := &fakeState{}
	st.set(state())
	au := &memAudit{}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	h := startHub(t, Config{
		NodeID: "n1", TLSAddr: "127.0.0.1:0", Hostname: "127.0.0.1",
		// A TLS dial and handshake under -race on a loaded 2-core machine
		// can outlast the 300 ms default that the failover tests use.
		TransactionTimeout: 3 * time.Second,
		ServerTLS:          &tls.Config{Certificates: []tls.Certificate{hubCert}},
		ClientCertificate:  hubCert,
		RouteSecret:        []byte("s"),
		Registerer:         reg,
		Logger:             slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, st, au)
	hubAddr := h.Addrs()[0].String()

	cases := []struct {
		name   string
		cert   *tls.Certificate
		accept bool
		label  string
	}{
		{"registered CA", &memberCert, true, ""},
		{"pinned certificate", &pinnedCert, true, ""},
		{"other CA", &otherCert, false, "unknown_authority"},
		{"no certificate", nil, false, "no_certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line, err := probeTLS(t, hubAddr, ca.Pool(), tc.cert)
			if tc.accept {
				if err != nil || line != "SIP/2.0 200 OK" {
					t.Fatalf("got %q, %v; want a SIP 200", line, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake completed and SIP was answered: %q", line)
			}
			if got := counterValue(t, reg, "clearhub_sip_tls_handshake_refused_total", "reason", tc.label); got != 1 {
				t.Errorf("refusal counter{reason=%q} = %v, want 1", tc.label, got)
			}
		})
	}

	// Both refusals are audited as TLS "requests" from the remote address.
	deadline := time.Now().Add(3 * time.Second)
	var refused []*ledger.Entry
	for time.Now().Before(deadline) {
		if refused = au.find(ledger.KindRequest, "TLS", 403, ""); len(refused) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(refused) != 2 {
		t.Fatalf("%d handshake refusal audit entries, want 2", len(refused))
	}
	for _, e := range refused {
		if !strings.HasPrefix(e.Src, "127.0.0.2:") || e.Transport != "tls" || !strings.HasPrefix(e.Reason, "TLS handshake refused: ") {
			t.Errorf("audit entry = %+v", e)
		}
	}
	if out := logs.String(); !strings.Contains(out, "TLS handshake refused") || !strings.Contains(out, "remote=127.0.0.2:") || !strings.Contains(out, "CN=a.example") {
		t.Errorf("refusal not logged with remote address and subject:\n%s", out)
	}
	// No SIP request was audited for the refused connections.
	if n := len(au.find(ledger.KindRequest, "OPTIONS", 403, "")); n != 0 {
		t.Errorf("%d OPTIONS refused per request; want the handshake to stop them", n)
	}

	// Registering the other CA admits its certificate at once.
	st.set(state(string(otherCA.CertPEM)))
	if line, err := probeTLS(t, hubAddr, ca.Pool(), &otherCert); err != nil || line != "SIP/2.0 200 OK" {
		t.Fatalf("after registering the CA: %q, %v", line, err)
	}
}

// The hub's outbound handshake refuses a member edge whose server
// certificate chains to no registered CA (nothing is written to it; the
// sender gets 503), and accepts it once its CA is registered.
func TestTLSOutboundRefusesUnknownServer(t *testing.T) {
	ca := newCA(t, "members")
	otherCA := newCA(t, "other")
	hubCert := issue(t, ca, pki.RoleNode, "hub", "127.0.0.1")
	a := newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, ca, pki.RoleMember, "a.example", "a.example"), ca)})
	b := newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "tls", tlsConf: memberTLS(issue(t, otherCA, pki.RoleMember, "b.example", "b.example", "127.0.0.3"), ca)})
	all := []hubv1.Service{hubv1.Service_SERVICE_IM}
	state := func(bCAs ...string) *hubv1.ClusterState {
		return &hubv1.ClusterState{
			Networks: []*hubv1.Network{
				{Id: "neta", Domains: []string{"a.example"}, Edges: []string{a.edge()}, Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}},
				{Id: "netb", Domains: []string{"b.example"}, Edges: []string{b.edge()}, Identity: &hubv1.Identity{CaPem: bCAs}},
			},
			Policies: []*hubv1.Policy{{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: all}}}},
		}
	}
	st := &fakeState{}
	st.set(state())
	logs := &syncBuffer{}
	h := startHub(t, Config{
		NodeID: "n1", TLSAddr: "127.0.0.1:0", Hostname: "127.0.0.1",
		// A TLS dial and handshake under -race on a loaded 2-core machine
		// can outlast the 300 ms default that the failover tests use.
		TransactionTimeout: 3 * time.Second,
		ServerTLS:          &tls.Config{Certificates: []tls.Certificate{hubCert}},
		ClientCertificate:  hubCert,
		RouteSecret:        []byte("s"),
		Logger:             slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, st, &memAudit{})
	hubAddr := h.Addrs()[0].String()

	if res := a.do(a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)); res.StatusCode != 503 {
		t.Fatalf("edge with an unregistered server certificate: got %d, want 503", res.StatusCode)
	}
	select {
	case r := <-b.reqs:
		t.Fatalf("request reached the unverified edge: %s", r.Short())
	default:
	}
	if !strings.Contains(logs.String(), "outbound TLS handshake refused") {
		t.Errorf("outbound refusal not logged:\n%s", logs.String())
	}

	st.set(state(string(otherCA.CertPEM)))
	if res := a.do(a.newRequest(sip.MESSAGE, "sip:bob@b.example", hubAddr)); res.StatusCode != 200 {
		t.Fatalf("after registering b's CA: got %d %s", res.StatusCode, res.Reason)
	}
	b.expect(sip.MESSAGE)
}

// The trust index is built once per state, not per handshake.
func TestTrustIndexCachedPerState(t *testing.T) {
	ca := newCA(t, "members")
	st := &fakeState{}
	st.set(&hubv1.ClusterState{Networks: []*hubv1.Network{{Id: "neta", Identity: &hubv1.Identity{CaPem: []string{string(ca.CertPEM)}}}}})
	h := &Hub{}
	s1 := st.State()
	t1 := h.trust(s1)
	if h.trust(s1) != t1 {
		t.Fatal("trust index rebuilt for the same state")
	}
	st.set(&hubv1.ClusterState{})
	if t2 := h.trust(st.State()); t2 == t1 || t2.roots != nil {
		t.Fatalf("trust index not rebuilt for a new state (roots %v)", t2.roots)
	}
}
