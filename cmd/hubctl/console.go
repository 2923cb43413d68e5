package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func init() { registerCommand(newConsoleCmd) }

// consoleLoginView is what `hubctl console login` prints.
type consoleLoginView struct {
	URL     string `json:"url"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	Expires string `json:"expires"`
}

func newConsoleCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "console",
		Short: "The operator web console (docs/console.md)",
		Args:  cobra.NoArgs,
	}
	login := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time link that logs a browser into the web console as you",
		Long: `Ask the node for a login link to its web console, bound to your operator
certificate's name and role. Open it once, within the time printed; the
browser then holds a session cookie and acts as you: every change is made
through the admin API and audited under your name, and a readonly or
auditor role changes nothing. The link works once; a used, expired or
altered link is refused. Anyone who gets the link before you use it logs
in as you: do not paste it into a chat.

JSON and YAML: {"url", "name", "role", "expires"}.`,
		Args: cobra.NoArgs,
	}
	login.RunE = func(cmd *cobra.Command, _ []string) error {
		_, cc, err := dialAdmin(cmd)
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := cmdContext(cmd)
		defer cancel()
		r, err := hubv1.NewConsoleServiceClient(cc).CreateLogin(ctx, &hubv1.CreateConsoleLoginRequest{})
		if err != nil {
			return err
		}
		v := consoleLoginView{URL: r.GetUrl(), Name: r.GetName(), Role: r.GetRole(),
			Expires: time.Unix(r.GetExpiresUnix(), 0).UTC().Format(time.RFC3339)}
		return printOutput(cmd, v, func(w io.Writer) {
			fmt.Fprintf(w, "%s\n(logs in %s, role %s; single use, until %s)\n", v.URL, v.Name, v.Role, v.Expires)
		})
	}
	c.AddCommand(login)
	return c
}
