package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clearhub/chatroom"
)

// rooms.session_*: parsed from the file, validated naming the key, and
// handed to the focus as its listener and connection caps.
func TestRoomsSessionConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		wantErr string // "" valid
		want    chatroom.Config
	}{
		{name: "defaults: session mode off", want: chatroom.Config{SessionMaxConns: 16384, SessionMaxConnsPerIP: 4096,
			SessionMaxPendingPerIP: 16, SessionFirstFrameTimeout: 10 * time.Second}},
		{name: "caps set", yaml: "sip:\n  hostname: hub.example\nrooms:\n  session_listen: 127.0.0.1:2857\n  session_max_connections: 100\n" +
			"  session_max_connections_per_source: 10\n  session_max_pending_per_source: 2\n  session_first_frame_timeout: 3s\n",
			want: chatroom.Config{SessionAddr: "127.0.0.1:2857", SessionHost: "hub.example", SessionMaxConns: 100, SessionMaxConnsPerIP: 10,
				SessionMaxPendingPerIP: 2, SessionFirstFrameTimeout: 3 * time.Second}},
		{name: "zero takes the focus's default", yaml: "rooms:\n  session_max_pending_per_source: 0\n",
			want: chatroom.Config{SessionMaxConns: 16384, SessionMaxConnsPerIP: 4096, SessionFirstFrameTimeout: 10 * time.Second}},
		{name: "negative total", yaml: "rooms:\n  session_max_connections: -1\n", wantErr: "rooms.session_max_connections -1: must not be negative"},
		{name: "negative per source", yaml: "rooms:\n  session_max_connections_per_source: -5\n", wantErr: "rooms.session_max_connections_per_source -5"},
		{name: "negative pending", yaml: "rooms:\n  session_max_pending_per_source: -1\n", wantErr: "rooms.session_max_pending_per_source -1"},
		{name: "negative first frame", yaml: "rooms:\n  session_first_frame_timeout: -1s\n", wantErr: "rooms.session_first_frame_timeout -1s"},
		{name: "not a number", yaml: "rooms:\n  session_max_connections: lots\n", wantErr: "rooms.session_max_connections"},
		{name: "misspelt key", yaml: "rooms:\n  session_max_conections: 5\n", wantErr: "rooms.session_max_conections: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hubd.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := parseConfig([]string{"--config", p}, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want mention of %q", err, tc.wantErr)
				}
				// --check-config says the same and exits 1.
				var out bytes.Buffer
				if err := run([]string{"--check-config", p}, &out, &bytes.Buffer{}); !errors.Is(err, errCheckFailed) ||
					!strings.Contains(out.String(), tc.wantErr) {
					t.Fatalf("--check-config: %v, printed %q; want %q", err, out.String(), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got chatroom.Config
			roomsSessionConfig(&got, c)
			if got.SessionAddr != tc.want.SessionAddr || got.SessionHost != tc.want.SessionHost || got.SessionMaxConns != tc.want.SessionMaxConns ||
				got.SessionMaxConnsPerIP != tc.want.SessionMaxConnsPerIP || got.SessionMaxPendingPerIP != tc.want.SessionMaxPendingPerIP ||
				got.SessionFirstFrameTimeout != tc.want.SessionFirstFrameTimeout {
				t.Fatalf("focus config %+v, want %+v", got, tc.want)
			}
		})
	}
}
