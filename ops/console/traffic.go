package console

import (
	"math"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Metric families the traffic page reads from the node's registry (hub
// package: metrics.go and edgehealth.go).
const (
	mRequests = "clearhub_sip_requests_total"                // method, src, dst, status
	mPairLat  = "clearhub_sip_network_pair_duration_seconds" // src, dst
	mRefusals = "clearhub_sip_refusals_total"                // reason, status
	mEdges    = "clearhub_sip_edge_attempts_total"           // network, edge, outcome
	mShed     = "clearhub_sip_shed_total"
)

// memberTraffic is one member network's traffic through this node since
// it started, and its rate over the last interval.
type memberTraffic struct {
	Network      string  `json:"network"`
	Sent         float64 `json:"sent"`     // requests it sent (source)
	Received     float64 `json:"received"` // requests toward it (destination)
	SentRate     float64 `json:"sent_rate"`
	ReceivedRate float64 `json:"received_rate"`
	// Refused counts its requests answered with a final status >= 300,
	// by status (the hub's refusals and its peers' alike).
	Refused         float64            `json:"refused"`
	RefusedByStatus map[string]float64 `json:"refused_by_status"`
	Messages        float64            `json:"messages"` // MESSAGE requests it sent
	// Latency of its requests from receipt to final response, toward any
	// member (network_pair_duration_seconds): mean and the upper bound of
	// the bucket holding the 95th percentile.
	LatencyMeanMS float64 `json:"latency_mean_ms"`
	LatencyP95MS  float64 `json:"latency_p95_ms"`
}

type edgeHealth struct {
	Network  string             `json:"network"`
	Edge     string             `json:"edge"`
	Outcomes map[string]float64 `json:"outcomes"` // answered, 503, timeout, transport_error
}

type trafficSnapshot struct {
	Time     time.Time          `json:"time"`
	Interval float64            `json:"interval_seconds"`
	Networks []*memberTraffic   `json:"networks"`
	Refusals map[string]float64 `json:"refusals_by_reason"` // hub refusals, all members
	Shed     float64            `json:"shed"`
	Edges    []edgeHealth       `json:"edges"`
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// traffic reads the registry now; rates are against prev (nil: none).
func (s *Server) traffic(prev *trafficSnapshot) *trafficSnapshot {
	snap := &trafficSnapshot{Time: s.now(), Refusals: map[string]float64{}}
	if s.opts.Gatherer == nil {
		return snap
	}
	fams, err := s.opts.Gatherer.Gather()
	if err != nil {
		s.log.Debug("console: gather metrics", "err", err)
	}
	nets := map[string]*memberTraffic{}
	get := func(id string) *memberTraffic {
		if id == "" {
			id = "(unattributed)"
		}
		t := nets[id]
		if t == nil {
			t = &memberTraffic{Network: id, RefusedByStatus: map[string]float64{}}
			nets[id] = t
		}
		return t
	}
	type hist struct {
		count, sum float64
		buckets    map[float64]float64
	}
	lat := map[string]*hist{}
	edges := map[[2]string]*edgeHealth{}
	for _, f := range fams {
		switch f.GetName() {
		case mRequests:
			for _, m := range f.GetMetric() {
				v := m.GetCounter().GetValue()
				src, dst := get(label(m, "src")), label(m, "dst")
				src.Sent += v
				if label(m, "method") == "MESSAGE" {
					src.Messages += v
				}
				if dst != "" {
					get(dst).Received += v
				}
				if code, err := strconv.Atoi(label(m, "status")); err == nil && code >= 300 {
					src.Refused += v
					src.RefusedByStatus[label(m, "status")] += v
				}
			}
		case mPairLat:
			for _, m := range f.GetMetric() {
				src := label(m, "src")
				h := lat[src]
				if h == nil {
					h = &hist{buckets: map[float64]float64{}}
					lat[src] = h
				}
				hg := m.GetHistogram()
				h.count += float64(hg.GetSampleCount())
				h.sum += hg.GetSampleSum()
				for _, b := range hg.GetBucket() {
					h.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
		case mRefusals:
			for _, m := range f.GetMetric() {
				snap.Refusals[label(m, "reason")] += m.GetCounter().GetValue()
			}
		case mShed:
			for _, m := range f.GetMetric() {
				snap.Shed += m.GetCounter().GetValue()
			}
		case mEdges:
			for _, m := range f.GetMetric() {
				k := [2]string{label(m, "network"), label(m, "edge")}
				e := edges[k]
				if e == nil {
					e = &edgeHealth{Network: k[0], Edge: k[1], Outcomes: map[string]float64{}}
					edges[k] = e
				}
				e.Outcomes[label(m, "outcome")] += m.GetCounter().GetValue()
			}
		}
	}
	for src, h := range lat {
		t := get(src)
		if h.count == 0 {
			continue
		}
		t.LatencyMeanMS = h.sum / h.count * 1000
		bounds := make([]float64, 0, len(h.buckets))
		for b := range h.buckets {
			bounds = append(bounds, b)
		}
		sort.Float64s(bounds)
		for _, b := range bounds {
			if h.buckets[b] >= 0.95*h.count {
				if !math.IsInf(b, 1) {
					t.LatencyP95MS = b * 1000
				}
				break
			}
		}
	}
	var before map[string]*memberTraffic
	if prev != nil {
		snap.Interval = snap.Time.Sub(prev.Time).Seconds()
		before = map[string]*memberTraffic{}
		for _, t := range prev.Networks {
			before[t.Network] = t
		}
	}
	for _, t := range nets {
		if p := before[t.Network]; p != nil && snap.Interval > 0 {
			t.SentRate = math.Max(0, (t.Sent-p.Sent)/snap.Interval)
			t.ReceivedRate = math.Max(0, (t.Received-p.Received)/snap.Interval)
		}
		snap.Networks = append(snap.Networks, t)
	}
	sort.Slice(snap.Networks, func(i, j int) bool { return snap.Networks[i].Network < snap.Networks[j].Network })
	for _, e := range edges {
		snap.Edges = append(snap.Edges, *e)
	}
	sort.Slice(snap.Edges, func(i, j int) bool {
		if snap.Edges[i].Network != snap.Edges[j].Network {
			return snap.Edges[i].Network < snap.Edges[j].Network
		}
		return snap.Edges[i].Edge < snap.Edges[j].Edge
	})
	return snap
}
