package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConsoleAddresses(t *testing.T) {
	for _, tc := range []struct{ listen, link, dial string }{
		{"127.0.0.1:8443", "127.0.0.1:8443", "127.0.0.1:8443"},
		{"0.0.0.0:8443", "localhost:8443", "127.0.0.1:8443"},
		{"[::]:8443", "localhost:8443", "127.0.0.1:8443"},
		{":8443", "localhost:8443", "127.0.0.1:8443"},
		{"hub.example:8443", "hub.example:8443", "hub.example:8443"},
	} {
		if got := consoleHost(tc.listen); got != tc.link {
			t.Errorf("consoleHost(%q) = %q, want %q", tc.listen, got, tc.link)
		}
		if got := loopbackAddr(tc.listen); got != tc.dial {
			t.Errorf("loopbackAddr(%q) = %q, want %q", tc.listen, got, tc.dial)
		}
	}
}

// The banner names the console and its bootstrap link; a console address
// already taken (a second node on the host) leaves the node serving, and
// the banner says the console is off.
func TestConsoleBannerAndTakenAddress(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taken bool
		want  []string
	}{
		{"served", false, []string{"console (HTTPS)    https://127.0.0.1:", "/login?token=", "hubctl console login"}},
		{"address taken", true, []string{"console            off: listen tcp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = "", "", ""
			cfg.Admin.Addr, cfg.Raft.Addr, cfg.HTTP.Addr = freePort(t), freePort(t), ""
			cfg.Console.Addr = freePort(t)
			if tc.taken {
				l, err := net.Listen("tcp", cfg.Console.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			n, err := start(ctx, cfg, slog.New(slog.DiscardHandler), new(slog.LevelVar))
			if err != nil {
				t.Fatal(err)
			}
			defer n.shutdown()
			var b bytes.Buffer
			n.printBanner(&b)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("banner lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
