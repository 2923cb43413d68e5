package main

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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/cobra"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// netTestView is `hubctl network test`'s report (also its -o json/yaml).
type netTestView struct {
	Network  string          `json:"network"`
	Status   string          `json:"status"`
	Domains  []string        `json:"domains"`
	Services string          `json:"services"`
	Identity netTestIdentity `json:"identity"`
	Inbound  []netTestGrant  `json:"may_be_reached_by"`
	Outbound []netTestGrant  `json:"may_reach"`
	Edges    []edgeCheck     `json:"edges"`
	Missing  []string        `json:"missing"`
	Ready    bool            `json:"ready"`
}

type netTestIdentity struct {
	CAs      []string `json:"member_cas"`
	Pins     int      `json:"pins"`
	LabCIDRs []string `json:"lab_cidrs"`
	TLSCIDRs []string `json:"tls_cidrs"`
}

type netTestGrant struct {
	Network  string   `json:"network"`
	Services []string `json:"services"`
}

// edgeCheck is one edge's OPTIONS probe.
type edgeCheck struct {
	URI       string    `json:"uri"`
	Transport string    `json:"transport,omitempty"`
	Address   string    `json:"address,omitempty"`
	Reachable bool      `json:"reachable"`
	Status    int       `json:"status,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	RTTMillis float64   `json:"rtt_ms,omitempty"`
	Server    string    `json:"server,omitempty"`
	TLS       *tlsCheck `json:"tls,omitempty"`
	Error     string    `json:"error,omitempty"`
}

type tlsCheck struct {
	ClientCert string   `json:"client_certificate"` // what hubctl presented
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

type netTestOpts struct {
	timeout  time.Duration
	sipCert  string
	sipKey   string
	hostname string
}

func newNetworkTestCmd() *cobra.Command {
	var o netTestOpts
	c := &cobra.Command{
		Use:   "test ID",
		Short: "Onboarding self-test: probe each edge with OPTIONS, summarise identity and policy, say what is missing",
		Long: `network test checks what a member network needs before traffic can flow:

  - each edge, in failover order: an OPTIONS sent by hubctl itself (over
    the edge's transport: UDP, TCP or TLS) must be answered; over TLS the
    edge's server certificate must chain to one of the network's registered
    CAs or be pinned, name one of its domains or edge hosts, and be the
    network's by the SIP plane's own attribution check;
  - its identity (member CAs, pins, lab prefixes) and status;
  - the peering policy: who may reach it, and whom it may reach, by service
    (the SIP plane's own decision code on the state read over the admin API).

hubctl sends the OPTIONS from the host it runs on: run it where the edges
accept SIP from, normally a hub node (edges often allow only the hub's
addresses), or read an unreachable edge as "not from here". Over TLS it
presents --sip-cert/--sip-key, else the node certificate in the data
directory (DATA/pki/node.crt, what the hub presents), else the operator
certificate (--cert); without any it cannot check an edge that requires
mutual TLS.

Exit status: 0 nothing missing, 1 something is missing (listed) or the call
failed, 2 bad command line.`,
		Example: `  hubctl network test b
  hubctl --data /var/lib/clearhub network test b --timeout-edge 5s -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st *raft.State
			if err := withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var err error
				st, err = fetchRoutingState(ctx, c)
				return err
			}); err != nil {
				return err
			}
			if st.Network(args[0]) == nil {
				return fmt.Errorf("network %q: not found", args[0])
			}
			cert, certName := o.clientCert(cmd)
			v := testNetwork(cmd.Context(), st, args[0], edgeProber{timeout: o.timeout, cert: cert, certName: certName, hostname: o.hostname})
			if err := printOutput(cmd, v, func(w io.Writer) { printNetTest(w, v) }); err != nil {
				return err
			}
			if !v.Ready {
				return fmt.Errorf("network %s: %d thing(s) missing before traffic can flow", v.Network, len(v.Missing))
			}
			return nil
		},
	}
	c.Flags().DurationVar(&o.timeout, "timeout-edge", 3*time.Second, "how long to wait for each edge's answer")
	c.Flags().StringVar(&o.sipCert, "sip-cert", "", "client certificate PEM to present to TLS edges (default DATA/pki/node.crt, else --cert)")
	c.Flags().StringVar(&o.sipKey, "sip-key", "", "its key PEM (default DATA/pki/node.key, else --key)")
	c.Flags().StringVar(&o.hostname, "from-host", "", "host of the OPTIONS From URI (default: this host's name)")
	return c
}

// clientCert picks the certificate TLS probes present: --sip-cert, the node
// certificate of the data directory, the operator certificate. nil when
// none loads (the probe then says it cannot do mutual TLS).
func (o netTestOpts) clientCert(cmd *cobra.Command) (*tls.Certificate, string) {
	pkiDir := filepath.Join(dataDir(cmd), "pki")
	tf := resolveTLSFiles(cmd)
	cands := [][2]string{}
	if o.sipCert != "" {
		key := o.sipKey
		if key == "" {
			key = o.sipCert
		}
		cands = append(cands, [2]string{o.sipCert, key})
	} else {
		cands = append(cands, [2]string{filepath.Join(pkiDir, "node.crt"), filepath.Join(pkiDir, "node.key")}, [2]string{tf.cert, tf.key})
	}
	for _, c := range cands {
		if _, err := os.Stat(c[0]); err != nil {
			continue
		}
		pair, err := tls.LoadX509KeyPair(c[0], c[1])
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "hubctl: %s: %v (not used for TLS edges)\n", c[0], err)
			continue
		}
		return &pair, c[0]
	}
	return nil, ""
}

// testNetwork builds the report for network id against st.
func testNetwork(ctx context.Context, st *raft.State, id string, p edgeProber) *netTestView {
	n := st.Network(id)
	v := &netTestView{Network: id, Status: statusName(n.GetStatus()), Domains: n.GetDomains(), Services: servicesOrAll(n.GetServices()),
		Inbound: []netTestGrant{}, Outbound: []netTestGrant{}, Edges: []edgeCheck{}, Missing: []string{}}
	if v.Domains == nil {
		v.Domains = []string{}
	}
	missing := func(format string, a ...any) { v.Missing = append(v.Missing, fmt.Sprintf(format, a...)) }

	// Identity.
	id0 := n.GetIdentity()
	v.Identity = netTestIdentity{CAs: memberCAExpiries(id0.GetCaPem()), Pins: len(id0.GetPins()), LabCIDRs: id0.GetCidrs(), TLSCIDRs: id0.GetTlsCidrs()}
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
			v.Inbound = append(v.Inbound, netTestGrant{Network: o.GetId(), Services: g})
		}
		if g := permittedServices(st, n, o); len(g) > 0 {
			v.Outbound = append(v.Outbound, netTestGrant{Network: o.GetId(), Services: g})
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
		v.Edges = append(v.Edges, edgeCheck{URI: e, Error: "not a usable SIP URI (transport UDP, TCP or TLS): the hub skips it"})
		missing("edge %s is skipped by the hub: not a usable SIP URI", e)
	}
	for _, hp := range hops {
		ec := p.probe(ctx, st, n, hp)
		v.Edges = append(v.Edges, ec)
		switch {
		case !ec.Reachable:
			missing("edge %s does not answer OPTIONS: %s", hp.URI, ec.Error)
		case ec.TLS != nil && ec.TLS.Identifies != id:
			missing("edge %s: its certificate is not %s's for the hub (%s); the hub refuses to send to it", hp.URI, id, tlsVerdict(ec.TLS))
		}
	}
	v.Ready = len(v.Missing) == 0
	return v
}

// permittedServices lists the services src may send to dst (routing.Permits).
func permittedServices(st *raft.State, src, dst *raft.NetworkView) []string {
	var out []string
	for _, s := range allServices() {
		if routing.Permits(st, src, dst, s) == "" {
			out = append(out, routing.ServiceName(s))
		}
	}
	return out
}

func servicesOrAll(ss []hubv1.Service) string {
	if len(ss) == 0 {
		return "all"
	}
	return serviceList(ss)
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

func tlsVerdict(t *tlsCheck) string {
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

// edgeProber sends the OPTIONS probes.
type edgeProber struct {
	timeout  time.Duration
	cert     *tls.Certificate
	certName string
	hostname string
}

// probe sends one OPTIONS to hp and waits for its final response (RFC 3261
// 11: OPTIONS asks a server about itself; Max-Forwards 70 with the edge's
// own URI as Request-URI so an edge proxy answers for itself).
func (p edgeProber) probe(ctx context.Context, st *raft.State, n *raft.NetworkView, hp routing.Hop) edgeCheck {
	ec := edgeCheck{URI: hp.URI, Transport: hp.Transport, Address: hp.Addr}
	timeout := p.timeout
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
		ec.TLS = &tlsCheck{ClientCert: orDash(p.certName)}
		var conn *tls.Conn
		conn, err = p.dialTLS(ctx, hp, ec.TLS, st, n)
		if err == nil {
			res, err = p.exchange(conn, hp, deadline)
		}
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
// operator's host in From, nothing a member could mistake for traffic.
func (p edgeProber) options(hp routing.Hop, local net.Addr) (msg []byte, callID string) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:4])
	callID = hex.EncodeToString(rnd[4:]) + "@hubctl"
	host := p.hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n;<>@\"") {
		host = "hubctl.invalid"
	}
	sentBy := local.String()
	var b strings.Builder
	fmt.Fprintf(&b, "OPTIONS %s SIP/2.0\r\n", hp.URI)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=%s%s;rport\r\n", hp.Transport, sentBy, sip.RFC3261BranchMagicCookie, hex.EncodeToString(rnd[:]))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:network-test@%s>;tag=%s\r\n", host, tag)
	fmt.Fprintf(&b, "To: <%s>\r\n", hp.URI)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	b.WriteString("Accept: application/sdp\r\n")
	b.WriteString("User-Agent: hubctl network test\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String()), callID
}

// probeUDP retransmits the OPTIONS with RFC 3261 17.1.2.2 Timer E
// (500 ms doubling) until a final response or the deadline.
func (p edgeProber) probeUDP(ctx context.Context, hp routing.Hop, deadline time.Time) (*sip.Response, error) {
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
		if !time.Now().Before(deadline) {
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
func (p edgeProber) exchange(conn net.Conn, hp routing.Hop, deadline time.Time) (*sip.Response, error) {
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	msg, callID := p.options(hp, conn.LocalAddr())
	if _, err := conn.Write(msg); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	parser := sip.NewParser()
	r := bufio.NewReader(io.LimitReader(conn, maxProbeResponse))
	for {
		raw, err := readStreamMessage(r)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if res := finalFor(parser, raw, callID); res != nil {
			return res, nil
		}
	}
}

// readStreamMessage reads one SIP message off a stream: header lines up to
// the empty line, then Content-Length bytes of body. Leading CRLFs
// (RFC 5626 keep-alive pongs) are skipped.
func readStreamMessage(r *bufio.Reader) ([]byte, error) {
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
func (p edgeProber) dialTLS(ctx context.Context, hp routing.Hop, tc *tlsCheck, st *raft.State, n *raft.NetworkView) (*tls.Conn, error) {
	host, _, _ := net.SplitHostPort(hp.Addr)
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // judged in judgeCert against the network's CAs and pins
	}
	if net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	if p.cert != nil {
		cfg.Certificates = []tls.Certificate{*p.cert}
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", hp.Addr)
	if err != nil {
		if p.cert == nil {
			return nil, fmt.Errorf("TLS: %w (no client certificate to present: give --sip-cert/--sip-key or --data with the node's pki)", err)
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
func judgeCert(tc *tlsCheck, chain []*x509.Certificate, st *raft.State, n *raft.NetworkView) {
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

func printNetTest(w io.Writer, v *netTestView) {
	row(w, "NETWORK", v.Network)
	row(w, "STATUS", v.Status)
	row(w, "DOMAINS", joinOrDash(v.Domains))
	row(w, "SERVICES", v.Services)
	row(w, "MEMBER CAS", joinOrDash(v.Identity.CAs))
	row(w, "PINS", strconv.Itoa(v.Identity.Pins))
	row(w, "LAB CIDRS", joinOrDash(v.Identity.LabCIDRs))
	if len(v.Identity.TLSCIDRs) > 0 {
		row(w, "TLS CIDRS", joinOrDash(v.Identity.TLSCIDRs))
	}
	for _, g := range v.Inbound {
		row(w, "REACHED BY", g.Network+": "+strings.Join(g.Services, ","))
	}
	for _, g := range v.Outbound {
		row(w, "REACHES", g.Network+": "+strings.Join(g.Services, ","))
	}
	for i, e := range v.Edges {
		var s string
		switch {
		case e.Reachable:
			s = fmt.Sprintf("%d %s in %.1f ms", e.Status, e.Reason, e.RTTMillis)
			if e.Server != "" {
				s += " (" + e.Server + ")"
			}
		default:
			s = "FAILED: " + e.Error
		}
		row(w, fmt.Sprintf("EDGE %d", i+1), e.URI+"  "+s)
		if t := e.TLS; t != nil && t.Subject != "" {
			row(w, "", fmt.Sprintf("  certificate %s (issuer %s, until %s), names %s", t.Subject, t.Issuer, t.NotAfter, joinOrDash(t.Names)))
			row(w, "", fmt.Sprintf("  trusted %v, name matches %v, the hub attributes it to %s; presented %s", t.Trusted, t.NameMatch, orDash(t.Identifies), t.ClientCert))
		}
	}
	if v.Ready {
		row(w, "READY", "yes: nothing missing")
		return
	}
	for _, m := range v.Missing {
		row(w, "MISSING", m)
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
