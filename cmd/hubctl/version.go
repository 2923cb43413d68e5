package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

// version is the release this binary was built as, set by the build:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/hubctl
//
// Without it, hubctl reports "dev" plus the VCS revision Go recorded.
var version = "dev"

// nodeVersionUnknown is what hubctl version shows for a node that reports
// no version: one built before nodes did, or one that did not answer the
// status probe.
const nodeVersionUnknown = "unknown"

// clientVersionView is this binary's version.
type clientVersionView struct {
	Version    string  `json:"version"`
	Commit     string  `json:"commit"`      // "" when not built from a VCS checkout
	CommitTime *string `json:"commit_time"` // RFC 3339
	Modified   bool    `json:"modified"`    // built from a tree with uncommitted changes
	Go         string  `json:"go"`
}

// versionView is what hubctl version prints in JSON and YAML.
type versionView struct {
	Client clientVersionView `json:"client"`
	// Nodes is null with --client.
	Nodes []nodeVersionView `json:"nodes"`
}

type nodeVersionView struct {
	ID      string `json:"id"`
	Version string `json:"version"` // "unknown" when the node reports none
	// Error is why the node's version is unknown ("" when known).
	Error string `json:"error"`
}

func clientVersion() clientVersionView {
	v := clientVersionView{Version: version, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version // go install clearhub/cmd/hubctl@vX
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			t := s.Value
			v.CommitTime = &t
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v clientVersionView) String() string {
	s := v.Version
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (commit " + c
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + v.Go
}

func newVersionCmd() *cobra.Command {
	var clientOnly bool
	c := &cobra.Command{
		Use:   "version [--client]",
		Short: "Show hubctl's version and every node's",
		Long: `Show the version of this hubctl binary and of every node of the cluster,
as each node reports it in cluster status. A node that does not answer, or
runs a build from before nodes reported versions, shows as "` + nodeVersionUnknown + `".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			v := versionView{Client: clientVersion()}
			var callErr error
			if !clientOnly {
				callErr = withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
					st, err := c.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
					if err != nil {
						return err
					}
					v.Nodes = []nodeVersionView{}
					for _, n := range st.GetNodes() {
						nv := nodeVersionView{ID: n.GetId(), Version: n.GetVersion()}
						if nv.Version == "" {
							nv.Version = nodeVersionUnknown
							nv.Error = n.GetError()
							if nv.Error == "" {
								nv.Error = "the node reports no version (an older build)"
							}
						}
						v.Nodes = append(v.Nodes, nv)
					}
					return nil
				})
			}
			// The client's version is worth printing even when no node
			// answers: that is when one asks.
			if err := printOutput(cmd, v, func(w io.Writer) {
				row(w, "CLIENT:", v.Client.String())
				if v.Nodes != nil {
					fmt.Fprintln(w)
					row(w, "NODE", "VERSION", "NOTE")
					for _, n := range v.Nodes {
						row(w, n.ID, n.Version, orDash(n.Error))
					}
				}
			}); err != nil {
				return err
			}
			if callErr != nil {
				return fmt.Errorf("node versions: %w", callErr)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&clientOnly, "client", false, "only this binary's version; do not ask the cluster")
	return c
}
