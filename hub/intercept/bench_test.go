package intercept

import (
	"fmt"
	"testing"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// BenchmarkWants is the per-message cost the proxy pays: no warrant, and
// ten warrants none of which matches.
func BenchmarkWants(b *testing.B) {
	from, to := uri("sip:carol@c.example"), uri("sip:bob@b.example")
	var ws []*hubv1.Warrant
	for i := range 10 {
		w := warrant(fmt.Sprintf("w%d", i), hubv1.WarrantTargetKind_WARRANT_TARGET_USER, fmt.Sprintf("sip:u%d@a.example", i))
		w.StartUnixNano, w.EndUnixNano = 1, 1<<62
		ws = append(ws, w)
	}
	li := &Interceptor{}
	for _, tc := range []struct {
		name string
		st   *raft.State
	}{{"none", raft.Empty()}, {"ten", stateWith(ws, nil)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = li.Wants(tc.st, "netc", "netb", from, to)
			}
		})
	}
}
