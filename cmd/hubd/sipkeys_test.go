package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sip.audit_keepalives and sip.dialog_route_ttl reach the config (issue 9:
// hub.Config had them, hubd did not), with defaults equal to the hub's and
// errors naming the key.
func TestSIPKeepaliveAndRouteTTLKeys(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		yaml      string
		keepalive string
		ttl       time.Duration
		wantErr   string
	}{
		{"", "entries", 24 * time.Hour, ""},
		{"sip:\n  audit_keepalives: count\n", "count", 24 * time.Hour, ""},
		{"sip:\n  audit_keepalives: entries\n  dialog_route_ttl: 12h\n", "entries", 12 * time.Hour, ""},
		{"sip:\n  dialog_route_ttl: 2d\n", "entries", 48 * time.Hour, ""},
		{"sip:\n  audit_keepalives: none\n", "", 0, "sip.audit_keepalives"},
		{"sip:\n  dialog_route_ttl: 0s\n", "", 0, "sip.dialog_route_ttl"},
		{"sip:\n  dialog_route_ttl: -1h\n", "", 0, "sip.dialog_route_ttl"},
	} {
		p := filepath.Join(dir, "c"+string(rune('a'+i))+".yaml")
		if err := os.WriteFile(p, []byte("node_id: n1\n"+tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := parseConfig([]string{"--config", p}, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want one naming %s", tc.yaml, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if c.SIP.AuditKeepalives != tc.keepalive || c.SIP.DialogRouteTTL != tc.ttl {
			t.Errorf("%q: audit_keepalives %q dialog_route_ttl %s, want %q %s", tc.yaml, c.SIP.AuditKeepalives, c.SIP.DialogRouteTTL, tc.keepalive, tc.ttl)
		}
	}
}
