package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// A network's own rate limits (what `network get -o yaml` shows) round-trip
// through the membership document: parsed, exported, diffed into one
// update with the rate_limits mask, and refused with the path when wrong.
func TestDocumentRateLimits(t *testing.T) {
	doc := docHeader + "networks:\n" + yamlNet("a", "rate_limits:\n  - {class: im, per_second: 100, burst: 200}\n  - {class: all, per_second: 2.5}")
	d, err := parseDocument("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := d.networks[0].GetRateLimits()
	want := []*hubv1.RateLimit{{Service: hubv1.Service_SERVICE_UNSPECIFIED, PerSecond: 2.5}, {Service: hubv1.Service_SERVICE_IM, PerSecond: 100, Burst: 200}}
	if len(got) != len(want) {
		t.Fatalf("rate limits %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("rate limit %d = %v, want %v", i, got[i], want[i])
		}
	}

	// Exported, the limits come back in the document.
	ex := exportDoc(d.networks, nil)
	if len(ex.Networks[0].RateLimits) != 2 || ex.Networks[0].RateLimits[1].Class != "im" {
		t.Fatalf("exported %+v", ex.Networks[0].RateLimits)
	}

	// The cluster has none: one update, with the rate_limits mask only.
	cur := proto.Clone(d.networks[0]).(*hubv1.Network)
	cur.RateLimits = nil
	p, err := makePlan([]*hubv1.Network{cur}, nil, d, false)
	if err != nil {
		t.Fatal(err)
	}
	var masks [][]string
	for _, s := range p.steps {
		if s.kind == stepUpdate {
			masks = append(masks, s.mask)
		}
	}
	if len(masks) != 1 || strings.Join(masks[0], ",") != "rate_limits" {
		t.Fatalf("update masks %v, want exactly [rate_limits]", masks)
	}
	// Equal limits: no change.
	if p, err := makePlan([]*hubv1.Network{d.networks[0]}, nil, d, false); err != nil || len(p.steps) != 0 {
		t.Fatalf("equal limits planned %v (%v)", p.steps, err)
	}

	for _, tc := range []struct{ extra, want string }{
		{"rate_limits:\n  - {class: video, per_second: 1}", "networks[0].rate_limits[0].class"},
		{"rate_limits:\n  - {class: im, per_second: fast}", "networks[0].rate_limits[0].per_second"},
		{"rate_limits:\n  - {class: im, per_second: 1, burst: 1.5}", "networks[0].rate_limits[0].burst"},
		{"rate_limits:\n  - {class: im, per_second: -1}", "networks[0].rate_limits[0].per_second"},
		{"rate_limits:\n  - {class: im, rate: 1}", "networks[0].rate_limits[0].rate"},
	} {
		_, err := parseDocument("f.yaml", []byte(docHeader+"networks:\n"+yamlNet("a", tc.extra)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one naming %s", tc.extra, err, tc.want)
		}
	}
}
