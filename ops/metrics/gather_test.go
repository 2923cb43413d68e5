package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// sample is one scraped series: its value (a histogram's sample count).
type sample struct {
	value float64
	found bool
}

// scrape gathers reg and returns the series name{labels} (labels it does
// not name are ignored; several matches are summed).
func scrape(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var s sample
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			s.found = true
			switch {
			case m.Counter != nil:
				s.value += m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value += m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value += float64(m.GetHistogram().GetSampleCount())
			case m.Untyped != nil:
				s.value += m.GetUntyped().GetValue()
			}
		}
	}
	return s
}
