package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func newNetworkCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "network",
		Aliases: []string{"networks", "net"},
		Short:   "Manage member networks",
	}
	c.AddCommand(
		newNetworkAddCmd(),
		newNetworkGetCmd(),
		newNetworkListCmd(),
		newNetworkUpdateCmd(),
		newNetworkStatusCmd("suspend", "Stop routing to and from a network (its configuration stays)",
			func(ctx context.Context, c hubv1.AdminServiceClient, ref *hubv1.NetworkRef) (*hubv1.Network, error) {
				return c.SuspendNetwork(ctx, ref)
			}),
		newNetworkStatusCmd("resume", "Route a suspended network again",
			func(ctx context.Context, c hubv1.AdminServiceClient, ref *hubv1.NetworkRef) (*hubv1.Network, error) {
				return c.ResumeNetwork(ctx, ref)
			}),
		newNetworkRemoveCmd(),
		newNetworkTestCmd(),
	)
	return c
}

// networkFlags are the flags add and update share.
type networkFlags struct {
	name       string
	domains    []string
	edges      []string
	cidrs      []string
	tlsCIDRs   []string
	caFiles    []string
	pins       []string
	services   []string
	keepBodies bool
	rateLimits []string
	roomCreate bool // its users may #create chat rooms (docs/rooms.md)
}

func (f *networkFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.name, "name", "", "display name")
	fl.StringSliceVar(&f.domains, "domain", nil, "SIP domain the network owns (repeatable or comma-separated)")
	fl.StringArrayVar(&f.edges, "edge", nil, "edge SIP URI, in failover order (repeatable), e.g. sips:edge1.a.example:5061")
	fl.StringSliceVar(&f.cidrs, "cidr", nil, "lab mode: source prefix attributed to the network over UDP/TCP (repeatable or comma-separated)")
	fl.StringSliceVar(&f.tlsCIDRs, "tls-cidr", nil, "source prefix a TLS connection with the network's certificate must also come from (repeatable or comma-separated; defence in depth against a stolen key)")
	// Not --ca: that is the global flag naming the cluster CA hubctl checks
	// the node with, and reusing the name once registered the cluster CA
	// as a member's by mistake.
	fl.StringArrayVar(&f.caFiles, "member-ca", nil, "PEM file of a CA the network's client certificates chain to (repeatable; not the global --ca, which is the cluster CA)")
	fl.StringSliceVar(&f.pins, "pin", nil, "SHA-256 fingerprint (hex) of a pinned client certificate (repeatable)")
	fl.StringSliceVar(&f.services, "services", nil, "services the network uses: "+validServices)
	fl.BoolVar(&f.keepBodies, "keep-bodies", false, "keep message bodies in the audit ledger (default: digests only)")
	fl.BoolVar(&f.roomCreate, "room-create", false, "the network's users may create chat rooms in band (#create; docs/rooms.md)")
	fl.StringSliceVar(&f.rateLimits, "rate-limit", nil, "the network's own token buckets, CLASS=RATE[/BURST] per second (repeatable or comma-separated; classes: "+rateClasses+"; rate 0 = unlimited; none = only the nodes' defaults)")
}

// identity builds the Identity from the identity flags.
func (f *networkFlags) identity() (*hubv1.Identity, error) {
	id := &hubv1.Identity{}
	for _, file := range f.caFiles {
		pems, err := readCAFile(file)
		if err != nil {
			return nil, err
		}
		id.CaPem = append(id.CaPem, pems...)
	}
	for _, p := range f.pins {
		pin, err := normalizePin(p)
		if err != nil {
			return nil, err
		}
		id.Pins = append(id.Pins, pin)
	}
	for _, c := range f.cidrs {
		p, err := parseCIDR("--cidr", c)
		if err != nil {
			return nil, err
		}
		id.Cidrs = append(id.Cidrs, p)
	}
	for _, c := range f.tlsCIDRs {
		p, err := parseCIDR("--tls-cidr", c)
		if err != nil {
			return nil, err
		}
		id.TlsCidrs = append(id.TlsCidrs, p)
	}
	return id, nil
}

// network builds the Network message for id from every flag.
func (f *networkFlags) network(id string) (*hubv1.Network, error) {
	ident, err := f.identity()
	if err != nil {
		return nil, err
	}
	svcs, err := parseServices("--services", f.services)
	if err != nil {
		return nil, err
	}
	rls, err := parseRateLimits("--rate-limit", f.rateLimits)
	if err != nil {
		return nil, err
	}
	return &hubv1.Network{
		Id:          id,
		DisplayName: f.name,
		Domains:     f.domains,
		Edges:       f.edges,
		Identity:    ident,
		Services:    svcs,
		KeepBodies:  f.keepBodies,
		RateLimits:  rls,
		RoomCreate:  f.roomCreate,
	}, nil
}

// readCAFile returns every certificate of a PEM file, one PEM block each.
func readCAFile(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--member-ca: %w", err)
	}
	var out []string
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, usagef("--member-ca: %s: %v", file, err)
		}
		out = append(out, string(pem.EncodeToMemory(blk)))
	}
	if len(out) == 0 {
		return nil, usagef("--member-ca: %s holds no PEM certificate", file)
	}
	return out, nil
}

// normalizePin accepts a SHA-256 fingerprint in hex, with or without colons,
// any case, and returns it lower-case without separators.
func normalizePin(p string) (string, error) {
	s := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(p), ":", ""))
	s = strings.TrimPrefix(s, "sha256/")
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", usagef("--pin: %q is not a SHA-256 fingerprint (64 hex digits)", p)
	}
	return s, nil
}

// parseCIDR validates a prefix; a bare address means just that host.
func parseCIDR(flag, c string) (string, error) {
	c = strings.TrimSpace(c)
	if p, err := netip.ParsePrefix(c); err == nil {
		return p.String(), nil
	}
	if a, err := netip.ParseAddr(c); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String(), nil
	}
	return "", usagef("%s: %q is not an address prefix like 192.0.2.0/24", flag, c)
}

func newNetworkAddCmd() *cobra.Command {
	var f networkFlags
	c := &cobra.Command{
		Use:   "add ID --domain DOMAIN --edge URI [flags]",
		Short: "Onboard a member network",
		Example: `  hubctl network add a --domain a.example --edge sip:127.0.0.1:5070 --cidr 127.0.0.1/32
  hubctl network add b --domain b.example --edge sips:edge.b.example:5061 --pin 3f2a...
  hubctl network add c --domain c.example --edge sips:edge.c.example:5061 --member-ca c-ca.pem --tls-cidr 198.51.100.0/24`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := f.network(args[0])
			if err != nil {
				return err
			}
			if globalChanged(cmd, "ca") && len(f.caFiles) == 0 && len(f.pins) == 0 && len(f.cidrs) == 0 {
				// The likely mistake of the old spelling: say what --ca is.
				fmt.Fprintln(cmd.ErrOrStderr(), "note: --ca is the cluster CA hubctl checks the node with; a member network's CA is --member-ca")
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				got, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: n})
				if err != nil {
					return err
				}
				return printNetwork(cmd, got)
			})
		},
	}
	f.register(c)
	_ = c.MarkFlagRequired("domain")
	_ = c.MarkFlagRequired("edge")
	return c
}

func newNetworkUpdateCmd() *cobra.Command {
	var f networkFlags
	var df deferFlags // store and forward (deferflags.go)
	var mf msrpFlags  // MSRP limits and relay (msrpflags.go)
	c := &cobra.Command{
		Use:   "update ID [flags]",
		Short: "Change a member network; only the flags given are changed",
		Long: `Change a member network. Only the fields whose flags are given change, and
a given list flag replaces that whole list (--domain a.example --domain
a2.example sets exactly those two domains). --cidr, --tls-cidr,
--member-ca and --pin each replace only their own list of the network's
identity (--cidr= empties the CIDR list). --rate-limit replaces the
network's own rate limits (none: back to the nodes' defaults). The --defer
flags change the network's store and forward (only the ones given).`,
		Example: `  hubctl network update a --edge sip:127.0.0.1:5071
  hubctl network update a --keep-bodies=false
  hubctl network update a --rate-limit im=100/200,presence=50
  hubctl network update a --rate-limit none
  hubctl network update a --defer-on-480 --defer-ttl 24h
  hubctl network update b --msrp-max-file-size 10485760 --msrp-byte-rate 1048576
  hubctl network update b --msrp-relay msrp://relay.b.example:2855;tcp --msrp-relay-user hub --msrp-relay-password-file pw.txt
  hubctl network update a --member-ca a-ca.pem --tls-cidr 192.0.2.0/24,198.51.100.7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			fl := cmd.Flags()
			n := &hubv1.Network{Id: id}
			var mask []string
			if fl.Changed("name") {
				n.DisplayName = f.name
				mask = append(mask, "display_name")
			}
			if fl.Changed("domain") {
				n.Domains = f.domains
				mask = append(mask, "domains")
			}
			if fl.Changed("edge") {
				n.Edges = f.edges
				mask = append(mask, "edges")
			}
			if fl.Changed("services") {
				svcs, err := parseServices("--services", f.services)
				if err != nil {
					return err
				}
				n.Services = svcs
				mask = append(mask, "services")
			}
			if fl.Changed("keep-bodies") {
				n.KeepBodies = f.keepBodies
				mask = append(mask, "keep_bodies")
			}
			if fl.Changed("room-create") {
				n.RoomCreate = f.roomCreate
				mask = append(mask, "room_create")
			}
			if fl.Changed("rate-limit") {
				rls, err := parseRateLimits("--rate-limit", f.rateLimits)
				if err != nil {
					return err
				}
				n.RateLimits = rls
				mask = append(mask, "rate_limits")
			}
			identChanged := fl.Changed("cidr") || fl.Changed("tls-cidr") || fl.Changed("member-ca") || fl.Changed("pin")
			var ident *hubv1.Identity
			if identChanged {
				var err error
				if ident, err = f.identity(); err != nil {
					return err
				}
				mask = append(mask, "identity")
			}
			deferChanged := df.changed(cmd)
			if deferChanged {
				mask = append(mask, "deferral")
			}
			msrpChanged := mf.changed(cmd)
			if msrpChanged {
				mask = append(mask, "msrp")
			}
			if len(mask) == 0 {
				return usagef("network update %s: nothing to change (give at least one of --name, --domain, --edge, --cidr, --tls-cidr, --member-ca, --pin, --services, --keep-bodies, --room-create, --rate-limit, --defer..., --msrp-...)", id)
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				var version int64
				if deferChanged {
					cur, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: id})
					if err != nil {
						return err
					}
					if n.Deferral, err = df.merge(cmd, cur.GetDeferral()); err != nil {
						return err
					}
					version = cur.GetUpdatedUnixNano()
				}
				if msrpChanged {
					cur, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: id})
					if err != nil {
						return err
					}
					if n.Msrp, err = mf.merge(cmd, cur.GetMsrp()); err != nil {
						return err
					}
					version = cur.GetUpdatedUnixNano()
				}
				if identChanged {
					// The mask's granularity is the whole identity: merge the
					// lists not given from the current network.
					cur, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: id})
					if err != nil {
						return err
					}
					n.Identity = mergeIdentity(cur.GetIdentity(), ident, identFlags{
						ca: fl.Changed("member-ca"), pins: fl.Changed("pin"), cidrs: fl.Changed("cidr"), tlsCIDRs: fl.Changed("tls-cidr"),
					})
					// Conditional on the version merged with: another
					// operator's change in between is refused, not lost.
					version = cur.GetUpdatedUnixNano()
				}
				got, err := c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: n, UpdateMask: mask, IfUpdatedUnixNano: version})
				if err != nil {
					return err
				}
				return printNetwork(cmd, got)
			})
		},
	}
	f.register(c)
	df.register(c)
	mf.register(c)
	return c
}

// identFlags says which identity lists were given on the command line.
type identFlags struct{ ca, pins, cidrs, tlsCIDRs bool }

// mergeIdentity takes the lists whose flags were given from next and the
// rest from cur.
func mergeIdentity(cur, next *hubv1.Identity, given identFlags) *hubv1.Identity {
	out := &hubv1.Identity{
		CaPem:    cur.GetCaPem(),
		Pins:     cur.GetPins(),
		Cidrs:    cur.GetCidrs(),
		TlsCidrs: cur.GetTlsCidrs(),
	}
	if given.ca {
		out.CaPem = next.GetCaPem()
	}
	if given.pins {
		out.Pins = next.GetPins()
	}
	if given.cidrs {
		out.Cidrs = next.GetCidrs()
	}
	if given.tlsCIDRs {
		out.TlsCidrs = next.GetTlsCidrs()
	}
	return out
}

func newNetworkGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one member network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				n, err := c.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return printNetwork(cmd, n)
			})
		},
	}
}

func newNetworkListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List member networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				resp, err := c.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
				if err != nil {
					return err
				}
				nets := resp.GetNetworks()
				return printOutput(cmd, viewNetworks(nets), func(w io.Writer) {
					row(w, "ID", "NAME", "STATUS", "DOMAINS", "EDGES", "SERVICES")
					for _, n := range nets {
						row(w, n.GetId(), orDash(n.GetDisplayName()), statusName(n.GetStatus()),
							joinOrDash(n.GetDomains()), joinOrDash(n.GetEdges()), serviceList(n.GetServices()))
					}
				})
			})
		},
	}
}

func newNetworkStatusCmd(verb, short string, call func(context.Context, hubv1.AdminServiceClient, *hubv1.NetworkRef) (*hubv1.Network, error)) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				n, err := call(ctx, c, &hubv1.NetworkRef{Id: args[0]})
				if err != nil {
					return err
				}
				return printNetwork(cmd, n)
			})
		},
	}
}

func newNetworkRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove ID",
		Aliases: []string{"rm"},
		Short:   "Remove a member network and its peering policy",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				resp, err := c.RemoveNetwork(ctx, &hubv1.NetworkRef{Id: args[0]})
				if err != nil {
					return err
				}
				return printOutput(cmd, removedView{ID: resp.GetId(), Removed: true}, func(w io.Writer) {
					fmt.Fprintf(w, "removed network %s\n", resp.GetId())
				})
			})
		},
	}
}

// printNetwork shows one network; the table form is one field per line.
func printNetwork(cmd *cobra.Command, n *hubv1.Network) error {
	return printOutput(cmd, viewNetwork(n), func(w io.Writer) {
		id := n.GetIdentity()
		row(w, "ID:", n.GetId())
		row(w, "NAME:", orDash(n.GetDisplayName()))
		row(w, "STATUS:", statusName(n.GetStatus()))
		row(w, "DOMAINS:", joinOrDash(n.GetDomains()))
		row(w, "EDGES:", joinOrDash(n.GetEdges()))
		row(w, "SERVICES:", serviceList(n.GetServices()))
		row(w, "CIDRS:", joinOrDash(id.GetCidrs()))
		row(w, "TLS CIDRS:", joinOrDash(id.GetTlsCidrs()))
		row(w, "PINS:", joinOrDash(id.GetPins()))
		row(w, "CAS:", caSubjects(id.GetCaPem()))
		row(w, "KEEP BODIES:", n.GetKeepBodies())
		row(w, "ROOM CREATE:", n.GetRoomCreate())
		row(w, "RATE LIMITS:", rateLimitList(n.GetRateLimits()))
		row(w, "STORE AND FORWARD:", deferralSummary(n.GetDeferral()))
		row(w, "MSRP:", msrpSummary(n.GetMsrp()))
		row(w, "CREATED:", unixNano(n.GetCreatedUnixNano()))
		row(w, "UPDATED:", unixNano(n.GetUpdatedUnixNano()))
	})
}

// caSubjects names the CA certificates for a table, "-" when none.
func caSubjects(pems []string) string {
	var names []string
	for _, p := range pems {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			names = append(names, "(unparsable)")
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			names = append(names, "(unparsable)")
			continue
		}
		names = append(names, cert.Subject.CommonName)
	}
	return joinOrDash(names)
}
