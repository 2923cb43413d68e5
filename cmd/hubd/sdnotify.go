package main

import (
	"fmt"
	"net"
	"os"
)

// sdNotify sends state to the service manager (sd_notify(3): one datagram
// to the unix socket named by NOTIFY_SOCKET; a leading '@' is the abstract
// namespace). With no NOTIFY_SOCKET it does nothing, so hubd runs the same
// under systemd Type=notify, Type=simple or by hand.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
