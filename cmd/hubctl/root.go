package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1 // the server refused, the call failed, local I/O failed
	exitUsage   = 2 // bad command line: unknown command or flag, bad value
)

// commandFactories holds constructors of top-level subcommands added by other
// files of this package from their init() (see registerCommand). It is filled
// before main runs and only read afterwards; every newRootCmd call builds
// fresh commands from it, so tests get independent command trees.
var commandFactories []func() *cobra.Command

// registerCommand adds a top-level subcommand to every root command built
// from now on. Call it from init(), e.g. in audit.go:
//
//	func init() { registerCommand(newAuditCmd) }
func registerCommand(f func() *cobra.Command) {
	commandFactories = append(commandFactories, f)
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef builds a usageError; name the offending flag or argument first.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// runError marks an error returned by a command's RunE, i.e. after cobra
// accepted the command line. Anything else cobra returns is a usage error.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// newRootCmd builds the whole command tree with fresh flag state.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hubctl",
		Short: "Operate a clearhub federation hub cluster",
		Long: `hubctl talks to a clearhub node's admin API over mutual TLS.

By default it uses the development data directory of a local hub
(./hub-data): the admin address from hub-data/admin.addr and the operator
certificate from hub-data/pki. For a real cluster give --endpoints (a
comma-separated list: hubctl fails over to the next node when one is
unreachable), --cert, --key and --ca (the cluster CA), or set
HUBCTL_ENDPOINTS, HUBCTL_CERT, HUBCTL_KEY and HUBCTL_CACERT; flags win.

Exit status: 0 success, 1 the call or the check failed, 2 bad command line
(unknown command or flag, bad value).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	addGlobalFlags(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.AddCommand(newNetworkCmd(), newPolicyCmd(), newClusterCmd(), newCertsCmd(), newVersionCmd())
	for _, f := range commandFactories {
		root.AddCommand(f())
	}
	refuseUnknownSubcommands(root)
	wrapRunE(root)
	return root
}

// refuseUnknownSubcommands makes every command group (a command with
// subcommands and nothing to run itself) print its help when called bare
// and refuse an unknown subcommand as a usage error. Cobra itself does that
// only for the root; below it, "hubctl network bogus" printed help and
// exited 0, which a script reads as success.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c == c.Root() || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default, which it sets for the root only
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usagef("%s", msg)
	}
}

// wrapRunE marks errors coming out of RunE as runtime errors, recursively, so
// run can tell them from cobra's own argument and command errors.
func wrapRunE(c *cobra.Command) {
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := f(cmd, args); err != nil {
				return &runError{err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapRunE(sub)
	}
}

// run executes hubctl with args and returns the process exit status. Errors
// are printed to stderr as "hubctl: <message>".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if code, ok := exitStatusOf(err); ok { // apply --dry-run --exit-code: a status, not an error
		return code
	}
	fmt.Fprintf(stderr, "hubctl: %s\n", describe(err))
	help := "Run 'hubctl --help' for usage."
	if cmd != nil {
		help = fmt.Sprintf("Run '%s --help' for usage.", cmd.CommandPath())
	}
	var ue *usageError
	var re *runError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, help)
		return exitUsage
	case errors.As(err, &re):
		return exitFailure
	default:
		// Unknown command, wrong number of arguments, ...: cobra refused the
		// command line before any RunE ran.
		fmt.Fprintln(stderr, help)
		return exitUsage
	}
}

// describe renders an error for the operator: gRPC status errors as
// "Code: message", everything else as is.
func describe(err error) string {
	var ue *usageError
	if errors.As(err, &ue) {
		return ue.err.Error()
	}
	var re *runError
	if errors.As(err, &re) {
		err = re.err
	}
	// A status error, possibly wrapped by the command: show the gRPC code
	// by name and the server's message, which names the offending field.
	type grpcStatus interface{ GRPCStatus() *status.Status }
	var gs grpcStatus
	if errors.As(err, &gs) {
		st := gs.GRPCStatus()
		msg := st.Message()
		switch {
		case strings.Contains(msg, badCertAlert):
			msg += badCertHint
		case st.Code() == codes.Unauthenticated && strings.Contains(msg, "client certificate required"):
			// hubctl always has one, but Go offers a client certificate
			// only if the node's CA issued it: one of another CA is
			// silently not sent.
			msg += " (hubctl's certificate was not offered: this cluster's CA did not issue it; see --cert/--key and --ca)"
		case st.Code() == codes.Unavailable && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer")):
			// TLS 1.3: the client's handshake is done before the node
			// judges its certificate, so a refusal can reach hubctl as a
			// closed connection instead of the alert.
			msg += droppedHint
		case st.Code() == codes.DeadlineExceeded:
			msg += " (see --timeout)"
		case st.Code() == codes.Unavailable && strings.Contains(msg, "connection error"):
			// Raised by the client transport, not by a hub that answered.
			msg += " (is the hub running? see --endpoints)"
		}
		return fmt.Sprintf("%s: %s", st.Code(), msg)
	}
	if msg := err.Error(); strings.Contains(msg, badCertAlert) {
		return msg + badCertHint
	}
	return err.Error()
}

// badCertAlert is how a TLS handshake the node refused reaches hubctl:
// the node does not say why (revoked, expired, another CA), only the alert.
const (
	badCertAlert = "tls: bad certificate"
	badCertHint  = " (the node refused this client certificate: it may be revoked (hubctl certs revoked), expired, or not issued by this cluster's CA; see --cert/--key and --ca)"
	droppedHint  = " (the node closed the connection; if this repeats, it may be refusing this client certificate: revoked, expired, or not issued by this cluster's CA)"
)

// cmdContext derives the per-call context from --timeout.
func cmdContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	d, err := cmd.Root().PersistentFlags().GetDuration("timeout")
	if err != nil || d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(d))
}
