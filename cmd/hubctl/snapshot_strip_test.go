package main

import (
	"testing"

	"clearhub/proto/hubv1"
)

// restore sends the membership only: queued messages and room history,
// which RestoreState ignores, are dropped after the digest check; the
// rooms' configuration, participants and bans and the lists stay.
func TestStripUnrestored(t *testing.T) {
	st := &hubv1.ClusterState{
		Queued: []*hubv1.QueuedMessage{{}},
		Rooms: []*hubv1.Room{{
			Uri: "sip:team@rooms.example", Subject: "Team", LastSeq: 7,
			Members: []*hubv1.RoomMember{{User: "sip:a@a.example"}}, Bans: []*hubv1.RoomBan{{Pattern: "network:b"}},
			History: []*hubv1.RoomMessage{{Seq: 7}}, Fanouts: []*hubv1.RoomFanout{{Seq: 7}},
		}},
		Lists: []*hubv1.ResourceList{{Uri: "sip:l@lists.example"}},
	}
	stripUnrestored(st)
	r := st.GetRooms()[0]
	if len(st.GetQueued()) != 0 || len(r.GetHistory()) != 0 || len(r.GetFanouts()) != 0 || r.GetLastSeq() != 0 {
		t.Errorf("not stripped: %v", st)
	}
	if r.GetSubject() != "Team" || len(r.GetMembers()) != 1 || len(r.GetBans()) != 1 || len(st.GetLists()) != 1 {
		t.Errorf("membership lost: %v", st)
	}
}
