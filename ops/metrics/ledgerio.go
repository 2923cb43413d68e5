package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ledger"
)

// latencyBuckets suit a durable append: fdatasync is ~0.3 ms on a good
// disk, a group commit a few ms, and anything near a second is an outage.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// LedgerMetrics receives the ledger's measurements (it implements
// ledger.Metrics and ledger.LatencyMetrics): pass it as Options.Metrics,
// then Register it with the opened ledger.
type LedgerMetrics struct {
	appendLat   prometheus.Histogram
	appendErrs  prometheus.Counter
	syncLat     prometheus.Histogram
	commitLat   prometheus.Histogram
	commitErrs  prometheus.Counter
	checkpoints prometheus.Counter
}

// NewLedgerMetrics makes the ledger's histograms and counters, unregistered.
func NewLedgerMetrics() *LedgerMetrics {
	o := func(name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: "clearhub", Subsystem: "ledger", Name: name, Help: help, Buckets: latencyBuckets}
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "clearhub", Subsystem: "ledger", Name: name, Help: help})
	}
	return &LedgerMetrics{
		appendLat: prometheus.NewHistogram(o("append_duration_seconds",
			"Time one audit append waited until its entry was durable (the time a SIP request waits for its audit entry before it is forwarded).")),
		appendErrs: c("append_errors_total", "Audit appends that failed (the SIP request was refused with 500)."),
		syncLat:    prometheus.NewHistogram(o("wal_fsync_duration_seconds", "Duration of one fdatasync of the ledger's write-ahead log.")),
		commitLat: prometheus.NewHistogram(o("group_commit_duration_seconds",
			"Duration of one group commit (WAL write and fdatasync of a batch of entries); its count is the number of commits.")),
		commitErrs:  c("commit_errors_total", "Group commits that failed (their entries were refused)."),
		checkpoints: c("checkpoints_total", "Checkpoints signed since start."),
	}
}

// Committed implements ledger.Metrics.
func (m *LedgerMetrics) Committed(n int, d time.Duration, err error) {
	m.commitLat.Observe(d.Seconds())
	if err != nil {
		m.commitErrs.Inc()
	}
}

// Checkpointed implements ledger.Metrics.
func (m *LedgerMetrics) Checkpointed(uint64) { m.checkpoints.Inc() }

// Appended implements ledger.LatencyMetrics.
func (m *LedgerMetrics) Appended(d time.Duration, err error) {
	m.appendLat.Observe(d.Seconds())
	if err != nil {
		m.appendErrs.Inc()
	}
}

// Synced implements ledger.LatencyMetrics.
func (m *LedgerMetrics) Synced(d time.Duration) { m.syncLat.Observe(d.Seconds()) }

// LedgerSource is what the ledger gauges read (*ledger.Ledger).
type LedgerSource interface {
	Stats() ledger.Stats
}

// Register adds m's histograms and counters and the gauges read from src
// at scrape time (one Stats call per scrape). Alert on
// clearhub_ledger_append_duration_seconds p99, on WAL fsyncs slower than a
// few ms, on clearhub_ledger_wal_bytes growing without bound (bbolt fell
// behind) and on time() - clearhub_ledger_last_checkpoint_timestamp_seconds
// with clearhub_ledger_unsigned_entries above zero (signing stalled).
func (m *LedgerMetrics) Register(reg prometheus.Registerer, src LedgerSource) error {
	for _, c := range []prometheus.Collector{m.appendLat, m.appendErrs, m.syncLat, m.commitLat, m.commitErrs, m.checkpoints, ledgerStatsCollector{src}} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register ledger metrics: %w", err)
		}
	}
	return nil
}

var (
	descEntriesAppended = prometheus.NewDesc("clearhub_ledger_entries_appended_total", "Audit entries made durable since start.", nil, nil)
	descBytesAppended   = prometheus.NewDesc("clearhub_ledger_bytes_appended_total", "Bytes of canonical audit records made durable since start.", nil, nil)
	descEntries         = prometheus.NewDesc("clearhub_ledger_entries", "Durable entries in this node's ledger (the Merkle tree size).", nil, nil)
	descUnsigned        = prometheus.NewDesc("clearhub_ledger_unsigned_entries", "Durable entries not yet covered by a signed checkpoint.", nil, nil)
	descWALBytes        = prometheus.NewDesc("clearhub_ledger_wal_bytes", "Size on disk of the ledger's write-ahead log files (spare included).", nil, nil)
	descLastCkpt        = prometheus.NewDesc("clearhub_ledger_last_checkpoint_timestamp_seconds",
		"Unix time this process last signed a checkpoint (0: none since start; the stored notes carry no time).", nil, nil)
)

// ledgerStatsCollector reads one ledger.Stats per scrape.
type ledgerStatsCollector struct{ src LedgerSource }

func (c ledgerStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntriesAppended, descBytesAppended, descEntries, descUnsigned, descWALBytes, descLastCkpt} {
		ch <- d
	}
}

func (c ledgerStatsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	var last float64
	if !s.LastCheckpoint.IsZero() {
		last = float64(s.LastCheckpoint.UnixNano()) / 1e9
	}
	unsigned := uint64(0)
	if s.Size > s.CheckpointSize {
		unsigned = s.Size - s.CheckpointSize
	}
	ch <- prometheus.MustNewConstMetric(descEntriesAppended, prometheus.CounterValue, float64(s.EntriesAppended))
	ch <- prometheus.MustNewConstMetric(descBytesAppended, prometheus.CounterValue, float64(s.BytesAppended))
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(s.Size))
	ch <- prometheus.MustNewConstMetric(descUnsigned, prometheus.GaugeValue, float64(unsigned))
	ch <- prometheus.MustNewConstMetric(descWALBytes, prometheus.GaugeValue, float64(s.WALBytes))
	ch <- prometheus.MustNewConstMetric(descLastCkpt, prometheus.GaugeValue, last)
}
