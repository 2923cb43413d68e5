package chatroom

import (
	"fmt"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// BenchmarkRoomMemoryPerParticipant reports what one participant costs: the
// Go heap its record takes in the applied state (heap-B/participant, every
// node holds it), its bytes in a snapshot (snap-B/participant), and what
// one fan-out record carries per recipient while a message is being
// delivered (fanout-B/recipient). One 1,000-participant room, the
// participants joined one by one through the FSM as in production.
func BenchmarkRoomMemoryPerParticipant(b *testing.B) {
	const n = 1000
	for b.Loop() {
		build := func(members int) *raft.State {
			st := raft.Empty()
			apply := func(op any) {
				next, err := raft.ApplyTo(st, st.Index+1, cmdOf(op))
				if err != nil {
					b.Fatal(err)
				}
				st = next
			}
			apply(&hubv1.AddNetwork{Network: testNet("a", true)})
			apply(&hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Create: true, Room: &hubv1.Room{Uri: room, MaxMembers: n + 1}}})
			for i := range members {
				apply(&hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room,
					Member: &hubv1.RoomMember{User: fmt.Sprintf("sip:user%04d@a.example", i), Network: "a", Nickname: fmt.Sprintf("user%04d", i)}}})
			}
			return st
		}
		heap := func() uint64 {
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		heap()
		empty := build(0)
		h1 := heap()
		full := build(n)
		h2 := heap()
		per := (float64(h2) - float64(h1)) / n
		snap := float64(proto.Size(full.Room(room))-proto.Size(empty.Room(room))) / n
		post := &hubv1.PostRoomMessage{Room: room, Owner: "n1", Message: &hubv1.RoomMessage{Sender: "sip:user0000@a.example", ContentType: "text/plain", Body: []byte("hello")}}
		after, err := raft.ApplyTo(full, full.Index+1, cmdOf(&hubv1.Command_PostRoomMessage{PostRoomMessage: post}))
		if err != nil {
			b.Fatal(err)
		}
		fo := after.Room(room).GetFanouts()[0]
		b.ReportMetric(per, "heap-B/participant")
		b.ReportMetric(snap, "snap-B/participant")
		b.ReportMetric(float64(proto.Size(fo))/float64(len(fo.GetRecipients())), "fanout-B/recipient")
		runtime.KeepAlive(empty)
		runtime.KeepAlive(full)
	}
}
