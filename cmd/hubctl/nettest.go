package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clearhub/ops/netcheck"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// netTestView is `hubctl network test`'s report (also its -o json/yaml):
// the console shows the same one.
type netTestView = netcheck.NetTestView

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
mutual TLS. The console's Test button runs the same test (package
ops/netcheck) from the node serving the console, with its node certificate.

Exit status: 0 nothing missing, 1 something is missing (listed) or the call
failed, 2 bad command line.`,
		Example: `  hubctl network test b
  hubctl --data /var/lib/clearhub network test b --timeout-edge 5s -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st *raft.State
			if err := withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var err error
				st, err = netcheck.FetchState(ctx, c)
				return err
			}); err != nil {
				return err
			}
			if st.Network(args[0]) == nil {
				return fmt.Errorf("network %q: not found", args[0])
			}
			cert, certName := o.clientCert(cmd)
			v := netcheck.TestNetwork(cmd.Context(), st, args[0], netcheck.Prober{Timeout: o.timeout, Cert: cert, CertName: certName,
				NoCertHint: "give --sip-cert/--sip-key or --data with the node's pki", Hostname: o.hostname, UserAgent: "hubctl network test"})
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
