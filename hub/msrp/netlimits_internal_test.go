package msrp

import "testing"

// ConnGate: each cap refuses with its own reason, and releasing (bound or
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
			g := NewConnGate(tc.max, tc.maxIP, tc.maxPd)
			for i, s := range tc.steps {
				switch s.op {
				case "admit":
					ok, why := g.Admit(s.ip)
					if ok != s.ok || why != s.why {
						t.Fatalf("step %d (%s): admit(%s) = %v %q, want %v %q", i, s.note, s.ip, ok, why, s.ok, s.why)
					}
				case "bind":
					g.Bound(s.ip)
				case "release-bound":
					g.Release(s.ip, false)
				case "release-pending":
					g.Release(s.ip, true)
				}
			}
		})
	}
	g := NewConnGate(1, 1, 1)
	g.Admit("a")
	if total, fromIP, pending := g.Open("a"); total != 1 || fromIP != 1 || pending != 1 {
		t.Fatalf("Open after one admit = %d %d %d, want 1 1 1", total, fromIP, pending)
	}
	if ok, _ := g.Admit("b"); ok || g.Refused() != 1 {
		t.Fatalf("second admit over the total cap: ok %v, refused %d", ok, g.Refused())
	}
	g.Release("a", true)
	if g.total != 0 || len(g.perIP) != 0 || len(g.pending) != 0 {
		t.Fatalf("gate not empty after release: %d %v %v", g.total, g.perIP, g.pending)
	}
}
