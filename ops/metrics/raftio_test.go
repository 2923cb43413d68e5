package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeContact struct {
	last   time.Time
	leader bool
}

func (f *fakeContact) LastContact() time.Time { return f.last }
func (f *fakeContact) IsLeader() bool         { return f.leader }

// The Raft timing metrics exist and move with what raft reports.
func TestRaftMetrics(t *testing.T) {
	m := NewRaftMetrics()
	src := &fakeContact{}
	reg := prometheus.NewRegistry()
	if err := m.Register(reg, src); err != nil {
		t.Fatal(err)
	}
	m.Commit(3 * time.Millisecond)
	m.FollowerContact(20 * time.Millisecond)
	m.FSMApply(time.Millisecond)
	m.Event("candidate")
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"clearhub_raft_commit_duration_seconds", nil, 1},
		{"clearhub_raft_leader_follower_contact_seconds", nil, 1},
		{"clearhub_raft_fsm_apply_duration_seconds", nil, 1},
		{"clearhub_raft_transitions_total", map[string]string{"event": "candidate"}, 1},
		{"clearhub_raft_transitions_total", map[string]string{"event": "leader"}, 0},
		{"clearhub_raft_last_contact_seconds", nil, -1},
	} {
		if s := scrape(t, reg, c.name, c.labels); !s.found || s.value != c.want {
			t.Errorf("%s%v = %+v, want %v", c.name, c.labels, s, c.want)
		}
	}
	src.last = time.Now().Add(-5 * time.Second)
	if v := scrape(t, reg, "clearhub_raft_last_contact_seconds", nil).value; v < 4.5 || v > 60 {
		t.Errorf("last contact %v, want about 5", v)
	}
	src.leader = true
	if v := scrape(t, reg, "clearhub_raft_last_contact_seconds", nil).value; v != 0 {
		t.Errorf("last contact on the leader %v, want 0", v)
	}
}
