package msrp

import "testing"

// connGate: each cap refuses with its own reason, and releasing (bound or
// not) frees exactly what was taken.
func TestConnGate(t *testing.T) {
	type step struct {
		op   string // admit, bind, release-bound, release-pending
		ip   string
		ok   bool
		why  string
		note string
	}
	for _, tc := range []struct {
		name              string
		max, maxIP, maxPd int
		steps             []step
	}{
		{"pending per source", 10, 10, 2, []step{
			{op: "admit", ip: "a", ok: true}, {op: "admit", ip: "a", ok: true},
			{op: "admit", ip: "a", why: "per-source limit of connections without a session"},
			{op: "admit", ip: "b", ok: true, note: "another source is not affected"},
			{op: "bind", ip: "a"},
			{op: "admit", ip: "a", ok: true, note: "a bound connection no longer counts as pending"},
		}},
		{"total per source", 10, 2, 5, []step{
			{op: "admit", ip: "a", ok: true}, {op: "bind", ip: "a"},
			{op: "admit", ip: "a", ok: true}, {op: "bind", ip: "a"},
			{op: "admit", ip: "a", why: "per-source connection limit"},
			{op: "release-bound", ip: "a"},
			{op: "admit", ip: "a", ok: true},
		}},
		{"node total", 2, 5, 5, []step{
			{op: "admit", ip: "a", ok: true}, {op: "admit", ip: "b", ok: true},
			{op: "admit", ip: "c", why: "node connection limit"},
			{op: "release-pending", ip: "b"},
			{op: "admit", ip: "c", ok: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newConnGate(tc.max, tc.maxIP, tc.maxPd)
			for i, s := range tc.steps {
				switch s.op {
				case "admit":
					ok, why := g.admit(s.ip)
					if ok != s.ok || why != s.why {
						t.Fatalf("step %d (%s): admit(%s) = %v %q, want %v %q", i, s.note, s.ip, ok, why, s.ok, s.why)
					}
				case "bind":
					g.bound(s.ip)
				case "release-bound":
					g.release(s.ip, false)
				case "release-pending":
					g.release(s.ip, true)
				}
			}
		})
	}
	g := newConnGate(1, 1, 1)
	g.admit("a")
	g.release("a", true)
	if g.total != 0 || len(g.perIP) != 0 || len(g.pending) != 0 {
		t.Fatalf("gate not empty after release: %d %v %v", g.total, g.perIP, g.pending)
	}
}
