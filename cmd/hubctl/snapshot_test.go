package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func sampleState() *hubv1.ClusterState {
	return &hubv1.ClusterState{
		Networks: []*hubv1.Network{sampleNetwork("a"), sampleNetwork("b")},
		Policies: []*hubv1.Policy{{Destination: "a", Rules: []*hubv1.PolicyRule{{Source: "b", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}}}},
		Nodes:    []*hubv1.Node{{Id: "n1", RaftAddr: "127.0.0.1:7000"}},
	}
}

// A saved file decodes to the same state; what is not a snapshot, or was
// damaged or edited, is refused with the reason.
func TestSnapshotFileRoundTrip(t *testing.T) {
	st := sampleState()
	b, err := encodeSnapshot(st, strings.Repeat("ab", 32), 42, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	f, got, err := decodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, st) || f.RaftIndex != 42 || f.Networks != 2 || f.Policies != 1 || f.Created != "2023-11-14T22:13:20Z" {
		t.Fatalf("round trip: %+v %v", f, got)
	}
	cases := []struct {
		name, data, inErr string
	}{
		{"empty", "", "not a state snapshot"},
		{"not json", "clearhub", "not a state snapshot"},
		{"other format", `{"format":"x/1","state":{}}`, `format "x/1"`},
		{"no state", `{"format":"` + snapshotFormat + `"}`, "no state"},
		{"bad state", `{"format":"` + snapshotFormat + `","state":{"networks":7}}`, "state:"},
		{"edited", strings.Replace(string(b), `"Net a"`, `"Net z"`, 1), "state_sha256 mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeSnapshot([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("decode = %v, want an error naming %q", err, tc.inErr)
			}
		})
	}
}

// Whatever a file holds, decoding answers with a state or an error.
func FuzzDecodeSnapshot(f *testing.F) {
	b, _ := encodeSnapshot(sampleState(), "00", 1, time.Unix(0, 0))
	f.Add(b)
	f.Add([]byte(`{"format":"` + snapshotFormat + `","state":{}}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, st, err := decodeSnapshot(data)
		if err == nil && st == nil {
			t.Fatal("no error and no state")
		}
	})
}
