package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Config file errors name the YAML key path and line, never a Go type.
func TestConfigErrorsNameTheKeyPath(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown nested key", "sip:\n  udpp: 127.0.0.1:6060\n", []string{"sip.udpp: unknown key", "line 2", "udp, tcp, tls"}},
		{"unknown top key", "nodeid: x\n", []string{"nodeid: unknown key", "line 1"}},
		{"bad duration", "sip:\n  transaction_timeout: soon\n", []string{"sip.transaction_timeout", `"soon"`, "90d", "line 2"}},
		{"bad number", "ledger:\n  checkpoint_every: many\n", []string{"ledger.checkpoint_every", "whole number"}},
		{"negative unsigned", "ledger:\n  segment_size: -1\n", []string{"ledger.segment_size", "not negative"}},
		{"bad bool", "ledger:\n  allow_broken_chain: perhaps\n", []string{"ledger.allow_broken_chain", "true or false"}},
		{"section given a value", "sip: 127.0.0.1:5060\n", []string{"sip: want a section of keys"}},
		{"value given a section", "sip:\n  udp:\n    port: 1\n", []string{"sip.udp: want a single value"}},
		{"list", "admin:\n  addr: [a, b]\n", []string{"admin.addr: want a single value, got a list"}},
		{"repeated key", "log:\n  level: info\n  level: debug\n", []string{"log.level: given twice", "line 2"}},
		{"not yaml", "sip: [\n", []string{"not valid YAML"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := decodeConfig([]byte(tc.yaml), &c)
			if err == nil {
				t.Fatalf("no error for %q", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "struct") || strings.Contains(err.Error(), "time.Duration") {
				t.Errorf("error %q names a Go type", err)
			}
		})
	}
}

func TestConfigDecodes(t *testing.T) {
	c := DefaultConfig()
	err := decodeConfig([]byte("node_id: n1\nsip:\n  hostname:\n  transaction_timeout: 2s\nledger:\n  retention: 90d\n  segment_size: 32\nhttp:\n  pprof: true\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "n1" || c.SIP.TransactionTimeout != 2*time.Second || c.Ledger.Retention != 90*24*time.Hour ||
		c.Ledger.SegmentSize != 32 || !c.HTTP.Pprof || c.SIP.UDP != DefaultConfig().SIP.UDP {
		t.Fatalf("decoded %+v", c)
	}
	empty := DefaultConfig()
	if err := decodeConfig(nil, &empty); err != nil || empty != DefaultConfig() {
		t.Fatalf("empty file: %v, %+v", err, empty)
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"0d", 0, true},
		{"4s", 4 * time.Second, true},
		{"1.5h", 90 * time.Minute, true},
		{"d", 0, false},
		{"", 0, false},
		{"1d-1h", 0, false},
		{"99999999999d", 0, false},
		{"5 days", 0, false},
	}
	for _, tc := range cases {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseDuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90d", "1d12h", "4s", "", "d", "1d-1h", "9223372036854775807d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err == nil && strings.HasSuffix(s, "d") && d < 0 {
			t.Fatalf("parseDuration(%q) = %v", s, d)
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	for _, s := range []string{"sip:\n  udp: x\n", "a: &x 1\nb: *x\n", "ledger:\n  retention: 9d\n", "- 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := DefaultConfig()
		_ = decodeConfig(b, &c) // must not panic
	})
}

// The command line: --version, --check-config, join tokens, usage once.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "node_id: n7\n", 0o644)
	noSIP := write("nosip.yaml", "sip:\n  udp: \"\"\n  tcp: \"\"\n  tls: \"\"\n", 0o644)
	bad := write("bad.yaml", "sip:\n  udpp: x\n", 0o644)
	tok := write("token", "chj1.abc\n", 0o600)
	emptyTok := write("empty-token", "\n", 0o600)
	cases := []struct {
		name     string
		args     []string
		wantErr  error // errors.Is
		errSub   string
		stdout   string
		stderr   string
		stderrN  int // how often stderr must contain "usage: hubd" (-1: don't care)
		tokenIs  string
		checkSeq bool
	}{
		{name: "version", args: []string{"--version"}, stdout: "hubd ", stderrN: 0},
		{name: "check ok", args: []string{"--check-config", good}, stdout: "configuration ok", stderrN: 0},
		{name: "check warns without SIP", args: []string{"--check-config", noSIP}, stdout: "warning: sip.udp, sip.tcp and sip.tls are all disabled", stderrN: 0},
		{name: "check invalid", args: []string{"--check-config", bad}, wantErr: errCheckFailed, stdout: "sip.udpp: unknown key", stderrN: 0},
		{name: "check missing file", args: []string{"--check-config", filepath.Join(dir, "nope")}, wantErr: errCheckFailed, stdout: "invalid", stderrN: 0},
		{name: "bad flag: usage once", args: []string{"--bogus"}, wantErr: errUsage, stderr: "flag provided but not defined", stderrN: 1},
		{name: "stray argument: usage once", args: []string{"run"}, wantErr: errUsage, stderr: "unexpected argument", stderrN: 1},
		{name: "empty join token", args: []string{"--join", "127.0.0.1:9443", "--join-token", ""}, wantErr: errUsage, stderr: "--join-token: the token is empty", stderrN: 1},
		{name: "join without token", args: []string{"--join", "127.0.0.1:9443"}, errSub: "join.token: required with join.addr", stderrN: 0},
		{name: "token without join", args: []string{"--join-token-file", tok}, errSub: "join.addr", stderrN: 0},
		{name: "token file", args: []string{"--join", "127.0.0.1:9443", "--join-token-file", tok, "--check-config", good}, stdout: "configuration ok", stderrN: 0},
		{name: "empty token file", args: []string{"--join", "127.0.0.1:9443", "--join-token-file", emptyTok}, errSub: "the file is empty", stderrN: 0},
		{name: "both token and file", args: []string{"--join", "127.0.0.1:9443", "--join-token", "x", "--join-token-file", tok}, errSub: "not both", stderrN: 0},
		{name: "missing token file", args: []string{"--join", "127.0.0.1:9443", "--join-token-file", filepath.Join(dir, "nope")}, errSub: "join.token_file", stderrN: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case tc.errSub != "" && (err == nil || !strings.Contains(err.Error(), tc.errSub)):
				t.Fatalf("err = %v, want mention of %q", err, tc.errSub)
			case tc.wantErr == nil && tc.errSub == "" && err != nil:
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
			if n := strings.Count(stderr.String(), "usage: hubd"); tc.stderrN >= 0 && n != tc.stderrN {
				t.Fatalf("usage printed %d times, want %d:\n%s", n, tc.stderrN, stderr.String())
			}
		})
	}
	// The token file's content lands in the config; the file name does not.
	c, err := parseConfig([]string{"--join", "127.0.0.1:9443", "--join-token-file", tok}, &bytes.Buffer{})
	if err != nil || c.Join.Token != "chj1.abc" || c.Join.TokenFile != "" {
		t.Fatalf("token file: %v, %+v", err, c.Join)
	}
}

// The admin gate: while restoring, state-reading calls wait (bounded) and
// then answer Unavailable with the progress; cluster status and non-admin
// services always pass; a removed node refuses at once.
func TestReadyGate(t *testing.T) {
	cases := []struct {
		name     string
		probe    fakeProbe
		method   string
		wantCode string // "" means allowed
	}{
		{"restored", fakeProbe{restored: true}, "/clearhub.v1.AdminService/ListNetworks", ""},
		{"restoring list", fakeProbe{applied: 3, target: 9}, "/clearhub.v1.AdminService/ListNetworks", "node not ready: restoring state (applied 3 of 9)"},
		{"restoring write", fakeProbe{applied: 3, target: 9}, "/clearhub.v1.AdminService/AddNetwork", "node not ready"},
		{"restoring status", fakeProbe{applied: 3, target: 9}, "/clearhub.v1.AdminService/ClusterStatus", ""},
		{"restoring forward", fakeProbe{applied: 3, target: 9}, "/clearhub.v1.ClusterInternal/Propose", ""},
		{"restoring join", fakeProbe{applied: 3, target: 9}, "/clearhub.v1.JoinService/Join", ""},
		{"removed", fakeProbe{restored: true, removed: true}, "/clearhub.v1.AdminService/GetNetwork", "node removed from the cluster"},
		{"restores while waiting", fakeProbe{applied: 3, target: 9, restoreAfter: 50 * time.Millisecond}, "/clearhub.v1.AdminService/ListPolicies", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			p := tc.probe
			err := readyGate{&p}.check(ctx, tc.method)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("check = %v, want allowed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantCode) || !strings.Contains(err.Error(), "Unavailable") {
				t.Fatalf("check = %v, want Unavailable %q", err, tc.wantCode)
			}
		})
	}
}

type fakeProbe struct {
	restored, removed bool
	applied, target   uint64
	restoreAfter      time.Duration
}

func (p *fakeProbe) Restored() bool                    { return p.restored }
func (p *fakeProbe) Removed() bool                     { return p.removed }
func (p *fakeProbe) RestoreProgress() (uint64, uint64) { return p.applied, p.target }
func (p *fakeProbe) WaitRestored(ctx context.Context) error {
	if p.restoreAfter > 0 {
		select {
		case <-time.After(p.restoreAfter):
			return nil
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	return ctx.Err()
}
