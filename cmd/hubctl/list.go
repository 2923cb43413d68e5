package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"clearhub/hub/lists"
	"clearhub/proto/hubv1"
)

func init() { registerCommand(newListCmd) }

func newListCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"lists"},
		Short:   "Manage resource lists the hub serves (RFC 4662 list subscriptions)",
		Long: `Resource lists live under the hub's lists domain (hubd --lists-domain), e.g.
sip:alice-buddies@lists.hub.example. A watcher subscribes to the list URI with
Event: presence and Supported: eventlist and gets the presence of every entry
in one subscription. A public list may be watched by any member's users (the
peering policy still decides, per entry); a personal list (--owner) only by
its owner. Import and export use RFC 4826 resource-lists XML.`,
	}
	c.AddCommand(newListCreateCmd(), newListGetCmd(), newListListCmd(), newListDeleteCmd(),
		newListAddCmd(), newListRemoveCmd(), newListImportCmd(), newListExportCmd())
	return c
}

// withLists dials like withAdmin and hands fn a ListService client.
func withLists(cmd *cobra.Command, fn func(ctx context.Context, c hubv1.ListServiceClient) error) error {
	_, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, hubv1.NewListServiceClient(cc))
}

// parseEntry reads URI or URI=Display Name.
func parseEntry(s string) *hubv1.ListEntry {
	u, name, _ := strings.Cut(s, "=")
	return &hubv1.ListEntry{Uri: strings.TrimSpace(u), DisplayName: strings.TrimSpace(name)}
}

func printList(cmd *cobra.Command, l *hubv1.ResourceList) error {
	return printOutput(cmd, l, func(w io.Writer) {
		row(w, "URI", l.GetUri())
		row(w, "NAME", orDash(l.GetDisplayName()))
		owner := l.GetOwner()
		if owner == "" {
			owner = "(public)"
		}
		row(w, "OWNER", owner)
		row(w, "REVISION", strconv.FormatUint(l.GetRevision(), 10))
		row(w, "UPDATED BY", orDash(l.GetUpdatedBy()))
		row(w, "ENTRIES", strconv.Itoa(len(l.GetEntries())))
		for _, e := range l.GetEntries() {
			row(w, "", e.GetUri(), orDash(e.GetDisplayName()))
		}
	})
}

func newListCreateCmd() *cobra.Command {
	var (
		owner, name string
		entries     []string
	)
	c := &cobra.Command{
		Use:   "create URI [--owner USER-URI] [--name NAME] [--entry URI[=NAME]]...",
		Short: "Create a list (public, or personal with --owner)",
		Example: "  hubctl list create sip:alice-buddies@lists.hub.example --owner sip:alice@a.example \\\n" +
			"      --entry 'sip:bob@b.example=Bob' --entry sip:carol@b.example\n" +
			"  hubctl list create sip:support@lists.hub.example --name 'Support desk'",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l := &hubv1.ResourceList{Uri: args[0], Owner: owner, DisplayName: name}
			for _, e := range entries {
				l.Entries = append(l.Entries, parseEntry(e))
			}
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				got, err := c.CreateList(ctx, &hubv1.CreateListRequest{List: l})
				if err != nil {
					return err
				}
				return printList(cmd, got)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&owner, "owner", "", "owner's SIP URI: a personal list only its owner may subscribe to")
	fl.StringVar(&name, "name", "", "display name")
	fl.StringArrayVar(&entries, "entry", nil, "an entry, URI or URI=Display Name (repeatable)")
	return c
}

func newListGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get URI",
		Short: "Show a list and its entries",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				l, err := c.GetList(ctx, &hubv1.GetListRequest{Uri: args[0]})
				if err != nil {
					return err
				}
				return printList(cmd, l)
			})
		},
	}
}

func newListListCmd() *cobra.Command {
	var (
		owner  string
		public bool
	)
	c := &cobra.Command{
		Use:     "list [--owner USER-URI | --public]",
		Aliases: []string{"ls"},
		Short:   "List the lists (all, one owner's, or the public ones)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &hubv1.ListListsRequest{Owner: owner}
			if public {
				req.Owner = "-"
			}
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				resp, err := c.ListLists(ctx, req)
				if err != nil {
					return err
				}
				return printOutput(cmd, resp, func(w io.Writer) {
					row(w, "URI", "OWNER", "ENTRIES", "REVISION", "NAME")
					for _, l := range resp.GetLists() {
						owner := l.GetOwner()
						if owner == "" {
							owner = "(public)"
						}
						row(w, l.GetUri(), owner, len(l.GetEntries()), l.GetRevision(), orDash(l.GetDisplayName()))
					}
				})
			})
		},
	}
	c.Flags().StringVar(&owner, "owner", "", "only this owner's personal lists")
	c.Flags().BoolVar(&public, "public", false, "only public lists")
	c.MarkFlagsMutuallyExclusive("owner", "public")
	return c
}

func newListDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete URI",
		Aliases: []string{"rm"},
		Short:   "Delete a list (its live subscriptions end with reason noresource)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				if _, err := c.DeleteList(ctx, &hubv1.DeleteListRequest{Uri: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted list %s\n", args[0])
				return nil
			})
		},
	}
}

func newListAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "add URI ENTRY[=NAME]...",
		Short:   "Add entries to a list (an entry already listed gets the new name)",
		Example: "  hubctl list add sip:alice-buddies@lists.hub.example 'sip:dave@b.example=Dave'",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &hubv1.ListEntriesRequest{Uri: args[0]}
			for _, e := range args[1:] {
				req.Entries = append(req.Entries, parseEntry(e))
			}
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				l, err := c.AddListEntries(ctx, req)
				if err != nil {
					return err
				}
				return printList(cmd, l)
			})
		},
	}
}

func newListRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove URI ENTRY-URI...",
		Short: "Remove entries from a list",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				l, err := c.RemoveListEntries(ctx, &hubv1.RemoveListEntriesRequest{Uri: args[0], EntryUris: args[1:]})
				if err != nil {
					return err
				}
				return printList(cmd, l)
			})
		},
	}
}

// importTargets maps the top-level lists of a document to list URIs: with
// --uri the document must hold one list; otherwise each list's name
// attribute becomes the user part under --domain.
func importTargets(docs []lists.DocList, uri, domain string) ([]string, error) {
	if len(docs) == 0 {
		return nil, fmt.Errorf("the document has no <list>")
	}
	if uri != "" {
		if len(docs) != 1 {
			return nil, fmt.Errorf("--uri names one list, the document has %d; use --domain and list names instead", len(docs))
		}
		return []string{uri}, nil
	}
	if domain == "" {
		return nil, fmt.Errorf("--uri or --domain is required")
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		if d.Name == "" {
			return nil, fmt.Errorf("list %d has no name attribute; give --uri for a one-list document", i+1)
		}
		out[i] = "sip:" + d.Name + "@" + domain
	}
	return out, nil
}

func newListImportCmd() *cobra.Command {
	var (
		uri, domain, owner string
		replace            bool
	)
	c := &cobra.Command{
		Use:   "import FILE (--uri URI | --domain LISTS-DOMAIN) [--owner USER-URI] [--replace]",
		Short: "Create lists from an RFC 4826 resource-lists document (- for stdin)",
		Example: "  hubctl list import buddies.xml --uri sip:alice-buddies@lists.hub.example --owner sip:alice@a.example\n" +
			"  hubctl list import team.xml --domain lists.hub.example --replace",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), lists.MaxDocument+1))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", args[0], err)
			}
			docs, err := lists.ParseResourceLists(data, lists.MaxDocLists*200)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			uris, err := importTargets(docs, uri, domain)
			if err != nil {
				return &usageError{err: err}
			}
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				for i, d := range docs {
					l := &hubv1.ResourceList{Uri: uris[i], Owner: owner, DisplayName: d.DisplayName}
					for _, e := range d.Entries {
						l.Entries = append(l.Entries, &hubv1.ListEntry{Uri: e.URI, DisplayName: e.DisplayName})
					}
					got, err := c.CreateList(ctx, &hubv1.CreateListRequest{List: l, Replace: replace})
					if err != nil {
						return fmt.Errorf("list %s: %w", uris[i], err)
					}
					note := ""
					if d.Skipped > 0 {
						note = fmt.Sprintf(" (%d entry-ref/external elements skipped: the hub does not fetch XCAP references)", d.Skipped)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s: %d entries, revision %d%s\n", got.GetUri(), len(got.GetEntries()), got.GetRevision(), note)
				}
				return nil
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&uri, "uri", "", "the list URI (the document must hold one list)")
	fl.StringVar(&domain, "domain", "", "lists domain: each <list name=N> becomes sip:N@DOMAIN")
	fl.StringVar(&owner, "owner", "", "owner's SIP URI for personal lists")
	fl.BoolVar(&replace, "replace", false, "replace lists that exist")
	c.MarkFlagsMutuallyExclusive("uri", "domain")
	return c
}

func newListExportCmd() *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "export URI... [--file FILE]",
		Short: "Write lists as one RFC 4826 resource-lists document",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withLists(cmd, func(ctx context.Context, c hubv1.ListServiceClient) error {
				var docs []lists.DocList
				for _, u := range args {
					l, err := c.GetList(ctx, &hubv1.GetListRequest{Uri: u})
					if err != nil {
						return fmt.Errorf("list %s: %w", u, err)
					}
					name := strings.TrimPrefix(strings.TrimPrefix(l.GetUri(), "sips:"), "sip:")
					name, _, _ = strings.Cut(name, "@")
					d := lists.DocList{Name: name, DisplayName: l.GetDisplayName()}
					for _, e := range l.GetEntries() {
						d.Entries = append(d.Entries, lists.Entry{URI: e.GetUri(), DisplayName: e.GetDisplayName()})
					}
					docs = append(docs, d)
				}
				out := lists.MarshalResourceLists(docs)
				if file == "" || file == "-" {
					_, err := cmd.OutOrStdout().Write(out)
					return err
				}
				if err := os.WriteFile(file, out, 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", file, err)
				}
				return nil
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "write to FILE instead of stdout")
	return c
}

// setShareViews grants or withdraws a shared presence view (policy allow
// --share-views) on the connection policy allow used.
func setShareViews(ctx context.Context, cmd *cobra.Command, _ hubv1.AdminServiceClient, dst, src string, share bool) error {
	return withLists(cmd, func(_ context.Context, c hubv1.ListServiceClient) error {
		r, err := c.SetViewSharing(ctx, &hubv1.SetViewSharingRequest{Destination: dst, Source: src, Share: share})
		if err != nil {
			return fmt.Errorf("the policy changed, but the shared view did not: %w", err)
		}
		verb := "withdrawn from"
		if r.GetShareViews() {
			verb = "granted to"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "shared presence view of %s %s %s\n", dst, verb, src)
		return nil
	})
}
