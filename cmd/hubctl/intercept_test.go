package main

import (
	"strings"
	"testing"
	"time"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// Bad arguments are usage errors before anything is sent.
func TestInterceptAndCaptureUsage(t *testing.T) {
	env := newTestEnv(t, pki.RoleNode)
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"capture", "on"}, "give a network or --all"},
		{[]string{"capture", "off", "neta", "--all"}, "give a network or --all"},
		{[]string{"intercept", "warrant", "set", "w1", "--for", "1h"}, "exactly one of --user, --domain and --network"},
		{[]string{"intercept", "warrant", "set", "w1", "--user", "sip:a@b", "--network", "n"}, "exactly one of"},
		{[]string{"intercept", "warrant", "set", "w1", "--user", "sip:a@b"}, "give one of --end and --for"},
		{[]string{"intercept", "warrant", "set", "w1", "--user", "sip:a@b", "--end", "tomorrow"}, "--end"},
		{[]string{"intercept", "warrant", "set", "w1", "--user", "sip:a@b", "--for", "1h", "--deliver", "audio"}, `"audio" is not signalling`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, errOut, code := env.hubctl(t, tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want usage error with %q", code, errOut, tc.wantErr)
			}
		})
	}
}

func TestWarrantView(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	v := viewWarrant(&hubv1.Warrant{Id: "w1", Kind: hubv1.WarrantTargetKind_WARRANT_TARGET_USER, Target: "sip:alice@a.example",
		StartUnixNano: start.UnixNano(), EndUnixNano: start.Add(time.Hour).UnixNano(), Signalling: true, Msrp: true, Reference: "r"})
	if v.Kind != "user" || v.Start != "2026-12-01T00:00:00Z" || v.End != "2026-12-01T01:00:00Z" || strings.Join(v.Deliver, ",") != "signalling,msrp" {
		t.Fatalf("%+v", v)
	}
}
