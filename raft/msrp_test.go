package raft

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func TestValidateNetworkMsrp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       *hubv1.MsrpSettings
		wantErr string
	}{
		{"none", nil, ""},
		{"limits", &hubv1.MsrpSettings{MaxFileSize: 1 << 20, BytesPerSecond: 1 << 16, MaxChunk: 4096}, ""},
		{"relay", &hubv1.MsrpSettings{RelayUri: "msrps://relay.b.example:2855;tcp", RelayUsername: "hub", RelayPassword: "x"}, ""},
		{"negative size", &hubv1.MsrpSettings{MaxFileSize: -1}, "max_file_size"},
		{"negative rate", &hubv1.MsrpSettings{BytesPerSecond: -5}, "bytes_per_second"},
		{"tiny chunk", &hubv1.MsrpSettings{MaxChunk: 10}, "max_chunk"},
		{"credentials without relay", &hubv1.MsrpSettings{RelayUsername: "hub"}, "relay_uri"},
		{"sip relay", &hubv1.MsrpSettings{RelayUri: "sip:relay.b.example"}, "relay_uri"},
		{"no transport", &hubv1.MsrpSettings{RelayUri: "msrp://relay.b.example:2855"}, "relay_uri"},
		{"quote in password", &hubv1.MsrpSettings{RelayUri: "msrp://r:1;tcp", RelayPassword: `a"b`}, "relay_password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNetwork("netb", "b.example")
			n.Msrp = tc.m
			err := ValidateNetwork(NormalizeNetwork(n))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The relay password is write-only: redacted copies never carry it, and
// an update or restore of a redacted copy keeps the stored one.
func TestMsrpPasswordWriteOnly(t *testing.T) {
	stored := NormalizeNetwork(testNetwork("netb", "b.example"))
	stored.Msrp = &hubv1.MsrpSettings{RelayUri: "msrp://r:1;tcp", RelayUsername: "hub", RelayPassword: "s3cret"}
	stored = NormalizeNetwork(stored)
	red := RedactNetwork(stored)
	if red.GetMsrp().GetRelayPassword() != "" || !red.GetMsrp().GetRelayPasswordSet() {
		t.Fatalf("redacted: %v", red.GetMsrp())
	}
	if stored.GetMsrp().GetRelayPassword() != "s3cret" {
		t.Fatal("RedactNetwork modified the stored network")
	}
	st := &hubv1.ClusterState{Networks: []*hubv1.Network{stored}}
	if strings.Contains(RedactState(st).String(), "s3cret") || !strings.Contains(st.String(), "s3cret") {
		t.Fatal("RedactState leaks or modifies")
	}
	for _, tc := range []struct {
		name string
		next func(n *hubv1.Network)
		want string
	}{
		{"same relay, no password: kept", func(n *hubv1.Network) {}, "s3cret"},
		{"new password: taken", func(n *hubv1.Network) { n.Msrp.RelayPassword = "new" }, "new"},
		{"other relay: dropped", func(n *hubv1.Network) { n.Msrp.RelayUri = "msrp://other:1;tcp" }, ""},
		{"other user: dropped", func(n *hubv1.Network) { n.Msrp.RelayUsername = "x" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := proto.Clone(red).(*hubv1.Network)
			tc.next(next)
			KeepMsrpPassword(stored, next)
			if got := next.GetMsrp().GetRelayPassword(); got != tc.want {
				t.Fatalf("password %q, want %q", got, tc.want)
			}
		})
	}
}
