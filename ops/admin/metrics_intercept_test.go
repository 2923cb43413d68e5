package admin

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Interception calls leave no per-method series (they would date warrant
// changes for anyone who reads the node's metrics); other calls do.
func TestMetricsSkipInterception(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observe("/clearhub.v1.InterceptService/PutWarrant", time.Now(), nil)
	if n := testutil.CollectAndCount(m.requests); n != 0 {
		t.Fatalf("%d series after an interception call, want 0", n)
	}
	m.observe("/clearhub.v1.AdminService/GetState", time.Now(), nil)
	if n := testutil.CollectAndCount(m.requests); n != 1 {
		t.Fatalf("%d series after GetState, want 1", n)
	}
}
