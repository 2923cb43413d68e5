package admin

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// series counts the clearhub_admin_requests_total series in reg.
func series(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "clearhub_admin_requests_total" {
			n += len(mf.GetMetric())
		}
	}
	return n
}

// Interception calls leave no per-method series (they would date warrant
// changes for anyone who reads the node's metrics); other calls do.
func TestMetricsSkipInterception(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observe("/clearhub.v1.InterceptService/PutWarrant", time.Now(), nil)
	if n := series(t, reg); n != 0 {
		t.Fatalf("%d series after an interception call, want 0", n)
	}
	m.observe("/clearhub.v1.AdminService/GetState", time.Now(), nil)
	if n := series(t, reg); n != 1 {
		t.Fatalf("%d series after GetState, want 1", n)
	}
}
