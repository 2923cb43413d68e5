package netcheck

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// NetTestView is a network test's report (hubctl's -o json, the
// console's JSON).
type NetTestView struct {
	Network  string          `json:"network"`
	Status   string          `json:"status"`
	Domains  []string        `json:"domains"`
	Services string          `json:"services"`
	Identity NetTestIdentity `json:"identity"`
	Inbound  []Grant         `json:"may_be_reached_by"`
	Outbound []Grant         `json:"may_reach"`
	Edges    []EdgeCheck     `json:"edges"`
	Missing  []string        `json:"missing"`
	Ready    bool            `json:"ready"`
}

// NetTestIdentity summarises how the hub attributes traffic to the network.
type NetTestIdentity struct {
	CAs      []string `json:"member_cas"`
	Pins     int      `json:"pins"`
	LabCIDRs []string `json:"lab_cidrs"`
	TLSCIDRs []string `json:"tls_cidrs"`
}

// Grant is what one other network may use toward (or from) the tested one.
type Grant struct {
	Network  string   `json:"network"`
	Services []string `json:"services"`
}

// EdgeCheck is one edge's OPTIONS probe.
type EdgeCheck struct {
	URI       string    `json:"uri"`
	Transport string    `json:"transport,omitempty"`
	Address   string    `json:"address,omitempty"`
	Reachable bool      `json:"reachable"`
	Status    int       `json:"status,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	RTTMillis float64   `json:"rtt_ms,omitempty"`
	Server    string    `json:"server,omitempty"`
	TLS       *TLSCheck `json:"tls,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// TLSCheck is what a TLS edge's server certificate proves.
type TLSCheck struct {
	ClientCert string   `json:"client_certificate"` // what the prober presented
	Subject    string   `json:"subject,omitempty"`
	Issuer     string   `json:"issuer,omitempty"`
	NotAfter   string   `json:"not_after,omitempty"`
	Names      []string `json:"names,omitempty"`
	// Trusted: chains to one of the network's registered CAs or is pinned.
	Trusted bool `json:"trusted"`
	// NameMatch: a subjectAltName is one of the network's domains or edge hosts.
	NameMatch bool `json:"name_match"`
	// Identifies is the network the hub would attribute the certificate
	// to (the SIP plane's own check); it must be this network.
	Identifies string `json:"identifies,omitempty"`
}

// Prober sends the OPTIONS probes, from the host it runs on.
type Prober struct {
	// Timeout bounds each edge's answer (default 3 s).
	Timeout time.Duration
	// Cert is presented to TLS edges (nil: none; an edge requiring
	// mutual TLS then fails the handshake); CertName says which it is.
	Cert     *tls.Certificate
	CertName string
	// NoCertHint ends a failed TLS handshake's error when Cert is nil:
	// how to give one.
	NoCertHint string
	// Hostname is the host of the OPTIONS From URI (default: this host's
	// name); UserAgent its User-Agent (default "clearhub network test").
	Hostname  string
	UserAgent string
}

// maxParallelProbes bounds the edges probed at once: a network's edges
// answer within one Timeout instead of one per edge.
const maxParallelProbes = 8

// TestNetwork builds the report for network id against st. The network
// must exist in st.
func TestNetwork(ctx context.Context, st *raft.State, id string, p Prober) *NetTestView {
	n := st.Network(id)
	v := &NetTestView{Network: id, Status: statusName(n.GetStatus()), Domains: n.GetDomains(), Services: servicesOrAll(n.GetServices()),
		Inbound: []Grant{}, Outbound: []Grant{}, Edges: []EdgeCheck{}, Missing: []string{}}
	if v.Domains == nil {
		v.Domains = []string{}
	}
	missing := func(format string, a ...any) { v.Missing = append(v.Missing, fmt.Sprintf(format, a...)) }

	// Identity.
	id0 := n.GetIdentity()
	v.Identity = NetTestIdentity{CAs: memberCAExpiries(id0.GetCaPem()), Pins: len(id0.GetPins()), LabCIDRs: id0.GetCidrs(), TLSCIDRs: id0.GetTlsCidrs()}
	if v.Identity.LabCIDRs == nil {
		v.Identity.LabCIDRs = []string{}
	}
	if v.Identity.TLSCIDRs == nil {
		v.Identity.TLSCIDRs = []string{}
	}
	if !n.Active() {
		missing("the network is %s: the hub routes nothing to or from it (hubctl network resume %s)", v.Status, id)
	}
	if len(n.GetDomains()) == 0 {
		missing("no domain: the hub routes no Request-URI to it and accepts no From from it")
	}
	if n.CAPool == nil && len(n.Pins) == 0 && len(n.CIDRs) == 0 {
		missing("no identity: no member CA, pin or lab prefix, so nothing it sends can be attributed to it (403)")
	}

	// Policy, both directions, by the SIP plane's rules.
	for _, other := range st.Networks() {
		if other.GetId() == id {
			continue
		}
		o := st.Network(other.GetId())
		if g := permittedServices(st, o, n); len(g) > 0 {
			v.Inbound = append(v.Inbound, Grant{Network: o.GetId(), Services: g})
		}
		if g := permittedServices(st, n, o); len(g) > 0 {
			v.Outbound = append(v.Outbound, Grant{Network: o.GetId(), Services: g})
		}
	}
	if len(v.Inbound) == 0 {
		missing("no network may reach it: its peering policy admits nobody (hubctl policy allow %s --from SRC)", id)
	}
	if len(v.Outbound) == 0 {
		missing("it may reach no network: no other network's policy admits it")
	}

	// Edges, in failover order.
	hops := routing.EdgeHops(n)
	if len(n.GetEdges()) == 0 {
		missing("no edge: requests to it are answered 503 (or stored, with store and forward)")
	}
	parsed := map[string]bool{}
	for _, hp := range hops {
		parsed[hp.URI] = true
	}
	for _, e := range n.GetEdges() {
		var u sip.Uri
		if sip.ParseUri(e, &u) == nil && parsed[u.String()] {
			continue
		}
		v.Edges = append(v.Edges, EdgeCheck{URI: e, Error: "not a usable SIP URI (transport UDP, TCP or TLS): the hub skips it"})
		missing("edge %s is skipped by the hub: not a usable SIP URI", e)
	}
	checks := make([]EdgeCheck, len(hops))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelProbes)
	for i, hp := range hops {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			checks[i] = p.probe(ctx, st, n, hp)
		}()
	}
	wg.Wait()
	for i, ec := range checks {
		v.Edges = append(v.Edges, ec)
		switch {
		case !ec.Reachable:
			missing("edge %s does not answer OPTIONS: %s", hops[i].URI, ec.Error)
		case ec.TLS != nil && ec.TLS.Identifies != id:
			missing("edge %s: its certificate is not %s's for the hub (%s); the hub refuses to send to it", hops[i].URI, id, tlsVerdict(ec.TLS))
		}
	}
	v.Ready = len(v.Missing) == 0
	return v
}

// permittedServices lists the services src may send to dst (routing.Permits).
func permittedServices(st *raft.State, src, dst *raft.NetworkView) []string {
	var out []string
	for v := int32(1); ; v++ {
		if _, ok := hubv1.Service_name[v]; !ok {
			return out
		}
		if s := hubv1.Service(v); routing.Permits(st, src, dst, s) == "" {
			out = append(out, routing.ServiceName(s))
		}
	}
}

func statusName(s hubv1.NetworkStatus) string {
	switch s {
	case hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE:
		return "active"
	case hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED:
		return "suspended"
	case hubv1.NetworkStatus_NETWORK_STATUS_UNSPECIFIED:
		return "-"
	}
	return s.String()
}

func servicesOrAll(ss []hubv1.Service) string {
	if len(ss) == 0 {
		return "all"
	}
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = routing.ServiceName(s)
	}
	return strings.Join(names, ",")
}

func memberCAExpiries(pems []string) []string {
	out := []string{}
	for _, p := range pems {
		rest := []byte(p)
		for {
			c, r, ok := nextCert(rest)
			if !ok {
				break
			}
			rest = r
			out = append(out, fmt.Sprintf("%s (expires %s)", c.Subject.String(), c.NotAfter.UTC().Format(time.DateOnly)))
		}
	}
	return out
}

func tlsVerdict(t *TLSCheck) string {
	switch {
	case !t.Trusted:
		return "not issued by a registered member CA of the network and not pinned"
	case !t.NameMatch:
		return "no subjectAltName among the network's domains and edge hosts (names: " + joinOrDash(t.Names) + ")"
	case t.Identifies == "":
		return "not attributable to any network"
	}
	return "it proves network " + t.Identifies
}

// probe sends one OPTIONS to hp and waits for its final response (RFC 3261
// 11: OPTIONS asks a server about itself; Max-Forwards 70 with the edge's
// own URI as Request-URI so an edge proxy answers for itself).
func (p Prober) probe(ctx context.Context, st *raft.State, n *raft.NetworkView, hp routing.Hop) EdgeCheck {
	ec := EdgeCheck{URI: hp.URI, Transport: hp.Transport, Address: hp.Addr}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := time.Now()
	var res *sip.Response
	var err error
	switch hp.Transport {
	case "UDP":
		res, err = p.probeUDP(ctx, hp, deadline)
	case "TCP":
		var conn net.Conn
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", hp.Addr)
		if err == nil {
			res, err = p.exchange(conn, hp, deadline)
		}
	case "TLS":
		ec.TLS = &TLSCheck{ClientCert: p.CertName}
		if ec.TLS.ClientCert == "" {
			ec.TLS.ClientCert = "-"
		}
		var conn *tls.Conn
		conn, err = p.dialTLS(ctx, hp, ec.TLS, st, n)
		if err == nil {
			res, err = p.exchange(conn, hp, deadline)
		}
	default:
		err = fmt.Errorf("transport %q not probed", hp.Transport)
	}
	if err != nil {
		ec.Error = err.Error()
		return ec
	}
	ec.Reachable = true
	ec.RTTMillis = float64(time.Since(start).Microseconds()) / 1000
	ec.Status, ec.Reason = res.StatusCode, res.Reason
	if h := res.GetHeader("Server"); h != nil {
		ec.Server = h.Value()
	} else if h := res.GetHeader("User-Agent"); h != nil {
		ec.Server = h.Value()
	}
	return ec
}

// options builds the probe request: a fresh branch and Call-ID, the
// prober's host in From, nothing a member could mistake for traffic.
func (p Prober) options(hp routing.Hop, local net.Addr) (msg []byte, callID string) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:4])
	callID = hex.EncodeToString(rnd[4:]) + "@network-test"
	host := p.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n;<>@\"") {
		host = "hubctl.invalid"
	}
	ua := p.UserAgent
	if ua == "" || strings.ContainsAny(ua, "\r\n") {
		ua = "clearhub network test"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "OPTIONS %s SIP/2.0\r\n", hp.URI)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=%s%s;rport\r\n", hp.Transport, local.String(), sip.RFC3261BranchMagicCookie, hex.EncodeToString(rnd[:]))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:network-test@%s>;tag=%s\r\n", host, tag)
	fmt.Fprintf(&b, "To: <%s>\r\n", hp.URI)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	b.WriteString("Accept: application/sdp\r\n")
	fmt.Fprintf(&b, "User-Agent: %s\r\n", ua)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String()), callID
}

// probeUDP retransmits the OPTIONS with RFC 3261 17.1.2.2 Timer E
// (500 ms doubling) until a final response or the deadline.
func (p Prober) probeUDP(ctx context.Context, hp routing.Hop, deadline time.Time) (*sip.Response, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "udp", hp.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	msg, callID := p.options(hp, conn.LocalAddr())
	parser := sip.NewParser()
	buf := make([]byte, 65535)
	next, t1 := time.Now(), 500*time.Millisecond
	for {
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return nil, errors.New("no answer before the deadline")
		}
		if !time.Now().Before(next) {
			if _, err := conn.Write(msg); err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			next = time.Now().Add(t1)
			t1 = min(2*t1, 4*time.Second)
		}
		_ = conn.SetReadDeadline(minTime(next, deadline))
		nr, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, fmt.Errorf("read: %w (ICMP unreachable: nothing listens there)", err)
		}
		if res := finalFor(parser, buf[:nr], callID); res != nil {
			return res, nil
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// finalFor parses b and returns it if it is a final response to callID.
func finalFor(parser *sip.Parser, b []byte, callID string) *sip.Response {
	m, err := parser.ParseSIP(b)
	if err != nil {
		return nil
	}
	res, ok := m.(*sip.Response)
	if !ok || res.StatusCode < 200 {
		return nil
	}
	if cid := res.CallID(); cid == nil || cid.Value() != callID {
		return nil
	}
	return res
}

// maxProbeResponse bounds what a stream probe reads.
const maxProbeResponse = 64 << 10

// exchange writes the OPTIONS on a stream and reads responses, framed by
// Content-Length (RFC 3261 18.3), until the final one.
func (p Prober) exchange(conn net.Conn, hp routing.Hop, deadline time.Time) (*sip.Response, error) {
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	msg, callID := p.options(hp, conn.LocalAddr())
	if _, err := conn.Write(msg); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	parser := sip.NewParser()
	r := bufio.NewReader(io.LimitReader(conn, maxProbeResponse))
	for {
		raw, err := ReadStreamMessage(r)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if res := finalFor(parser, raw, callID); res != nil {
			return res, nil
		}
	}
}

// ReadStreamMessage reads one SIP message off a stream: header lines up to
// the empty line, then Content-Length bytes of body (at most 64 KiB).
// Leading CRLFs (RFC 5626 keep-alive pongs) are skipped.
func ReadStreamMessage(r *bufio.Reader) ([]byte, error) {
	var head strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if strings.TrimRight(line, "\r\n") == "" {
			if head.Len() == 0 {
				continue // keep-alive CRLF before a message
			}
			break
		}
		head.WriteString(line)
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
			v, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil || v < 0 || v > maxProbeResponse {
				return nil, fmt.Errorf("bad Content-Length %q", strings.TrimSpace(val))
			}
			length = v
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append([]byte(head.String()+"\r\n"), body...), nil
}

// dialTLS handshakes with the edge, presenting the probe's client
// certificate, and records what its server certificate proves. The chain
// is judged below by the network's own registration and the SIP plane's
// attribution, not by the system roots, so the handshake itself does not
// verify it.
func (p Prober) dialTLS(ctx context.Context, hp routing.Hop, tc *TLSCheck, st *raft.State, n *raft.NetworkView) (*tls.Conn, error) {
	host, _, _ := net.SplitHostPort(hp.Addr)
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // judged in judgeCert against the network's CAs and pins
	}
	if net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	if p.Cert != nil {
		cfg.Certificates = []tls.Certificate{*p.Cert}
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", hp.Addr)
	if err != nil {
		if p.Cert == nil && p.NoCertHint != "" {
			return nil, fmt.Errorf("TLS: %w (no client certificate to present: %s)", err, p.NoCertHint)
		}
		return nil, fmt.Errorf("TLS: %w", err)
	}
	conn := c.(*tls.Conn)
	judgeCert(tc, conn.ConnectionState().PeerCertificates, st, n)
	return conn, nil
}

// judgeCert fills tc from the edge's certificate chain: trusted by the
// network's registration, named for it, and what the SIP plane's own
// check attributes it to.
func judgeCert(tc *TLSCheck, chain []*x509.Certificate, st *raft.State, n *raft.NetworkView) {
	if len(chain) == 0 {
		return
	}
	leaf := chain[0]
	tc.Subject, tc.Issuer = leaf.Subject.String(), leaf.Issuer.String()
	tc.NotAfter = leaf.NotAfter.UTC().Format(time.RFC3339)
	tc.Names = routing.CertNames(leaf)
	for _, name := range tc.Names {
		if n.Hosts[name] {
			tc.NameMatch = true
		}
	}
	sum := sha256.Sum256(leaf.Raw)
	tc.Trusted = n.Pins[hex.EncodeToString(sum[:])]
	if !tc.Trusted && n.CAPool != nil {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: n.CAPool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		tc.Trusted = err == nil
	}
	if v, _ := routing.IdentifyCert(st, chain, x509.ExtKeyUsageServerAuth); v != nil {
		tc.Identifies = v.GetId()
	}
}

// nextCert decodes the first CERTIFICATE block of b; ok is false when none
// is left. Blocks that do not parse are skipped.
func nextCert(b []byte) (c *x509.Certificate, rest []byte, ok bool) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, nil, false
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			return c, b, true
		}
	}
}
