package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func init() {
	registerCommand(newExportCmd)
	registerCommand(newApplyCmd)
}

// exitDiffers is apply --dry-run --exit-code's status when the file and the
// cluster differ. Not 2 as in terraform plan -detailed-exitcode: hubctl's 2
// already means a bad command line or file, and a script must tell "changes
// pending" from "your file is wrong".
const exitDiffers = 3

// exitStatus is an error that only sets the exit status; run prints nothing
// for it.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitStatusOf reports the status an exitStatus error asks for.
func exitStatusOf(err error) (int, bool) {
	var e exitStatus
	if errors.As(err, &e) {
		return int(e), true
	}
	return 0, false
}

func newExportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export",
		Short: "Print every member network, the peering policy, the resource lists and the rooms as one YAML document (for hubctl apply -f)",
		Long: `Print the cluster's member networks, peering policy, resource lists and
chat rooms as one document that hubctl apply -f takes back: keep it in
git, edit it, apply it.

The document starts with apiVersion: ` + docAPIVersion + ` and kind: ` + docKind + `; its
networks and policies have the shapes of "network list -o yaml" and
"policy list -o yaml" without the created/updated times (they change on
every write), each policy rule with its share_views grant (policy allow
--share-views); lists has each list's uri, display_name, owner ("" for a
public list) and entries (uri, display_name), without revision and times;
rooms has each room's settings, participants (uri, nickname, role,
invited, cpim) and bans (pattern, reason). Message history is never
exported. -o json prints the same document as JSON.`,
		Example: `  hubctl export > membership.yaml
  hubctl apply -f membership.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			return withDeclarative(cmd, func(ctx context.Context, c declClients) error {
				cs, err := readCluster(ctx, c)
				if err != nil {
					return err
				}
				d := exportDoc(cs.GetNetworks(), cs.GetPolicies())
				d.Lists = exportLists(cs.GetLists())
				d.Rooms = exportRooms(cs.GetRooms())
				b, err := toJSON(d)
				if err != nil {
					return err
				}
				if format == formatJSON {
					_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
					return err
				}
				y, err := jsonToYAML(b)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(y)
				return err
			})
		},
	}
}

// declClients are the services export and apply read and write, over one
// connection.
type declClients struct {
	hubv1.AdminServiceClient
	lists hubv1.ListServiceClient
	rooms hubv1.RoomServiceClient
}

// withDeclarative dials like withAdmin and hands fn every client.
func withDeclarative(cmd *cobra.Command, fn func(ctx context.Context, c declClients) error) error {
	a, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, declClients{AdminServiceClient: a, lists: hubv1.NewListServiceClient(cc), rooms: hubv1.NewRoomServiceClient(cc)})
}

// readCluster lists networks, policies, resource lists and rooms (without
// history) from the answering node.
func readCluster(ctx context.Context, c declClients) (*hubv1.ClusterState, error) {
	nr, err := c.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	pr, err := c.ListPolicies(ctx, &hubv1.ListPoliciesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	lr, err := c.lists.ListLists(ctx, &hubv1.ListListsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list resource lists: %w", err)
	}
	rr, err := c.rooms.ListRooms(ctx, &hubv1.ListRoomsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return &hubv1.ClusterState{Networks: nr.GetNetworks(), Policies: pr.GetPolicies(), Lists: lr.GetLists(), Rooms: rr.GetRooms()}, nil
}

func newApplyCmd() *cobra.Command {
	var (
		file     string
		dryRun   bool
		prune    bool
		exitCode bool
	)
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Make the cluster's networks, peering policy, resource lists and rooms match a document (from hubctl export)",
		Long: `Compare a document (as hubctl export writes it; -f - reads stdin) with the
cluster, print the difference ("+" added, "~" changed field by field, "-"
removed) and make the cluster match it through the admin API.

The whole file is checked before anything changes: unknown keys, bad
values and conflicts are reported with their YAML path (networks[1].domains[0])
and exit status 2. A key left out means its empty value (status: active).
The steps are replayed against a copy of the cluster state first, in the
order they are sent: suspensions, network additions and changes (a domain,
pin or prefix moving between networks is released before it is claimed),
shared views withdrawn, policy entries narrowed, then widened, shared
views granted (SetViewSharing, as policy allow --share-views), lists
created or replaced (one CreateList --replace per changed list:
subscribers see one new revision), resumptions, network removals, rooms
(create, lift bans, remove, add, roles, ban), list and room deletions
last. RoomService cannot change an
existing room's settings or a participant's nickname, invitation or
delivery: such an edit is refused before any call, naming its YAML path.
Each network change is conditional on the version read: a change made by
someone else in between fails with FailedPrecondition. apply stops at the
first refused call and lists what was applied and what was not; run it
again after checking.

Networks in the cluster but not in the file are kept, and so is every
policy entry naming them, unless --prune removes them. The same holds for
lists, rooms, and a room's participants and bans, when the document has a
lists: or rooms: key; a document without the key (one written before they
were exported) leaves every list or room as it is, even with --prune. A
policy rule without a share_views key (a file written before export
carried it) keeps the rule's shared view; --prune withdraws it, and
share_views: false withdraws it either way.

Exit status: 0 applied or nothing to do; 1 a call failed; 2 a bad command
line or file; with --dry-run --exit-code, 3 when there are differences.`,
		Example: `  hubctl export > membership.yaml
  $EDITOR membership.yaml
  hubctl apply -f membership.yaml --dry-run
  hubctl apply -f membership.yaml
  hubctl export | hubctl apply -f - --dry-run --exit-code   # 0: no drift`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("-f/--file: required (a file from hubctl export, or - for stdin)")
			}
			if exitCode && !dryRun {
				return usagef("--exit-code: only with --dry-run")
			}
			data, name, err := readDocument(cmd, file)
			if err != nil {
				return err
			}
			want, err := parseDocument(name, data)
			if err != nil {
				return &usageError{err: err}
			}
			return withDeclarative(cmd, func(ctx context.Context, c declClients) error {
				cs, err := readCluster(ctx, c)
				if err != nil {
					return err
				}
				pl, err := planCluster(cs, want, prune)
				if err != nil {
					return fmt.Errorf("%s: nothing changed: %w", name, err)
				}
				out := cmd.OutOrStdout()
				writeDiff(out, pl)
				if pl.empty() {
					return nil
				}
				if dryRun {
					fmt.Fprintln(out, "dry run: nothing changed")
					if exitCode {
						return exitStatus(exitDiffers)
					}
					return nil
				}
				return executePlan(ctx, c, pl, cs.GetNetworks(), out, cmd.ErrOrStderr())
			})
		},
	}
	fl := c.Flags()
	fl.StringVarP(&file, "file", "f", "", "document to apply (from hubctl export); - reads stdin")
	fl.BoolVar(&dryRun, "dry-run", false, "print the difference only; change nothing")
	fl.BoolVar(&prune, "prune", false, "remove networks (and their policy) and, when the file has the key, lists, rooms and room participants and bans that are in the cluster but not in the file")
	fl.BoolVar(&exitCode, "exit-code", false, "with --dry-run: exit 3 when the file and the cluster differ, 0 when not")
	return c
}

// readDocument reads FILE or stdin ("-"), at most maxDocumentBytes.
func readDocument(cmd *cobra.Command, file string) ([]byte, string, error) {
	var r io.Reader
	name := file
	if file == "-" {
		r, name = cmd.InOrStdin(), "stdin"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, "", usagef("-f: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDocumentBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", name, err)
	}
	return b, name, nil
}

// executePlan sends the steps in order and stops at the first refusal.
// read is the cluster as the plan saw it: a network's own status change
// must not look like someone else's to the conditional update after it.
func executePlan(ctx context.Context, c declClients, pl *plan, read []*hubv1.Network, out, errw io.Writer) error {
	version := map[string]int64{}
	readByID := map[string]*hubv1.Network{}
	for _, n := range read {
		version[n.GetId()] = n.GetUpdatedUnixNano()
		readByID[n.GetId()] = n
	}
	for i, s := range pl.steps {
		got, err := sendStep(ctx, c, s, version[s.id])
		if err == nil && s.kind == stepSuspend {
			// SuspendNetwork takes no version and moves updated_unix_nano:
			// carry the new one forward, unless the network changed in other
			// ways since it was read.
			if r := readByID[s.id]; r != nil && !sameConfig(r, got) {
				err = status.Errorf(codes.FailedPrecondition, "network %q changed since it was read; export or apply again", s.id)
			} else {
				version[s.id] = got.GetUpdatedUnixNano()
			}
		}
		if err != nil {
			fmt.Fprintf(out, "failed: %s: %s\n", s, describe(err))
			fmt.Fprintf(errw, "apply stopped: %d of %s applied", i, calls(len(pl.steps)))
			if i > 0 {
				fmt.Fprintf(errw, " (%s)", stepList(pl.steps[:i]))
			}
			fmt.Fprintf(errw, "; not applied: %s\n", stepList(pl.steps[i:]))
			return fmt.Errorf("%s: %w", s, err)
		}
		fmt.Fprintf(out, "applied: %s\n", s)
	}
	fmt.Fprintf(out, "applied %s\n", calls(len(pl.steps)))
	return nil
}

func stepList(steps []step) string {
	s := ""
	for i, st := range steps {
		if i > 0 {
			s += "; "
		}
		s += st.String()
	}
	return s
}

// sendStep sends one step; the network answered, if the RPC returns one.
func sendStep(ctx context.Context, c declClients, s step, version int64) (*hubv1.Network, error) {
	switch s.kind {
	case stepAdd:
		n, err := c.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: s.network})
		if err == nil && s.network.GetStatus() == hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED && n.GetStatus() != s.network.GetStatus() {
			// A hub that activates every new network: suspend it at once.
			return c.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: s.id})
		}
		return n, err
	case stepUpdate:
		return c.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: s.network, UpdateMask: s.mask, IfUpdatedUnixNano: version})
	case stepSuspend:
		return c.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: s.id})
	case stepResume:
		return c.ResumeNetwork(ctx, &hubv1.NetworkRef{Id: s.id})
	case stepRemove:
		_, err := c.RemoveNetwork(ctx, &hubv1.NetworkRef{Id: s.id})
		return nil, err
	case stepAllow:
		_, err := c.AllowPolicy(ctx, s.change)
		return nil, err
	case stepDeny:
		_, err := c.DenyPolicy(ctx, s.change)
		return nil, err
	case stepShareView, stepUnshareView:
		// The RPC policy allow --share-views sends.
		r, err := c.lists.SetViewSharing(ctx, s.share)
		if err == nil && r.GetShareViews() != s.share.GetShare() {
			err = status.Errorf(codes.FailedPrecondition, "the hub reports share_views %t for %s <- %s after the call; export and check the rule",
				r.GetShareViews(), s.share.GetDestination(), s.share.GetSource())
		}
		return nil, err
	case stepPutList:
		_, err := c.lists.CreateList(ctx, &hubv1.CreateListRequest{List: s.list, Replace: s.replace})
		return nil, err
	case stepDeleteList:
		_, err := c.lists.DeleteList(ctx, &hubv1.DeleteListRequest{Uri: s.id})
		return nil, err
	case stepCreateRoom:
		r := s.room
		_, err := c.rooms.CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: r.GetUri(), Subject: r.GetSubject(), Owner: r.GetOwner(),
			MembersOnly: r.GetMembersOnly(), Moderated: r.GetModerated(), MaxMembers: r.GetMaxMembers(), HistoryLen: r.GetHistoryLen(), Networks: r.GetNetworks()})
		return nil, err
	case stepDeleteRoom:
		_, err := c.rooms.DeleteRoom(ctx, &hubv1.RoomRef{Room: s.id})
		return nil, err
	case stepAddRoomMember:
		m := s.member
		_, err := c.rooms.AddRoomMember(ctx, &hubv1.AddRoomMemberRequest{Room: s.id, User: m.GetUser(), Nickname: m.GetNickname(), Role: m.GetRole(),
			Invite: !raft.Joined(m), Cpim: m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM})
		return nil, err
	case stepRemoveRoomMember:
		_, err := c.rooms.RemoveRoomMember(ctx, &hubv1.RemoveRoomMemberRequest{Room: s.id, User: s.user})
		return nil, err
	case stepSetRoomRole:
		_, err := c.rooms.SetRoomRole(ctx, &hubv1.SetRoomRoleRequest{Room: s.id, User: s.user, Role: s.role})
		return nil, err
	case stepBanRoom:
		_, err := c.rooms.BanRoom(ctx, &hubv1.BanRoomRequest{Room: s.id, Pattern: s.ban.GetPattern(), Reason: s.ban.GetReason()})
		return nil, err
	case stepUnbanRoom:
		_, err := c.rooms.UnbanRoom(ctx, &hubv1.UnbanRoomRequest{Room: s.id, Pattern: s.ban.GetPattern()})
		return nil, err
	case stepUpdateRoom:
		_, err := c.rooms.UpdateRoom(ctx, s.updateRoom)
		return nil, err
	case stepSetRoomMember:
		_, err := c.rooms.SetRoomMember(ctx, s.setMember)
		return nil, err
	}
	return nil, fmt.Errorf("unknown step %d", s.kind)
}

// sameConfig reports whether a and b differ at most in status and times.
func sameConfig(a, b *hubv1.Network) bool {
	ai, bi := a.GetIdentity(), b.GetIdentity()
	return a.GetId() == b.GetId() && a.GetDisplayName() == b.GetDisplayName() &&
		slices.Equal(a.GetDomains(), b.GetDomains()) && slices.Equal(a.GetEdges(), b.GetEdges()) &&
		slices.Equal(a.GetServices(), b.GetServices()) && a.GetKeepBodies() == b.GetKeepBodies() &&
		slices.Equal(ai.GetCaPem(), bi.GetCaPem()) && slices.Equal(ai.GetPins(), bi.GetPins()) &&
		slices.Equal(ai.GetCidrs(), bi.GetCidrs()) && slices.Equal(ai.GetTlsCidrs(), bi.GetTlsCidrs()) &&
		a.GetCreatedUnixNano() == b.GetCreatedUnixNano()
}
