package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func init() { registerCommand(newRoomCmd) }

func newRoomCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "room",
		Aliases: []string{"rooms"},
		Short:   "Manage the chat rooms the hub hosts",
		Long: `Chat rooms live under the hub's rooms domain (hubd --rooms-domain), e.g.
sip:team@rooms.hub.example; a bare name (team) is taken under the rooms domain
of the node you talk to. Users of member networks send MESSAGEs to the room
URI; every other participant gets a copy from the room. Participants join with
"#join" in a MESSAGE to the room, or are added here. docs/rooms.md has the
details (ordering, replication, what happens when a node dies).`,
	}
	c.AddCommand(newRoomCreateCmd(), newRoomGetCmd(), newRoomListCmd(), newRoomDeleteCmd(), newRoomAddCmd(),
		newRoomRemoveCmd(), newRoomRoleCmd(), newRoomBanCmd(), newRoomUnbanCmd(), newRoomHistoryCmd(),
		newRoomUpdateCmd(), newRoomMemberCmd())
	return c
}

// withRooms dials like withAdmin and hands fn a RoomService client.
func withRooms(cmd *cobra.Command, fn func(ctx context.Context, c hubv1.RoomServiceClient) error) error {
	_, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, hubv1.NewRoomServiceClient(cc))
}

func roleName(r hubv1.RoomRole) string {
	if r == hubv1.RoomRole_ROOM_ROLE_UNSPECIFIED {
		r = hubv1.RoomRole_ROOM_ROLE_MEMBER
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROOM_ROLE_"))
}

func parseRole(s string) (hubv1.RoomRole, error) {
	v, ok := hubv1.RoomRole_value["ROOM_ROLE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usagef("role %q: want owner, moderator, member or visitor", s)
	}
	return hubv1.RoomRole(v), nil
}

func roomFlags(r *hubv1.Room) string {
	var f []string
	if r.GetMembersOnly() {
		f = append(f, "members-only")
	} else {
		f = append(f, "public")
	}
	if r.GetModerated() {
		f = append(f, "moderated")
	}
	return strings.Join(f, ",")
}

func orDefault(v uint32, def int) string {
	if v == 0 {
		return strconv.Itoa(def) + " (default)"
	}
	return strconv.FormatUint(uint64(v), 10)
}

func printRoom(cmd *cobra.Command, r *hubv1.Room) error {
	return printOutput(cmd, r, func(w io.Writer) {
		row(w, "URI", r.GetUri())
		row(w, "SUBJECT", orDash(r.GetSubject()))
		row(w, "OWNER", orDash(r.GetOwner()))
		row(w, "KIND", roomFlags(r))
		row(w, "MAX MEMBERS", orDefault(r.GetMaxMembers(), 200))
		hist := orDefault(r.GetHistoryLen(), 20)
		if r.GetNoHistory() {
			hist = "0"
		}
		row(w, "HISTORY", hist)
		row(w, "NETWORKS", joinOrDash(r.GetNetworks()))
		row(w, "LAST SEQ", strconv.FormatUint(r.GetLastSeq(), 10))
		row(w, "PENDING FAN-OUTS", strconv.Itoa(len(r.GetFanouts())))
		row(w, "MEMBERS", strconv.Itoa(len(r.GetMembers())))
		for _, m := range r.GetMembers() {
			state := "joined"
			if m.GetState() == hubv1.RoomMemberState_ROOM_MEMBER_STATE_INVITED {
				state = "invited"
			}
			delivery := "plain"
			if m.GetDelivery() == hubv1.RoomDelivery_ROOM_DELIVERY_CPIM {
				delivery = "cpim"
			}
			row(w, "", m.GetNickname(), m.GetUser(), m.GetNetwork(), roleName(m.GetRole()), state, delivery)
		}
		for _, b := range r.GetBans() {
			row(w, "BAN", b.GetPattern(), orDash(b.GetReason()), orDash(b.GetBy()))
		}
	})
}

func newRoomCreateCmd() *cobra.Command {
	var req hubv1.CreateRoomRequest
	c := &cobra.Command{
		Use:   "create ROOM [--subject TEXT] [--owner USER] [--members-only] [--moderated] [--max-members N] [--history N] [--network ID]...",
		Short: "Create a room",
		Example: "  hubctl room create team --subject 'Team chat' --owner alice@a.example\n" +
			"  hubctl room create sip:ops@rooms.hub.example --members-only --network a --network b",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Room = args[0]
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.CreateRoom(ctx, &req)
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&req.Subject, "subject", "", "the room's subject")
	fl.StringVar(&req.Owner, "owner", "", "user made owner and first participant (user@domain)")
	fl.BoolVar(&req.MembersOnly, "members-only", false, "only invited or added users may join and watch the roster")
	fl.BoolVar(&req.Moderated, "moderated", false, "visitors may not speak")
	fl.Uint32Var(&req.MaxMembers, "max-members", 0, "participant limit (0: 200)")
	fl.Uint32Var(&req.HistoryLen, "history", 0, "messages kept and replayed on join (0: 20)")
	fl.StringArrayVar(&req.Networks, "network", nil, "member network whose users may take part (repeatable; none: every active one)")
	return c
}

func newRoomGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ROOM",
		Short: "Show a room, its participants and bans",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.GetRoom(ctx, &hubv1.RoomRef{Room: args[0]})
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
}

func newRoomListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the rooms",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				resp, err := c.ListRooms(ctx, &hubv1.ListRoomsRequest{})
				if err != nil {
					return err
				}
				return printOutput(cmd, resp, func(w io.Writer) {
					row(w, "URI", "KIND", "MEMBERS", "LAST SEQ", "SUBJECT")
					for _, r := range resp.GetRooms() {
						row(w, r.GetUri(), roomFlags(r), strconv.Itoa(len(r.GetMembers())), strconv.FormatUint(r.GetLastSeq(), 10), orDash(r.GetSubject()))
					}
				})
			})
		},
	}
}

func newRoomDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ROOM",
		Short: "Delete a room with its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				if _, err := c.DeleteRoom(ctx, &hubv1.RoomRef{Room: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted room %s\n", args[0])
				return nil
			})
		},
	}
}

func newRoomAddCmd() *cobra.Command {
	var (
		req  hubv1.AddRoomMemberRequest
		role string
	)
	c := &cobra.Command{
		Use:     "add ROOM USER [--nick NAME] [--role ROLE] [--invite] [--cpim]",
		Short:   "Add (or invite) a participant",
		Example: "  hubctl room add team bob@b.example --nick bob\n  hubctl room add team carol@b.example --invite --cpim",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Room, req.User = args[0], args[1]
			if role != "" {
				r, err := parseRole(role)
				if err != nil {
					return err
				}
				req.Role = r
			}
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.AddRoomMember(ctx, &req)
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&req.Nickname, "nick", "", "nickname in the room (default: the user part)")
	fl.StringVar(&role, "role", "", "owner, moderator, member (default) or visitor")
	fl.BoolVar(&req.Invite, "invite", false, "invite: the user answers #accept or #reject")
	fl.BoolVar(&req.Cpim, "cpim", false, "deliver as message/cpim (the client understands RFC 3862)")
	return c
}

func newRoomRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ROOM USER",
		Short: "Remove a participant",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.RemoveRoomMember(ctx, &hubv1.RemoveRoomMemberRequest{Room: args[0], User: args[1]})
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
}

func newRoomRoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "role ROOM USER ROLE",
		Short:   "Set a participant's role (owner, moderator, member, visitor)",
		Example: "  hubctl room role team bob@b.example moderator",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := parseRole(args[2])
			if err != nil {
				return err
			}
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.SetRoomRole(ctx, &hubv1.SetRoomRoleRequest{Room: args[0], User: args[1], Role: role})
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
}

func newRoomBanCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:     "ban ROOM PATTERN [--reason TEXT]",
		Short:   "Ban a user (user@domain), a domain (*@domain) or a network (network:ID)",
		Example: "  hubctl room ban team '*@spam.example' --reason spam\n  hubctl room ban team network:b",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.BanRoom(ctx, &hubv1.BanRoomRequest{Room: args[0], Pattern: args[1], Reason: reason})
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (kept with the ban)")
	return c
}

func newRoomUnbanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unban ROOM PATTERN",
		Short: "Lift a ban",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.UnbanRoom(ctx, &hubv1.UnbanRoomRequest{Room: args[0], Pattern: args[1]})
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
}

func newRoomHistoryCmd() *cobra.Command {
	var limit uint32
	c := &cobra.Command{
		Use:   "history ROOM [--limit N]",
		Short: "Show the messages the room keeps (oldest first)",
		Long: `The room keeps its last messages (its history length) in the replicated state.
Older ones are in the audit ledger: hubctl audit export, one chat entry per
room message with the room sequence in its reason.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				resp, err := c.RoomHistory(ctx, &hubv1.RoomHistoryRequest{Room: args[0], Limit: limit})
				if err != nil {
					return err
				}
				return printOutput(cmd, resp, func(w io.Writer) {
					row(w, "SEQ", "TIME", "NICK", "SENDER", "TYPE", "BODY")
					for _, m := range resp.GetMessages() {
						body := string(m.GetBody())
						if !strings.HasPrefix(m.GetContentType(), "text/") {
							body = fmt.Sprintf("(%d bytes)", len(m.GetBody()))
						}
						body = strings.ReplaceAll(strings.ReplaceAll(body, "\r", ""), "\n", " ")
						row(w, strconv.FormatUint(m.GetSeq(), 10), time.Unix(0, m.GetUnixNano()).UTC().Format(time.RFC3339),
							m.GetNickname(), m.GetSender(), m.GetContentType(), body)
					}
				})
			})
		},
	}
	c.Flags().Uint32Var(&limit, "limit", 0, "only the last N (0: all kept)")
	return c
}
