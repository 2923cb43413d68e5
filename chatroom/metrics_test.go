package chatroom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The rooms' series: registered, counting what the node did.
func TestRoomMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Registerer = reg })
	e.say(t, alice, "a", "one")
	waitFor(t, "fan-out finished", func() bool { return len(e.store.State().Room(room).GetFanouts()) == 0 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"clearhub_rooms_messages_posted_total/pager": 1, "clearhub_rooms_messages_posted_total/session": 0,
		"clearhub_rooms_deliveries_total/delivered": 2, "clearhub_rooms_deliveries_total/failed": 0,
		"clearhub_rooms_commit_seconds": 1, "clearhub_rooms_fanout_lag_seconds": 1,
		"clearhub_rooms_total": 1, "clearhub_rooms_participants": 3, "clearhub_rooms_fanouts_pending": 0, "clearhub_rooms_sessions": 0,
		"clearhub_rooms_private_messages_total": 0, "clearhub_rooms_session_accept_errors_total": 0,
		"clearhub_rooms_session_connections_open": 0, "clearhub_rooms_session_connections_refused_total/total": 0,
		"clearhub_rooms_session_connections_refused_total/per_source": 0, "clearhub_rooms_session_connections_refused_total/pending_per_source": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}
