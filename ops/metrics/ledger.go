package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
)

// ScrubSource is what the ledger scrub gauges read (*ledger.Ledger).
type ScrubSource interface {
	ScrubStatus() ledger.ScrubStatus
}

// RegisterLedgerScrub adds the audit ledger scrub's progress and last
// result, read at scrape time. Alert on clearhub_ledger_scrub_last_ok == 0
// (a pass found a broken chain: the log names the seq) and on
// clearhub_ledger_scrub_last_finished_seconds falling far behind.
func RegisterLedgerScrub(reg prometheus.Registerer, src ScrubSource) error {
	last := func(f func(*ledger.ScrubResult) float64) func(ledger.ScrubStatus) float64 {
		return func(s ledger.ScrubStatus) float64 {
			if s.Last == nil {
				return 0
			}
			return f(s.Last)
		}
	}
	gauge := func(name, help string, f func(ledger.ScrubStatus) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "ledger_scrub", Name: name, Help: help},
			func() float64 { return f(src.ScrubStatus()) })
	}
	counter := func(name, help string, f func(ledger.ScrubStatus) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "ledger_scrub", Name: name, Help: help},
			func() float64 { return f(src.ScrubStatus()) })
	}
	for _, c := range []prometheus.Collector{
		gauge("position", "Next entry seq the background scrub checks.", func(s ledger.ScrubStatus) float64 { return float64(s.Position) }),
		counter("entries_checked_total", "Entries re-verified by scrub passes (background and on demand).", func(s ledger.ScrubStatus) float64 { return float64(s.EntriesChecked) }),
		counter("tree_nodes_checked_total", "Stored Merkle nodes re-computed by scrub passes.", func(s ledger.ScrubStatus) float64 { return float64(s.TreeNodesChecked) }),
		counter("passes_total", "Finished scrub passes.", func(s ledger.ScrubStatus) float64 { return float64(s.Passes) }),
		counter("failed_passes_total", "Scrub passes that found a broken chain or tree.", func(s ledger.ScrubStatus) float64 { return float64(s.FailedPasses) }),
		gauge("last_ok", "1 when the newest finished pass verified everything, 0 when it found a break (or none finished yet).",
			last(func(r *ledger.ScrubResult) float64 { return b2f(r.OK) })),
		gauge("last_first_bad_seq", "First broken entry seq the newest pass found (0: none).",
			last(func(r *ledger.ScrubResult) float64 { return float64(r.FirstBadSeq) })),
		gauge("last_finished_seconds", "Unix time the newest pass finished (0: none yet).",
			last(func(r *ledger.ScrubResult) float64 { return float64(r.Finished.UnixNano()) / 1e9 })),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register ledger scrub metrics: %w", err)
		}
	}
	return nil
}
