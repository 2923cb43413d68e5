package chatroom

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"clearhub/proto/hubv1"
)

// BenchmarkFanout1000 is the time from the sender's 200 to the moment the
// last of 999 copies is handed to the Sender (the hub's Originate) in a
// 1,000-participant room spread over three networks, with each replicated
// progress record (one per 64 recipients) costing commitDelay — 0, and
// 2 ms as a loaded 3-node cluster. The transport to the member edges is
// not in it (the Sender answers at once).
func BenchmarkFanout1000(b *testing.B) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		b.Run(fmt.Sprintf("commit=%v", delay), func(b *testing.B) {
			e := newEnv(b, nil)
			e.store.must(b, &hubv1.AddNetwork{Network: testNet("c", false)})
			nets := []string{"a", "b", "c"}
			for i := range 997 {
				n := nets[i%3]
				e.store.must(b, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, MaxMembers: 1000, HistoryLen: 1000}}})
				e.store.must(b, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room,
					Member: &hubv1.RoomMember{User: fmt.Sprintf("sip:u%04d@%s.example", i, n), Network: n, Nickname: fmt.Sprintf("u%04d", i)}}})
			}
			e.store.mu.Lock()
			e.store.delay = delay
			e.store.mu.Unlock()
			var total time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				e.snd.mu.Lock()
				e.snd.sent = e.snd.sent[:0]
				e.snd.mu.Unlock()
				res := e.serve(msg(alice, room, "text/plain", fmt.Sprintf("m%d", i)), "a")
				if res.StatusCode != 200 {
					b.Fatal(res)
				}
				start := time.Now()
				for {
					e.snd.mu.Lock()
					n := len(e.snd.sent)
					e.snd.mu.Unlock()
					if n >= 999 {
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
				total += time.Since(start)
				for len(e.store.State().Room(room).GetFanouts()) > 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-last-copy")
		})
	}
}

// BenchmarkRoom200Sustained: 50 messages/s into a 200-participant room
// (9,950 deliveries/s) for b.N seconds with 1 ms per commit; every copy
// must reach the Sender (0 lost). Reports the delivery rate reached and
// the process CPU per delivery (the Sender answers at once: the SIP
// transactions are not in it).
func BenchmarkRoom200Sustained(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })
	e.store.must(b, &hubv1.Command_PutRoom{PutRoom: &hubv1.PutRoom{Room: &hubv1.Room{Uri: room, HistoryLen: 20}}})
	for i := range 197 {
		e.store.must(b, &hubv1.Command_PutRoomMember{PutRoomMember: &hubv1.PutRoomMember{Room: room,
			Member: &hubv1.RoomMember{User: fmt.Sprintf("sip:u%03d@b.example", i), Network: "b", Nickname: fmt.Sprintf("u%03d", i)}}})
	}
	e.store.mu.Lock()
	e.store.delay = time.Millisecond
	e.store.mu.Unlock()
	cpu0 := cpuTime()
	start := time.Now()
	sent := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range 50 {
			go func(k int) {
				if res := e.serve(msg(alice, room, "text/plain", fmt.Sprintf("m%d", k)), "a"); res.StatusCode != 200 {
					b.Error(res)
				}
			}(i*50 + j)
			time.Sleep(20 * time.Millisecond)
		}
		sent += 50
	}
	want := sent * 199
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.snd.mu.Lock()
		n := len(e.snd.sent)
		e.snd.mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			if n < want {
				b.Fatalf("%d of %d deliveries", n, want)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	b.ReportMetric(float64(want)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(want), "cpu-us/delivery")
	b.ReportMetric(0, "lost")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
