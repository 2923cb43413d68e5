package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "node_id: n7\nsip:\n  udp: 127.0.0.1:6060\nadmin:\n  addr: 127.0.0.1:7443\n")
	unknown := write("unknown.yaml", "node_id: n7\nsip:\n  udpp: 127.0.0.1:6060\n")
	badLevel := write("level.yaml", "log:\n  level: loud\n")
	cases := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.DataDir != "hub-data" || c.SIP.UDP != "127.0.0.1:5060" || c.SIP.TLS != "127.0.0.1:5061" || c.Admin.Addr != "127.0.0.1:9443" {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "file then flags", args: []string{"--config", good, "--admin", "127.0.0.1:8443"}, check: func(t *testing.T, c Config) {
			if c.NodeID != "n7" || c.SIP.UDP != "127.0.0.1:6060" || c.Admin.Addr != "127.0.0.1:8443" {
				t.Fatalf("merge: %+v", c)
			}
		}},
		{name: "empty disables", args: []string{"--sip-udp", "", "--http", ""}, check: func(t *testing.T, c Config) {
			if c.SIP.UDP != "" || c.HTTP.Addr != "" || c.SIP.TCP == "" {
				t.Fatalf("disable: %+v", c)
			}
		}},
		{name: "unknown key", args: []string{"--config", unknown}, wantErr: "udpp"},
		{name: "bad level", args: []string{"--config", badLevel}, wantErr: "log.level"},
		{name: "bad segment size", args: []string{"--config", write("seg.yaml", "ledger:\n  segment_size: 1000\n")}, wantErr: "ledger.segment_size"},
		{name: "ca cert without key", args: []string{"--config", write("tls1.yaml", "tls:\n  ca_cert: /x/ca.crt\n")}, wantErr: "tls.ca_key"},
		{name: "node cert without ca", args: []string{"--config", write("tls2.yaml", "tls:\n  cert: /x/n.crt\n  key: /x/n.key\n")}, wantErr: "tls.ca_cert"},
		{name: "bad bootstrap", args: []string{"--bootstrap", "sometimes"}, wantErr: "raft.bootstrap"},
		{name: "bad node id", args: []string{"--node-id", "Bad_ID"}, wantErr: "node_id"},
		{name: "bad address", args: []string{"--sip-tls", "nowhere"}, wantErr: "sip.tls"},
		{name: "unroutable raft", args: []string{"--raft", "0.0.0.0:9444"}, wantErr: "raft.advertise"},
		{name: "join without token", args: []string{"--join", "127.0.0.1:9443"}, wantErr: "join.token"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "nope.yaml")}, wantErr: "--config"},
		{name: "stray argument", args: []string{"run"}, wantErr: "unexpected argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, io.Discard)
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

// The sample config shipped for operators must parse and match the defaults.
func TestExampleConfigMatchesDefaults(t *testing.T) {
	c := DefaultConfig()
	if err := loadFile("../../ops/hubd.example.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if c != DefaultConfig() {
		t.Fatalf("ops/hubd.example.yaml differs from DefaultConfig:\n%+v\n%+v", c, DefaultConfig())
	}
}
