package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// sdNotify delivers the state to NOTIFY_SOCKET (path and abstract names)
// and is a no-op without it.
func TestSDNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
	for _, name := range []string{filepath.Join(t.TempDir(), "notify.sock"), "@clearhub-test-notify-" + time.Now().Format("150405.000000")} {
		listen := name
		if name[0] == '@' {
			listen = "\x00" + name[1:]
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", name)
		if err := sdNotify("READY=1\nSTATUS=serving"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		buf := make([]byte, 128)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		conn.Close()
		if err != nil || string(buf[:n]) != "READY=1\nSTATUS=serving" {
			t.Fatalf("%s: got %q, %v", name, buf[:n], err)
		}
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	if err := sdNotify("READY=1"); err == nil {
		t.Fatal("want an error for a socket nobody listens on")
	}
}
