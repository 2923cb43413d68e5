package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clearhub/hub"
	"clearhub/proto/hubv1"
)

// sip.rate_limits and the overload limits: read from the file, refused
// out of range with the key named, and handed to the hub by class.
func TestRateLimitConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "set", yaml: "sip:\n  rate_limits:\n    im: {per_second: 100, burst: 200}\n    all: {per_second: 500}\n  max_transactions: 10\n  max_pending_appends: 5\n",
			check: func(t *testing.T, c Config) {
				got := c.SIP.RateLimits.hub()
				if got[hubv1.Service_SERVICE_IM] != (hub.Limit{PerSecond: 100, Burst: 200}) || got[hubv1.Service_SERVICE_UNSPECIFIED] != (hub.Limit{PerSecond: 500}) {
					t.Errorf("rate limits %v", got)
				}
				if got[hubv1.Service_SERVICE_FILE] != hub.DefaultRateLimits()[hubv1.Service_SERVICE_FILE] {
					t.Errorf("file %v, want the default kept", got[hubv1.Service_SERVICE_FILE])
				}
				if c.SIP.MaxTransactions != 10 || c.SIP.MaxPendingAppends != 5 {
					t.Errorf("overload limits %d %d", c.SIP.MaxTransactions, c.SIP.MaxPendingAppends)
				}
			}},
		{name: "defaults are the hub's", yaml: "", check: func(t *testing.T, c Config) {
			got, want := c.SIP.RateLimits.hub(), hub.DefaultRateLimits()
			for svc, l := range want {
				if got[svc] != l {
					t.Errorf("%v: %v, want %v", svc, got[svc], l)
				}
			}
		}},
		{name: "negative rate", yaml: "sip:\n  rate_limits:\n    im: {per_second: -1}\n", wantErr: "sip.rate_limits.im.per_second"},
		{name: "burst too big", yaml: "sip:\n  rate_limits:\n    file: {per_second: 1, burst: 10000001}\n", wantErr: "sip.rate_limits.file.burst"},
		{name: "unknown class", yaml: "sip:\n  rate_limits:\n    sms: {per_second: 1}\n", wantErr: "sip.rate_limits.sms"},
		{name: "zero max_transactions", yaml: "sip:\n  max_transactions: 0\n", wantErr: "sip.max_transactions"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := parseConfig([]string{"--config", p}, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want mention of %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
