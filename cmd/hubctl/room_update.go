package main

import (
	"context"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// room update and room member set: only the flags given change anything
// (RoomService UpdateRoom / SetRoomMember send unset fields as absent).

func newRoomUpdateCmd() *cobra.Command {
	var (
		subject                string
		membersOnly, moderated bool
		maxMembers, historyLen uint32
		networks               []string
		allNetworks            bool
	)
	c := &cobra.Command{
		Use:   "update ROOM [--subject TEXT] [--members-only=BOOL] [--moderated=BOOL] [--max-members N] [--history N] [--network ID]... [--all-networks]",
		Short: "Change a room's settings (only the flags given)",
		Example: "  hubctl room update team --subject 'Release chat' --moderated\n" +
			"  hubctl room update team --members-only=false --history 50\n" +
			"  hubctl room update team --network a --network b   # only these networks' users\n" +
			"  hubctl room update team --all-networks            # every active network again",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			req := &hubv1.UpdateRoomRequest{Room: args[0]}
			if fl.Changed("subject") {
				req.Subject = proto.String(subject)
			}
			if fl.Changed("members-only") {
				req.MembersOnly = proto.Bool(membersOnly)
			}
			if fl.Changed("moderated") {
				req.Moderated = proto.Bool(moderated)
			}
			if fl.Changed("max-members") {
				req.MaxMembers = proto.Uint32(maxMembers)
			}
			if fl.Changed("history") {
				req.HistoryLen = proto.Uint32(historyLen)
			}
			switch {
			case allNetworks && len(networks) > 0:
				return usagef("--all-networks and --network exclude each other")
			case allNetworks || len(networks) > 0:
				req.SetNetworks, req.Networks = true, networks
			}
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.UpdateRoom(ctx, req)
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&subject, "subject", "", "the room's subject")
	fl.BoolVar(&membersOnly, "members-only", false, "only invited or added users may join and watch the roster")
	fl.BoolVar(&moderated, "moderated", false, "visitors may not speak")
	fl.Uint32Var(&maxMembers, "max-members", 0, "participant limit (0: 200)")
	fl.Uint32Var(&historyLen, "history", 0, "messages kept and replayed on join (0: none)")
	fl.StringArrayVar(&networks, "network", nil, "member network whose users may take part (repeatable; replaces the list)")
	fl.BoolVar(&allNetworks, "all-networks", false, "users of every active network may take part")
	return c
}

func newRoomMemberCmd() *cobra.Command {
	c := &cobra.Command{Use: "member", Short: "Change a room participant"}
	var (
		role, nick string
		cpim       bool
	)
	set := &cobra.Command{
		Use:   "set ROOM USER [--role R] [--nick NAME] [--cpim=BOOL]",
		Short: "Change a participant's role, nickname or delivery format (only the flags given)",
		Example: "  hubctl room member set team bob@b.example --nick bobby --role moderator\n" +
			"  hubctl room member set team bob@b.example --cpim=false",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			req := &hubv1.SetRoomMemberRequest{Room: args[0], User: args[1]}
			if fl.Changed("role") {
				r, err := parseRole(role)
				if err != nil {
					return err
				}
				req.Role = r.Enum()
			}
			if fl.Changed("nick") {
				req.Nickname = proto.String(nick)
			}
			if fl.Changed("cpim") {
				req.Cpim = proto.Bool(cpim)
			}
			return withRooms(cmd, func(ctx context.Context, c hubv1.RoomServiceClient) error {
				r, err := c.SetRoomMember(ctx, req)
				if err != nil {
					return err
				}
				return printRoom(cmd, r)
			})
		},
	}
	fl := set.Flags()
	fl.StringVar(&role, "role", "", "owner, moderator, member or visitor")
	fl.StringVar(&nick, "nick", "", "nickname, unique in the room")
	fl.BoolVar(&cpim, "cpim", false, "deliver as message/cpim (false: text/plain)")
	c.AddCommand(set)
	return c
}
