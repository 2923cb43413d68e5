package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func newPolicyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "policy",
		Aliases: []string{"policies"},
		Short:   "Manage peering policy (which networks may reach a network)",
		Long: `Peering policy is per destination network and default deny: a destination
admits a source network (or, with --all, every active member) for a set of
services.`,
	}
	c.AddCommand(
		newPolicyChangeCmd("allow", "Let a source network (or all members) reach DST",
			func(ctx context.Context, c hubv1.AdminServiceClient, r *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
				return c.AllowPolicy(ctx, r)
			}),
		newPolicyChangeCmd("deny", "Take back services granted to a source network (or all members) on DST",
			func(ctx context.Context, c hubv1.AdminServiceClient, r *hubv1.PolicyChangeRequest) (*hubv1.Policy, error) {
				return c.DenyPolicy(ctx, r)
			}),
		newPolicyListCmd(),
	)
	return c
}

func newPolicyChangeCmd(verb, short string, call func(context.Context, hubv1.AdminServiceClient, *hubv1.PolicyChangeRequest) (*hubv1.Policy, error)) *cobra.Command {
	var (
		from       string
		all        bool
		services   []string
		shareViews bool
	)
	c := &cobra.Command{
		Use:   verb + " DST (--from SRC | --all) [--services presence,im,...]",
		Short: short,
		Example: "  hubctl policy " + verb + " b --from a --services presence,im\n" +
			"  hubctl policy " + verb + " b --all",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svcs, err := parseServices("--services", services)
			if err != nil {
				return err
			}
			// No --services: an empty list, which the API reads as every
			// service and refuses when the source already has a narrower
			// grant (--services all widens on purpose).
			req := &hubv1.PolicyChangeRequest{
				Destination: args[0],
				Source:      from,
				All:         all,
				Services:    svcs,
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				p, err := call(ctx, c, req)
				if err != nil {
					return err
				}
				if cmd.Flags().Changed("share-views") {
					// A second write: the grant is its own command (lists).
					if err := setShareViews(ctx, cmd, c, args[0], from, shareViews); err != nil {
						return err
					}
				}
				return printOutput(cmd, viewPolicy(p), func(w io.Writer) { policyTable(w, []*hubv1.Policy{p}) })
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&from, "from", "", "source network id")
	fl.BoolVar(&all, "all", false, "every active member network")
	svcHelp := "services: " + validServices + " (default all)"
	if verb == "allow" {
		svcHelp = "services: " + validServices + " (default all for a new grant; required when the source already has a narrower one, which 'all' widens)"
	}
	fl.StringSliceVar(&services, "services", nil, svcHelp)
	c.MarkFlagsMutuallyExclusive("from", "all")
	c.MarkFlagsOneRequired("from", "all")
	if verb == "allow" {
		fl.BoolVar(&shareViews, "share-views", false, "let SRC's watchers share one back-end presence subscription per presentity of DST (docs/lists.md; --share-views=false withdraws)")
		c.MarkFlagsMutuallyExclusive("share-views", "all")
	}
	return c
}

func newPolicyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list [DST]",
		Aliases: []string{"ls"},
		Short:   "Show the peering policy of every network, or of DST",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &hubv1.ListPoliciesRequest{}
			if len(args) == 1 {
				req.Destination = args[0]
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				resp, err := c.ListPolicies(ctx, req)
				if err != nil {
					return err
				}
				ps := resp.GetPolicies()
				return printOutput(cmd, viewPolicies(ps), func(w io.Writer) { policyTable(w, ps) })
			})
		},
	}
}

// policyTable shows one row per (destination, source); the all-members
// switch is source "*".
func policyTable(w io.Writer, ps []*hubv1.Policy) {
	row(w, "DESTINATION", "SOURCE", "SERVICES")
	for _, p := range ps {
		if p.GetAllowAll() {
			row(w, p.GetDestination(), "*", serviceList(p.GetAllServices()))
		}
		for _, r := range p.GetRules() {
			row(w, p.GetDestination(), r.GetSource(), serviceList(r.GetServices()))
		}
		if !p.GetAllowAll() && len(p.GetRules()) == 0 {
			row(w, p.GetDestination(), "-", "-")
		}
	}
}
